package procedure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// Options configure an Engine. Every field has a default, written in its
// comment.
type Options struct {
	// Name prefixes the engine's collections ("<Name>.procs",
	// "<Name>.nonces", "<Name>.meta", "<Name>.events", "<Name>.audit"),
	// so that a store can hold more than one engine. Default "procedure".
	Name string
	// Workers is the number of goroutines running steps. A worker holds a
	// procedure only while its step executes: waiting for the step's
	// commit to be durable does not take a worker. Default 16.
	Workers int
	// StuckAfter: a worker busy in one step for longer is stuck, and a
	// temporary worker is started so that the rest of the queue keeps
	// running (HBase's keep-alive workers). Temporary workers exit after
	// StuckAfter without work. Default 10 s.
	StuckAfter time.Duration
	// MaxExtraWorkers bounds the temporary workers. Default Workers.
	MaxExtraWorkers int
	// MaxCommits bounds the commits (steps, rollback steps, submissions)
	// waiting for a committer; a worker that finds the bound reached
	// waits. Default 4096.
	MaxCommits int
	// Committers bounds the batches of commits waiting for the disk: the
	// committer gathers the commits waiting (up to MaxBatch) into one
	// store transaction, and gathers the next batch as soon as that
	// transaction is queued, while it waits for the disk. Default 8.
	Committers int
	// MaxBatch bounds the commits in one store transaction. Default 256.
	MaxBatch int
	// ResultTTL: a finished root's result is deleted this long after it
	// finished. Default 15 min.
	ResultTTL time.Duration
	// AckedResultTTL: ... or this long after it was acknowledged (Ack),
	// whichever comes first. Default 5 min.
	AckedResultTTL time.Duration
	// SweepInterval: how often expired results are deleted. Default 1 min;
	// negative: only when Sweep is called.
	SweepInterval time.Duration
	// SweepBatch bounds the results deleted by one commit. Default 1000.
	SweepBatch int
	// AuditKeep bounds the audit log (Engine.Audit): the commit that
	// appends an entry deletes the oldest beyond it. Default 10000.
	AuditKeep int
	// Retry is how failing steps are retried, for types whose
	// TypeOptions.Retry is zero: a step that returned a Retryable error, a
	// failed rollback step, a failed step past the point of no return.
	// Default: 100 ms doubling up to 10 s, jitter 0.2, no attempt limit.
	Retry RetryPolicy
	// Clock is the wall clock for timestamps, result expiry, timers,
	// timeouts and retry delays. Default the system clock; tests use a
	// ManualClock.
	Clock Clock
	// Logger receives recovery reports, quarantines and retries. Default
	// slog.Default().
	Logger *slog.Logger
	// Hooks are test hooks (proctest uses them). Default none.
	Hooks Hooks
}

// Hooks let tests observe steps and inject failures and crashes. Every
// hook may be nil. They are called from worker and commit goroutines,
// concurrently for different procedures.
type Hooks struct {
	// StepStart is called when a worker takes a procedure for a step
	// (forward or rollback), before it runs.
	StepStart func(StepInfo)
	// FailStep is called after a forward step's Execute returned without
	// error; a non-nil error makes the step fail with it, as if Execute
	// had returned it (its recorded writes are dropped).
	FailStep func(StepInfo) error
	// BeforeCommit is called after a step ran, just before its commit.
	BeforeCommit func(StepInfo)
	// AfterCommit is called once a step's commit is durable.
	AfterCommit func(StepInfo)
	// StepEnd is called when the worker lets go of the procedure, whatever
	// happened (committed, yielded, discarded, failed to commit).
	StepEnd func(StepInfo)
}

// StepInfo describes a step for Hooks.
type StepInfo struct {
	ID, Root ID
	Type     string
	State    int64
	// Step counts the procedure's committed steps before this one, forward
	// and rollback; it is persisted, so it names the step across restarts.
	Step     int
	Rollback bool
	// Err is set for BeforeCommit and AfterCommit of a commit that records
	// the step's failure (which starts the tree's rollback).
	Err error
}

