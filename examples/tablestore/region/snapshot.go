package region

import (
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"iter"
	"path/filepath"
	"slices"
	"strings"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/vfs"
)

// Snapshot writes a consistent snapshot of the region into dir: the rows
// acknowledged before the call, and none written after its flush. It
// flushes the memstore, copies the row files (immutable, so a copy is
// consistent) into dir and writes dir/MANIFEST atomically and durably,
// last: a directory without a MANIFEST is not a snapshot. Whatever dir
// held before is removed first, so a re-run after a crash or by another
// server that has opened the region since rewrites it whole. Puts go on
// meanwhile; flushes and compactions wait.
func (r *Region) Snapshot(dir string) (Manifest, error) {
	if err := checkApart(dir, r.dir); err != nil {
		return Manifest{}, err
	}
	r.maint.Lock()
	defer r.maint.Unlock()
	if err := r.flush(); err != nil {
		return Manifest{}, err
	}
	r.mu.RLock()
	files, seq, err := r.mu.files, r.mu.mem.from, r.mu.err
	r.mu.RUnlock()
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Region: r.name, Seq: seq, Rows: countRows(files)}
	if err := r.writeSnapshot(dir, files, &m); err != nil {
		return Manifest{}, fmt.Errorf("region: snapshot %s into %s: %w", r.dir, dir, err)
	}
	return m, nil
}

func (r *Region) writeSnapshot(dir string, files []*rowFile, m *Manifest) error {
	if err := RemoveAll(r.fs, dir); err != nil {
		return err
	}
	if err := mkdirDurable(r.fs, dir); err != nil {
		return err
	}
	for _, f := range files {
		ref, err := copyRowFile(r.fs, filepath.Join(r.files, f.name), dir)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, ref)
	}
	return writeFileAtomic(r.fs, dir, manifestName, m.encode())
}

// copyRowFile copies the row file at src into dir, durably, after
// checking it, and returns its reference.
func copyRowFile(fsys vfs.FS, src, dir string) (FileRef, error) {
	data, err := readFile(fsys, src)
	if err != nil {
		return FileRef{}, err
	}
	if _, err := checkRowFile(src, data); err != nil {
		return FileRef{}, err
	}
	name := filepath.Base(src)
	if err := writeFileAtomic(fsys, dir, name, data); err != nil {
		return FileRef{}, err
	}
	return FileRef{Name: name, Size: int64(len(data)), CRC: fileCRC(data)}, nil
}

// fileCRC returns the checksum a FileRef records for a row file: the
// CRC-32C of its bytes before the checksum field, which is that field's
// value. (The CRC of a whole file, checksum included, is the same constant
// for every intact file.)
func fileCRC(data []byte) uint32 { return crc32c.Checksum(data[:len(data)-4]) }

// countRows returns the number of distinct keys in files.
func countRows(files []*rowFile) int64 {
	srcs := make([][]Row, len(files))
	for i, f := range files {
		srcs[i] = f.rows
	}
	var n int64
	mergeRows(srcs, func(Row) bool { n++; return true })
	return n
}

// VerifyManifest checks the region snapshot in dir: its manifest, and that
// every file it lists exists with its size and CRC and parses as a row
// file, and that the files hold the manifest's row count. Damage is a
// *CorruptionError naming the file and offset (errors.Is(err, ErrCorrupt)).
func VerifyManifest(fsys vfs.FS, dir string) (Manifest, error) {
	m, files, err := loadSnapshot(fsys, dir)
	if err != nil {
		return Manifest{}, err
	}
	if n := countRows(files); n != m.Rows {
		return Manifest{}, corruptf(filepath.Join(dir, manifestName), rowsOffset(m), "manifest counts %d rows, its files hold %d", m.Rows, n)
	}
	return m, nil
}

// rowsOffset returns the offset of a manifest's row count.
func rowsOffset(m Manifest) int64 {
	return int64(12 + len(binary.AppendUvarint(nil, uint64(len(m.Region)))) + len(m.Region) + 8)
}

// loadSnapshot reads the snapshot in dir: its manifest and its files,
// newest first, each checked against the manifest.
func loadSnapshot(fsys vfs.FS, dir string) (Manifest, []*rowFile, error) {
	m, err := ReadManifest(fsys, dir)
	if err != nil {
		return Manifest{}, nil, err
	}
	files := make([]*rowFile, 0, len(m.Files))
	for _, ref := range m.Files {
		f, err := loadSnapshotFile(fsys, dir, ref)
		if err != nil {
			return Manifest{}, nil, err
		}
		if f.seq > m.Seq {
			return Manifest{}, nil, corruptf(f.name, f.size-rowFooterSize, "holds writes up to %d, past the manifest's seq %d", f.seq, m.Seq)
		}
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b *rowFile) int { return -compareSeq(a.seq, b.seq) })
	return m, files, nil
}

