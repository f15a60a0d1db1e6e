package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/internal/gather"
	"github.com/procyon-dev/procyon/vfs"
)

// Options configure a log. The zero value is usable: every field has a
// default, written in its comment.
type Options struct {
	// FS is the file system. Default vfs.OS.
	FS vfs.FS
	// SegmentSize is the size past which the active segment is rolled.
	// Default 64 MiB.
	SegmentSize int64
	// MaxRecordSize bounds one record. Default 16 MiB.
	MaxRecordSize int
	// MaxPendingBytes bounds the bytes appended but not yet written;
	// non-waiting appenders block past it until the log catches up.
	// Default 16 MiB.
	MaxPendingBytes int
	// Logger receives what recovery repairs and what fails. Default
	// slog.Default().
	Logger *slog.Logger
	// Preallocate is how far ahead of the records the active segment is
	// filled with zeros (written, then synced with the batch that needed
	// them). Overwriting zeros that are already on disk changes no file
	// metadata, so a batch's fdatasync has only data to flush: on ext4,
	// one journal commit saved per sync (measured here: an 8 KiB write+fdatasync
	// over zeros takes about 0.6 of what it takes at the end of a growing
	// file). Default 1 MiB, at most SegmentSize; negative: off (every
	// write grows the file).
	Preallocate int64
	// NeedFrom is the first sequence number the caller needs from the log:
	// records before it are kept elsewhere (the store's snapshot). Damage
	// in segments that hold only records before NeedFrom (and a gap, a
	// foreign file or a directory among them) does not fail Open: the log
	// starts at the segment after the last such damage (FirstSeq says
	// where), the damaged and earlier segments stay on disk untouched, as
	// evidence, until TruncateFront passes them, and Damage returns what
	// was skipped. Damage anywhere else fails Open. Default 0: every
	// record is needed; any damage but the torn tail of the unsealed last
	// segment fails Open.
	NeedFrom uint64
	// ReadOnly opens the log for reading only. Open then creates nothing
	// (no directory, LOCK file or segment), truncates and removes nothing,
	// takes no lock, and fails with ErrNotLog on a path that is not a log.
	// It reads what is on disk at Open: a torn tail is not read, and a
	// writer that appends meanwhile is not seen (nor hindered); a segment
	// the writer deletes meanwhile fails the reader that needs it. Appends,
	// Roll, TruncateFront and MarkFlushed return ErrReadOnly. Default
	// false: read-write, under the directory's lock.
	ReadOnly bool
	// DeferWrites makes a read-write Open hold back every change on disk
	// until OpenForWrites, for a caller that must check what it reads
	// before it commits to the log (a store recovering from it). Open
	// then takes the directory's lock (creating the LOCK file only if
	// there is none) and checks the log, and the log reads as a ReadOnly
	// one does (a torn tail is not read); but no torn tail is cut, no
	// *.tmp file removed and no segment created, and writes return
	// ErrReadOnly. OpenForWrites does those changes and starts taking
	// writes; a Close before it releases the lock and removes the LOCK
	// file if Open created it, so the directory is left as Open found it.
	// Open fails with ErrNotLog if dir holds no segment file. Default
	// false: Open makes those changes itself.
	DeferWrites bool
	// MustExist makes a read-write Open fail with ErrNotLog, changing
	// nothing, when dir is not a log (missing, a file, or a directory with
	// no segment file and no LOCK file). Default false: Open creates the
	// directory and a first segment.
	MustExist bool
}

