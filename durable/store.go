package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/internal/gather"
	"github.com/procyon-dev/procyon/vfs"
)

// UnknownPolicy says what recovery does with a collection that a snapshot
// or log record names but the program did not register.
type UnknownPolicy int

const (
	// FailUnknown fails recovery with ErrUnknownCollection (the default):
	// the data was written by another program, or a newer version of
	// this one.
	FailUnknown UnknownPolicy = iota
	// DropUnknown drops the collection's data; the next snapshot no
	// longer has it. Use it to retire a collection on purpose.
	DropUnknown
	// KeepUnknown keeps the collection as opaque bytes, carried into
	// every snapshot and backup unchanged (tools such as "procyon backup"
	// use it). Writes cannot reach it.
	KeepUnknown
)

// Options configure a Store. The zero value needs only Dir (or
// Persistence); every other field has a default, written in its comment.
type Options struct {
	// Dir is the data directory: snapshots in it, the log in Dir/wal.
	// Required unless Persistence is set.
	Dir string
	// FS is the file system under Dir. Default vfs.OS.
	FS vfs.FS
	// Persistence replaces the WAL-backed persistence in Dir (for example
	// NewMemPersistence in tests). Default: the WAL in Dir.
	Persistence Persistence
	// Logger receives recovery decisions, snapshots and failures. Default
	// slog.Default().
	Logger *slog.Logger
	// SnapshotBytes: a snapshot is taken in the background once the
	// records logged since the last one exceed the larger of SnapshotBytes
	// and the last snapshot's size. Default 64 MiB; negative: only
	// snapshots asked for with Store.Snapshot.
	SnapshotBytes int64
	// SegmentSize is the WAL segment size. Default 64 MiB.
	SegmentSize int64
	// SnapshotSyncBytes: while a snapshot file is written, it is fsynced
	// every SnapshotSyncBytes. Small, frequent fsyncs keep each one short:
	// on ext4 the log's fdatasync waits behind whatever journal commit a
	// large snapshot fsync forces, so large ones show up as write-latency
	// spikes. Default 1 MiB.
	SnapshotSyncBytes int64
	// SnapshotShare bounds the share of wall time a snapshot or backup
	// spends serializing: after each chunk it sleeps so that it works at
	// most this fraction of the time. On a machine with few cores this
	// keeps writers' latency while a large snapshot is written, at the
	// cost of a longer snapshot. Default 0.5; 1 disables pacing.
	SnapshotShare float64
	// UnknownCollections says what recovery does with data of collections
	// not registered. Default FailUnknown.
	UnknownCollections UnknownPolicy
	// ReadOnly opens an existing store without changing anything on disk:
	// no directory, lock file or log segment is created, a torn log tail
	// is read up to its last whole record but not truncated, unfinished
	// snapshots are not removed, and no snapshot is written. Open fails
	// with ErrNotStore if Dir holds no store; Write, WriteAsync and
	// Snapshot fail with ErrReadOnly. No lock is taken: a store in use by
	// another process may change under it. With Persistence set, only
	// writes and snapshots are refused. Default false.
	ReadOnly bool
}

func (o *Options) ensureDefaults() {
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SnapshotBytes == 0 {
		o.SnapshotBytes = 64 << 20
	}
	if o.SnapshotSyncBytes <= 0 {
		o.SnapshotSyncBytes = 1 << 20
	}
	if o.SnapshotShare <= 0 || o.SnapshotShare > 1 {
		o.SnapshotShare = 0.5
	}
}

func (o *Options) validate() error {
	if o.Persistence == nil && o.Dir == "" {
		return errors.New("durable: Options.Dir or Options.Persistence is required")
	}
	if o.UnknownCollections < FailUnknown || o.UnknownCollections > KeepUnknown {
		return fmt.Errorf("durable: bad Options.UnknownCollections %d", o.UnknownCollections)
	}
	return nil
}

const (
	stateNew int32 = iota
	stateOpen
	stateClosed
)

