package remote

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// nodeOps is what a node knows of its operations: the handlers, every
// operation of the current incarnation by id (queued, running, finished,
// or acknowledged and remembered until Remember has passed), the queue
// and the workers that drain it.
type nodeOps struct {
	n  *Node
	wg sync.WaitGroup // workers

	mu       sync.Mutex
	stopped  bool
	inc      uint64 // the current incarnation
	epoch    uint64 // the newest master epoch seen
	handlers map[string]func(ctx context.Context, op Op) ([]byte, error)
	byID     map[OpID]*nodeOp
	queue    []*nodeOp // waiting for a worker, in arrival order
	busy     int       // workers running, <= Workers (those of dead incarnations too)
	// acked lists acknowledged operations in acknowledgement order, so
	// that the expired ones are forgotten from the front.
	acked []ackedOp
	// incCtx is cancelled when the incarnation dies or the node stops.
	incCtx    context.Context
	incCancel context.CancelFunc
}

// nodeOp is one operation of the current incarnation. op and handler
// are fixed once created; the rest is guarded by nodeOps.mu.
type nodeOp struct {
	op      Op
	handler func(ctx context.Context, op Op) ([]byte, error)
	ctx     context.Context // its incarnation's
	epoch   uint64          // of the latest request that carried it
	attempt uint32          // ... and that request's attempt
	done    bool
	out     Outcome // when done
	acked   bool    // the master acknowledged out
	ackedAt time.Time
}

type ackedOp struct {
	id OpID
	at time.Time
}

func newNodeOps(n *Node) *nodeOps {
	t := &nodeOps{
		n:        n,
		inc:      n.opts.Incarnation,
		handlers: make(map[string]func(ctx context.Context, op Op) ([]byte, error)),
		byID:     make(map[OpID]*nodeOp),
	}
	t.incCtx, t.incCancel = context.WithCancel(n.ctx)
	n.rep.reset(t.inc)
	return t
}

func (t *nodeOps) handle(typ string, h func(ctx context.Context, op Op) ([]byte, error)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.handlers[typ]; dup {
		panic(fmt.Sprintf("remote: Node.Handle: type %q handled twice", typ))
	}
	t.handlers[typ] = h
}

func (t *nodeOps) incarnation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inc
}

func (t *nodeOps) newestEpoch() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.epoch
}

// observeEpoch remembers epoch if it is the newest seen.
func (t *nodeOps) observeEpoch(epoch uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.epoch = max(t.epoch, epoch)
}

// execute validates req and takes its operations; nothing changes if
// req is refused.
func (t *nodeOps) execute(req *ExecuteRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return ErrStopped
	}
	if err := checkExecute(req, t.n.opts.Name, t.inc, t.epoch); err != nil {
		return err
	}
	t.epoch = req.Epoch
	t.forgetExpired(t.n.opts.Clock.Now())
	for _, op := range req.Ops {
		t.take(op, req.Epoch)
	}
	return nil
}

// checkExecute says why req cannot be taken by incarnation inc of node
// name, which has seen master epoch epoch.
func checkExecute(req *ExecuteRequest, name string, inc, epoch uint64) error {
	if req.Node != name || req.Incarnation != inc {
		return fmt.Errorf("%w: request for %s incarnation %d, this is %s incarnation %d",
			ErrWrongNode, req.Node, req.Incarnation, name, inc)
	}
	if req.Epoch < epoch {
		return fmt.Errorf("%w: request from master epoch %d, epoch %d seen", ErrStaleEpoch, req.Epoch, epoch)
	}
	if len(req.Ops) == 0 {
		return fmt.Errorf("%w: no operations", ErrBadRequest)
	}
	seen := make(map[OpID]struct{}, len(req.Ops))
	for i, op := range req.Ops {
		if op.Type == "" {
			return fmt.Errorf("%w: operation %d (id %v) has no type", ErrBadRequest, i, op.ID)
		}
		if _, dup := seen[op.ID]; dup {
			return fmt.Errorf("%w: operation id %v twice", ErrBadRequest, op.ID)
		}
		seen[op.ID] = struct{}{}
	}
	return nil
}

// take handles one operation of a request from master epoch epoch: a new
// one is started, a running one left alone, a finished one reported
// again.
func (t *nodeOps) take(op Op, epoch uint64) {
	e, known := t.byID[op.ID]
	if !known {
		t.start(op, epoch)
		return
	}
	e.epoch, e.attempt = epoch, op.Attempt
	if e.done {
		e.out.Epoch, e.out.Attempt = epoch, op.Attempt
		e.acked = false
		t.n.rep.add(e.out)
	}
}