func (o *Options) ensureDefaults() {
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.MaxRecordSize <= 0 {
		o.MaxRecordSize = 16 << 20
	}
	if o.MaxRecordSize > maxFrameLen {
		o.MaxRecordSize = maxFrameLen
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Preallocate == 0 {
		o.Preallocate = 1 << 20
	}
	o.Preallocate = min(o.Preallocate, o.SegmentSize)
}

// Entry is one record of a batch append, with the stream it belongs to.
type Entry struct {
	// Stream names the caller's stream (HBase: a region) for obsolete-
	// segment accounting; see MarkFlushed. Single-stream users leave it 0.
	Stream uint32
	Data   []byte
}

// segment is the in-memory view of one segment file.
type segment struct {
	name     string
	firstSeq uint64

	// Written by the goroutine that owns the IO path, read by readers.
	durableSize atomic.Int64 // bytes of the file that are synced
	sealed      atomic.Bool  // the trailer is durable and a next segment exists

	// Guarded by WAL.mu.
	lastSeq uint64            // last data seq written to it (durable or not)
	streams map[uint32]uint64 // stream -> highest seq it wrote here
}

type owner int

const (
	ownerNone    owner = iota
	ownerLeader        // an appender writing its own batch
	ownerFlusher       // the background flusher
)

// batch is a group of records written with one write and one fsync.
type batch struct {
	buf         []byte
	first, last uint64 // data seqs; last < first when empty
	streams     []streamSeq
	waiters     int           // appenders blocked until it is durable
	done        chan struct{} // closed when the batch is durable or failed
	err         error         // set before done is closed
}

type streamSeq struct {
	stream uint32
	seq    uint64
}

func (b *batch) noteStream(stream uint32, seq uint64) {
	for i := range b.streams {
		if b.streams[i].stream == stream {
			b.streams[i].seq = seq
			return
		}
	}
	b.streams = append(b.streams, streamSeq{stream, seq})
}

// WAL is a segmented, checksummed write-ahead log with group commit. It is
// safe for concurrent use. See the package documentation.
type WAL struct {
	fs   vfs.FS
	dir  string
	opts Options
	lock io.Closer

	kick chan struct{} // wakes the flusher; capacity 1
	// syncAvg is a moving average of fsync time; it bounds how long the
	// flusher gathers a batch.
	syncAvg gather.Average
	quit    chan struct{} // closed by Close after the last flush
	wg      sync.WaitGroup

	// ioMu is held by whichever goroutine writes to the active segment
	// (an appender leading a batch, or the flusher). The flushing flag
	// below makes sure at most one waits for it at a time.
	ioMu       sync.Mutex
	active     vfs.File // guarded by ioMu
	activeSeg  *segment // guarded by ioMu; also in mu.segments
	activeSize int64    // guarded by ioMu
	// allocEnd is the active segment's file size: past activeSize it
	// holds preallocated zeros. Guarded by ioMu.
	allocEnd int64

	deleteMu sync.Mutex // serializes segment deletion

	// damage is what Open skipped (Options.NeedFrom); set before the log
	// is shared, read-only after.
	damage []*CorruptionError
	// deferred is Open's scan while writes wait for OpenForWrites
	// (Options.DeferWrites), nil otherwise; lockCreated says that Open
	// created the LOCK file, which a Close before OpenForWrites removes.
	// Changed only by OpenForWrites, which runs alone.
	deferred    *scanResult
	lockCreated bool

	durableSeq atomic.Uint64

	mu struct {
		sync.Mutex
		nextSeq  uint64
		pending  *batch // accumulating; never nil while open
		inflight *batch // being written and synced, or nil
		// owner says who owns the IO path: at most one goroutine takes
		// batches from pending and writes them, so batches reach the disk
		// in sequence order. The owner looks at pending again before
		// giving the path up.
		owner    owner
		err      error // sticky: wraps ErrFailed, or ErrClosed
		closed   bool
		segments []*segment
		// notify is closed and replaced whenever durableSeq advances or
		// the log fails or closes; readers wait on it.
		notify        chan struct{}
		rollRequested bool
		// expect is how many waiting appenders the flusher expects in the
		// next batch (those it just released, plus those already waiting);
		// it waits for them at gate.
		expect        int
		gate          gather.Gate
		rolled        chan struct{} // closed and replaced after each roll
		flushed       map[uint32]uint64
		truncateFront uint64
		spare         [][]byte // recycled batch buffers
		// skipped are the files before the log's start that Open left
		// alone (Options.NeedFrom), oldest first; deleteObsolete removes
		// them once TruncateFront passes them.
		skipped []skippedFile
	}

	stats stats
}

// createSegment creates, syncs and links a new active segment: it writes
// the header to "<name>.tmp", syncs it, renames it to the segment's name
// and syncs the directory, so that a file with a segment's name always has
// a durable header. Called with ioMu held (or before the log is shared).
func (w *WAL) createSegment(firstSeq uint64) error {
	name := segmentName(firstSeq)
	path := filepath.Join(w.dir, name)
	// Never overwrite a segment: that would destroy records.
	if _, err := w.fs.Stat(path); err == nil {
		return fmt.Errorf("wal: create segment %s: %w", name, iofs.ErrExist)
	} else if !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("wal: create segment %s: %w", name, err)
	}
	f, err := w.fs.Create(path + tmpSuffix)
	if err != nil {
		return fmt.Errorf("wal: create segment %s: %w", name, err)
	}
	err = writeFull(f, encodeHeader(firstSeq))
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = w.fs.Rename(path+tmpSuffix, path)
	}
	if err == nil {
		err = w.fs.SyncDir(w.dir)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: create segment %s: %w", name, err)
	}
	// Reopen it under its own name: the handle then names the segment
	// (for errors and fault injection), not the temporary file.
	if f, err = w.fs.OpenReadWrite(path); err != nil {
		return fmt.Errorf("wal: open segment %s: %w", name, err)
	}
	s := &segment{name: name, firstSeq: firstSeq, lastSeq: firstSeq - 1, streams: map[uint32]uint64{}}
	s.durableSize.Store(headerSize)
	w.active, w.activeSeg, w.activeSize, w.allocEnd = f, s, headerSize, headerSize
	return nil
}

