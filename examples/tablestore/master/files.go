package master

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/vfs"
)

// snapshotInfo is a snapshot's INFO file, written first in its working
// directory: what it is of.
type snapshotInfo struct {
	Name    string                  `json:"name"`
	Table   string                  `json:"table"`
	TableID uint64                  `json:"table_id"`
	Online  bool                    `json:"online"` // the table was enabled: its servers snapshot the regions
	Regions []tablestore.RegionDesc `json:"regions"`
}

// tableManifest is a snapshot's MANIFEST: the consolidation of its region
// manifests (HBase's single snapshot manifest).
type tableManifest struct {
	Name    string           `json:"name"`
	Table   string           `json:"table"`
	TableID uint64           `json:"table_id"`
	Regions []manifestRegion `json:"regions"`
}

// manifestRegion is one region in a snapshot's MANIFEST.
type manifestRegion struct {
	ID    string `json:"id"`
	Start []byte `json:"start,omitempty"`
	End   []byte `json:"end,omitempty"`
	Seq   uint64 `json:"seq"`
	Rows  int64  `json:"rows"`
	Files int    `json:"files"`
}

const (
	infoFile     = "INFO"
	manifestFile = "MANIFEST"
)

func readTableManifest(fs vfs.FS, dir string) (tableManifest, error) {
	var m tableManifest
	err := readJSON(fs, filepath.Join(dir, manifestFile), &m)
	return m, err
}

func readSnapshotInfo(fs vfs.FS, dir string) (snapshotInfo, error) {
	var in snapshotInfo
	err := readJSON(fs, filepath.Join(dir, infoFile), &in)
	return in, err
}

// writeJSON writes v to name atomically and durably: a temporary file,
// fsync, rename, fsync of the directory.
func writeJSON(fs vfs.FS, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(name)
	if err := fs.MkdirAll(dir); err != nil {
		return err
	}
	tmp := name + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, name); err != nil {
		return err
	}
	return fs.SyncDir(dir)
}

// readJSON reads name into v; a file that does not parse is an error
// naming it.
func readJSON(fs vfs.FS, name string, v any) error {
	f, err := fs.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return err
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