func (t *nodeOps) start(op Op, epoch uint64) {
	e := &nodeOp{op: op, ctx: t.incCtx, epoch: epoch, attempt: op.Attempt}
	t.byID[op.ID] = e
	e.handler = t.handlers[op.Type]
	if e.handler == nil {
		t.finishLocked(e, Outcome{Refused: fmt.Sprintf("no handler for operation type %q", op.Type)})
		return
	}
	t.queue = append(t.queue, e)
	if t.busy < t.n.opts.Workers {
		t.busy++
		t.wg.Add(1)
		go t.work()
	}
}

// work runs queued operations until the queue is empty.
func (t *nodeOps) work() {
	defer t.wg.Done()
	for {
		e := t.next()
		if e == nil {
			return
		}
		t.finish(e, t.run(e))
	}
}

// next pops the queue; on an empty queue the worker leaves.
func (t *nodeOps) next() *nodeOp {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		t.busy--
		return nil
	}
	e := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	return e
}

// run calls e's handler; a panic fails the operation.
func (t *nodeOps) run(e *nodeOp) (out Outcome) {
	defer func() {
		if r := recover(); r != nil {
			t.n.log.Error("remote: operation handler panicked", "op", e.op.ID, "type", e.op.Type,
				"panic", r, "stack", string(debug.Stack()))
			out = Outcome{Error: fmt.Sprintf("handler for %q panicked: %v", e.op.Type, r)}
		}
	}()
	result, err := e.handler(e.ctx, e.op)
	if err != nil {
		msg := err.Error()
		if msg == "" {
			msg = fmt.Sprintf("handler for %q failed (empty error message)", e.op.Type)
		}
		return Outcome{Error: msg}
	}
	return Outcome{Result: result}
}

// finish records e's outcome, unless e's incarnation died meanwhile.
func (t *nodeOps) finish(e *nodeOp, out Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[e.op.ID] == e {
		t.finishLocked(e, out)
	}
}

func (t *nodeOps) finishLocked(e *nodeOp, out Outcome) {
	out.Op, out.Epoch, out.Attempt = e.op.ID, e.epoch, e.attempt
	e.out, e.done = out, true
	e.op.Payload = nil
	t.n.rep.add(out)
}

// ack marks the outcomes of ids acknowledged by the master (at time at),
// if inc is still the current incarnation.
func (t *nodeOps) ack(inc uint64, ids []OpID, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if inc != t.inc {
		return
	}
	for _, id := range ids {
		if e := t.byID[id]; e != nil && e.done {
			e.acked, e.ackedAt = true, at
			t.acked = append(t.acked, ackedOp{id, at})
		}
	}
	t.forgetExpired(at)
}

// sweep forgets what has been remembered long enough.
func (t *nodeOps) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetExpired(t.n.opts.Clock.Now())
}

// forgetExpired forgets the operations acknowledged Remember or more
// before now (a resend of one of them would run it again).
func (t *nodeOps) forgetExpired(now time.Time) {
	i := 0
	for ; i < len(t.acked) && now.Sub(t.acked[i].at) >= t.n.opts.Remember; i++ {
		a := t.acked[i]
		if e := t.byID[a.id]; e != nil && e.acked && e.ackedAt.Equal(a.at) {
			delete(t.byID, a.id)
		}
	}
	t.acked = t.acked[i:] // append moves what is left when it grows
}

// reset starts incarnation inc: the operations of the dead one are
// forgotten, its queue dropped, its running operations cancelled (their
// outcomes are dropped when they finish) and its unreported outcomes
// dropped.
func (t *nodeOps) reset(inc uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inc = inc
	t.incCancel()
	t.incCtx, t.incCancel = context.WithCancel(t.n.ctx)
	t.byID = make(map[OpID]*nodeOp)
	clear(t.queue)
	t.queue = nil
	t.acked = nil
	t.n.rep.reset(inc)
}

// stop refuses further requests and drops the queue.
func (t *nodeOps) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	clear(t.queue)
	t.queue = nil
	t.incCancel()
}

// wait waits for the workers to leave.
func (t *nodeOps) wait() { t.wg.Wait() }