// Store is a set of collections kept in memory and made durable through a
// Persistence: transactions are logged as records, and snapshots bound the
// log. It is safe for concurrent use. See the package documentation.
type Store struct {
	opts Options
	p    Persistence
	log  *slog.Logger

	// Registered before Open; fixed after. Collections adopted as opaque
	// (KeepUnknown) are added by recovery, before the store is shared.
	colls  []coll
	byName map[string]int
	raw    map[int]bool // ids of adopted opaque collections

	state atomic.Int32

	// durable is the latest version whose record is durable: what readers
	// see. The committer publishes each durable group as a new layer; the
	// applier replaces layers by one merged layer, or by trees with them
	// applied. Both swap it holding pubMu.
	durable atomic.Pointer[version]
	pubMu   sync.Mutex
	// applying is the number of leading layers of the published version
	// the apply worker is applying (see applier); guarded by pubMu.
	applying int
	// applyPause, if set (by tests, before Open), runs before each apply:
	// a slow apply, during which the applier merges the layers above.
	applyPause func()
	// failed holds the error that made the store refuse writes.
	failed atomic.Pointer[error]

	// sem is the write lock (a channel so that waiting for it honours a
	// context). Its holder owns the fields of w.
	sem chan struct{}
	w   struct {
		// The head, what transactions read, is layered: the writes of
		// the forming group (forming), over those of the groups frozen but
		// not yet applied to the trees (pending, oldest first), over the
		// trees (the applier's latest). A layer holds each key's final
		// state, per collection (nil: untouched). Committing a transaction
		// only merges its ops into forming: the B-tree work (and its
		// copy-on-write) is the applier's, on another core, off the
		// writers' path.
		trees   []any
		forming []any
		pending [][]any
		// formHint is the size of each collection's layer in the last
		// group: the room to make in the next.
		formHint []int
		// group collects the records of transactions committed since the
		// last freeze; the committer appends them as one batch.
		group *group
		// committing says the committer has work or is at it; a writer
		// that finds it false kicks the committer.
		committing bool
		// gatherTarget, while the committer gathers a group, is the group
		// size it waits for; the writer that reaches it signals gathered.
		gatherTarget int
		logBytes     int64 // record bytes committed since the last snapshot began
		maxRecord    int
	}
	kick          chan struct{} // wakes the committer; capacity 1
	applyKick     chan struct{} // wakes the applier; capacity 1
	applyQuit     chan struct{} // closed by Close
	applied       chan struct{} // the applier applied layers; capacity 1
	applierDone   chan struct{}
	gathered      chan struct{} // see w.gatherTarget; capacity 1
	committerDone chan struct{}
	formingN      atomic.Int64   // records in w.group, for the committer's gather
	flushLayers   atomic.Bool    // the committer is idle: the applier applies everything
	commitAvg     gather.Average // moving average of a group's append+sync time; committer only
	gather        gatherState    // committer only
	spare         []byte         // a group buffer to reuse; owned by the committer

	// combining is set while a writer is the combiner (see write).
	combining atomic.Bool
	// wq is the queue of transactions waiting for the write lock (see
	// write).
	wq struct {
		sync.Mutex
		reqs, spare []*writeReq
	}

	// snapMu serializes snapshots; it guards snap.
	snapMu sync.Mutex
	snap   struct {
		seq  uint64 // seq of the newest durable snapshot
		have bool   // whether there is one
	}
	// damage is what recovery found damaged and did without (set by
	// Open, read-only after).
	damage       []error
	lastSnapSize atomic.Int64
	snapRunning  atomic.Bool // an automatic snapshot is under way
	bg           sync.WaitGroup
	stats        storeStats
}

type storeStats struct {
	commits      atomic.Int64
	groups       atomic.Int64
	groupNs      atomic.Int64
	aborts       atomic.Int64
	snapshots    atomic.Int64
	snapshotErrs atomic.Int64
}

// New returns a store with opts. Register its collections with
// NewCollection, then call Open: recovery needs every collection's codec
// and must know which names are unknown.
func New(opts Options) *Store {
	opts.ensureDefaults()
	s := &Store{opts: opts, log: opts.Logger, byName: map[string]int{}, raw: map[int]bool{}, sem: make(chan struct{}, 1),
		kick: make(chan struct{}, 1), gathered: make(chan struct{}, 1), committerDone: make(chan struct{}),
		applyKick: make(chan struct{}, 1), applyQuit: make(chan struct{}), applied: make(chan struct{}, 1), applierDone: make(chan struct{})}
	s.durable.Store(&version{store: s})
	return s
}

func (s *Store) register(c coll, name string, setID func(int)) error {
	if s.state.Load() != stateNew {
		return fmt.Errorf("durable: collection %q registered after Open", name)
	}
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("durable: bad collection name %q", name)
	}
	if _, dup := s.byName[name]; dup {
		return fmt.Errorf("durable: collection %q registered twice", name)
	}
	id := len(s.colls)
	s.colls = append(s.colls, c)
	s.byName[name] = id
	setID(id)
	return nil
}

// loadState is what recovery builds: one tree per collection.
type loadState struct {
	trees []any
}

// lookup resolves a collection name met in a snapshot or record (where
// says which, for errors). It returns -1 for data to drop.
func (s *Store) lookup(st *loadState, name, where string) (int, error) {
	if id, ok := s.byName[name]; ok {
		return id, nil
	}
	switch s.opts.UnknownCollections {
	case DropUnknown:
		return -1, nil
	case KeepUnknown:
		c := &Collection[string, []byte]{s: s, name: name, codec: Bytes(), keys: newKeyCodec[string](), id: len(s.colls)}
		s.colls = append(s.colls, c)
		s.byName[name] = c.id
		s.raw[c.id] = true
		st.trees = append(st.trees, c.newTree())
		return c.id, nil
	}
	return 0, fmt.Errorf("%w %q in %s (registered: %v; Options.UnknownCollections can drop or keep it)",
		ErrUnknownCollection, name, where, s.names())
}