func writeFull(f vfs.File, b []byte) error {
	n, err := f.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	return err
}

func (w *WAL) newBatchLocked() *batch {
	b := &batch{done: make(chan struct{}), last: 0, first: 1}
	if n := len(w.mu.spare); n > 0 {
		b.buf = w.mu.spare[n-1][:0]
		w.mu.spare = w.mu.spare[:n-1]
	}
	return b
}

// Append appends the entries as consecutive records in one write and
// returns the first one's sequence number once all are durable. A lone
// appender writes its batch itself; concurrent ones share a write and an
// fsync.
func (w *WAL) Append(entries ...Entry) (uint64, error) {
	size, err := w.checkAppend(entries)
	if err != nil {
		return 0, err
	}
	b, first, err := w.lockAndEncode(entries, size)
	if err != nil {
		return 0, err
	}
	w.addWaiterLocked(b)
	leader := w.takePathLocked(b)
	w.mu.Unlock()
	w.stats.noteAppend(len(entries), size)
	if leader {
		w.lead(b)
	}
	<-b.done
	if b.err != nil {
		return 0, b.err
	}
	return first, nil
}

// addWaiterLocked counts an appender that will wait for b, and tells a
// gathering flusher once b has the appenders it waits for.
func (w *WAL) addWaiterLocked(b *batch) {
	b.waiters++
	w.mu.gate.Joined(b.waiters)
}

// AppendAsync appends the entries as consecutive records in one write and
// returns at once (HBase's ASYNC_WAL). The log writes and syncs them in the
// background; Wait on the result or call Sync to know they are durable.
func (w *WAL) AppendAsync(entries ...Entry) (*Pending, error) {
	size, err := w.checkAppend(entries)
	if err != nil {
		return nil, err
	}
	b, first, err := w.lockAndEncode(entries, size)
	if err != nil {
		return nil, err
	}
	if w.mu.owner == ownerNone {
		w.mu.owner = ownerFlusher
		w.kickFlusher()
	}
	w.mu.Unlock()
	w.stats.noteAppend(len(entries), size)
	return &Pending{b: b, first: first, last: first + uint64(len(entries)) - 1}, nil
}

// Pending is an appended batch of records that may not be durable yet.
type Pending struct {
	b           *batch
	first, last uint64
}

// Seq returns the sequence number of the first record.
func (p *Pending) Seq() uint64 { return p.first }

// LastSeq returns the sequence number of the last record.
func (p *Pending) LastSeq() uint64 { return p.last }

// Wait blocks until the records are durable, the log fails (ErrFailed), or
// ctx is done. A context error says nothing about the records: they may
// still become durable.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.b.done:
		return p.b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Durable reports whether the records are durable, without waiting.
