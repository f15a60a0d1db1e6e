package durable

import (
	"context"
	"errors"
	"fmt"
	"github.com/procyon-dev/procyon/internal/seqname"
	"io"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// walMaxRecord is the largest transaction record the WAL persistence
// takes (the WAL's default).
const walMaxRecord = 16 << 20

// File names in a data directory. Part of the on-disk format.
const (
	// snapSuffix ends a snapshot file's name; the rest is the snapshot's
	// seq as 20 decimal digits, so that names sort by seq.
	snapSuffix = ".snap"
	// tmpSuffix is added to the name of a file while it is written (a
	// snapshot, a restored backup); Open removes unfinished snapshots.
	tmpSuffix = ".tmp"
	// walSubdir is the directory of the log's segments.
	walSubdir = "wal"
)

func snapName(seq uint64) string { return seqname.Format(seq, snapSuffix) }

func parseSnapName(name string) (uint64, bool) { return seqname.Parse(name, snapSuffix) }

// walPersistence keeps records in a wal.WAL in dir/wal and snapshots as
// files in dir.
type walPersistence struct {
	fs        vfs.FS
	dir       string
	log       *slog.Logger
	segSize   int64
	syncBytes int64
	maxRecord int
	readOnly  bool
	w         *wal.WAL    // nil when read-only without log segments
	entries   []wal.Entry // reused by Append (one caller at a time)
}

var _ DamageReporter = (*walPersistence)(nil)

func newWALPersistence(o Options) *walPersistence {
	return &walPersistence{fs: o.FS, dir: o.Dir, log: o.Logger, segSize: o.SegmentSize, syncBytes: o.SnapshotSyncBytes,
		maxRecord: walMaxRecord, readOnly: o.ReadOnly}
}

// Open checks the directory (see layout.checkOpen), then opens the log
// under its lock but changing nothing (wal.Options.DeferWrites), needing
// the records after the newest snapshot, by name (wal.Options.NeedFrom):
// damage in segments holding only older records does not fail it (see
// Damage). A store with no log segment yet (new, or restored) gets its log
// from Recovered.
//
// Choosing the snapshot by name costs nothing (it is read once, by
// recovery); the price is that if the newest snapshot then turns out
// damaged and the log its predecessor needs was set aside, Open fails with
// an error that names both the damaged snapshot and the damaged segment.
// Until Recovered, nothing on disk changes (a LOCK file the log had to
// create is removed again by Close), so an Open that recovery refuses
// leaves the disk as it found it.
func (p *walPersistence) Open() error {
	l, err := readLayout(p.fs, p.dir)
	if err != nil {
		return err
	}
	if err := l.checkOpen(p.readOnly); err != nil {
		return err
	}
	if len(l.segments) == 0 {
		return nil // an empty log: first 1, last 0
	}
	w, err := wal.Open(p.walDir(), p.walOptions(l.needFrom()))
	if err != nil {
		return fmt.Errorf("durable: open log: %w", err)
	}
	p.w = w
	return nil
}

func (p *walPersistence) walOptions(needFrom uint64) wal.Options {
	return wal.Options{FS: p.fs, Logger: p.log, SegmentSize: p.segSize, MaxRecordSize: p.maxRecord,
		NeedFrom: needFrom, ReadOnly: p.readOnly, DeferWrites: !p.readOnly}
}

// Recovered makes the log writable: the changes a read-write wal.Open
// makes (cut a torn tail, remove *.tmp files, create the next segment), or
// the directory and log of a store that had none.
func (p *walPersistence) Recovered() error {
	if p.readOnly {
		return nil
	}
	if p.w != nil {
		if err := p.w.OpenForWrites(); err != nil {
			return fmt.Errorf("durable: open log: %w", err)
		}
		return nil
	}
	if err := p.fs.MkdirAll(p.dir); err != nil {
		return fmt.Errorf("durable: create %s: %w", p.dir, err)
	}
	opts := p.walOptions(1)
	opts.DeferWrites = false
	w, err := wal.Open(p.walDir(), opts)
	if err != nil {
		return fmt.Errorf("durable: open log: %w", err)
	}
	if w.LastSeq() != 0 {
		w.Close()
		return fmt.Errorf("durable: open log: %s gained records during recovery (another process?); open the store again", p.walDir())
	}
	p.w = w
	return nil
}

func (p *walPersistence) walDir() string { return filepath.Join(p.dir, walSubdir) }

// Damage implements DamageReporter.
func (p *walPersistence) Damage() []error {
	if p.w == nil {
		return nil
	}
	var out []error
	for _, d := range p.w.Damage() {
		out = append(out, &LogDamageError{Segment: filepath.Join(walSubdir, d.Segment), Err: d})
	}
	return out
}

// removeUnfinished deletes snapshot files a crash left half-written.
func (p *walPersistence) removeUnfinished() error {
	names, err := p.fs.List(p.dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", p.dir, err)
	}
	removed := false
	for _, n := range names {
		if strings.HasSuffix(n, snapSuffix+tmpSuffix) {
			p.log.Info("durable: removing unfinished snapshot", "file", n)
			if err := p.fs.Remove(filepath.Join(p.dir, n)); err != nil {
				return fmt.Errorf("remove %s: %w", n, err)
			}
			removed = true
		}
	}
	if removed {
		if err := p.fs.SyncDir(p.dir); err != nil {
			return fmt.Errorf("sync %s: %w", p.dir, err)
		}
	}
	return nil
}

func (p *walPersistence) LogBounds() (uint64, uint64, error) {
	if p.w == nil {
		return 1, 0, nil
	}
	return p.w.FirstSeq(), p.w.LastSeq(), nil
}

// Replay reads the records from..LastSeq: the log holds no more during
// recovery, and a reader is never asked past the end (a read-only log whose
// last segment is sealed has no segment beyond it to wait in).
func (p *walPersistence) Replay(from uint64, fn func(uint64, []byte) error) error {
	if p.w == nil {
		return nil
	}
	last := p.w.LastSeq()
	if from > last {
		return nil
	}
	r, err := p.w.NewReader(from)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec.Seq, rec.Data); err != nil {
			return err
		}
		if rec.Seq >= last {
			return nil
		}
	}
}