func (s *Store) names() []string {
	out := make([]string, len(s.colls))
	for i, c := range s.colls {
		out[i] = c.collName()
	}
	return out
}

// Collections returns the names of the store's collections, registered
// and (with KeepUnknown) adopted, in registration order.
func (s *Store) Collections() []string { return s.names() }

// Open prepares the persistence and recovers: it loads the newest usable
// snapshot and replays the log after it. Register every collection before.
func (s *Store) Open(ctx context.Context) error {
	if err := s.opts.validate(); err != nil {
		return err
	}
	if !s.state.CompareAndSwap(stateNew, stateOpen) {
		return ErrAlreadyOpen
	}
	s.p = s.opts.Persistence
	if s.p == nil {
		s.p = newWALPersistence(s.opts)
	}
	if err := s.p.Open(); err != nil {
		s.state.Store(stateClosed)
		return err
	}
	v, err := s.recover(ctx)
	if err == nil {
		// Only now may the persistence change the disk.
		err = s.p.Recovered()
	}
	if err != nil {
		s.p.Close()
		s.state.Store(stateClosed)
		return err
	}
	s.durable.Store(v)
	// The recovered trees are the first version: never changed, only
	// cloned.
	s.w.trees = slices.Clone(v.trees)
	s.w.forming = make([]any, len(v.trees))
	s.w.formHint = make([]int, len(v.trees))
	s.w.group = &group{done: make(chan struct{})}
	s.w.maxRecord = s.p.MaxRecordSize()
	go s.committer()
	go s.applier()
	return nil
}

// current returns the latest durable version.
func (s *Store) current() *version { return s.durable.Load() }

// Latest returns a View of the latest durable version: the reads through
// it (Collection.Get, All, ...) see one committed state, however long it
// is held. It never waits for a writer or the disk, and costs one small
// allocation (the version is shared, not copied).
func (s *Store) Latest() *View { return &View{ver: s.current()} }

// Seq returns the sequence number of the latest durable version.
func (s *Store) Seq() uint64 { return s.current().seq }

// Err returns the error that made the store refuse writes, or nil.
func (s *Store) Err() error {
	if e := s.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// setFailed makes the store refuse every later write with an error
// wrapping ErrFailed and cause. The first failure wins.
func (s *Store) setFailed(cause error) error {
	err := fmt.Errorf("%w: %w", ErrFailed, cause)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("durable: persistence failed; refusing further writes, serving the last durable version",
			"seq", s.current().seq, "err", cause)
		return err
	}
	return *s.failed.Load()
}

// Write runs fn in a transaction and commits it: fn's Puts and Deletes
// become one record, and Write returns once that record is durable and
// the new version is what readers see.
//
//   - If fn returns an error, nothing is applied or written and Write
//     returns that error. If fn panics, nothing is applied or written, and
//     the panic goes on up through Write unchanged. If an iterator in fn
//     (Collection.All, From) stopped at a value it could not decode, Write
//     returns that error, and nothing is applied or written.
//   - A transaction with no Put or Delete writes nothing.
//   - Writers are serialized while fn runs and its record is queued; the
//     lock is not held while waiting for the disk: the records of the
//     transactions that commit while the disk is busy are appended
//     together and share one fsync.
//   - If ctx carries a transaction of this store (Tx.Context), fn runs
//     inside it (a nested write): if fn fails, the outer transaction is
//     put back as it was before this call, and the outer function decides.
//     Calling Write with another context from inside fn deadlocks until
//     that context ends: the write lock is not reentrant.
//   - If ctx ends while waiting for the lock, nothing happened; if it ends
//     while waiting for the disk, the error wraps ErrOutcomeUnknown: the
//     transaction is whole, and may still commit.
//   - If the persistence fails, the error wraps ErrFailed and the cause;
//     every in-flight transaction fails, later ones are refused, and
//     readers keep the last durable version.
func (s *Store) Write(ctx context.Context, fn func(tx *Tx) error) error {
	if tx := txFrom(ctx); tx != nil && tx.s == s {
		if tx.done {
			return ErrTxDone
		}
		return tx.nested(fn)
	}
	c, err := s.write(ctx, fn, true)
	if err != nil || c == nil {
		return err
	}
	return c.Wait(ctx)
}