func (p *Pending) Durable() bool {
	select {
	case <-p.b.done:
		return p.b.err == nil
	default:
		return false
	}
}

// checkAppend returns the encoded size of the entries, or why they cannot
// be appended.
func (w *WAL) checkAppend(entries []Entry) (int, error) {
	if w.readOnly() {
		return 0, ErrReadOnly
	}
	if len(entries) == 0 {
		return 0, errors.New("wal: empty batch")
	}
	size := 0
	for _, e := range entries {
		if len(e.Data) > w.opts.MaxRecordSize {
			return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(e.Data), w.opts.MaxRecordSize)
		}
		size += frameHeaderSize + len(e.Data)
	}
	return size, nil
}

// lockAndEncode encodes the entries, size bytes, into the pending batch,
// once the log is below MaxPendingBytes, and returns that batch and the
// first record's sequence number, with w.mu held. On error, w.mu is not
// held.
func (w *WAL) lockAndEncode(entries []Entry, size int) (*batch, uint64, error) {
	w.mu.Lock()
	for {
		if w.mu.err != nil || w.mu.closed {
			err := w.mu.err
			if err == nil {
				err = ErrClosed
			}
			w.mu.Unlock()
			return nil, 0, err
		}
		// Backpressure: past the bound, wait for the batch being written.
		if len(w.mu.pending.buf) == 0 || len(w.mu.pending.buf)+size <= w.opts.MaxPendingBytes || w.mu.inflight == nil {
			break
		}
		inflight := w.mu.inflight
		w.mu.Unlock()
		<-inflight.done
		w.mu.Lock()
	}
	b := w.mu.pending
	first := w.mu.nextSeq
	if len(b.buf) == 0 {
		b.first = first
	}
	for _, e := range entries {
		seq := w.mu.nextSeq
		b.buf = appendFrame(b.buf, typeData, seq, e.Stream, e.Data)
		b.noteStream(e.Stream, seq)
		w.mu.nextSeq++
	}
	b.last = w.mu.nextSeq - 1
	return b, first, nil
}

func (w *WAL) kickFlusher() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// takePathLocked makes the caller the owner of the IO path, to write b
// itself, if nobody owns the path and b is the pending batch; it reports
// whether it did. A lone writer then pays no hand-off.
func (w *WAL) takePathLocked(b *batch) bool {
	if w.mu.owner != ownerNone || w.mu.pending != b {
		return false
	}
	w.mu.owner = ownerLeader
	w.mu.pending = w.newBatchLocked()
	w.mu.inflight = b
	return true
}

// lead writes b, for which the caller took the IO path. If more formed
// meanwhile, it hands the path to the flusher rather than keep the caller
// waiting for other callers' records.
func (w *WAL) lead(b *batch) {
	if w.flush(b) {
		w.mu.Lock()
		w.mu.owner = ownerFlusher
		w.mu.Unlock()
		w.kickFlusher()
	}
}

// flusher writes batches in the background: those of non-waiting appends,
// and those that formed while another write was in flight.
func (w *WAL) flusher() {
	defer w.wg.Done()
	for {
		select {
		case <-w.kick:
		case <-w.quit:
			return
		}
		for {
			w.mu.Lock()
			if w.mu.owner != ownerFlusher {
				// A stale kick: the path is someone else's or nobody's.
				w.mu.Unlock()
				break
			}
			if w.mu.expect > w.mu.pending.waiters && w.mu.err == nil {
				w.gatherLocked()
			}
			w.mu.expect = 0
			if len(w.mu.pending.buf) == 0 && !w.mu.rollRequested {
				w.mu.owner = ownerNone
				w.mu.Unlock()
				break
			}
			b := w.mu.pending
			w.mu.pending = w.newBatchLocked()
			w.mu.inflight = b
			w.mu.Unlock()
			if !w.flush(b) {
				break
			}
		}
	}
}