func (p *walPersistence) Snapshots() ([]SnapshotInfo, error) {
	names, err := p.fs.List(p.dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, nil // a new store, before Recovered creates its directory
	}
	if err != nil {
		return nil, err
	}
	return snapshotsIn(p.fs, p.dir, names)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type fileReader struct {
	io.Reader
	f vfs.File
}

func (r fileReader) Close() error { return r.f.Close() }

func (p *walPersistence) ReadSnapshot(seq uint64) (io.ReadCloser, error) {
	f, err := p.fs.Open(filepath.Join(p.dir, snapName(seq)))
	if err != nil {
		return nil, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, err
	}
	return fileReader{Reader: io.NewSectionReader(f, 0, size), f: f}, nil
}

// Append writes and syncs recs before it returns, on the caller's
// goroutine: the store's committer is the log's only appender and waits
// for each group before it appends the next, so the log's lone-appender
// path (wal.WAL.Append) writes the group with no hand-off to the log's
// flusher and back. The Pending it returns is done.
func (p *walPersistence) Append(recs [][]byte) (Pending, error) {
	if p.readOnly {
		return nil, ErrReadOnly
	}
	p.entries = p.entries[:0]
	for _, r := range recs {
		p.entries = append(p.entries, wal.Entry{Data: r})
	}
	first, err := p.w.Append(p.entries...)
	clear(p.entries)
	if err != nil {
		return nil, err
	}
	return durableGroup(first), nil
}

// durableGroup is the Pending of a group already durable: its first
// record's sequence number.
type durableGroup uint64

func (g durableGroup) Seq() uint64                { return uint64(g) }
func (g durableGroup) Wait(context.Context) error { return nil }

func (p *walPersistence) MaxRecordSize() int { return p.maxRecord }

// syncWriter writes a snapshot file, syncing it every so many bytes so
// that the final sync has little left to do.
type syncWriter struct {
	f       vfs.File
	every   int64
	pending int64
	n       int64
}

func (w *syncWriter) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.n += int64(n)
	w.pending += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err == nil && w.pending >= w.every {
		w.pending = 0
		err = w.f.Sync()
	}
	return n, err
}

// WriteSnapshot writes the snapshot to a temporary file, syncs it, renames
// it into place and syncs the directory; then it deletes snapshots older
// than the previous one and the log up to the previous one.
func (p *walPersistence) WriteSnapshot(seq uint64, write func(io.Writer) error) (int64, error) {
	if p.readOnly {
		return 0, ErrReadOnly
	}
	if err := p.removeUnfinished(); err != nil {
		return 0, err
	}
	// Seal the active segment so that the records so far can be deleted
	// once a later snapshot makes them obsolete.
	if err := p.w.Roll(); err != nil {
		return 0, err
	}
	name := snapName(seq)
	final := filepath.Join(p.dir, name)
	tmp := final + tmpSuffix
	f, err := p.fs.Create(tmp)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	sw := &syncWriter{f: f, every: p.syncBytes}
	err = write(sw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = p.fs.Rename(tmp, final)
	}
	if err != nil {
		if rerr := p.fs.Remove(tmp); rerr != nil {
			p.log.Warn("durable: remove unfinished snapshot", "file", tmp, "err", rerr)
		}
		return 0, fmt.Errorf("write %s: %w", name, err)
	}
	if err := p.fs.SyncDir(p.dir); err != nil {
		return 0, fmt.Errorf("write %s: sync dir: %w", name, err)
	}
	// The new snapshot is durable. Failing to drop what it made obsolete
	// costs disk space only; the next snapshot tries again.
	if err := p.prune(seq); err != nil {
		p.log.Warn("durable: drop data older than the previous snapshot", "snapshot", name, "err", err)
	}
	return sw.n, nil
}

// prune keeps the snapshot at seq and the previous one, and deletes older
// snapshots and the log up to the previous one.
func (p *walPersistence) prune(seq uint64) error {
	snaps, err := p.Snapshots()
	if err != nil {
		return err
	}
	var prev *SnapshotInfo
	var doomed []SnapshotInfo
	for i := range snaps {
		switch {
		case snaps[i].Seq >= seq:
		case prev == nil:
			prev = &snaps[i]
		default:
			doomed = append(doomed, snaps[i])
		}
	}
	// The log first: a crash in between then leaves old snapshots the log
	// no longer covers (the next snapshot deletes them), never a log from
	// seq 1 without the snapshot a restored store's state starts from.
	if prev != nil {
		if err := p.w.TruncateFront(prev.Seq + 1); err != nil {
			return fmt.Errorf("truncate log before %d: %w", prev.Seq+1, err)
		}
	}
	for _, d := range doomed {
		if err := p.fs.Remove(filepath.Join(p.dir, d.Name)); err != nil {
			return fmt.Errorf("delete old snapshot %s: %w", d.Name, err)
		}
	}
	if len(doomed) > 0 {
		if err := p.fs.SyncDir(p.dir); err != nil {
			return fmt.Errorf("delete old snapshots: sync dir: %w", err)
		}
	}
	return nil
}

func (p *walPersistence) Close() error {
	if p.w == nil {
		return nil
	}
	err := p.w.Close()
	p.w = nil
	return err
}
