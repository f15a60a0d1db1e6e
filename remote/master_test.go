package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// The master's test kit: an engine and a dispatcher on a crash-simulating
// FS, a procedure type that calls a remote operation and reads its
// outcome, and fake nodes that record the requests they get; the tests
// send the nodes' reports through the dispatcher's service.

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// callData is the caller procedure's data: what to call, and what came
// of it.
type callData struct {
	Node     string
	Type     string
	Payload  []byte
	Typed    bool // use snapOp (the typed layer)
	CancelIt bool // cancel the op in the next step instead of awaiting it
	NoCancel bool // the rollback does not cancel the op
	Op       OpID
	Result   []byte
	Files    int    // Typed: the decoded result
	Kind     string // "died", "refused", "failed", "" (a result), or the error
	Message  string
}

type snapReq struct{ Region string }
type snapResp struct{ Files int }

var snapOp = OpType[snapReq, snapResp]{Name: "snapshot-region"}

type callSM struct{ w *world }

func (sm callSM) Execute(_ context.Context, env *procedure.Env, s int, c *callData) (procedure.Next, error) {
	d := sm.w.d
	switch s {
	case 0:
		if c.Typed {
			op, err := snapOp.Call(d, env, c.Node, snapReq{Region: string(c.Payload)})
			if err != nil {
				return procedure.Next{}, err
			}
			c.Op = op
		} else {
			c.Op = d.Call(env, c.Node, c.Type, c.Payload)
		}
		if c.CancelIt {
			return procedure.GoTo(2), nil
		}
		return Await(1, c.Op), nil
	case 1:
		var err error
		if c.Typed {
			var resp snapResp
			resp, err = snapOp.Outcome(d, env, c.Op)
			c.Files = resp.Files
		} else {
			c.Result, err = d.Outcome(env, c.Op)
		}
		c.Kind, c.Message = kindOf(err)
		return procedure.Done(), nil
	default:
		d.Cancel(env, c.Op)
		return procedure.Done(), nil
	}
}

func (sm callSM) Rollback(_ context.Context, env *procedure.Env, s int, c *callData) error {
	if s == 0 && !c.NoCancel {
		sm.w.d.Cancel(env, c.Op)
	}
	return nil
}

func kindOf(err error) (string, string) {
	var oe *OpError
	switch {
	case err == nil:
		return "", ""
	case !errors.As(err, &oe):
		return err.Error(), ""
	case errors.Is(err, ErrNodeDied):
		return "died", oe.Message
	case errors.Is(err, ErrRefused):
		return "refused", oe.Message
	case errors.Is(err, ErrFailed):
		return "failed", oe.Message
	}
	return err.Error(), ""
}

// fakeNode is a NodeService that records every request it gets, and
// fails the next `fail` of them with a transport error (or with failWith).
type fakeNode struct {
	reqs chan *ExecuteRequest
	mu   sync.Mutex
	fail int
	with error
	// auto, if set, returns the master a request's ops are reported to at
	// once (result "ok"), from inside Execute; report errors are ignored.
	auto func() MasterService
	// block, if set before the first request, holds every Execute until
	// it is closed.
	block chan struct{}
}

var errTransport = errors.New("fake transport: connection reset")

func newFakeNode() *fakeNode { return &fakeNode{reqs: make(chan *ExecuteRequest, 4096)} }

