package remote

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// deathLog records OnNodeDead calls; the i-th call returns errs[i] (nil
// past the end).
type deathLog struct {
	mu    sync.Mutex
	calls []NodeInfo
	errs  []error
	seen  chan NodeInfo
}

func newDeathLog(errs ...error) *deathLog {
	return &deathLog{errs: errs, seen: make(chan NodeInfo, 16)}
}

func (l *deathLog) onDead(_ context.Context, n NodeInfo) error {
	l.mu.Lock()
	i := len(l.calls)
	l.calls = append(l.calls, n)
	l.mu.Unlock()
	l.seen <- n
	if i < len(l.errs) {
		return l.errs[i]
	}
	return nil
}

func (l *deathLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

func (l *deathLog) next(t *testing.T) NodeInfo {
	t.Helper()
	select {
	case n := <-l.seen:
		return n
	case <-time.After(20 * time.Second):
		t.Fatal("OnNodeDead was not called")
		return NodeInfo{}
	}
}

// A node that heartbeats stays live; once its lease passes without a
// heartbeat, its ops fail with ErrNodeDied and OnNodeDead is called once.
// It returned an error, so the next Start calls it again; it returned
// nil then, so the Start after does not.
func TestLeaseExpiry(t *testing.T) {
	deaths := newDeathLog(errors.New("crash procedure not submitted"))
	w := newWorld(t, Options{Lease: 3 * time.Second, OnNodeDead: deaths.onDead})
	n := w.node("rs1", 5)
	ids := []procedure.ID{w.submit(callData{Node: "rs1"}), w.submit(callData{Node: "rs1"})}
	for sent := 0; sent < len(ids); {
		sent += len(w.request(n).Ops)
	}
	for range 4 {
		w.clock.Advance(time.Second)
		heartbeat(t, w, "rs1", 5)
	}
	for _, id := range ids {
		w.suspended(id)
	}
	if nodes := w.d.Nodes(); !nodes[0].Live {
		t.Fatalf("a node that heartbeats died: %+v", nodes)
	}
	w.clock.Advance(4 * time.Second)
	for _, id := range ids {
		if c := w.result(id); c.Kind != "died" {
			t.Fatalf("outcome %+v, want node died", c)
		}
	}
	if got := deaths.next(t); got.Name != "rs1" || got.Incarnation != 5 || got.Addr != "addr-rs1" || got.Live || got.Died.IsZero() {
		t.Fatalf("OnNodeDead got %+v", got)
	}
	if _, err := w.d.Service().Heartbeat(context.Background(), &HeartbeatRequest{Node: "rs1", Incarnation: 5, Epoch: w.d.Epoch()}); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("heartbeat of a dead incarnation: %v, want ErrUnknownNode", err)
	}
	if _, err := w.d.Service().Register(context.Background(), &RegisterRequest{Node: "rs1", Addr: "addr-rs1", Incarnation: 5}); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("register of a dead incarnation: %v, want ErrUnknownNode", err)
	}
	w.reopen(w.fs) // Stop waits for the OnNodeDead call
	if got := deaths.next(t); got.Incarnation != 5 {
		t.Fatalf("OnNodeDead after the restart got %+v", got)
	}
	w.reopen(w.fs)
	w.close()
	if c := deaths.count(); c != 2 {
		t.Fatalf("OnNodeDead called %d times, want 2 (once, and once more after the restart that followed its error)", c)
	}
}

// A node registering with a new incarnation kills the old one: the old
// one's ops fail with ErrNodeDied (a report of them from the new one is
// ignored), the old one is unknown from then on, OnNodeDead is called for
// it, and the new one gets the ops asked for after.
func TestNewIncarnationKillsOld(t *testing.T) {
	deaths := newDeathLog()
	w := newWorld(t, Options{OnNodeDead: deaths.onDead})
	n := w.node("rs1", 1)
	id := w.submit(callData{Node: "rs1"})
	op := w.request(n).Ops[0].ID
	w.suspended(id)
	w.node("rs1", 2)
	if c := w.result(id); c.Kind != "died" {
		t.Fatalf("outcome %+v, want node died", c)
	}
	if got := deaths.next(t); got.Incarnation != 1 {
		t.Fatalf("OnNodeDead got %+v, want incarnation 1", got)
	}
	if err := w.report("rs1", 1, result(op, "late")); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("report from the dead incarnation: %v, want ErrUnknownNode", err)
	}
	if err := w.report("rs1", 2, result(op, "wrong incarnation")); err != nil {
		t.Fatalf("report from the new incarnation of the old one's op: %v, want it acknowledged", err)
	}
	id2 := w.submit(callData{Node: "rs1"})
	req := w.request(n)
	if req.Incarnation != 2 {
		t.Fatalf("request to incarnation %d, want 2", req.Incarnation)
	}
	if err := w.report("rs1", 2, result(req.Ops[0].ID, "ok")); err != nil {
		t.Fatal(err)
	}
	if c := w.result(id2); string(c.Result) != "ok" {
		t.Fatalf("%+v", c)
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || !nodes[0].Live || nodes[0].Incarnation != 2 {
		t.Fatalf("nodes %+v", nodes)
	}
}