// loadSnapshotFile reads the file ref of the snapshot in dir and checks it
// against ref.
func loadSnapshotFile(fsys vfs.FS, dir string, ref FileRef) (*rowFile, error) {
	path := filepath.Join(dir, ref.Name)
	size, err := fsys.Stat(path)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, corruptf(path, 0, "listed in the manifest but missing")
	}
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	if size != ref.Size {
		return nil, corruptf(path, min(size, ref.Size), "%d bytes, the manifest says %d", size, ref.Size)
	}
	data, err := readFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	f, err := checkRowFile(path, data)
	if err != nil {
		return nil, err
	}
	if crc := fileCRC(data); crc != ref.CRC {
		return nil, corruptf(path, size-4, "checksum %08x, the manifest says %08x: another file", crc, ref.CRC)
	}
	f.name = path
	return f, nil
}

// SnapshotRows returns the rows of the region snapshot in dir in key
// order, after checking it as VerifyManifest does (a damaged snapshot
// yields its error as the only element).
func SnapshotRows(fsys vfs.FS, dir string) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		_, files, err := loadSnapshot(fsys, dir)
		if err != nil {
			yield(Row{}, err)
			return
		}
		srcs := make([][]Row, len(files))
		for i, f := range files {
			srcs[i] = f.rows
		}
		mergeRows(srcs, func(row Row) bool { return yield(row, nil) })
	}
}

// Clone makes dstDir a region directory whose rows are those of the
// snapshot in snapDir: it checks the snapshot, then copies its files into
// dstDir/files durably. dstDir must be missing or hold only what an
// earlier Clone of the snapshot left (else ErrNotEmpty, and nothing
// changes), so that a Clone cut short by a crash is finished by running
// it again. Open the region only once Clone has returned nil.
func Clone(fsys vfs.FS, snapDir, dstDir string) error {
	if err := checkApart(snapDir, dstDir); err != nil {
		return err
	}
	m, err := VerifyManifest(fsys, snapDir)
	if err != nil {
		return fmt.Errorf("region: clone %s: %w", snapDir, err)
	}
	if err := checkCloneTarget(fsys, dstDir, m); err != nil {
		return err
	}
	dst := filepath.Join(dstDir, filesDir)
	if err := mkdirDurable(fsys, dst); err != nil {
		return fmt.Errorf("region: clone into %s: %w", dstDir, err)
	}
	for _, ref := range m.Files {
		if _, err := copyRowFile(fsys, filepath.Join(snapDir, ref.Name), dst); err != nil {
			return fmt.Errorf("region: clone into %s: %w", dstDir, err)
		}
	}
	return nil
}

// checkCloneTarget returns ErrNotEmpty if dstDir holds anything but the
// files of m (and their temporary copies) under files/.
func checkCloneTarget(fsys vfs.FS, dstDir string, m Manifest) error {
	names, err := fsys.List(dstDir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("region: clone into %s: %w", dstDir, err)
	}
	if len(names) > 1 || (len(names) == 1 && names[0] != filesDir) {
		return fmt.Errorf("%w: %s holds %v", ErrNotEmpty, dstDir, names)
	}
	if len(names) == 0 {
		return nil
	}
	names, err = fsys.List(filepath.Join(dstDir, filesDir))
	if err != nil {
		return fmt.Errorf("region: clone into %s: %w", dstDir, err)
	}
	for _, name := range names {
		if !slices.ContainsFunc(m.Files, func(f FileRef) bool { return name == f.Name || name == f.Name+tmpSuffix }) {
			return fmt.Errorf("%w: %s holds %s, not in the snapshot", ErrNotEmpty, dstDir, name)
		}
	}
	return nil
}

// checkApart returns ErrOverlap if a and b are one directory or one holds
// the other: a snapshot written there would remove or mix with the other.
func checkApart(a, b string) error {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if err := errors.Join(errA, errB); err != nil {
		return fmt.Errorf("region: %w", err)
	}
	within := func(x, y string) bool { return x == y || strings.HasPrefix(x, y+string(filepath.Separator)) }
	if within(absA, absB) || within(absB, absA) {
		return fmt.Errorf("%w: %s and %s", ErrOverlap, a, b)
	}
	return nil
}
