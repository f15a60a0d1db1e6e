package remote

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNodeRegisters(t *testing.T) {
	m := newMasterStub(5, time.Hour)
	tn := startTestNode(t, m, NodeOptions{Incarnation: 42}, nil)
	m.mu.Lock()
	reg := m.registers
	m.mu.Unlock()
	if want := (RegisterRequest{Node: "n1", Addr: "n1:1", Incarnation: 42}); len(reg) != 1 || reg[0] != want {
		t.Fatalf("registered %+v, want once %+v", reg, want)
	}
	if tn.Incarnation() != 42 {
		t.Fatalf("incarnation %d, want 42", tn.Incarnation())
	}
	// The node learned the master's epoch from Register.
	if err := tn.execute(4, Op{ID: 1, Type: "x"}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("request from epoch 4 after registering with epoch 5: %v, want ErrStaleEpoch", err)
	}
}

func TestNodeHeartbeats(t *testing.T) {
	m := newMasterStub(5, time.Millisecond)
	tn := startTestNode(t, m, NodeOptions{}, nil)
	m.waitFor(t, "3 heartbeats", func() bool { return m.heartbeats >= 3 })
	// A heartbeat answered by a newer master teaches the node its epoch.
	m.update(func() { m.epoch = 7 })
	n := 0
	m.waitFor(t, "2 more heartbeats", func() bool {
		if n == 0 {
			n = m.heartbeats
		}
		return m.heartbeats >= n+2
	})
	if err := tn.execute(6, Op{ID: 1, Type: "x"}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("request from epoch 6 after a heartbeat answered with epoch 7: %v, want ErrStaleEpoch", err)
	}
}

func TestNodeDefaultIncarnationIsRandom(t *testing.T) {
	seen := map[uint64]bool{}
	for range 8 {
		n, err := NewNode(NodeOptions{Name: "n", Addr: "a", Master: "m", Transport: NewLocal()})
		if err != nil {
			t.Fatal(err)
		}
		if n.Incarnation() == 0 || seen[n.Incarnation()] {
			t.Fatalf("incarnation %d: zero or repeated", n.Incarnation())
		}
		seen[n.Incarnation()] = true
	}
	if _, err := NewNode(NodeOptions{Name: "n", Addr: "a", Master: "m"}); err == nil {
		t.Fatal("NewNode without a transport: no error")
	}
}

func TestNodeStartRetriesUntilMasterAnswers(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	tn := newTestNode(t, m, NodeOptions{}, nil)

	tn.local.SetFault("master", Fault{Drop: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tn.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with an unreachable master and a cancelled ctx: %v", err)
	}

	// Registers arrive but their replies are lost: Start retries.
	tn.local.SetFault("master", Fault{DropReply: true})
	started := make(chan error, 1)
	go func() { started <- tn.Start(context.Background()) }()
	m.waitFor(t, "3 registrations", func() bool { return len(m.registers) >= 3 })
	tn.local.SetFault("master", Fault{})
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(context.Background()); err == nil {
		t.Fatal("second Start: no error")
	}
}

func TestNodeExecutesEachOpOnce(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	var calls counter
	release := make(chan struct{})
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) {
		n.Handle("echo", calls.echo)
		n.Handle("slow", func(ctx context.Context, op Op) ([]byte, error) {
			calls.inc(op.ID)
			<-release
			return []byte("slow done"), nil
		})
	})

	// A resend after the outcome was reported: reported again, from memory.
	tn.mustExecute(1, Op{ID: 1, Type: "echo", Payload: []byte("a"), Attempt: 1})
	m.waitFor(t, "op 1 reported", func() bool { return len(m.outcomes(1)) == 1 })
	tn.mustExecute(1, Op{ID: 1, Type: "echo", Payload: []byte("a"), Attempt: 2})
	m.waitFor(t, "op 1 reported again", func() bool { return len(m.outcomes(1)) == 2 })
	m.mu.Lock()
	outs := m.outcomes(1)
	m.mu.Unlock()
	if calls.get(1) != 1 {
		t.Fatalf("op 1 ran %d times", calls.get(1))
	}
	if string(outs[0].Result) != "done a" || string(outs[1].Result) != "done a" ||
		outs[0].Attempt != 1 || outs[1].Attempt != 2 {
		t.Fatalf("outcomes of op 1: %+v", outs)
	}

	// A resend while running, from a newer master: one run, one outcome,
	// carrying the newer epoch and attempt.
	tn.mustExecute(1, Op{ID: 2, Type: "slow", Attempt: 1})
	tn.mustExecute(2, Op{ID: 2, Type: "slow", Attempt: 3})
	close(release)
	m.waitFor(t, "op 2 reported", func() bool { return len(m.outcomes(2)) == 1 })
	// Op 3 is reported after op 2's report, so a second outcome of op 2
	// would have shown by then.
	tn.mustExecute(2, Op{ID: 3, Type: "echo"})
	m.waitFor(t, "op 3 reported", func() bool { return len(m.outcomes(3)) == 1 })
	m.mu.Lock()
	outs = m.outcomes(2)
	m.mu.Unlock()
	if calls.get(2) != 1 || len(outs) != 1 {
		t.Fatalf("op 2 ran %d times, reported %d times", calls.get(2), len(outs))
	}
	if o := outs[0]; o.Epoch != 2 || o.Attempt != 3 || string(o.Result) != "slow done" {
		t.Fatalf("op 2 outcome %+v, want epoch 2 attempt 3", o)
	}
}

