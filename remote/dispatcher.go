package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// Options configure a Dispatcher. Every field has a default, written in
// its comment.
type Options struct {
	// Name prefixes the dispatcher's collections: "<Name>.ops",
	// "<Name>.nodes", "<Name>.meta". Default "remote".
	Name string
	// MaxBatch bounds the operations of one request to a node. Default 128:
	// enough to amortize a round trip at tens of thousands of operations a
	// second, small enough that a request stays well under a megabyte.
	MaxBatch int
	// BatchDelay is how long an operation may wait for others to fill its
	// batch. Default 1 ms: the operation's step already waited for an
	// fsync, so under load batches fill before it passes, and when idle
	// it adds little to a remote step (HBase's 150 ms would dominate it).
	// Negative: send what is queued at once.
	BatchDelay time.Duration
	// MaxInFlight bounds the operations sent to one node and not yet
	// reported; more wait in the node's queue. Default 4096.
	MaxInFlight int
	// MaxPayload bounds one operation's payload: a Call with a larger one
	// fails its step. A batch carries at most 4 MiB of payloads (at least
	// one operation), so that a request stays within the HTTP transport's
	// default body limit (8 MiB, with base64). Default 1 MiB; at most 4 MiB.
	MaxPayload int
	// Lease: a node whose last heartbeat is older is dead. Default 3 s.
	Lease time.Duration
	// Heartbeat is the interval nodes are told to heartbeat at. Default
	// Lease/6, so that a lease survives a few lost heartbeats.
	Heartbeat time.Duration
	// Retry is how a failed request is resent while its node lives:
	// Initial doubling up to Max, with Jitter. Default 50 ms doubling to
	// 2 s, jitter 0.2 (negative: none). Attempts > 0 declares the node dead
	// after that many failed requests in a row (the only safe way to give
	// up on an operation that may have reached it); default 0: resend
	// until the lease says it is dead.
	Retry procedure.RetryPolicy
	// RequestTimeout bounds one request to a node. Default 5 s.
	RequestTimeout time.Duration
	// Epoch gives Start the master epoch. Default nil: a counter in
	// "<Name>.meta" that Start bumps durably.
	Epoch Epocher
	// OnNodeDead is called once a dead node incarnation's operations have
	// failed, once per dead incarnation, and again by the next Start
	// until it returns nil (a control plane submits its crash procedure
	// here, with a nonce). Default none.
	OnNodeDead func(ctx context.Context, n NodeInfo) error
	// Clock drives leases, batch delays and resend delays. Default the
	// system clock; tests pass the engine's ManualClock.
	Clock procedure.Clock
	// Logger receives node deaths, failed requests and store errors.
	// Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.Name == "" {
		o.Name = "remote"
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 128
	}
	if o.BatchDelay == 0 {
		o.BatchDelay = time.Millisecond
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 4096
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1 << 20
	}
	o.MaxPayload = min(o.MaxPayload, maxBatchBytes)
	if o.Lease <= 0 {
		o.Lease = 3 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = o.Lease / 6
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = 50 * time.Millisecond
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 2 * time.Second
	}
	o.Retry.Max = max(o.Retry.Max, o.Retry.Initial)
	if o.Retry.Jitter == 0 {
		o.Retry.Jitter = 0.2
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type systemClock struct{}

func (systemClock) Now() time.Time                                      { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) procedure.Timer { return time.AfterFunc(d, f) }

// Dispatcher is the master side of remote operations: it records the
// operations steps ask for, sends them to their nodes in batches, commits
// the outcomes nodes report together with the wake-ups of the waiting
// procedures, and keeps the nodes' liveness.
type Dispatcher struct {
	e      *procedure.Engine
	tr     Transport
	opts   Options
	log    *slog.Logger
	clock  procedure.Clock
	ops    *durable.Collection[uint64, opRecord]
	nodesC *durable.Collection[string, nodeRecord]

	epoch   atomic.Uint64
	counter atomic.Uint64 // the last op counter of this epoch
	ready   chan struct{} // closed once Start has the epoch and the state
	stopped chan struct{} // closed by Stop

	ctx    context.Context // ends at Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines (goLocked)

	// nodeWrites serializes the changes of the node table (register,
	// death, death handled), held across their store writes; it is taken
	// before mu.
	nodeWrites sync.Mutex
	mu         struct {
		sync.Mutex
		nodes            map[string]*node
		started, stopped bool
		leaseT           procedure.Timer // the next lease check
	}
}

// NewDispatcher returns a dispatcher of e's operations over tr. It
// registers its collections on e's store: call it before the store
// opens (before Engine.Start), then Start after Engine.Start.
func NewDispatcher(e *procedure.Engine, tr Transport, opts Options) *Dispatcher {
	opts.ensureDefaults()
	d := &Dispatcher{e: e, tr: tr, opts: opts, log: opts.Logger, clock: opts.Clock,
		ready: make(chan struct{}), stopped: make(chan struct{})}
	s := e.Store()
	d.ops = durable.NewCollection[uint64](s, opts.Name+".ops", durable.CodecFunc(opRecord.encode, decodeOpRecord))
	d.nodesC = durable.NewCollection[string](s, opts.Name+".nodes", durable.CodecFunc(nodeRecord.encode, decodeNodeRecord))
	meta := durable.NewCollection[string](s, opts.Name+".meta", metaCodec())
	if d.opts.Epoch == nil {
		d.opts.Epoch = storeEpoch{s: s, meta: meta}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.mu.nodes = make(map[string]*node)
	return d
}

// Epoch returns the master epoch Start took (0 before).
func (d *Dispatcher) Epoch() uint64 { return d.epoch.Load() }

// goLocked runs f on a goroutine Stop waits for (none once stopped).
// d.mu is held.
func (d *Dispatcher) goLocked(f func()) {
	if d.mu.stopped {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// serving returns ErrStopped unless the dispatcher runs.
func (d *Dispatcher) serving() error {
	select {
	case <-d.stopped:
		return fmt.Errorf("%w: dispatcher stopped", ErrStopped)
	default:
	}
	select {
	case <-d.ready:
		return nil
	default:
		return fmt.Errorf("%w: dispatcher not started", ErrStopped)
	}
}

// Start takes a new epoch (durable before anything is sent), loads the
// nodes (the live ones get a lease from now) and the outstanding
// operations, sends them again (Attempt 1: a new master counts anew),
// fails those whose node is gone, and starts the liveness checks. Call it
// after Engine.Start.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.mu.started || d.mu.stopped {
		d.mu.Unlock()
		return errors.New("remote: Start called twice, or after Stop")
	}
	d.mu.started = true
	d.mu.Unlock()
	epoch, err := d.opts.Epoch.NextEpoch(ctx)
	if err != nil {
		return fmt.Errorf("remote: new epoch: %w", err)
	}
	if epoch == 0 || epoch > math.MaxUint32 {
		return fmt.Errorf("remote: epoch %d out of range (1 to 2^32-1: it is the high half of an OpID)", epoch)
	}
	d.epoch.Store(epoch)
	deaths, err := d.loadNodes()
	if err != nil {
		return err
	}
	if err := d.loadOps(ctx); err != nil {
		return err
	}
	close(d.ready)
	d.mu.Lock()
	d.armLeaseCheckLocked()
	for _, info := range deaths {
		d.goLocked(func() { d.handleDeath(info) })
	}
	d.mu.Unlock()
	d.log.Info("remote: dispatcher started", "epoch", epoch)
	return nil
}

// loadNodes fills the liveness table from the store; it returns the
// deaths OnNodeDead has not handled.
func (d *Dispatcher) loadNodes() ([]NodeInfo, error) {
	v := d.e.Store().Latest()
	now := d.clock.Now()
	var deaths []NodeInfo
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, rec := range d.nodesC.All(v) {
		info := NodeInfo{Name: name, Addr: rec.Addr, Incarnation: rec.Incarnation, Live: rec.Live,
			Registered: unixTime(rec.Registered), Died: unixTime(rec.Died)}
		if rec.Live {
			info.LastHeartbeat = now
			d.liveLocked(info)
		} else {
			d.mu.nodes[name] = &node{info: info, st: newNodeStats()}
		}
		for _, u := range rec.Unhandled {
			deaths = append(deaths, u.info(name))
		}
	}
	if err := v.Err(); err != nil {
		return nil, fmt.Errorf("remote: load nodes: %w", err)
	}
	return deaths, nil
}

// loadOps resends the pending operations of live incarnations, and in
// one transaction fails the others (ErrNodeDied) and deletes the
// operations of procedures that are gone.
func (d *Dispatcher) loadOps(ctx context.Context) error {
	v := d.e.Store().Latest()
	var fix []OpID
	for id, rec := range d.ops.All(v) {
		if d.procGone(rec.Proc) || rec.State == opPending && !d.enqueue(OpID(id), rec) {
			fix = append(fix, OpID(id))
		}
	}
	if err := v.Err(); err != nil {
		return fmt.Errorf("remote: load ops: %w", err)
	}
	if len(fix) == 0 {
		return nil
	}
	err := d.e.SignalWrite(ctx, func(tx *durable.Tx, signal func(string)) error {
		return d.failOps(tx, signal, fix)
	})
	if err != nil {
		return fmt.Errorf("remote: fail ops of dead nodes: %w", err)
	}
	return nil
}

// Stop stops sending and the liveness checks, and waits for the
// dispatcher's goroutines (an OnNodeDead call running is given a context
// that ends). Operations stay in the store: the next Start sends them.
func (d *Dispatcher) Stop() error {
	d.mu.Lock()
	if d.mu.stopped {
		d.mu.Unlock()
		return nil
	}
	d.mu.stopped = true
	if d.mu.leaseT != nil {
		d.mu.leaseT.Stop()
	}
	var snds []*sender
	for _, n := range d.mu.nodes {
		if n.snd != nil {
			snds = append(snds, n.snd)
		}
	}
	d.mu.Unlock()
	close(d.stopped)
	d.cancel()
	for _, s := range snds {
		s.close()
	}
	d.wg.Wait()
	return nil
}

// Service returns what nodes call: serve it on a transport.
func (d *Dispatcher) Service() MasterService { return masterService{d} }

type masterService struct{ d *Dispatcher }

func (s masterService) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	return s.d.register(ctx, req)
}

func (s masterService) Heartbeat(ctx context.Context, req *HeartbeatRequest) (*HeartbeatResponse, error) {
	return s.d.heartbeat(ctx, req)
}

func (s masterService) Report(ctx context.Context, req *ReportRequest) (*ReportResponse, error) {
	return s.d.report(ctx, req)
}

// Call asks node for an operation of type typ, in a step: the operation
// is recorded in the step's commit and sent once that commit is durable.
// The step then returns Await(next, op), and the next step reads the
// outcome (Outcome). A bad node or type name, or an exhausted counter
// (2^32 operations in one epoch), fails the step. Call waits for Start.
func (d *Dispatcher) Call(env *procedure.Env, node, typ string, payload []byte) OpID {
	select {
	case <-d.ready:
	case <-d.stopped:
	}
	epoch := d.Epoch()
	n := d.counter.Add(1)
	var bad error
	switch {
	case epoch == 0:
		bad = fmt.Errorf("remote: Call: %w: dispatcher stopped before it started", ErrStopped)
	case n > math.MaxUint32:
		bad = fmt.Errorf("remote: Call: epoch %d used up its 2^32 operation ids; restart the master for a new epoch", epoch)
	case node == "" || len(node) > maxNameLen:
		bad = fmt.Errorf("remote: Call: bad node name %q (1 to %d bytes)", node, maxNameLen)
	case typ == "" || len(typ) > maxNameLen:
		bad = fmt.Errorf("remote: Call: bad operation type %q (1 to %d bytes)", typ, maxNameLen)
	case len(payload) > d.opts.MaxPayload:
		bad = fmt.Errorf("remote: Call: %s payload of %d bytes is over Options.MaxPayload (%d)", typ, len(payload), d.opts.MaxPayload)
	}
	if bad != nil {
		env.Write(func(*durable.Tx) error { return bad })
		return 0
	}
	id := MakeOpID(epoch, uint32(n))
	rec := opRecord{Proc: uint64(env.ID()), Node: node, Incarnation: d.liveIncarnation(node), Type: typ,
		Payload: bytes.Clone(payload), State: opPending}
	env.Write(func(tx *durable.Tx) error { return d.ops.Put(tx, uint64(id), rec) })
	env.AfterCommit(func() {
		if !d.enqueue(id, rec) {
			d.failLater(id)
		}
	})
	return id
}

// Await suspends the procedure until op has an outcome; it then runs
// state next, which reads it (Outcome).
func Await[S procedure.State](next S, op OpID) procedure.Next {
	return procedure.WaitEvent(next, eventOf(op))
}

// liveIncarnation returns node's live incarnation, 0 if it is unknown or
// dead.
func (d *Dispatcher) liveIncarnation(node string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.mu.nodes[node]; n != nil && n.info.Live {
		return n.info.Incarnation
	}
	return 0
}

// enqueue hands a pending op to its node's sender; false if its
// incarnation is not the live one (the op must fail with ErrNodeDied).
// Once stopped, it does nothing (the next Start sends it).
func (d *Dispatcher) enqueue(id OpID, rec opRecord) bool {
	d.mu.Lock()
	stopped := d.mu.stopped
	d.mu.Unlock()
	if stopped {
		return true
	}
	snd := d.liveSender(rec.Node, rec.Incarnation)
	return snd != nil && snd.enqueue(Op{ID: id, Proc: rec.Proc, Type: rec.Type, Payload: rec.Payload, Attempt: 1})
}

// liveSender returns the sender of incarnation inc of node, nil unless
// it is the live one.
func (d *Dispatcher) liveSender(node string, inc uint64) *sender {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.mu.nodes[node]; n != nil && n.info.Live && n.info.Incarnation == inc {
		return n.snd
	}
	return nil
}

// failLater gives ops the outcome ErrNodeDied, on a goroutine (it is
// called where the engine must not be waited for).
func (d *Dispatcher) failLater(ids ...OpID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.goLocked(func() {
		err := d.e.SignalWrite(d.ctx, func(tx *durable.Tx, signal func(string)) error {
			return d.failOps(tx, signal, ids)
		})
		if err != nil {
			d.log.Error("remote: failing operations of a dead node failed", "ops", len(ids), "err", err)
		}
	})
}

// refuseLater gives ops the outcome ErrRefused with msg, on a goroutine:
// a node refused the request that carried them as malformed (resending it
// would be refused again).
func (d *Dispatcher) refuseLater(msg string, ids ...OpID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.goLocked(func() {
		err := d.e.SignalWrite(d.ctx, func(tx *durable.Tx, signal func(string)) error {
			for _, id := range ids {
				rec, ok, err := d.ops.Get(tx, uint64(id))
				if err != nil {
					return err
				}
				if ok && rec.State == opPending {
					if err := d.finishOp(tx, signal, id, rec, outcomeRefused, nil, msg); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			d.log.Error("remote: failing refused operations failed", "ops", len(ids), "err", err)
		}
	})
}

// failOps gives each of ids still pending ErrNodeDied in tx, and deletes
// those whose procedure is gone.
func (d *Dispatcher) failOps(tx *durable.Tx, signal func(string), ids []OpID) error {
	for _, id := range ids {
		rec, ok, err := d.ops.Get(tx, uint64(id))
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if rec.State == opPending {
			err = d.finishOp(tx, signal, id, rec, outcomeNodeDied, nil, "")
		} else if d.procGone(rec.Proc) {
			err = d.ops.Delete(tx, uint64(id))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// finishOp records a pending op's outcome and signals its procedure, or
// deletes the op if its procedure is gone.
func (d *Dispatcher) finishOp(tx *durable.Tx, signal func(string), id OpID, rec opRecord, kind uint8, result []byte, msg string) error {
	if d.procGone(rec.Proc) {
		return d.ops.Delete(tx, uint64(id))
	}
	rec.finish(kind, result, msg)
	if err := d.ops.Put(tx, uint64(id), rec); err != nil {
		return err
	}
	signal(eventOf(id))
	return nil
}

// procGone reports whether procedure id will never read an outcome: it
// does not exist, or it finished.
func (d *Dispatcher) procGone(id uint64) bool { return d.e.Finished(procedure.ID(id)) }

// Outcome returns op's outcome in the step after Await: its result bytes,
// or an *OpError (ErrNodeDied, ErrRefused, ErrFailed). The outcome is
// consumed in the step's commit (the record deleted, the event reset).
// ErrNotDone if op has no outcome yet, or is not outstanding; an error
// too if op belongs to another procedure.
func (d *Dispatcher) Outcome(env *procedure.Env, op OpID) ([]byte, error) {
	rec, ok, err := d.ops.Get(d.e.Store().Latest(), uint64(op))
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("%w: op %d is not outstanding (cancelled, or its outcome consumed)", ErrNotDone, op)
	case rec.Proc != uint64(env.ID()):
		return nil, fmt.Errorf("remote: op %d belongs to procedure %d, not %d", op, rec.Proc, env.ID())
	case rec.State != opDone:
		return nil, fmt.Errorf("%w: op %d on node %q", ErrNotDone, op, rec.Node)
	}
	d.forget(env, op)
	return rec.outcome(op)
}

// Cancel forgets op in the step's commit (in a Rollback, or when a step
// gives up on it): a late report of it is ignored. Cancelling an op that
// is gone is not an error.
func (d *Dispatcher) Cancel(env *procedure.Env, op OpID) {
	d.forget(env, op)
	rec, ok, err := d.ops.Get(d.e.Store().Latest(), uint64(op))
	if err != nil || !ok || rec.State != opPending {
		return
	}
	env.AfterCommit(func() {
		d.mu.Lock()
		n := d.mu.nodes[rec.Node]
		var snd *sender
		if n != nil {
			snd = n.snd
		}
		d.mu.Unlock()
		if snd != nil {
			snd.forget(op)
		}
	})
}

// forget deletes op's record and resets its event in the step's commit.
func (d *Dispatcher) forget(env *procedure.Env, op OpID) {
	env.Write(func(tx *durable.Tx) error { return d.ops.Delete(tx, uint64(op)) })
	env.ResetEvent(eventOf(op))
}

// report serves MasterService.Report: the outcomes of ops outstanding on
// the reporting incarnation, of this epoch, are committed with their
// wake-ups in one transaction; the others are ignored. Then it
// acknowledges.
func (d *Dispatcher) report(ctx context.Context, req *ReportRequest) (*ReportResponse, error) {
	if err := checkReport(req); err != nil {
		return nil, err
	}
	if err := d.serving(); err != nil {
		return nil, err
	}
	if err := d.checkEpoch(req.Epoch); err != nil {
		return nil, err
	}
	snd := d.liveSender(req.Node, req.Incarnation)
	if snd == nil {
		return nil, fmt.Errorf("%w: node %q incarnation %d", ErrUnknownNode, req.Node, req.Incarnation)
	}
	mine := d.ofThisEpoch(req.Outcomes)
	if len(mine) == 0 {
		return &ReportResponse{}, nil
	}
	err := d.e.SignalWrite(ctx, func(tx *durable.Tx, signal func(string)) error {
		return d.commitOutcomes(tx, signal, req, mine)
	})
	if err != nil {
		return nil, fmt.Errorf("remote: report of node %q: %w", req.Node, err)
	}
	ids := make([]OpID, len(mine))
	for i, o := range mine {
		ids[i] = o.Op
	}
	snd.reported(ids)
	return &ReportResponse{}, nil
}

// commitOutcomes records, in tx, the outcomes of ops pending on the
// reporting incarnation, and signals their events.
func (d *Dispatcher) commitOutcomes(tx *durable.Tx, signal func(string), req *ReportRequest, outs []Outcome) error {
	for _, o := range outs {
		rec, ok, err := d.ops.Get(tx, uint64(o.Op))
		if err != nil {
			return err
		}
		if !ok || !rec.pendingOn(req.Node, req.Incarnation) {
			continue
		}
		kind, result, msg := outcomeOf(o)
		if err := d.finishOp(tx, signal, o.Op, rec, kind, result, msg); err != nil {
			return err
		}
	}
	return nil
}

// ofThisEpoch returns the outcomes of sends of this master's epoch: an
// older master's are not its to commit (HBASE-28420); the node answers
// the resend of the op again.
func (d *Dispatcher) ofThisEpoch(outs []Outcome) []Outcome {
	epoch := d.Epoch()
	mine := make([]Outcome, 0, len(outs))
	for _, o := range outs {
		if o.Epoch == epoch {
			mine = append(mine, o)
		}
	}
	return mine
}

func outcomeOf(o Outcome) (kind uint8, result []byte, msg string) {
	switch {
	case o.Error != "":
		return outcomeFailed, nil, o.Error
	case o.Refused != "":
		return outcomeRefused, nil, o.Refused
	}
	return outcomeResult, o.Result, ""
}

// checkReport refuses a malformed report before it changes anything.
func checkReport(req *ReportRequest) error {
	if err := checkNode(req.Node, req.Incarnation); err != nil {
		return err
	}
	if len(req.Outcomes) > maxOutcomes {
		return fmt.Errorf("%w: report of node %q: %d outcomes (at most %d)", ErrBadRequest, req.Node, len(req.Outcomes), maxOutcomes)
	}
	seen := make(map[OpID]struct{}, len(req.Outcomes))
	size := 0
	for _, o := range req.Outcomes {
		if _, dup := seen[o.Op]; dup {
			return fmt.Errorf("%w: report of node %q: op %d twice", ErrBadRequest, req.Node, o.Op)
		}
		seen[o.Op] = struct{}{}
		if o.Error != "" && o.Refused != "" || (o.Error != "" || o.Refused != "") && len(o.Result) > 0 {
			return fmt.Errorf("%w: report of node %q: op %d has more than one of result, refused, error", ErrBadRequest, req.Node, o.Op)
		}
		size += len(o.Result) + len(o.Error) + len(o.Refused)
	}
	if size > maxResultBytes {
		return fmt.Errorf("%w: report of node %q: %d bytes of outcomes (at most %d)", ErrBadRequest, req.Node, size, maxResultBytes)
	}
	return nil
}
