package durable

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/internal/gather"
	"github.com/procyon-dev/procyon/internal/pow2hist"
	"github.com/procyon-dev/procyon/wal"
)

// writeLock is a lock held by one goroutine at a time: a one-slot
// channel, holding a token while locked.
type writeLock chan struct{}

func (l writeLock) Lock()   { l <- struct{}{} }
func (l writeLock) Unlock() { <-l }

const (
	stateNew int32 = iota
	stateOpen
	stateClosed
)

// Store is a set of collections kept in memory and made durable through a
// Persistence: transactions are logged as records, and snapshots bound the
// log. It is safe for concurrent use. See the package documentation.
//
// It follows Aurora's DurableStorage (ops recorded in a transaction,
// coalesced, persisted through a Persistence) and fixes what its users
// suffered: a failed transaction is rolled back in memory, snapshots never
// hold the write lock, and they stream the state without copying it.
//
// A write goes through four jobs, each in its own file: the transaction
// runs under the write lock, run by the combiner (combine.go, write.go),
// which adds its record to the forming group and its writes to the
// group's layer; the committer (commit.go) appends each group as one
// batch and publishes its layer once durable; the applier (apply.go)
// folds the layers into the trees in the background.
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

	// sem is the write lock. Its holder owns the fields of w.
	sem writeLock
	w   struct {
		// The head, what transactions read, is layered: the writes of
		// the forming group (forming), over those of the groups frozen but
		// not yet applied to the trees (pending, oldest first), over the
		// trees (the applier's latest). A layer holds each key's final
		// state, per collection (nil: untouched). Committing a transaction
		// only merges its ops into forming: the B-tree work (and its
		// copy-on-write) is the applier's, on another core, off the
		// writers' path. A transaction's own writes stay in its ops
		// until it commits (its reads see them first, then the head); if
		// it fails, they are dropped.
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
		// gate is where the committer waits for the writers it expects
		// in the forming group (see groupGather).
		gate      gather.Gate
		logBytes  int64 // record bytes committed since the last snapshot began
		maxRecord int
	}

	// The committer's (commit.go).
	kick           chan struct{} // wakes the committer; capacity 1
	committerDone  chan struct{}
	formingWaiters atomic.Int64 // waiting writers (Write) in w.group, for the committer's gather
	gather         groupGather  // committer only
	spare          []byte       // a group buffer to reuse; committer only

	// The applier's (apply.go).
	applyKick   chan struct{} // wakes the applier; capacity 1
	applyQuit   chan struct{} // closed by Close
	applied     chan struct{} // the applier applied layers; capacity 1
	applierDone chan struct{}
	flushLayers atomic.Bool // the committer is idle: the applier applies everything

	// The combiner's (combine.go).
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
	// opened is what Open learnt, published once it recovered (nil
	// before): Stats and Damage may run before and during Open.
	opened       atomic.Pointer[openFacts]
	lastSnapSize atomic.Int64
	lastSnapNs   atomic.Int64 // how long the newest snapshot written since Open took
	snapRunning  atomic.Bool  // an automatic snapshot is under way
	bg           sync.WaitGroup
	stats        storeStats
}

type storeStats struct {
	commits atomic.Int64
	gathers atomic.Int64 // waits of the committer for a group to fill (for tests)
	// commitLatency: the durable groups, by how long they took from
	// append to durable.
	commitLatency pow2hist.Recorder
	aborts        atomic.Int64
	snapshots     atomic.Int64
	snapshotErrs  atomic.Int64
}

// New returns a store with opts. Register its collections with
// NewCollection, then call Open: recovery needs every collection's codec
// and must know which names are unknown.
func New(opts Options) *Store {
	opts.ensureDefaults()
	s := &Store{opts: opts, log: opts.Logger, byName: map[string]int{}, raw: map[int]bool{}, sem: make(chan struct{}, 1),
		kick: make(chan struct{}, 1), committerDone: make(chan struct{}),
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
	start := time.Now()
	if err := s.p.Open(); err != nil {
		s.state.Store(stateClosed)
		return err
	}
	v, damage, err := s.recover(ctx)
	if err == nil {
		// Only now may the persistence change the disk.
		err = s.p.Recovered()
	}
	if err != nil {
		s.p.Close()
		s.state.Store(stateClosed)
		return err
	}
	facts := &openFacts{damage: damage, recoverTime: time.Since(start)}
	if wp, ok := s.p.(*walPersistence); ok {
		facts.wal = wp.w
	}
	s.opened.Store(facts)
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

// Close waits for the transactions under way and a running snapshot, then
// closes the persistence. Reads keep serving the last durable version;
// writes fail with ErrClosed.
func (s *Store) Close() error {
	if !s.state.CompareAndSwap(stateOpen, stateClosed) {
		return ErrClosed
	}
	// Writers that got the lock before are done queueing after this.
	s.sem.Lock()
	//lint:ignore SA2001 the wait for the holder is the point
	s.sem.Unlock()
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
	// SnapshotTime is how long the newest snapshot written since Open took
	// to write (0: none written yet).
	SnapshotTime time.Duration
	// RecoverTime is how long Open took to load the newest snapshot and
	// replay the log after it.
	RecoverTime time.Duration
	// WAL is the log's counters (fsync latency, records per fsync) when
	// the store keeps its data in a directory; nil for other persistences.
	WAL *wal.Stats
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
	// CommitLatency is those groups by the time they took, in power-of-two
	// buckets: CommitLatency[i] counts the groups under 2^i µs (and at or
	// above 2^(i-1) µs); the last bucket also counts everything above.
	CommitLatency [pow2hist.Buckets]int64
}

// CommitQuantile returns an upper bound of the q-quantile (0 < q <= 1)
// of CommitLatency: the bound of the bucket it falls in.
func (s Stats) CommitQuantile(q float64) time.Duration {
	return pow2hist.Quantile(s.CommitLatency[:], q)
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Seq:          s.current().seq,
		Commits:      s.stats.commits.Load(),
		Aborts:       s.stats.aborts.Load(),
		Snapshots:    s.stats.snapshots.Load(),
		SnapshotErrs: s.stats.snapshotErrs.Load(),
		SnapshotSize: s.lastSnapSize.Load(),
		SnapshotTime: time.Duration(s.lastSnapNs.Load()),
	}
	st.CommitLatency, st.Groups, st.GroupTime = s.stats.commitLatency.Load()
	if f := s.opened.Load(); f != nil {
		st.RecoverTime, st.Damaged = f.recoverTime, len(f.damage)
		if f.wal != nil {
			ws := f.wal.Stats()
			st.WAL = &ws
		}
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
func (s *Store) Damage() []error {
	if f := s.opened.Load(); f != nil {
		return slices.Clone(f.damage)
	}
	return nil
}

// openFacts is what Open learnt while it recovered.
type openFacts struct {
	wal         *wal.WAL // the WAL-backed persistence's log, for Stats; nil for others
	recoverTime time.Duration
	damage      []error // the damaged data recovery did without
}