// WriteAsync is Write without the wait for the disk: it runs fn and, if
// fn wrote anything, queues its record, and returns a Commit to wait on.
// Everything Write says holds, except that the caller learns the outcome
// from the Commit: its Wait returns nil once the record is durable and
// the version is what readers see. Transactions become durable in the
// order their WriteAsync calls returned. The Commit is nil if fn wrote
// nothing. WriteAsync inside a transaction of this store (a ctx from
// Tx.Context) is refused with ErrNestedAsync: a nested write has no
// commit of its own.
func (s *Store) WriteAsync(ctx context.Context, fn func(tx *Tx) error) (*Commit, error) {
	if tx := txFrom(ctx); tx != nil && tx.s == s {
		return nil, ErrNestedAsync
	}
	return s.write(ctx, fn, false)
}

// Commit is a transaction queued by WriteAsync, on its way to the disk.
type Commit struct{ g *group }

// Done is closed once the commit's outcome is known.
func (c *Commit) Done() <-chan struct{} { return c.g.done }

// Err returns the commit's outcome once Done is closed: nil if it is
// durable, else an error wrapping ErrFailed.
func (c *Commit) Err() error {
	select {
	case <-c.g.done:
		return c.g.err
	default:
		return nil
	}
}

// Wait waits until the commit is durable (nil) or failed. If ctx ends
// first, the error wraps ErrOutcomeUnknown: the transaction is whole, and
// may still commit.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.g.done:
		return c.g.err
	case <-ctx.Done():
		select {
		case <-c.g.done:
			return c.g.err
		default:
		}
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// write runs fn in a new transaction and queues its record: the part of
// Write before the wait for the disk. A nil Commit and error: nothing was
// written. With wait (Write), it returns once the record is durable or
// failed (or ctx ended), so that the caller's Wait does not wait again.
//
// Transactions run one at a time under the write lock, and one writer at
// a time, the combiner, runs the transactions queued by all (flat
// combining): under load the lock does not pass from goroutine to
// goroutine (a wake-up each, a few microseconds on which no transaction
// runs) between transactions. So fn may run on another writer's
// goroutine; its panic is raised again in the caller's. A writer whose
// transaction another ran is woken once: when its outcome is known, which
// for Write means once its record is durable.
func (s *Store) write(ctx context.Context, fn func(tx *Tx) error, wait bool) (*Commit, error) {
	if s.state.Load() != stateOpen {
		return nil, ErrClosed
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	r := &writeReq{ctx: ctx, fn: fn, wait: wait, wake: make(chan struct{}, 1)}
	s.wq.Lock()
	s.wq.reqs = append(s.wq.reqs, r)
	s.wq.Unlock()
	for {
		switch r.state.Load() {
		case reqDone:
			if r.panicked {
				panic(r.panicVal)
			}
			return r.c, r.err
		case reqQueued:
			if s.combining.CompareAndSwap(false, true) {
				s.combine(r)
				continue
			}
		case reqLead:
			// A combiner handed the combining over to this writer.
			if r.state.CompareAndSwap(reqLead, reqQueued) {
				s.combine(r)
			}
			continue
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			if r.state.CompareAndSwap(reqQueued, reqCancelled) {
				return nil, ctx.Err() // nothing happened
			}
			if r.state.CompareAndSwap(reqLead, reqCancelled) {
				// Nothing happened to this transaction, but the
				// combining was handed over to this writer: do it.
				s.combine(r)
				return nil, ctx.Err()
			}
			// A combiner took it: its outcome is known soon (for Write,
			// whether it was queued; the caller's Wait then reports an
			// unknown outcome).
			for st := r.state.Load(); st != reqRan && st != reqDone; st = r.state.Load() {
				runtime.Gosched()
			}
			if r.panicked {
				panic(r.panicVal)
			}
			return r.c, r.err
		}
	}
}

// writeReq is a transaction waiting for the write lock.
type writeReq struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	wait bool // Write: done once the record is durable
	// state moves queued (or lead) -> taken -> ran -> done, or queued
	// (or lead) -> cancelled; wake is signalled (capacity 1) after it
	// moves to done or lead.
	state    atomic.Int32
	wake     chan struct{}
	c        *Commit
	err      error
	panicked bool
	panicVal any
}

const (
	reqQueued    int32 = iota
	reqLead            // queued, and its writer is to take over the combining
	reqTaken           // a combiner is running it
	reqRan             // ran: c, err, panicked are set; waiting for its group
	reqDone            // outcome known
	reqCancelled       // its context ended before it ran: nothing happened
)