// An op for a node that is unknown, or dead, fails at once with
// ErrNodeDied and is never sent.
func TestOpForDeadOrUnknownNodeFailsAtOnce(t *testing.T) {
	w := newWorld(t, Options{Lease: time.Second})
	n := w.node("rs1", 1)
	if c := w.result(w.submit(callData{Node: "ghost"})); c.Kind != "died" {
		t.Fatalf("op for an unknown node: %+v, want node died", c)
	}
	w.clock.Advance(2 * time.Second)
	if w.d.Nodes()[0].Live {
		t.Fatal("rs1 outlived its lease")
	}
	if c := w.result(w.submit(callData{Node: "rs1"})); c.Kind != "died" {
		t.Fatalf("op for a dead node: %+v, want node died", c)
	}
	w.noRequest(n)
	if s := w.stats("rs1"); s.OpsSent != 0 || s.Queued != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A master restart takes a new epoch (durable), keeps the live nodes
// live with a fresh lease, and sends the outstanding ops again.
func TestMasterRestartResendsPending(t *testing.T) {
	w := newWorld(t, Options{Lease: 3 * time.Second})
	n := w.node("rs1", 1)
	var ids []procedure.ID
	for range 3 {
		ids = append(ids, w.submit(callData{Node: "rs1"}))
	}
	sent := map[OpID]bool{}
	for len(sent) < 3 {
		for _, op := range w.request(n).Ops {
			sent[op.ID] = true
		}
	}
	w.clock.Advance(2 * time.Second) // most of the lease used up
	w.reopen(w.fs)
	if w.d.Epoch() != 2 {
		t.Fatalf("epoch %d after a restart, want 2", w.d.Epoch())
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || !nodes[0].Live || !nodes[0].LastHeartbeat.Equal(w.clock.Now()) {
		t.Fatalf("nodes after a restart %+v, want rs1 live with a lease from now", nodes)
	}
	resent := map[OpID]bool{}
	var outs []Outcome
	for len(resent) < 3 {
		req := w.request(n)
		if req.Epoch != 2 {
			t.Fatalf("resent with epoch %d", req.Epoch)
		}
		for _, op := range req.Ops {
			if !sent[op.ID] || op.Attempt != 1 {
				t.Fatalf("resent op %+v, not one of %v", op, sent)
			}
			resent[op.ID] = true
			outs = append(outs, result(op.ID, "ok"))
		}
	}
	w.clock.Advance(2 * time.Second) // the old lease would have passed; the fresh one has not
	heartbeat(t, w, "rs1", 1)
	if err := w.report("rs1", 1, outs...); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if c := w.result(id); string(c.Result) != "ok" {
			t.Fatalf("%+v", c)
		}
	}
	w.reopen(w.fs)
	if w.d.Epoch() != 3 {
		t.Fatalf("epoch %d after a second restart, want 3", w.d.Epoch())
	}
	w.noRequest(n)
}

// An op whose procedure is gone (aborted while it waited, and rolled back
// without cancelling it) is garbage-collected: by the report of its
// outcome, or by the next Start.
func TestOpOfGoneProcedureCollected(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	a := w.submit(callData{Node: "rs1", NoCancel: true})
	b := w.submit(callData{Node: "rs1", NoCancel: true})
	ops := map[procedure.ID]OpID{}
	for len(ops) < 2 {
		for _, op := range w.request(n).Ops {
			ops[procedure.ID(op.Proc)] = op.ID
		}
	}
	for _, id := range []procedure.ID{a, b} {
		w.suspended(id)
		if err := w.e.Abort(context.Background(), id, "test", "a test aborts it"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.caller.Result(w.e.Wait(context.Background(), id)); !errors.Is(err, procedure.ErrAborted) {
			t.Fatalf("aborted procedure: %v", err)
		}
		if _, ok := w.op(ops[id]); !ok {
			t.Fatal("the test needs the op left behind")
		}
	}
	if err := w.report("rs1", 1, result(ops[a], "too late")); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.op(ops[a]); ok {
		t.Fatal("the report of an op whose procedure is gone did not delete it")
	}
	if ok, _ := w.e.Signalled(eventOf(ops[a])); ok {
		t.Fatal("the report of an op whose procedure is gone signalled its event")
	}
	w.reopen(w.fs)
	if _, ok := w.op(ops[b]); ok {
		t.Fatal("Start did not delete the op whose procedure is gone")
	}
}

// 2^32 ops in one epoch: the next Call fails its step with a clear error
// instead of reusing an id.
func TestOpCounterExhausted(t *testing.T) {
	w := newWorld(t, Options{})
	w.node("rs1", 1)
	w.d.counter.Store(1<<32 - 1)
	_, err := w.caller.Result(w.e.Wait(context.Background(), w.submit(callData{Node: "rs1"})))
	if err == nil || !errors.Is(err, procedure.ErrRolledBack) || !strings.Contains(err.Error(), "used up its 2^32 operation ids") {
		t.Fatalf("Call past the counter: %v, want the step failed", err)
	}
	if n := w.d.ops.Len(w.store.Latest()); n != 0 {
		t.Fatalf("%d ops stored", n)
	}
}
