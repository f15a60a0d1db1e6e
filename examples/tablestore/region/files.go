package region

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"syscall"

	"github.com/procyon-dev/procyon/vfs"
)

const tmpSuffix = ".tmp"

// readFile returns the whole content of the file at path.
func readFile(fsys vfs.FS, path string) ([]byte, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// writeFileAtomic makes dir/name hold data durably or not change it: it
// writes dir/name.tmp, syncs it, renames it over dir/name and syncs dir.
func writeFileAtomic(fsys vfs.FS, dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+tmpSuffix)
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := fsys.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

// RemoveAll removes path and, if it is a directory, everything under it,
// durably (each directory is synced after its entries go, and path's
// parent after path). A missing path is not an error. It is for dropping
// a closed region and a failed or superseded snapshot; a crash in the
// middle leaves a part of the tree, which a second RemoveAll removes.
func RemoveAll(fsys vfs.FS, path string) error {
	found, err := removeTree(fsys, path)
	if err != nil || !found {
		return err
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("region: remove %s: %w", path, err)
	}
	return nil
}

// removeTree removes path and what is under it, and reports whether there
// was anything to remove.
func removeTree(fsys vfs.FS, path string) (bool, error) {
	names, err := fsys.List(path)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return false, nil
	case errors.Is(err, syscall.ENOTDIR):
		if err := fsys.Remove(path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return true, fmt.Errorf("region: remove %s: %w", path, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("region: remove %s: %w", path, err)
	}
	for _, name := range names {
		if _, err := removeTree(fsys, filepath.Join(path, name)); err != nil {
			return true, err
		}
	}
	if len(names) > 0 {
		if err := fsys.SyncDir(path); err != nil {
			return true, fmt.Errorf("region: remove %s: %w", path, err)
		}
	}
	if err := fsys.Remove(path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return true, fmt.Errorf("region: remove %s: %w", path, err)
	}
	return true, nil
}