func (n *fakeNode) Execute(_ context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	r := *req
	r.Ops = slices.Clone(req.Ops)
	n.reqs <- &r
	if n.block != nil {
		<-n.block
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.auto != nil {
		rep := &ReportRequest{Node: req.Node, Incarnation: req.Incarnation, Epoch: req.Epoch}
		for _, op := range req.Ops {
			rep.Outcomes = append(rep.Outcomes, Outcome{Op: op.ID, Attempt: op.Attempt, Epoch: req.Epoch, Result: []byte("ok")})
		}
		n.auto().Report(context.Background(), rep)
	}
	switch {
	case n.with != nil:
		return nil, n.with
	case n.fail > 0:
		n.fail--
		return nil, errTransport
	}
	return &ExecuteResponse{}, nil
}

func (n *fakeNode) failNext(k int, with error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail, n.with = k, with
}

// fakeTransport dials fake nodes by address.
type fakeTransport struct {
	mu    sync.Mutex
	nodes map[string]*fakeNode
}

func (tr *fakeTransport) DialNode(addr string) (NodeService, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n, ok := tr.nodes[addr]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("fake transport: no node at %q", addr)
}

func (tr *fakeTransport) DialMaster(addr string) (MasterService, error) {
	return nil, errors.New("fake transport: no master")
}

// world is an engine and a dispatcher on fs, reopened by open after
// close (or on a crash clone).
type world struct {
	t      *testing.T
	fs     *vfs.MemFS
	clock  *procedure.ManualClock
	opts   Options
	tr     *fakeTransport
	store  *durable.Store
	e      *procedure.Engine
	d      *Dispatcher
	caller *procedure.Type[int, callData]

	holdMu sync.Mutex
	hold   chan struct{} // holdStep1: closed by close
	// gate2, if set, makes the caller's step 2 (Cancel) wait until it is
	// closed.
	gate2 atomic.Pointer[chan struct{}]
	// onOpen, if set, sees each new dispatcher before it starts (and so
	// before it sends anything).
	onOpen func(*Dispatcher)
}

// holdStep1 makes the caller's step 1 (the one after Await) wait until
// the world closes.
func (w *world) holdStep1() {
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	w.hold = make(chan struct{})
}

func (w *world) held() chan struct{} {
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	return w.hold
}

func newWorld(t *testing.T, opts Options) *world {
	t.Helper()
	if opts.BatchDelay == 0 {
		opts.BatchDelay = -1
	}
	w := &world{t: t, fs: vfs.NewMem(), clock: procedure.NewManualClock(t0), opts: opts,
		tr: &fakeTransport{nodes: map[string]*fakeNode{}}}
	w.open()
	t.Cleanup(w.close)
	return w
}

func (w *world) open() {
	w.t.Helper()
	w.store = durable.New(durable.Options{Dir: "/data", FS: w.fs, Logger: quiet()})
	hooks := procedure.Hooks{StepStart: func(info procedure.StepInfo) {
		if ch := w.held(); ch != nil && info.State == 1 && !info.Rollback {
			<-ch
		}
		if ch := w.gate2.Load(); ch != nil && info.State == 2 && !info.Rollback {
			<-*ch
		}
	}}
	w.e = procedure.New(w.store, procedure.Options{Clock: w.clock, Logger: quiet(), SweepInterval: -1, Hooks: hooks})
	w.caller = procedure.Register[int, callData](w.e, "caller", callSM{w}, nil)
	opts := w.opts
	opts.Clock, opts.Logger = w.clock, quiet()
	w.d = NewDispatcher(w.e, w.tr, opts)
	if w.onOpen != nil {
		w.onOpen(w.d)
	}
	ctx := context.Background()
	if err := w.e.Start(ctx); err != nil {
		w.t.Fatalf("engine start: %v", err)
	}
	if err := w.d.Start(ctx); err != nil {
		w.t.Fatalf("dispatcher start: %v", err)
	}
}

func (w *world) close() {
	if w.d == nil {
		return
	}
	w.holdMu.Lock()
	if w.hold != nil {
		close(w.hold)
		w.hold = nil
	}
	w.holdMu.Unlock()
	w.d.Stop()
	w.e.Stop()
	w.store.Close()
	w.d = nil
}

// reopen closes the world and opens it again on fs.
func (w *world) reopen(fs *vfs.MemFS) {
	w.t.Helper()
	w.close()
	w.fs = fs
	w.open()
}

// node adds a fake node at addr "addr-<name>" and registers incarnation
// inc of it.
func (w *world) node(name string, inc uint64) *fakeNode {
	w.t.Helper()
	addr := "addr-" + name
	w.tr.mu.Lock()
	n := w.tr.nodes[addr]
	if n == nil {
		n = newFakeNode()
		w.tr.nodes[addr] = n
	}
	w.tr.mu.Unlock()
	if _, err := w.d.Service().Register(context.Background(), &RegisterRequest{Node: name, Addr: addr, Incarnation: inc}); err != nil {
		w.t.Fatalf("register %s/%d: %v", name, inc, err)
	}
	return n
}

func (w *world) submit(c callData) procedure.ID {
	w.t.Helper()
	if c.Type == "" {
		c.Type = "echo"
	}
	id, err := w.caller.Submit(context.Background(), c, procedure.SubmitOptions{})
	if err != nil {
		w.t.Fatalf("submit: %v", err)
	}
	return id
}

func (w *world) result(id procedure.ID) callData {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := w.caller.Result(w.e.Wait(ctx, id))
	if err != nil {
		w.t.Fatalf("procedure %d: %v", id, err)
	}
	return c
}

func (w *world) suspended(id procedure.ID) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := w.e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended }); err != nil {
		w.t.Fatalf("procedure %d never suspended: %v", id, err)
	}
}

func (w *world) info(id procedure.ID) procedure.Info {
	w.t.Helper()
	in, err := w.e.Get(id)
	if err != nil {
		w.t.Fatal(err)
	}
	return in
}

// request returns the next request n gets.
func (w *world) request(n *fakeNode) *ExecuteRequest {
	w.t.Helper()
	select {
	case r := <-n.reqs:
		return r
	case <-time.After(20 * time.Second):
		w.t.Fatal("no request reached the node")
		return nil
	}
}

// noRequest fails if n has a request waiting.
func (w *world) noRequest(n *fakeNode) {
	w.t.Helper()
	select {
	case r := <-n.reqs:
		w.t.Fatalf("unexpected request %+v", r)
	default:
	}
}

func (w *world) report(node string, inc uint64, outs ...Outcome) error {
	return w.reportEpoch(node, inc, w.d.Epoch(), outs...)
}

// reportEpoch sends a report of epoch; outcomes with Epoch 0 get the
// master's.
func (w *world) reportEpoch(node string, inc, epoch uint64, outs ...Outcome) error {
	outs = slices.Clone(outs)
	for i := range outs {
		if outs[i].Epoch == 0 {
			outs[i].Epoch = w.d.Epoch()
		}
	}
	_, err := w.d.Service().Report(context.Background(), &ReportRequest{Node: node, Incarnation: inc, Epoch: epoch, Outcomes: outs})
	return err
}

// op returns the stored record of id (ok false if there is none).
func (w *world) op(id OpID) (opRecord, bool) {
	w.t.Helper()
	rec, ok, err := w.d.ops.Get(w.store.Latest(), uint64(id))
	if err != nil {
		w.t.Fatal(err)
	}
	return rec, ok
}

// stats returns the dispatch counters of node.
func (w *world) stats(node string) NodeStats {
	for _, s := range w.d.Stats() {
		if s.Node == node {
			return s
		}
	}
	w.t.Fatalf("no stats for node %s", node)
	return NodeStats{}
}

// waitFor waits until cond holds: for state another goroutine reaches
// with no event to wait on (a sender's queue). It spins, yielding.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		runtime.Gosched()
	}
}

func result(op OpID, b string) Outcome { return Outcome{Op: op, Attempt: 1, Result: []byte(b)} }
