package region

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// Names in a region directory: part of the layout, never change.
const (
	lockName = "LOCK"
	logDir   = "log"
	filesDir = "files"
)

// Region is an open region: a log, a memstore and immutable row files
// under one directory, which it holds locked. Its methods are safe for
// concurrent use.
type Region struct {
	dir   string
	name  string
	opts  Options
	fs    vfs.FS
	log   *wal.WAL
	lock  io.Closer
	files string // dir/files

	// maint serializes what changes the set of row files (flush,
	// compaction) and what copies it (Snapshot), and Close. Puts and
	// reads do not take it.
	maint sync.Mutex

	mu struct {
		sync.RWMutex
		mem     *memtable
		imm     *memtable  // being flushed, still read; nil otherwise
		files   []*rowFile // newest first
		lastSeq uint64     // the last seq given to a put
		// queue holds the puts appended to the log and not yet applied,
		// in seq order: they are applied in that order once durable, so
		// readers never see a write that could still be lost.
		queue []queuedPut
		err   error // sticky: ErrClosed or ErrFailed
	}
}

type queuedPut struct {
	rec []byte
	p   *wal.Pending
}

// Open opens the region in dir (<root>/data/<table>/<region>), creating it
// if missing. It fails with ErrLocked while another Region has it open.
// It removes what a crash left (temporary files, row files a compaction
// replaced), loads the row files (a damaged one fails Open with a
// *CorruptionError naming it) and replays the log after the newest of
// them into the memstore.
func Open(dir string, opts Options) (*Region, error) {
	opts.ensureDefaults()
	r := &Region{dir: dir, name: filepath.Base(dir), opts: opts, fs: opts.FS, files: filepath.Join(dir, filesDir)}
	if err := mkdirDurable(r.fs, r.files); err != nil {
		return nil, fmt.Errorf("region: open %s: %w", dir, err)
	}
	lock, err := r.fs.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("region: open %s: %w", dir, err)
	}
	r.lock = lock
	if err := r.recover(); err != nil {
		if r.log != nil {
			r.log.Close()
		}
		lock.Close()
		return nil, err
	}
	return r, nil
}

// mkdirDurable creates dir and its missing parents, and syncs the parent
// of each directory it created.
func mkdirDurable(fsys vfs.FS, dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		_, err := fsys.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir); err != nil {
		return err
	}
	for _, d := range slices.Backward(missing) {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func (r *Region) recover() error {
	files, err := r.loadFiles()
	if err != nil {
		return err
	}
	var base uint64
	if len(files) > 0 {
		base = files[0].seq
	}
	r.mu.files = files
	r.mu.mem = newMemtable(base)
	r.log, err = wal.Open(filepath.Join(r.dir, logDir), wal.Options{FS: r.fs, SegmentSize: r.opts.LogSegmentSize, Logger: r.opts.Logger})
	if err != nil {
		return fmt.Errorf("region: open %s: %w", r.dir, err)
	}
	if err := r.replay(); err != nil {
		return err
	}
	r.mu.lastSeq = r.mu.mem.seq
	return nil
}

// loadFiles loads the row files, newest first, after removing temporary
// files and the files a compaction's output covers.
func (r *Region) loadFiles() ([]*rowFile, error) {
	names, err := r.fs.List(r.files)
	if err != nil {
		return nil, fmt.Errorf("region: open %s: %w", r.dir, err)
	}
	var files []*rowFile
	var doomed []string
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			doomed = append(doomed, name)
			continue
		}
		f, err := loadRowFile(r.fs, r.files, name)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b *rowFile) int { return -compareSeq(a.seq, b.seq) })
	var live []*rowFile
	for _, f := range files {
		if covered(f, files) {
			doomed = append(doomed, f.name)
		} else {
			live = append(live, f)
		}
	}
	for _, name := range doomed {
		r.opts.Logger.Info("region: removing a file a crash left", "region", r.dir, "file", name)
		if err := r.fs.Remove(filepath.Join(r.files, name)); err != nil {
			return nil, fmt.Errorf("region: open %s: %w", r.dir, err)
		}
	}
	if len(doomed) > 0 {
		if err := r.fs.SyncDir(r.files); err != nil {
			return nil, fmt.Errorf("region: open %s: %w", r.dir, err)
		}
	}
	return live, nil
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// covered reports whether another file's range holds f's: a compaction's
// output, whose inputs a crash left behind.
func covered(f *rowFile, files []*rowFile) bool {
	for _, g := range files {
		if g != f && g.from <= f.from && f.seq <= g.seq {
			return true
		}
	}
	return false
}

