package wal

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/procyon-dev/procyon/vfs"
)

// lockName is the lock file in a log directory.
const lockName = "LOCK"

// tmpSuffix ends the name of a segment being created; it is renamed to the
// segment's name once its header is durable.
const tmpSuffix = ".tmp"

// skippedFile is a file before the log's start that Open left alone.
type skippedFile struct {
	name  string
	bound uint64 // it holds no record at or after this seq
}

// Open opens the log in dir. Read-write (the default), it creates the
// directory and a first segment if there is no log yet (unless
// Options.MustExist), takes the directory's lock, checks every segment,
// cuts off a torn tail of the unsealed last segment (saying what it
// dropped) and removes leftover *.tmp files of unfinished segment creations.
// On any other damage it fails with an error wrapping ErrCorrupt (a
// *CorruptionError naming the file and offset), or ErrVersion, and leaves
// the directory as it found it; Options.NeedFrom lets it skip damage in
// records the caller does not need. With Options.ReadOnly it changes
// nothing on disk; with Options.DeferWrites it changes nothing until
// OpenForWrites.
func Open(dir string, opts Options) (*WAL, error) {
	opts.ensureDefaults()
	if opts.ReadOnly {
		return openReadOnly(dir, opts)
	}
	fs := opts.FS
	if opts.MustExist || opts.DeferWrites {
		if err := checkIsLog(fs, dir); err != nil {
			return nil, err
		}
	} else if err := fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	lockPath := filepath.Join(dir, lockName)
	_, statErr := fs.Stat(lockPath)
	lock, err := fs.Lock(lockPath)
	if err != nil {
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	created := errors.Is(statErr, iofs.ErrNotExist)
	w, err := open(fs, dir, opts, lock, created)
	if err != nil {
		// A refused Open leaves the directory as it found it.
		unlockDir(fs, dir, lock, created)
		return nil, err
	}
	return w, nil
}

// unlockDir releases a log directory's lock, first removing the LOCK file
// if the caller created it.
func unlockDir(fs vfs.FS, dir string, lock io.Closer, created bool) error {
	var rerr error
	if created {
		rerr = fs.Remove(filepath.Join(dir, lockName))
	}
	if err := lock.Close(); err != nil {
		return fmt.Errorf("wal: unlock %s: %w", dir, err)
	}
	if rerr != nil {
		return fmt.Errorf("wal: remove %s: %w", filepath.Join(dir, lockName), rerr)
	}
	return nil
}

// checkIsLog fails with ErrNotLog if dir holds no segment file and no LOCK
// file, or is not a directory.
func checkIsLog(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNotLog, dir, err)
	}
	for _, n := range names {
		if _, ok := parseSegmentName(n); ok || n == lockName {
			return nil
		}
	}
	return notLogError(dir)
}