// flush writes and syncs b (which the caller, owning the IO path, took from
// pending), rolls the segment if due, and completes b. It returns true if
// the path must stay owned (more is pending or a roll was asked for), false
// if flush gave it up.
func (w *WAL) flush(b *batch) (more bool) {
	w.ioMu.Lock()
	seg := w.activeSeg
	var writeErr, rollErr error
	if len(b.buf) > 0 {
		writeErr = w.writeAndSync(b.buf, b.last)
	}
	var sealed *segment
	if writeErr == nil {
		w.mu.Lock()
		roll := w.mu.rollRequested || w.activeSize >= w.opts.SegmentSize
		// A segment with no records is as good as a fresh one: rolling it
		// would only make a second segment with the same first sequence.
		empty := seg.lastSeq < seg.firstSeq && len(b.buf) == 0
		w.mu.Unlock()
		if roll && empty {
			sealed = seg // report the roll done without doing it
		} else if roll {
			sealed = seg
			rollErr = w.roll(b)
		}
	}
	w.ioMu.Unlock()

	w.mu.Lock()
	w.mu.inflight = nil
	if writeErr != nil {
		w.failLocked(writeErr, b)
		w.mu.owner = ownerNone
		w.mu.Unlock()
		return false
	}
	more = w.completeLocked(b, seg, sealed, rollErr)
	w.mu.Unlock()
	// Wake b's appenders outside mu: those woken first append again while
	// the rest wake up, instead of queueing on mu behind them.
	close(b.done)
	return more
}

// completeLocked records that b, written to seg, is durable, and that
// sealed was rolled, unless rollErr says the roll failed (which fails the
// log). It returns whether the caller keeps the IO path (see flush). The
// caller closes b.done once it has released mu.
func (w *WAL) completeLocked(b *batch, seg, sealed *segment, rollErr error) (more bool) {
	// b is durable, whatever happens to the roll after it.
	if len(b.buf) > 0 {
		for _, s := range b.streams {
			seg.streams[s.stream] = s.seq
		}
		seg.lastSeq = b.last
	}
	if sealed != nil && rollErr == nil {
		w.mu.rollRequested = false
		if w.activeSeg != sealed {
			w.mu.segments = append(w.mu.segments, w.activeSeg)
			sealed.sealed.Store(true)
		}
		close(w.mu.rolled)
		w.mu.rolled = make(chan struct{})
		w.stats.segments.Store(int64(len(w.mu.segments)))
	}
	b.err = nil
	if cap(b.buf) <= 4<<20 && len(w.mu.spare) < 4 {
		w.mu.spare = append(w.mu.spare, b.buf[:0])
	}
	b.buf = nil
	close(w.mu.notify)
	w.mu.notify = make(chan struct{})
	if rollErr != nil {
		// The batch is durable, but the log cannot go on.
		w.failLocked(rollErr, nil)
		w.mu.owner = ownerNone
		return false
	}
	// Keep the path if there is more to write, or if several appenders were
	// just released: they are likely to append again at once, and the
	// flusher gives them a moment to join one batch (see gatherLocked).
	if len(w.mu.pending.buf) > 0 || w.mu.rollRequested || b.waiters > 1 {
		w.mu.expect = b.waiters + w.mu.pending.waiters
		return true
	}
	w.mu.owner = ownerNone
	return false
}

// gatherLocked waits, with mu held on entry and exit, until the pending
// batch has w.mu.expect waiting appenders, or for half the average fsync
// time (at most gather.Max), whichever comes first (see package gather). A
// lone appender never waits: it writes its own batch.
func (w *WAL) gatherLocked() {
	d := w.syncAvg.Wait()
	if d <= 0 {
		return
	}
	w.mu.gate.Wait(&w.mu.Mutex, w.mu.expect, d, w.quit)
}

// writeAndSync writes buf, whose last record is lastSeq, at the end of the
// active segment, syncs it, and publishes it as durable. Called with ioMu
// held.
func (w *WAL) writeAndSync(buf []byte, lastSeq uint64) error {
	if err := w.preallocate(w.activeSize + int64(len(buf))); err != nil {
		return err
	}
	if err := writeFull(w.active, buf); err != nil {
		return fmt.Errorf("write segment %s: %w", w.activeSeg.name, err)
	}
	w.activeSize += int64(len(buf))
	start := time.Now()
	if err := w.active.Sync(); err != nil {
		return fmt.Errorf("sync segment %s: %w", w.activeSeg.name, err)
	}
	took := time.Since(start)
	w.stats.observeSync(took)
	w.syncAvg.Observe(took)
	// Readers bound their reads by durableSize and may compare what they
	// read with durableSeq: publish the seq first.
	w.durableSeq.Store(lastSeq)
	w.activeSeg.durableSize.Store(w.activeSize)
	return nil
}