// loadRowFile reads and checks the row file dir/name.
func loadRowFile(fsys vfs.FS, dir, name string) (*rowFile, error) {
	path := filepath.Join(dir, name)
	data, err := readFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	return checkRowFile(path, data)
}

// checkRowFile parses the bytes of the row file at path and checks them
// against its name.
func checkRowFile(path string, data []byte) (*rowFile, error) {
	name := filepath.Base(path)
	seq, ok := parseRowFileName(name)
	if !ok {
		return nil, corruptf(path, 0, "unexpected file in a region's files directory")
	}
	f, err := decodeRowFile(path, data)
	if err != nil {
		return nil, err
	}
	if f.seq != seq {
		return nil, corruptf(path, int64(len(data)-rowFooterSize), "footer says seq %d, the name %d", f.seq, seq)
	}
	f.name = name
	return f, nil
}

// replay applies the log's records after the newest row file.
func (r *Region) replay() error {
	rd, err := r.log.NewReader(r.log.FirstSeq())
	if err != nil {
		return fmt.Errorf("region: open %s: %w", r.dir, err)
	}
	defer rd.Close()
	mem := r.mu.mem
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("region: open %s: replay: %w", r.dir, err)
		}
		seq, rows, err := decodePut(bytes.Clone(rec.Data))
		switch {
		case err != nil:
			return corruptf(filepath.Join(r.dir, logDir), 0, "log record %d: %v", rec.Seq, err)
		case seq <= mem.from:
			continue // in a row file
		case seq != mem.seq+1:
			return corruptf(filepath.Join(r.dir, logDir), 0, "log record %d holds put %d, expected %d", rec.Seq, seq, mem.seq+1)
		}
		mem.apply(seq, rec.Seq, rows)
	}
}

// Get returns the latest value of key.
func (r *Region) Get(key []byte) (value []byte, ok bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.mu.err != nil {
		return nil, false, r.mu.err
	}
	for _, m := range []*memtable{r.mu.mem, r.mu.imm} {
		if m == nil {
			continue
		}
		if v, ok := m.tree.Get(string(key)); ok {
			return bytes.Clone(v), true, nil
		}
	}
	for _, f := range r.mu.files {
		if i := searchRows(f.rows, key); i < len(f.rows) && bytes.Equal(f.rows[i].Key, key) {
			return bytes.Clone(f.rows[i].Value), true, nil
		}
	}
	return nil, false, nil
}

// Scan returns the rows with keys in [from, to) (a nil bound is open) in
// key order, with their latest values, as of the call: later writes are
// not seen. The rows are the caller's. An error is the iteration's only
// element.
func (r *Region) Scan(from, to []byte) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		srcs, err := r.view(from, to)
		if err != nil {
			yield(Row{}, err)
			return
		}
		mergeRows(srcs, func(row Row) bool {
			return yield(Row{Key: bytes.Clone(row.Key), Value: bytes.Clone(row.Value)}, nil)
		})
	}
}

// view returns the sources of a scan, newest first, frozen: the writers'
// memtable gets a clone of its tree, so that the scan reads the old one
// without the lock.
func (r *Region) view(from, to []byte) ([][]Row, error) {
	r.mu.Lock()
	if r.mu.err != nil {
		r.mu.Unlock()
		return nil, r.mu.err
	}
	mem := *r.mu.mem
	r.mu.mem.tree = mem.tree.Clone()
	imm, files := r.mu.imm, r.mu.files
	r.mu.Unlock()
	srcs := [][]Row{mem.rows(from, to)}
	if imm != nil {
		srcs = append(srcs, imm.rows(from, to))
	}
	for _, f := range files {
		srcs = append(srcs, rowsIn(f.rows, from, to))
	}
	return srcs, nil
}

// Close closes the log and releases the directory. The memstore is not
// flushed: the log holds it. Calls after Close fail with ErrClosed.
func (r *Region) Close() error {
	r.maint.Lock()
	defer r.maint.Unlock()
	r.mu.Lock()
	if errors.Is(r.mu.err, ErrClosed) {
		r.mu.Unlock()
		return ErrClosed
	}
	r.mu.err = ErrClosed
	r.mu.Unlock()
	err := r.log.Close()
	if lerr := r.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("region: close %s: %w", r.dir, err)
	}
	return nil
}

// fail makes err the region's sticky failure, unless it has one.
func (r *Region) fail(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failLocked(err)
}

func (r *Region) failLocked(err error) error {
	if r.mu.err == nil {
		r.mu.err = fmt.Errorf("%w: %s: %w", ErrFailed, r.dir, err)
		r.opts.Logger.Error("region: failed", "region", r.dir, "err", err)
	}
	return r.mu.err
}