func (o *Options) ensureDefaults() {
	if o.Name == "" {
		o.Name = "procedure"
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = 10 * time.Second
	}
	if o.MaxExtraWorkers <= 0 {
		o.MaxExtraWorkers = o.Workers
	}
	if o.MaxCommits <= 0 {
		o.MaxCommits = 4096
	}
	if o.Committers <= 0 {
		o.Committers = 8
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.ResultTTL <= 0 {
		o.ResultTTL = 15 * time.Minute
	}
	if o.AckedResultTTL <= 0 {
		o.AckedResultTTL = 5 * time.Minute
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Minute
	}
	if o.SweepBatch <= 0 {
		o.SweepBatch = 1000
	}
	if o.AuditKeep <= 0 {
		o.AuditKeep = 10000
	}
	o.Retry = o.Retry.withDefaults(RetryPolicy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.2})
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Engine states.
const (
	engNew int32 = iota
	engRunning
	engStopping
	engStopped
)

// Engine runs procedures: it recovers them from its store, runs their
// steps on a pool of workers, commits each step atomically with its
// metadata writes, rolls failed trees back and keeps results. See the
// package documentation.
type Engine struct {
	store  *durable.Store
	opts   Options
	log    *slog.Logger
	procsC *durable.Collection[uint64, []byte]
	nonces *durable.Collection[string, uint64]
	meta   *durable.Collection[string, uint64]
	events *durable.Collection[string, uint64] // signalled events -> when (unix ns)
	audit  *durable.Collection[uint64, []byte] // operators' actions (audit.go)
	types  map[string]*typeInfo                // fixed once started

	q         *runQueue
	state     atomic.Int32
	ownsStore bool // Start opened the store, so Stop closes it
	failErr   atomic.Pointer[error]
	failedCh  chan struct{} // closed when the engine failed
	ctx       context.Context
	cancel    context.CancelFunc
	workersWG sync.WaitGroup // workers
	bgWG      sync.WaitGroup // monitor and sweeper

	pipeline *commitPipeline // makes steps, rollback steps and submissions durable

	workers struct {
		sync.Mutex
		all   map[*worker]struct{}
		extra int
		next  int
	}

	// mu guards the in-memory state of every live procedure and tree (see
	// proc and tree). Lock order: the store's write lock (a commit
	// function runs under it), then mu, then the run queue's lock. Never
	// call store.Write with mu held.
	mu      sync.Mutex
	procs   map[ID]*proc // live procedures (of unfinished trees)
	trees   map[ID]*tree // live trees by root id
	waiters map[ID][]*waiter
	// watchers are WaitFor calls, by procedure: each is told (without
	// blocking) when the procedure's record commits or it finishes.
	watchers map[ID][]chan struct{}
	nonceIn  map[string]*nonceWait // submissions with a nonce in flight
	results  resultHeap            // finished roots, by expiry
	nextID   uint64                // next id to allocate
	hwm      uint64                // ids below it may be in use; persisted in meta
	timers   map[*engineTimer]struct{}
	stats    engineStats

	locks      *lockManager // the lock table and the requests waiting in it
	eventWaits *eventWaits  // procedures suspended on, or woken by, events

	ix      *procIndex // the records by status and type, for List (index.go)
	ixReady bool       // load built ix
	// quarantined counts the quarantined trees in trees (for Stats).
	quarantined int
}

// proc is a live procedure. Its immutable fields are set when it is
// created or loaded; ps mirrors its persisted record (the store's head,
// which may be one group commit ahead of the durable version) and is
// changed only by commit functions, under Engine.mu; data belongs to the
// worker running the procedure.
type proc struct {
	id, parent ID
	t          *tree
	typ        *typeInfo // nil: unknown type (quarantined)
	typeName   string
	version    uint32 // of raw (decoded data is always the current version)
	created    int64
	submitter  string
	nonce      string

	ps pstate

	// data is the decoded *D, or nil while only raw is known (a child
	// that has not run yet, a quarantined procedure). Only the worker
	// holding the procedure reads or changes data; raw is only read
	// outside mu, and written under it.
	data any
	raw  []byte

	// Runtime state, guarded by Engine.mu.
	committed  bool // the record that created it is durable
	queued     bool // in the run queue, or parked for a retry (retryTimer)
	running    bool // held by a worker, or by its step's commit: at most one at a time
	retries    int
	lastErr    string
	quarantine string // why this procedure cannot be loaded ("" if it can)

	run *stepRun // while running (nil otherwise): what its step started with

	lockWaiting bool        // parked until its step's lock request (rt.stepLocks) is granted
	timeoutDue  timeoutKind // a timeout passed: its next step is OnTimeout (0: none)
	rt          *procRT     // scheduling state; nil for the many procedures that never use it

	indexed  bool   // in Engine.ix (indexLocked)
	ixStatus Status // the status it is indexed under
	ixLive   bool   // counted in Engine.ix.live: indexed and its tree not retired
}

// stepRun is what a running procedure's step started with. It is set
// when the step is dispatched and cleared when the procedure stops
// running (kept out of proc, which every live procedure has, because few
// run at any moment).
type stepRun struct {
	state int64  // the state the step runs
	steps uint32 // the procedure's step count when it started
	// cancel cancels the step's context (with ErrAborted or ErrBypassed,
	// by an operator; a no-op once the step returned).
	cancel context.CancelCauseFunc
}

// procRT is the part of a live procedure's runtime state that only the
// procedures using locks, events, timers or retries need (guarded by
// Engine.mu; see proc.rd and proc.sched).
type procRT struct {
	stepLocks    *lockReq     // locks held (or waited for, lockWaiting) for its next or current step
	holdLocks    *lockReq     // locks held until it finishes (TypeOptions.HoldLocks)
	wokenBy      string       // the event that woke it, until its record is written again
	sleepTimer   *engineTimer // wakes it from Sleep
	timeoutTimer *engineTimer // fires at timeoutAt, its earlier deadline (the procedure's or its step's)
	timeoutAt    int64
	retryTimer   *engineTimer
}

var noRT procRT // what rd returns for a procedure without runtime scheduling state: never written

// rd returns p's scheduling state, for reading only.
func (p *proc) rd() *procRT {
	if p.rt == nil {
		return &noRT
	}
	return p.rt
}

// sched returns p's scheduling state, for writing: made on first use.
func (p *proc) sched() *procRT {
	if p.rt == nil {
		p.rt = &procRT{}
	}
	return p.rt
}

// pext is the part of a procedure's record that few procedures have: what
// it is suspended on, its deadline, the locks it holds across steps. It
// is never changed in place (a pstate is copied to undo a commit): w
// gives a fresh copy to change.
type pext struct {
	wait        waitState // Suspended: what for
	timeout     int64     // deadline (unix ns; 0: none)
	locks       []Lock    // held until it finishes (HoldLocks types), as stored
	stepTimeout int64     // the deadline its last committed step set (Env.SetTimeout; 0: none)
	// undone are its states its tree's rollback undid (rare, so here and
	// not in pstate); appended to by copying, never changed in place.
	undone []undoneEntry
}

func (ps *pstate) wait() waitState {
	if ps.ext == nil {
		return waitState{}
	}
	return ps.ext.wait
}

func (ps *pstate) timeout() int64 {
	if ps.ext == nil {
		return 0
	}
	return ps.ext.timeout
}

func (ps *pstate) stepTimeout() int64 {
	if ps.ext == nil {
		return 0
	}
	return ps.ext.stepTimeout
}

func (ps *pstate) locks() []Lock {
	if ps.ext == nil {
		return nil
	}
	return ps.ext.locks
}

func (ps *pstate) undone() []undoneEntry {
	if ps.ext == nil {
		return nil
	}
	return ps.ext.undone
}

// finished drops what a finished procedure no longer has (a wait, a
// timeout, locks) and keeps its undone states.
func (ps *pstate) finished() {
	if u := ps.undone(); len(u) > 0 {
		ps.ext = &pext{undone: u}
		return
	}
	ps.ext = nil
}

// w replaces ps.ext by a copy and returns it, to change one field.
func (ps *pstate) w() *pext {
	x := &pext{}
	if ps.ext != nil {
		*x = *ps.ext
	}
	ps.ext = x
	return x
}

// pstate is the part of a procedure's record that changes.
type pstate struct {
	status    Status
	aborted   bool
	next      int64
	steps     uint32
	entries   []entry // append-only while going forward; never changed in place
	updated   int64
	err       *Error
	bypass    *Bypass
	completed int64
	acked     int64
	ext       *pext // wait, timeout, locks: nil if none
	pending   int32 // children not finished (not persisted: derived on load)
}

// tree is a root procedure and its descendants: the unit of rollback.
type tree struct {
	root  *proc
	procs []*proc // root first, then descendants in creation order
	ts    tstate

	// Runtime state, guarded by Engine.mu.
	running    int  // procedures of the tree held by workers (a rollback counts one)
	rbQueued   bool // a rollback item is in the run queue
	quarantine string
	retries    int
	lastErr    string
	rbLocks    *lockReq     // locks of the rollback step (held, or waited for with rbQueued)
	rbTimer    *engineTimer // retries a failed rollback step
}

// tstate is the tree's state derived from its procedures' records.
type tstate struct {
	nextIdx  uint32 // size of the rollback stack
	failed   bool   // a procedure failed or the root was aborted: rolling back
	pastPONR bool   // a procedure reached a NoReturn state: no rollback
	ponr     string // which procedure and state, for Abort's refusal
	done     bool   // completed (its records are deleted post-commit)
	version  uint64 // commits applied to the tree since load
}

// New returns an engine for store and registers its collections on it:
// call it before store.Open. Register the procedure types, open the
// store, then Start.
func New(store *durable.Store, opts Options) *Engine {
	opts.ensureDefaults()
	u64 := durable.CodecFunc(encodeU64, decodeU64)
	e := &Engine{
		store:    store,
		opts:     opts,
		log:      opts.Logger,
		procsC:   durable.NewCollection[uint64, []byte](store, opts.Name+".procs", durable.Bytes()),
		nonces:   durable.NewCollection[string, uint64](store, opts.Name+".nonces", u64),
		meta:     durable.NewCollection[string, uint64](store, opts.Name+".meta", u64),
		events:   durable.NewCollection[string, uint64](store, opts.Name+".events", u64),
		audit:    durable.NewCollection[uint64, []byte](store, opts.Name+".audit", durable.Bytes()),
		types:    map[string]*typeInfo{},
		q:        newRunQueue(),
		failedCh: make(chan struct{}),
		procs:    map[ID]*proc{},
		trees:    map[ID]*tree{},
		waiters:  map[ID][]*waiter{},
		watchers: map[ID][]chan struct{}{},
		nonceIn:  map[string]*nonceWait{},
		timers:   map[*engineTimer]struct{}{},
		ix:       newProcIndex(),
	}
	e.locks = newLockManager(e.procs, opts.Clock, &e.stats, e.lockGrantedLocked)
	e.eventWaits = newEventWaits(e.procs, e.wakeLocked)
	e.pipeline = newCommitPipeline(e)
	e.workers.all = map[*worker]struct{}{}
	return e
}

func (e *Engine) register(ti *typeInfo) {
	if e.state.Load() != engNew {
		panic(fmt.Sprintf("procedure: type %q registered after Start", ti.name))
	}
	if _, dup := e.types[ti.name]; dup {
		panic(fmt.Sprintf("procedure: type %q registered twice", ti.name))
	}
	e.types[ti.name] = ti
}

// Store returns the engine's store.
func (e *Engine) Store() *durable.Store { return e.store }

func (e *Engine) now() int64 { return e.opts.Clock.Now().UnixNano() }

// Start opens the engine's store if the program has not opened it yet
// (then the engine owns it, and Stop closes it), and recovers the
// procedures in it: it loads them, rebuilds their trees' rollback stacks,
// quarantines what cannot be loaded, runs the AfterReplay hooks, and then
// starts the workers, the stuck-worker monitor and the result sweeper.
// Register the types, and every collection of the store, before. If
// Start fails, nothing runs and a store it opened is closed again.
//
// With several engines on one store (Options.Name), the program opens
// the store before their Starts and closes it after their Stops.
func (e *Engine) Start(ctx context.Context) error {
	if !e.state.CompareAndSwap(engNew, engRunning) {
		return errors.New("procedure: engine already started")
	}
	if err := e.openStore(ctx); err != nil {
		e.state.Store(engStopped)
		return err
	}
	// Before load: timers armed by load (a deadline that passed while the
	// engine was down) may fire as soon as it lets go of the lock.
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if err := e.load(ctx); err != nil {
		e.state.Store(engStopped)
		e.cancel()
		e.mu.Lock()
		e.stopTimersLocked()
		e.mu.Unlock()
		if e.ownsStore {
			e.store.Close()
		}
		return err
	}
	e.pipeline.start()
	for range e.opts.Workers {
		e.startWorker(false)
	}
	e.bgWG.Add(1)
	go e.monitor()
	if e.opts.SweepInterval > 0 {
		e.bgWG.Add(1)
		go e.sweeper()
	}
	return nil
}

// openStore opens the store unless the program has opened it
// (durable.ErrAlreadyOpen), and notes whether the engine owns it.
func (e *Engine) openStore(ctx context.Context) error {
	err := e.store.Open(ctx)
	switch {
	case err == nil:
		e.ownsStore = true
		return nil
	case errors.Is(err, durable.ErrAlreadyOpen):
		return nil
	}
	return fmt.Errorf("procedure: open store: %w", err)
}

// Stop stops the engine: workers take no more work, the context of the
// steps running is cancelled, and Stop waits for them and for their
// commits. A step that returns an error (or yields) while the engine
// stops is dropped, not failed: it runs again after a restart. Then, if
// Start opened the store, Stop closes it and returns the error of its
// Close; a store the program opened stays open. Stop on an engine
// stopped already returns nil.
func (e *Engine) Stop() error {
	if !e.state.CompareAndSwap(engRunning, engStopping) {
		if e.state.CompareAndSwap(engNew, engStopped) {
			return nil
		}
		// Stopping already, or failed: still wait for the workers.
		if e.state.Load() == engStopped {
			return nil
		}
	}
	if e.cancel != nil {
		e.cancel()
	}
	e.q.close()
	e.mu.Lock()
	e.stopTimersLocked()
	e.mu.Unlock()
	e.workersWG.Wait()
	// The workers are gone: no more steps. The commits queued are made
	// (or failed, if the store failed), then the committer exits.
	e.pipeline.close()
	e.bgWG.Wait()
	if !e.state.CompareAndSwap(engStopping, engStopped) {
		return nil // another Stop got here first
	}
	if e.ownsStore {
		return e.store.Close()
	}
	return nil
}

func (e *Engine) running() bool { return e.state.Load() == engRunning }

// Ready returns nil while the engine runs: Start recovered its procedures
// and it has neither stopped nor failed. Otherwise it says why:
// ErrNotStarted, or the error that made it fail (Err). It is what a
// readiness probe asks.
func (e *Engine) Ready() error {
	if e.running() {
		return nil
	}
	return e.notRunning()
}

// Err returns the error that made the engine fail (wrapping
// ErrEngineFailed and the store's error), or nil.
func (e *Engine) Err() error {
	if p := e.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// fail stops the engine after its store failed. Waiters get the error.
func (e *Engine) fail(cause error) {
	err := fmt.Errorf("%w: %w", ErrEngineFailed, cause)
	if !e.failErr.CompareAndSwap(nil, &err) {
		return
	}
	e.log.Error("procedure: store failed; engine stopping", "err", cause)
	e.state.CompareAndSwap(engRunning, engStopping)
	if e.cancel != nil {
		e.cancel()
	}
	e.q.close()
	close(e.failedCh)
}

// afterFuncLocked runs f after d on the engine's clock unless the engine
// stops first, or the returned handle is stopped (stopTimerLocked).
func (e *Engine) afterFuncLocked(d time.Duration, f func()) *engineTimer {
	et := &engineTimer{}
	e.timers[et] = struct{}{}
	et.t = e.opts.Clock.AfterFunc(d, func() {
		e.mu.Lock()
		_, live := e.timers[et]
		delete(e.timers, et)
		e.mu.Unlock()
		if live {
			f()
		}
	})
	return et
}

// stopTimersLocked cancels every pending afterFuncLocked call.
func (e *Engine) stopTimersLocked() {
	for t := range e.timers {
		if t.t != nil {
			t.t.Stop()
		}
	}
	clear(e.timers)
}

// engineTimer is a pending afterFuncLocked call.
type engineTimer struct{ t Timer }

// stopTimerLocked cancels et (nil: nothing).
func (e *Engine) stopTimerLocked(et *engineTimer) {
	if et == nil {
		return
	}
	if _, live := e.timers[et]; live {
		delete(e.timers, et)
		if et.t != nil {
			et.t.Stop()
		}
	}
}

// Env is what a step gets besides its state and data: who it is, and
// Write to record the step's metadata writes together with the reads they
// depend on.
type Env struct {
	e        *Engine
	id       ID
	parent   ID
	root     ID
	rollback bool
	fx       effects
	timeout  time.Duration // SetTimeout's (0: none)
	timedOut timeoutKind   // an OnTimeout step: which timeout passed
	closed   atomic.Bool
}

// ID returns the procedure's id.
func (env *Env) ID() ID { return env.id }

// Parent returns the parent's id (0 for a root).
func (env *Env) Parent() ID { return env.parent }

// Root returns the id of the tree's root (the procedure's own for a root).
func (env *Env) Root() ID { return env.root }

// RollingBack reports whether this is a Rollback step.
func (env *Env) RollingBack() bool { return env.rollback }

// Logger returns the engine's logger.
func (env *Env) Logger() *slog.Logger { return env.e.log }

// Write records fn, one of the step's metadata writes. When the step
// returns, the engine commits one transaction that runs every recorded fn
// in order and then stores the procedure's new state: all of it is
// durable, or none. Read what a write depends on inside fn, with the
// collections' Get(tx, ...): fn sees the transaction's state, which no
// other step can change before it commits, while a read made in the step
// itself may be stale by then (two steps that both read a balance outside
// and write it back inside lose one update):
//
//	env.Write(func(tx *durable.Tx) error {
//		bal, _, err := accounts.Get(tx, from)
//		if err != nil {
//			return err
//		}
//		if bal < amount {
//			return fmt.Errorf("%s has %d, needs %d", from, bal, amount)
//		}
//		return accounts.Put(tx, from, bal-amount)
//	})
//
// If fn returns an error, nothing of the step is committed and the step
// fails with that error (its Rollback runs, as for any failed step: it
// must tolerate a state whose writes never committed). fn runs later, on
// another goroutine, after Execute or Rollback returned: it must not use
// anything the step changes afterwards. If the step fails or yields, its
// writes are dropped.
func (env *Env) Write(fn func(tx *durable.Tx) error) {
	if env.closed.Load() {
		panic("procedure: Env.Write after the step returned")
	}
	env.fx.writes = append(env.fx.writes, fn)
}

// Signal records that the step signals the named event: it is signalled
// in the step's commit (atomically with the step's writes and new state),
// and the procedures suspended on it are woken once that is durable. A
// step that fails or yields signals nothing.
func (env *Env) Signal(event string) {
	if env.closed.Load() {
		panic("procedure: Env.Signal after the step returned")
	}
	if err := checkEventName(event); err != nil {
		panic(err)
	}
	env.fx.signals = append(env.fx.signals, event)
}

// ResetEvent records that the step resets the named event (as
// Engine.ResetEvent, in the step's commit): a step woken by a one-shot
// event (a remote operation's outcome) consumes it this way, so that the
// event does not stay signalled, and stored, for good. Resets apply
// before the step's signals and before the wait it returns (WaitEvent on
// the event it resets suspends). A step that fails or yields resets
// nothing.
func (env *Env) ResetEvent(event string) {
	if env.closed.Load() {
		panic("procedure: Env.ResetEvent after the step returned")
	}
	if err := checkEventName(event); err != nil {
		panic(err)
	}
	env.fx.resets = append(env.fx.resets, event)
}

// AfterCommit records fn, called once the step's commit is durable (on
// the engine's completer goroutine, without its lock: fn must be quick and
// must not wait for the engine). It is not called if the step fails,
// yields or its commit fails, nor after a crash: a restart recovers the
// committed state, and whoever acts on it there does so from the store.
// This is how work that must not start before the step is durable (a
// request sent to another process) starts as soon as it is.
func (env *Env) AfterCommit(fn func()) {
	if env.closed.Load() {
		panic("procedure: Env.AfterCommit after the step returned")
	}
	env.fx.afterCommit = append(env.fx.afterCommit, fn)
}

// effects are what a step asks for besides its next state, collected by
// its Env and committed (or dropped) with it.
type effects struct {
	writes      []func(tx *durable.Tx) error // Env.Write
	signals     []string                     // Env.Signal
	resets      []string                     // Env.ResetEvent
	afterCommit []func()                     // Env.AfterCommit
}

// SetTimeout gives the wait the step is about to enter (an event, a
// sleep, its children, a retry) a deadline d after the step ends, on the
// engine's Clock, stored with the step's commit: a restart does not
// restart it. It bounds the time until the procedure's next step starts:
// the next committed step clears it, unless that step sets one again
// (so OnTimeout re-arms it by calling SetTimeout). When it passes, the
// procedure's OnTimeout runs as its next step (Env.StepTimedOut tells
// it from the procedure's own timeout); without OnTimeout, or while the
// procedure waits for its children, the procedure fails and its tree
// rolls back (ErrTimeout). It is independent of the procedure's timeout
// (SubmitOptions.Timeout): whichever passes first fires. A d <= 0 sets
// none; a failing or yielding step sets none; in a Rollback step it does
// nothing.
func (env *Env) SetTimeout(d time.Duration) {
	if env.closed.Load() {
		panic("procedure: Env.SetTimeout after the step returned")
	}
	env.timeout = max(d, 0)
}

// StepTimedOut reports whether this is an OnTimeout step run because the
// timeout an earlier step set (SetTimeout) passed; false if it runs for
// the procedure's own timeout (or is not an OnTimeout step).
func (env *Env) StepTimedOut() bool { return env.timedOut == timeoutStep }

// worker is one step-running goroutine. busy is the start of the step it
// runs (unix nanoseconds; 0 when idle), for the stuck-worker monitor.
type worker struct {
	id    int
	extra bool
	busy  atomic.Int64
}

func (e *Engine) startWorker(extra bool) {
	e.workers.Lock()
	w := &worker{id: e.workers.next, extra: extra}
	e.workers.next++
	e.workers.all[w] = struct{}{}
	if extra {
		e.workers.extra++
	}
	e.workers.Unlock()
	e.workersWG.Add(1)
	go e.work(w)
}

func (e *Engine) work(w *worker) {
	defer e.workersWG.Done()
	defer func() {
		e.workers.Lock()
		delete(e.workers.all, w)
		if w.extra {
			e.workers.extra--
		}
		e.workers.Unlock()
	}()
	var idle time.Duration
	if w.extra {
		idle = e.opts.StuckAfter
	}
	for {
		it, ok := e.q.pop(idle)
		if !ok {
			return
		}
		e.dispatch(w, it)
	}
}

// monitor starts temporary workers while workers are stuck in long steps
// and work is queued.
func (e *Engine) monitor() {
	defer e.bgWG.Done()
	tick := time.NewTicker(max(e.opts.StuckAfter/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		stuck := 0
		e.workers.Lock()
		for w := range e.workers.all {
			if b := w.busy.Load(); b != 0 && now-b >= int64(e.opts.StuckAfter) {
				stuck++
			}
		}
		extra := e.workers.extra
		e.workers.Unlock()
		e.stats.stuck.Store(int64(stuck))
		if !e.running() || e.q.len() == 0 {
			continue
		}
		for n := min(stuck, e.opts.MaxExtraWorkers) - extra; n > 0; n-- {
			e.log.Warn("procedure: workers stuck in long steps; starting a temporary worker", "stuck", stuck, "after", e.opts.StuckAfter)
			e.stats.extraStarted.Add(1)
			e.startWorker(true)
		}
	}
}