// preallocate makes sure the active segment has zeros up to end, adding
// Options.Preallocate past it when it has not. The zeros become durable
// with the sync that follows. Called with ioMu held.
func (w *WAL) preallocate(end int64) error {
	if w.opts.Preallocate <= 0 || end <= w.allocEnd {
		return nil
	}
	target := end + w.opts.Preallocate
	if err := w.active.Preallocate(target); err != nil {
		return fmt.Errorf("preallocate segment %s: %w", w.activeSeg.name, err)
	}
	w.allocEnd = target
	return nil
}

// roll seals the active segment with a trailer and starts a new one. Called
// with ioMu held, after b (possibly empty) was made durable.
func (w *WAL) roll(b *batch) error {
	old := w.activeSeg
	w.mu.Lock()
	lastSeq := old.lastSeq
	if len(b.buf) > 0 {
		lastSeq = b.last
	}
	w.mu.Unlock()
	count := lastSeq - old.firstSeq + 1
	tr := appendFrame(nil, typeTrailer, lastSeq, 0, encodeTrailer(lastSeq, count))
	if w.allocEnd > w.activeSize {
		// A sealed segment ends at its trailer: drop the zeros.
		if err := w.active.Truncate(w.activeSize); err != nil {
			return fmt.Errorf("truncate preallocated zeros of %s: %w", old.name, err)
		}
		w.allocEnd = w.activeSize
	}
	if err := writeFull(w.active, tr); err != nil {
		return fmt.Errorf("write trailer of %s: %w", old.name, err)
	}
	w.activeSize += int64(len(tr))
	if err := w.active.Sync(); err != nil {
		return fmt.Errorf("sync segment %s: %w", old.name, err)
	}
	old.durableSize.Store(w.activeSize)
	oldFile := w.active
	if err := w.createSegment(lastSeq + 1); err != nil {
		// The old segment is sealed on disk; keep it as the active one so
		// that Close does not touch a file that is gone.
		w.active, w.activeSeg = oldFile, old
		return err
	}
	if err := oldFile.Close(); err != nil {
		w.opts.Logger.Warn("wal: close sealed segment", "segment", old.name, "err", err)
	}
	return nil
}

// failLocked makes err final: b (if not nil) and everything pending fail
// with it, and so does every later append.
func (w *WAL) failLocked(err error, b *batch) {
	ferr := fmt.Errorf("%w: %w", ErrFailed, err)
	if w.mu.err == nil || errors.Is(w.mu.err, ErrClosed) {
		w.mu.err = ferr
		w.opts.Logger.Error("wal: log failed; refusing further appends", "dir", w.dir, "err", err)
	} else {
		ferr = w.mu.err
	}
	if b != nil {
		b.err = ferr
		close(b.done)
	}
	if p := w.mu.pending; len(p.buf) > 0 {
		p.err = ferr
		close(p.done)
		w.mu.pending = w.newBatchLocked()
	}
	close(w.mu.notify)
	w.mu.notify = make(chan struct{})
	w.stats.failures.Add(1)
}

// Sync waits until every record appended before the call is durable.
func (w *WAL) Sync() error {
	w.mu.Lock()
	var target *batch
	switch {
	case w.mu.err != nil:
		err := w.mu.err
		w.mu.Unlock()
		return err
	case len(w.mu.pending.buf) > 0:
		target = w.mu.pending
	case w.mu.inflight != nil:
		target = w.mu.inflight
	default:
		w.mu.Unlock()
		return nil
	}
	leader := w.takePathLocked(target)
	w.mu.Unlock()
	if leader {
		w.lead(target)
	}
	<-target.done
	return target.err
}