// finish marks r done and wakes its writer.
func (r *writeReq) finish() {
	r.state.Store(reqDone)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// maxCombine bounds the transactions the combiner runs under the write
// lock at a time: between runs it lets go of the lock (the committer needs
// it to freeze a group).
const maxCombine = 64

// combine is the combiner's work: with s.combining set by the caller,
// whose request is own, it runs queued transactions, in order, maxCombine
// at a time under the write lock, until the queue is empty, then clears
// s.combining. Once its own transaction has run and it has done a round
// for others, it hands the combining over to the next queued writer
// rather than go on working for others.
func (s *Store) combine(own *writeReq) {
	for rounds := 0; ; rounds++ {
		if rounds > 0 && own.state.Load() >= reqRan && s.handOff() {
			return
		}
		s.sem <- struct{}{}
		n := s.runQueued()
		<-s.sem
		if n > 0 {
			continue
		}
		s.combining.Store(false)
		// A writer that queued after the queue was last looked at, and
		// found s.combining still set, waits for a combiner.
		s.wq.Lock()
		empty := len(s.wq.reqs) == 0
		s.wq.Unlock()
		if empty || !s.combining.CompareAndSwap(false, true) {
			return
		}
	}
}

// handOff makes the first queued writer the combiner (s.combining stays
// set) and reports whether there was one.
func (s *Store) handOff() bool {
	s.wq.Lock()
	defer s.wq.Unlock()
	for _, r := range s.wq.reqs {
		if r.state.CompareAndSwap(reqQueued, reqLead) {
			select {
			case r.wake <- struct{}{}:
			default:
			}
			return true
		}
	}
	return false
}

// runQueued runs up to maxCombine queued transactions, in order, holding
// the write lock, and returns how many it took from the queue.
func (s *Store) runQueued() int {
	s.wq.Lock()
	reqs := s.wq.reqs
	if len(reqs) > maxCombine {
		s.wq.reqs = append(s.wq.spare[:0], reqs[maxCombine:]...)
		reqs = reqs[:maxCombine]
	} else {
		s.wq.reqs = s.wq.spare[:0]
	}
	s.wq.spare = nil
	s.wq.Unlock()
	for i, r := range reqs {
		reqs[i] = nil
		if !r.state.CompareAndSwap(reqQueued, reqTaken) && !r.state.CompareAndSwap(reqLead, reqTaken) {
			continue // cancelled
		}
		c, err := s.writeLocked(r)
		r.c, r.err = c, err
		if r.wait && c != nil {
			// Its writer is woken with the group's.
			r.state.Store(reqRan)
			c.g.waiters = append(c.g.waiters, r)
			continue
		}
		r.finish()
	}
	s.wq.Lock()
	if s.wq.spare == nil {
		s.wq.spare = reqs[:0]
	}
	s.wq.Unlock()
	return len(reqs)
}

// writeLocked runs r's transaction, holding the write lock, and queues its
// record.
func (s *Store) writeLocked(r *writeReq) (*Commit, error) {
	if s.state.Load() != stateOpen {
		return nil, ErrClosed
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	tx := &Tx{s: s, parent: r.ctx, ops: make([]any, len(s.colls))}
	if err := s.run(tx, r); err != nil {
		tx.rollback()
		tx.done = true
		s.stats.aborts.Add(1)
		return nil, err
	}
	tx.done = true
	if r.panicked {
		return nil, nil
	}
	if tx.nOps == 0 {
		return nil, nil
	}
	g := s.w.group
	start := len(g.buf)
	g.buf = tx.encode(g.buf)
	n := len(g.buf) - start
	if n > s.w.maxRecord {
		g.buf = g.buf[:start]
		tx.rollback()
		s.stats.aborts.Add(1)
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, s.w.maxRecord)
	}
	g.ends = append(g.ends, len(g.buf))
	s.formingN.Add(1)
	for i, o := range tx.ops {
		if o != nil {
			s.w.forming[i] = s.colls[i].mergeOps(s.w.forming[i], o, s.w.formHint[i])
			s.colls[i].freeOps(o)
		}
	}
	tx.ops = nil
	if t := s.w.gatherTarget; t > 0 && len(g.ends) >= t {
		s.w.gatherTarget = 0
		select {
		case s.gathered <- struct{}{}:
		default:
		}
	}
	if !s.w.committing {
		s.w.committing = true
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.w.logBytes += int64(n)
	if s.opts.SnapshotBytes > 0 && s.w.logBytes >= s.snapshotThreshold() && s.snapRunning.CompareAndSwap(false, true) {
		s.w.logBytes = 0
		s.bg.Add(1)
		go s.autoSnapshot()
	}
	return &Commit{g: g}, nil
}

// run calls r's fn; the transaction fails with fn's error, else with the
// error an iterator in it recorded (see Tx.fail). If fn panics, it undoes
// the transaction and records the panic in r, for its writer to raise
// again.
func (s *Store) run(tx *Tx, r *writeReq) error {
	defer func() {
		if p := recover(); p != nil {
			tx.rollback()
			tx.done = true
			s.stats.aborts.Add(1)
			r.panicked, r.panicVal = true, p
		}
	}()
	if err := r.fn(tx); err != nil {
		return err
	}
	return tx.err
}

// group is the records of the transactions committed since the last
// freeze. They are appended as one batch, and their writers released
// together when it is durable (or failed).
type group struct {
	buf     []byte
	ends    []int // end offset of each record in buf
	done    chan struct{}
	err     error       // set before done is closed
	waiters []*writeReq // Write calls to finish once done is closed
}

// committer appends groups and publishes their versions, one group at a
// time: while one group's records are on their way to the disk, the next
// group forms. It exits once the store is closed and nothing is left.
func (s *Store) committer() {
	defer close(s.committerDone)
	for range s.kick {
		expect := 0
		for {
			n, next := s.commitOne(expect)
			if n == 0 {
				// Idle: apply what is left.
				s.flushLayers.Store(true)
				s.kickApplier()
				break
			}
			expect = next
		}
		if s.state.Load() == stateClosed {
			return
		}
	}
}

// gatherState decides whether the committer waits for a group to fill:
// after gatherMaxMisses gathers in a row that timed out, it waits only
// once every gatherProbe groups, until a gather fills again.
type gatherState struct {
	misses  int
	skipped int
}

const (
	gatherMaxMisses = 4
	gatherProbe     = 16
)

func (g *gatherState) try() bool {
	if g.misses < gatherMaxMisses {
		return true
	}
	g.skipped++
	return g.skipped%gatherProbe == 0
}

func (g *gatherState) record(hit bool) {
	if hit {
		g.misses, g.skipped = 0, 0
	} else {
		g.misses++
	}
}

// commitOne freezes the forming group (its layer too) and commits it, and
// returns its size (0: there was nothing to commit) and the size to expect
// of the next group: the writers it released and those that were already
// waiting in the next group when it did.
//
// When the last group released writers, it first waits, for at most half
// an average commit, until the forming group has expect of them: the
// writers just released are about to commit again, and without the
// wait each group would catch only the writers that arrived during the
// previous commit, alternating between halves of them, each waiting two
// commits (see package gather; the WAL's flusher gathers for the same
// reason). That holds for writers that commit again at once; writers that
// batch themselves (the procedure engine's committer, whose next batch
// comes only once the procedures released have run their next steps) do
// not come back within the wait, which then only delays every fsync. So
// once gathers keep missing their target, the committer stops waiting, and
// tries a gather again only now and then (gatherState).
func (s *Store) commitOne(expect int) (n, next int) {
	// Back-pressure: readers look at every layer not yet applied.
	for v := s.current(); len(v.layers) >= maxLayers || s.layerKeys(v.layers) >= maxUnapplied; v = s.current() {
		s.kickApplier()
		<-s.applied
	}
	s.sem <- struct{}{}
	if d := s.commitAvg.Wait(); expect > 1 && d > 0 && len(s.w.group.ends) < expect && s.state.Load() == stateOpen &&
		s.gather.try() {
		s.w.gatherTarget = expect
		<-s.sem
		hit := gather.Await(d, s.gathered, nil)
		s.sem <- struct{}{}
		s.w.gatherTarget = 0
		select {
		case <-s.gathered:
			hit = true
		default:
		}
		s.gather.record(hit)
	}
	g := s.w.group
	if len(g.ends) == 0 {
		s.w.committing = false
		<-s.sem
		return 0, 0
	}
	layers := s.w.forming
	for i, l := range layers {
		if l != nil {
			s.w.formHint[i] = s.colls[i].layerLen(l)
		}
	}
	s.formingN.Store(0)
	s.w.pending = append(s.w.pending, layers)
	s.w.forming = make([]any, len(layers))
	s.w.group = &group{buf: s.spare[:0], done: make(chan struct{})}
	s.spare = nil
	<-s.sem

	recs := make([][]byte, len(g.ends))
	start := 0
	for i, end := range g.ends {
		recs[i] = g.buf[start:end:end]
		start = end
	}
	var err error
	var seq uint64
	if err = s.Err(); err == nil {
		var p Pending
		start := time.Now()
		// While the records go to the disk (and the writers wait), the
		// applier applies the groups published before. (Woken first: the
		// log's flusher, woken next, is the one to run first.)
		s.kickApplier()
		p, err = s.p.Append(recs)
		if err == nil {
			if cap(g.buf) <= 4<<20 {
				s.spare = g.buf[:0]
			}
			err = p.Wait(context.Background())
			seq = p.Seq() + uint64(len(recs)) - 1
			took := time.Since(start)
			if err == nil {
				s.stats.groups.Add(1)
				s.stats.groupNs.Add(int64(took))
			}
			s.commitAvg.Observe(took)
		}
		if err != nil {
			err = s.setFailed(err)
		}
	}
	if err == nil {
		s.publish(seq, layers)
		s.stats.commits.Add(int64(len(recs)))
	} else {
		s.stats.aborts.Add(int64(len(recs)))
	}
	g.err = err
	next = len(recs) + int(s.formingN.Load())
	close(g.done)
	for _, r := range g.waiters {
		r.finish()
	}
	return len(recs), next
}

// maxLayers and maxUnapplied bound what readers look at before the
// trees (layers, and keys in them): past either, the committer waits for
// the applier.
const (
	maxLayers    = 32
	maxUnapplied = 1 << 17
)

// publish makes the version that adds group layers, whose last record is
// seq, what readers see. Records become durable in sequence order, so
// when this group is durable, so are the earlier ones.
func (s *Store) publish(seq uint64, layers []any) {
	s.pubMu.Lock()
	cur := s.durable.Load()
	s.durable.Store(&version{seq: seq, trees: cur.trees, layers: append(cur.layers[:len(cur.layers):len(cur.layers)], layers), store: s})
	s.pubMu.Unlock()
}

// kickApplier wakes the applier.
func (s *Store) kickApplier() {
	select {
	case s.applyKick <- struct{}{}:
	default:
	}
}

// applier takes the layers of durable groups off the readers' way, in
// the background (see layer.go), with an apply worker. Once the layers not
// being applied have applyKeys keys, or the committer is idle, and the
// worker is free, it hands them all to the worker, which applies them to
// O(1) copy-on-write clones of the trees they touch, then swaps the new
// trees in for those layers. Meanwhile, once there are mergeAt layers
// beyond those being applied, it merges them into one, so that a read
// looks at a few layers at most however long an apply takes (with a
// million keys, a thousand keys take milliseconds). Each swap is made in
// the head and in the published version. The worker applies what piled
// up while it was busy in one go, and the cost per key falls as the batch
// grows, so it catches up. The applier exits once applyQuit is closed
// (after the committer exits).
func (s *Store) applier() {
	defer close(s.applierDone)
	work := make(chan [][]any)
	workerDone := make(chan struct{})
	go s.applyWorker(work, workerDone)
	defer func() {
		close(work)
		<-workerDone
	}()
	for {
		select {
		case <-s.applyKick:
			for s.arrangeLayers(work) {
			}
		case <-s.applyQuit:
			return
		}
	}
}

// applyKeys is the number of keys the layers gather before the applier
// applies them to the trees: copy-on-write copies about one node path per
// key, and keys applied together share the upper nodes.
const applyKeys = 1024

// mergeAt is the number of layers at which the applier merges them.
const mergeAt = 4

// arrangeLayers makes one pass of the applier; false: nothing to do.
func (s *Store) arrangeLayers(work chan<- [][]any) bool {
	s.pubMu.Lock()
	cur := s.durable.Load()
	claimed := s.applying
	free := cur.layers[claimed:]
	s.pubMu.Unlock()
	if len(free) == 0 {
		return false
	}
	flush := s.flushLayers.Load() || s.state.Load() != stateOpen
	if claimed == 0 && (flush || s.layerKeys(free) >= applyKeys) {
		// The worker is free (nothing claimed) and only this goroutine
		// claims: the first len(free) layers are still these.
		s.flushLayers.Store(false)
		s.pubMu.Lock()
		s.applying = len(free)
		s.pubMu.Unlock()
		work <- free
		return true
	}
	if len(free) < mergeAt {
		return false
	}
	m := make([]any, len(cur.trees))
	per := make([]any, len(free))
	for id := range m {
		for i, ls := range free {
			per[i] = ls[id]
		}
		m[id] = s.colls[id].mergeLayers(per)
	}
	s.swapLayers(nil, len(free), m)
	return true
}

// applyWorker applies the layers the applier hands it (the first ones of
// the published version, which only it drops) to the trees, and swaps the
// new trees in for them.
func (s *Store) applyWorker(work <-chan [][]any, done chan<- struct{}) {
	defer close(done)
	for layers := range work {
		if s.applyPause != nil {
			s.applyPause()
		}
		s.swapLayers(s.applyTo(s.current().trees, layers), len(layers), nil)
		s.kickApplier()
	}
}

// swapLayers makes a pass of the applier visible, in the head and in the
// published version, holding the write lock and pubMu. With trees (the
// apply worker's), they replace the trees and the n layers being applied
// are dropped; without (a merge), the n layers after those being applied
// (where they are now: the worker may have dropped its own meanwhile) are
// replaced by m.
func (s *Store) swapLayers(trees []any, n int, m []any) {
	s.sem <- struct{}{}
	s.pubMu.Lock()
	cur := s.durable.Load()
	at := s.applying
	if trees != nil {
		at, s.applying = 0, 0
		s.w.trees = trees
	} else {
		trees = cur.trees
	}
	s.w.pending = replaceLayers(s.w.pending, at, at+n, m)
	s.durable.Store(&version{seq: cur.seq, trees: trees, layers: replaceLayers(cur.layers, at, at+n, m), store: s})
	s.pubMu.Unlock()
	<-s.sem
	s.signalApplied()
}

func (s *Store) signalApplied() {
	select {
	case s.applied <- struct{}{}:
	default:
	}
}

// layerKeys returns the number of keys in layers.
func (s *Store) layerKeys(layers [][]any) int {
	n := 0
	for _, ls := range layers {
		for id, l := range ls {
			if l != nil {
				n += s.colls[id].layerLen(l)
			}
		}
	}
	return n
}

// replaceLayers returns a new slice: layers with layers[i:j] replaced by
// m (nil: removed).
func replaceLayers(layers [][]any, i, j int, m []any) [][]any {
	out := make([][]any, 0, len(layers)-(j-i)+1)
	out = append(out, layers[:i]...)
	if m != nil {
		out = append(out, m)
	}
	return append(out, layers[j:]...)
}

// applyTo returns trees with layers (oldest first) applied: clones of the
// trees a layer touches, the others as they are. trees are not changed.
func (s *Store) applyTo(trees []any, layers [][]any) []any {
	out := slices.Clone(trees)
	cloned := make([]bool, len(out))
	for _, ls := range layers {
		for id, l := range ls {
			if l == nil {
				continue
			}
			if !cloned[id] {
				out[id] = s.colls[id].cloneTree(out[id])
				cloned[id] = true
			}
			s.colls[id].applyLayer(out[id], l)
		}
	}
	return out
}

// flatTrees returns v's trees with its layers applied, for a snapshot.
func (s *Store) flatTrees(v *version) []any {
	if len(v.layers) == 0 {
		return v.trees
	}
	return s.applyTo(v.trees, v.layers)
}

func (s *Store) snapshotThreshold() int64 {
	return max(s.opts.SnapshotBytes, s.lastSnapSize.Load())
}

// Close waits for the transactions under way and a running snapshot, then
// closes the persistence. Reads keep serving the last durable version;
// writes fail with ErrClosed.
func (s *Store) Close() error {
	if !s.state.CompareAndSwap(stateOpen, stateClosed) {
		return ErrClosed
	}
	// Writers that got the lock before are done queueing after this.
	s.sem <- struct{}{}
	<-s.sem
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-s.committerDone
	close(s.applyQuit)
	<-s.applierDone
	s.bg.Wait()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	err := s.p.Close()
	if err != nil && s.Err() == nil {
		return fmt.Errorf("durable: close: %w", err)
	}
	return nil
}

// Stats are counters of a store since Open, for metrics.
type Stats struct {
	Seq          uint64 // sequence number of the latest durable version
	Commits      int64  // transactions committed
	Aborts       int64  // transactions that failed or were dropped
	Snapshots    int64  // snapshots written
	SnapshotErrs int64  // snapshots that failed
	SnapshotSeq  uint64 // sequence number of the newest snapshot
	SnapshotSize int64  // its size in bytes
	// Damaged is the number of damaged files Open did without (see
	// Store.Damage); 0 for a sound store.
	Damaged int
	// Groups is the number of group commits: batches of transactions'
	// records appended to the persistence and made durable together (by
	// one fsync, on the WAL); a group that failed is not counted (its
	// transactions are in Aborts). Commits/Groups is the mean group size.
	Groups int64
	// GroupTime is the time those took, from append to durable, in all.
	GroupTime time.Duration
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Seq:          s.current().seq,
		Commits:      s.stats.commits.Load(),
		Groups:       s.stats.groups.Load(),
		GroupTime:    time.Duration(s.stats.groupNs.Load()),
		Aborts:       s.stats.aborts.Load(),
		Snapshots:    s.stats.snapshots.Load(),
		SnapshotErrs: s.stats.snapshotErrs.Load(),
		SnapshotSize: s.lastSnapSize.Load(),
		Damaged:      len(s.damage),
	}
	if s.snapMu.TryLock() {
		st.SnapshotSeq = s.snap.seq
		s.snapMu.Unlock()
	}
	return st
}

// Damage lists the damaged data that Open found and did without: snapshots
// that failed to load (recovery used an older one), and log segments
// holding only records older than the newest snapshot. Each error names
// the file and the damage. Recovery can no longer fall back past that
// data: if the snapshot it used is damaged too, the store will not open.
// Run "procyon verify" and "procyon repair", or take a new snapshot soon
// (Snapshot), after which the damaged data is no longer needed. Nil for a
// sound store.
func (s *Store) Damage() []error { return slices.Clone(s.damage) }

// queued returns the number of transactions waiting for a combiner (for
// tests).
func (s *Store) queued() int {
	s.wq.Lock()
	defer s.wq.Unlock()
	return len(s.wq.reqs)
}