func newWAL(fs vfs.FS, dir string, opts Options, lock io.Closer) *WAL {
	w := &WAL{fs: fs, dir: dir, opts: opts, lock: lock, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	w.mu.notify = make(chan struct{})
	w.mu.rolled = make(chan struct{})
	w.mu.flushed = make(map[uint32]uint64)
	return w
}

func open(fs vfs.FS, dir string, opts Options, lock io.Closer, lockCreated bool) (*WAL, error) {
	res, err := scanDir(fs, dir, opts.NeedFrom, nil)
	if err != nil {
		return nil, err
	}
	if res.fatal != nil {
		return nil, res.fatal
	}
	if opts.DeferWrites && len(res.files) == 0 {
		return nil, fmt.Errorf("%w: %s has a LOCK file but no segment file: no record was ever written there", ErrNotLog, dir)
	}
	w := newWAL(fs, dir, opts, lock)
	w.adopt(res)
	w.mu.pending = w.newBatchLocked()
	w.stats.segments.Store(int64(len(w.mu.segments)))
	w.deferred, w.lockCreated = res, lockCreated
	if opts.DeferWrites {
		return w, nil
	}
	if err := w.OpenForWrites(); err != nil {
		return nil, err
	}
	return w, nil
}

// OpenForWrites makes a log opened with Options.DeferWrites writable,
// making the changes a read-write Open makes: it removes leftover *.tmp
// files, cuts the torn tail off the unsealed last segment (or creates the
// segment after a sealed last one), and starts taking writes. The LOCK
// file stays from now on. Call it once, while no other call on the log (a
// Reader's included) is in progress. If it fails, Close the log.
func (w *WAL) OpenForWrites() error {
	res := w.deferred
	if res == nil {
		return errors.New("wal: OpenForWrites: the log is not waiting for it (opened without Options.DeferWrites, or already writable)")
	}
	if err := w.removeTemps(); err != nil {
		return err
	}
	if err := w.openActive(res); err != nil {
		return err
	}
	w.deferred, w.lockCreated = nil, false
	w.stats.segments.Store(int64(len(w.mu.segments)))
	w.wg.Add(1)
	go w.flusher()
	return nil
}

// openReadOnly opens the log for Options.ReadOnly.
func openReadOnly(dir string, opts Options) (*WAL, error) {
	res, err := scanDir(opts.FS, dir, opts.NeedFrom, nil)
	if err != nil {
		return nil, err
	}
	if res.fatal != nil {
		return nil, res.fatal
	}
	if len(res.files) == 0 {
		return nil, fmt.Errorf("%w: %s has a LOCK file but no segment file: no record was ever written there", ErrNotLog, dir)
	}
	w := newWAL(opts.FS, dir, opts, nil)
	w.adopt(res)
	w.mu.pending = w.newBatchLocked()
	w.stats.segments.Store(int64(len(w.mu.segments)))
	return w, nil
}

// adopt takes the segments, sequence numbers and skipped damage of a
// scan. Called before the log is shared.
func (w *WAL) adopt(res *scanResult) {
	for _, f := range res.kept() {
		s := &segment{name: f.name, firstSeq: f.firstSeq, lastSeq: f.lastSeq, streams: f.streams}
		s.durableSize.Store(f.validEnd)
		s.sealed.Store(f.sealed)
		w.mu.segments = append(w.mu.segments, s)
	}
	for j := range res.start {
		bound := res.files[res.start].firstSeq
		for k := j + 1; k < res.start; k++ {
			if res.files[k].segment {
				bound = res.files[k].firstSeq
				break
			}
		}
		w.mu.skipped = append(w.mu.skipped, skippedFile{name: res.files[j].name, bound: bound})
	}
	w.damage = res.skipped
	for _, d := range res.skipped {
		w.opts.Logger.Error("wal: skipping damaged segment: it holds only records before Options.NeedFrom; "+
			"the log starts after it, and records before it can no longer be read",
			"dir", w.dir, "segment", d.Segment, "offset", d.Offset, "reason", d.Reason, "log_starts_at", res.files[res.start].firstSeq)
	}
	nextSeq := uint64(1)
	if n := len(w.mu.segments); n > 0 {
		nextSeq = w.mu.segments[n-1].lastSeq + 1
	}
	w.mu.nextSeq = nextSeq
	w.durableSeq.Store(nextSeq - 1)
}

// removeTemps removes *.tmp files left by segment creations a crash
// interrupted (their header may not be durable; they hold no record).
func (w *WAL) removeTemps() error {
	names, err := w.fs.List(w.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", w.dir, err)
	}
	removed := false
	for _, n := range names {
		if _, ok := parseSegmentName(strings.TrimSuffix(n, tmpSuffix)); !ok || !strings.HasSuffix(n, tmpSuffix) {
			continue
		}
		w.opts.Logger.Info("wal: removing unfinished segment creation", "dir", w.dir, "file", n)
		if err := w.fs.Remove(filepath.Join(w.dir, n)); err != nil {
			return fmt.Errorf("wal: remove %s: %w", n, err)
		}
		removed = true
	}
	if removed {
		if err := w.fs.SyncDir(w.dir); err != nil {
			return fmt.Errorf("wal: sync %s: %w", w.dir, err)
		}
	}
	return nil
}

// openActive opens the unsealed last segment for appending, cutting off
// what follows its last record, or creates the next segment after a sealed
// one (or the first one of a new log).
func (w *WAL) openActive(res *scanResult) error {
	kept := res.kept()
	n := len(kept)
	if n == 0 || kept[n-1].sealed {
		// A sealed last segment: a crash inside Close or Roll lost the
		// creation of the next one.
		if err := w.createSegment(w.mu.nextSeq); err != nil {
			return err
		}
		w.mu.segments = append(w.mu.segments, w.activeSeg)
		return nil
	}
	last, info := w.mu.segments[n-1], kept[n-1]
	f, err := w.fs.OpenReadWrite(filepath.Join(w.dir, last.name))
	if err != nil {
		return fmt.Errorf("wal: open segment %s: %w", last.name, err)
	}
	if info.validEnd < info.size {
		log := w.opts.Logger
		if info.tear != "" {
			log.Warn("wal: truncating torn tail of the last segment", "dir", w.dir, "segment", last.name,
				"offset", info.validEnd, "bytes_dropped", info.size-info.validEnd, "reason", info.tear)
		} else {
			log.Debug("wal: dropping the preallocated zeros after the last record", "dir", w.dir, "segment", last.name,
				"offset", info.validEnd, "bytes", info.size-info.validEnd)
		}
		// Appends go on at the end of the file: cut it back to the last
		// record.
		err := f.Truncate(info.validEnd)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: truncate torn tail of %s: %w", last.name, err)
		}
	}
	w.active, w.activeSeg, w.activeSize, w.allocEnd = f, last, info.validEnd, info.validEnd
	return nil
}

// Damage returns the damage Open skipped because it lies wholly before
// Options.NeedFrom, oldest first: each names the file and offset. Callers
// should report it loudly: the records in and before those segments can
// no longer be read, so falling back to older state is no longer possible.
// Nil if Open skipped nothing.
func (w *WAL) Damage() []*CorruptionError { return slices.Clone(w.damage) }