// Roll seals the active segment and starts a new one, after writing what is
// pending. Callers use it to make the records so far deletable.
func (w *WAL) Roll() error {
	if w.readOnly() {
		return ErrReadOnly
	}
	w.mu.Lock()
	if w.mu.err != nil || w.mu.closed {
		err := w.mu.err
		if err == nil {
			err = ErrClosed
		}
		w.mu.Unlock()
		return err
	}
	w.mu.rollRequested = true
	rolled := w.mu.rolled
	notify := w.mu.notify
	if w.mu.owner == ownerNone {
		w.mu.owner = ownerFlusher
		w.kickFlusher()
	}
	w.mu.Unlock()
	for {
		select {
		case <-rolled:
			return nil
		case <-notify:
		}
		w.mu.Lock()
		err := w.mu.err
		notify = w.mu.notify
		w.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// LastSeq returns the sequence number of the last record appended (durable
// or not); 0 if none ever was.
func (w *WAL) LastSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.nextSeq - 1
}

// DurableSeq returns the sequence number up to which every record is
// durable.
func (w *WAL) DurableSeq() uint64 { return w.durableSeq.Load() }

// FirstSeq returns the sequence number of the oldest record still in the
// log (records before it were truncated).
func (w *WAL) FirstSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.segments[0].firstSeq
}

// Err returns the log's sticky error: nil while it works, an error
// wrapping ErrFailed after a failed write or sync.
func (w *WAL) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(w.mu.err, ErrClosed) {
		return nil
	}
	return w.mu.err
}

// readOnly reports whether the log takes no writes: opened ReadOnly, or
// DeferWrites before OpenForWrites.
func (w *WAL) readOnly() bool { return w.opts.ReadOnly || w.deferred != nil }

// Close writes and syncs what is pending, seals the active segment if it
// holds records (a trailer, synced, then an empty next segment), stops the
// log and releases the directory lock. It returns the log's failure, if
// any. Sealing on Close is what lets Open tell a tail cut off after a clean
// close (corruption) from one torn by a crash.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.mu.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.mu.closed = true
	w.mu.Unlock()
	if w.readOnly() {
		w.mu.Lock()
		w.mu.err = ErrClosed
		close(w.mu.notify)
		w.mu.notify = make(chan struct{})
		w.mu.Unlock()
		if w.lock == nil {
			return nil
		}
		// Opened with DeferWrites, never written.
		return unlockDir(w.fs, w.dir, w.lock, w.lockCreated)
	}
	syncErr := w.Sync()

	w.mu.Lock()
	failed := w.mu.err
	if failed == nil {
		w.mu.err = ErrClosed
	}
	close(w.mu.notify)
	w.mu.notify = make(chan struct{})
	w.mu.Unlock()
	close(w.quit)
	w.wg.Wait()

	w.ioMu.Lock()
	var serr error
	if failed == nil && syncErr == nil {
		serr = w.seal()
	}
	cerr := w.active.Close()
	w.ioMu.Unlock()
	lerr := w.lock.Close()
	switch {
	case failed != nil:
		return failed
	case syncErr != nil:
		return syncErr
	case serr != nil:
		return fmt.Errorf("wal: close: %w", serr)
	case cerr != nil:
		return fmt.Errorf("wal: close: %w", cerr)
	case lerr != nil:
		return fmt.Errorf("wal: unlock: %w", lerr)
	}
	return nil
}

// seal is Close's last write: an active segment with records is rolled
// (trailer, sync, empty next segment); an empty one loses its preallocated
// zeros. Called with ioMu held and the flusher stopped.
func (w *WAL) seal() error {
	seg := w.activeSeg
	w.mu.Lock()
	empty := seg.lastSeq < seg.firstSeq
	w.mu.Unlock()
	if empty {
		if w.allocEnd <= w.activeSize {
			return nil
		}
		err := w.active.Truncate(w.activeSize)
		if err == nil {
			err = w.active.Sync()
		}
		if err != nil {
			return fmt.Errorf("drop preallocated zeros of %s: %w", seg.name, err)
		}
		w.allocEnd = w.activeSize
		return nil
	}
	if err := w.roll(&batch{}); err != nil {
		return err
	}
	w.mu.Lock()
	w.mu.segments = append(w.mu.segments, w.activeSeg)
	seg.sealed.Store(true)
	w.mu.Unlock()
	return nil
}