func TestNodeOutcomeKinds(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	var calls counter
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) {
		n.Handle("echo", calls.echo)
		n.Handle("fail", func(context.Context, Op) ([]byte, error) { return nil, errors.New("disk full") })
		n.Handle("panic", func(context.Context, Op) ([]byte, error) { panic("bad region") })
		n.Handle("silent", func(context.Context, Op) ([]byte, error) { return nil, errors.New("") })
	})
	tn.mustExecute(1, Op{ID: 1, Type: "nope"}, Op{ID: 2, Type: "fail"}, Op{ID: 3, Type: "panic"},
		Op{ID: 4, Type: "silent"})
	tn.mustExecute(1, Op{ID: 5, Type: "echo", Payload: []byte("x")}) // after a panic, the node still works
	m.waitFor(t, "5 outcomes", func() bool {
		return len(m.outcomes(1))+len(m.outcomes(2))+len(m.outcomes(3))+len(m.outcomes(4))+len(m.outcomes(5)) == 5
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	check := func(id OpID, ok func(Outcome) bool) {
		t.Helper()
		if o := m.outcomes(id)[0]; !ok(o) {
			t.Errorf("op %d: outcome %+v", id, o)
		}
	}
	check(1, func(o Outcome) bool { return strings.Contains(o.Refused, `"nope"`) && o.Error == "" && o.Result == nil })
	check(2, func(o Outcome) bool { return o.Error == "disk full" && o.Refused == "" })
	check(3, func(o Outcome) bool { return strings.Contains(o.Error, "bad region") && o.Refused == "" })
	check(4, func(o Outcome) bool { return o.Error != "" })
	check(5, func(o Outcome) bool { return string(o.Result) == "done x" && o.Error == "" && o.Refused == "" })
}

func TestNodeRejectsBadRequests(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	var calls counter
	tn := startTestNode(t, m, NodeOptions{Workers: 1}, func(n *Node) { n.Handle("echo", calls.echo) })
	tn.mustExecute(5, Op{ID: 1, Type: "echo"}) // the node has seen epoch 5
	inc := tn.Incarnation()
	x := Op{ID: 100, Type: "echo"}
	for _, c := range []struct {
		name string
		req  ExecuteRequest
		want error
	}{
		{"other node", ExecuteRequest{Epoch: 9, Node: "n2", Incarnation: inc, Ops: []Op{x}}, ErrWrongNode},
		{"other incarnation", ExecuteRequest{Epoch: 9, Node: "n1", Incarnation: inc + 1, Ops: []Op{x}}, ErrWrongNode},
		{"stale epoch", ExecuteRequest{Epoch: 4, Node: "n1", Incarnation: inc, Ops: []Op{x}}, ErrStaleEpoch},
		{"no ops", ExecuteRequest{Epoch: 9, Node: "n1", Incarnation: inc}, ErrBadRequest},
		{"no type", ExecuteRequest{Epoch: 9, Node: "n1", Incarnation: inc, Ops: []Op{x, {ID: 101}}}, ErrBadRequest},
		{"duplicate id", ExecuteRequest{Epoch: 9, Node: "n1", Incarnation: inc, Ops: []Op{x, {ID: 101, Type: "echo"}, x}}, ErrBadRequest},
	} {
		if _, err := tn.client.Execute(context.Background(), &c.req); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// Nothing changed: epoch 9 was not taken as the newest (epoch 6 is
	// accepted), and op 100 never ran (one worker runs in order, so it
	// would have run before op 2 reported).
	tn.mustExecute(6, Op{ID: 2, Type: "echo"})
	m.waitFor(t, "op 2 reported", func() bool { return len(m.outcomes(2)) == 1 })
	if calls.get(100) != 0 || calls.get(101) != 0 {
		t.Fatalf("ops of refused requests ran: %d, %d", calls.get(100), calls.get(101))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.outcomes(100)) != 0 {
		t.Fatal("op of a refused request reported")
	}
}

func TestNodeWorkersBound(t *testing.T) {
	const workers, ops = 3, 12
	m := newMasterStub(1, time.Hour)
	var running, most atomic.Int32
	started := make(chan struct{}, ops)
	release := make(chan struct{})
	tn := startTestNode(t, m, NodeOptions{Workers: workers}, func(n *Node) {
		n.Handle("block", func(ctx context.Context, op Op) ([]byte, error) {
			now := running.Add(1)
			for old := most.Load(); now > old && !most.CompareAndSwap(old, now); old = most.Load() {
			}
			started <- struct{}{}
			<-release
			running.Add(-1)
			return nil, nil
		})
	})
	var req []Op
	for i := range ops {
		req = append(req, Op{ID: OpID(i + 1), Type: "block"})
	}
	tn.mustExecute(1, req...) // returns while every handler blocks
	for range workers {
		<-started
	}
	tn.ops.mu.Lock()
	busy, queued := tn.ops.busy, len(tn.ops.queue)
	tn.ops.mu.Unlock()
	if busy != workers || queued != ops-workers {
		t.Fatalf("%d workers, %d ops queued; want %d, %d", busy, queued, workers, ops-workers)
	}
	for range ops {
		release <- struct{}{}
	}
	m.waitFor(t, "every outcome", func() bool {
		n := 0
		for _, s := range m.reportSizes() {
			n += s
		}
		return n == ops
	})
	if most.Load() != workers {
		t.Fatalf("at most %d handlers ran at once, want %d", most.Load(), workers)
	}
}

func TestNodeStop(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	var returned atomic.Bool
	started, cancelled, proceed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) {
		n.Handle("wait", func(ctx context.Context, op Op) ([]byte, error) {
			close(started)
			<-ctx.Done()
			close(cancelled)
			<-proceed
			returned.Store(true)
			return nil, ctx.Err()
		})
	})
	tn.mustExecute(1, Op{ID: 1, Type: "wait"})
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- tn.Stop() }()
	waitClosed(t, cancelled, "Stop to cancel the running operation")
	tn.wg.Wait() // heartbeats and reports have stopped: Stop is now waiting for the operation
	select {
	case <-stopped:
		t.Fatal("Stop returned while an operation was running")
	default:
	}
	close(proceed)
	if err := <-stopped; err != nil || !returned.Load() {
		t.Fatalf("Stop: %v; operation returned before: %v", err, returned.Load())
	}
	if err := tn.execute(1, Op{ID: 2, Type: "wait"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Execute after Stop: %v, want ErrStopped", err)
	}
	if err := tn.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Stop: %v, want ErrStopped", err)
	}
	if err := tn.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
