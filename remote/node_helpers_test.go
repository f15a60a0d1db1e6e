package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// masterStub is a MasterService that records what nodes send it and
// fails on demand.
type masterStub struct {
	mu              sync.Mutex
	changed         chan struct{} // closed and replaced on every call
	epoch           uint64
	heartbeatMillis int64
	live            map[uint64]bool // registered incarnations
	dead            map[uint64]bool // incarnations declared dead
	registers       []RegisterRequest
	heartbeats      int
	reportCalls     []ReportRequest // every Report call, failed or not
	reports         []ReportRequest // the acknowledged ones
	failReports     int             // fail this many more Reports
}

var _ MasterService = (*masterStub)(nil)

func newMasterStub(epoch uint64, heartbeat time.Duration) *masterStub {
	return &masterStub{changed: make(chan struct{}), epoch: epoch, heartbeatMillis: heartbeat.Milliseconds(),
		live: make(map[uint64]bool), dead: make(map[uint64]bool)}
}

// update runs f under the lock and wakes waiters.
func (m *masterStub) update(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
	close(m.changed)
	m.changed = make(chan struct{})
}

// waitFor waits until cond holds (checked under the lock).
func (m *masterStub) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second) // a failure guard, not a measurement
	defer deadline.Stop()
	for {
		m.mu.Lock()
		ok, changed := cond(), m.changed
		m.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (m *masterStub) Register(_ context.Context, req *RegisterRequest) (resp *RegisterResponse, err error) {
	m.update(func() {
		m.registers = append(m.registers, *req)
		if m.dead[req.Incarnation] {
			err = fmt.Errorf("%w: incarnation %d was declared dead", ErrUnknownNode, req.Incarnation)
			return
		}
		m.live[req.Incarnation] = true
		resp = &RegisterResponse{Epoch: m.epoch, HeartbeatMillis: m.heartbeatMillis, LeaseMillis: 6 * m.heartbeatMillis}
	})
	return resp, err
}

func (m *masterStub) Heartbeat(_ context.Context, req *HeartbeatRequest) (resp *HeartbeatResponse, err error) {
	m.update(func() {
		m.heartbeats++
		if !m.live[req.Incarnation] {
			err = fmt.Errorf("%w: %d", ErrUnknownNode, req.Incarnation)
			return
		}
		resp = &HeartbeatResponse{Epoch: m.epoch}
	})
	return resp, err
}

func (m *masterStub) Report(_ context.Context, req *ReportRequest) (resp *ReportResponse, err error) {
	m.update(func() {
		m.reportCalls = append(m.reportCalls, *req)
		switch {
		case m.failReports > 0:
			m.failReports--
			err = errors.New("master unavailable")
		case !m.live[req.Incarnation]:
			err = fmt.Errorf("%w: %d", ErrUnknownNode, req.Incarnation)
		default:
			m.reports = append(m.reports, *req)
			resp = &ReportResponse{}
		}
	})
	return resp, err
}

// outcomes returns every acknowledged outcome of op, in order.
func (m *masterStub) outcomes(op OpID) []Outcome {
	var outs []Outcome
	for _, r := range m.reports {
		for _, o := range r.Outcomes {
			if o.Op == op {
				outs = append(outs, o)
			}
		}
	}
	return outs
}

// reportSizes returns the number of outcomes of each acknowledged report.
func (m *masterStub) reportSizes() []int {
	var sizes []int
	for _, r := range m.reports {
		sizes = append(sizes, len(r.Outcomes))
	}
	return sizes
}

// testNode is a node on a Local transport, registered with a masterStub.
type testNode struct {
	*Node
	t      *testing.T
	local  *Local
	master *masterStub
	client NodeService
}

// newTestNode returns a node with fast retries, its handlers set by
// handle, not started.
func newTestNode(t *testing.T, m *masterStub, opts NodeOptions, handle func(n *Node)) *testNode {
	t.Helper()
	l := NewLocal()
	l.ServeMaster("master", m)
	opts.Name, opts.Addr, opts.Master, opts.Transport = "n1", "n1:1", "master", l
	if opts.Retry.Initial == 0 {
		opts.Retry = procedure.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	}
	n, err := NewNode(opts)
	if err != nil {
		t.Fatal(err)
	}
	if handle != nil {
		handle(n)
	}
	l.ServeNode("n1:1", n.Service())
	t.Cleanup(func() { _ = n.Stop() })
	client, _ := l.DialNode("n1:1")
	return &testNode{Node: n, t: t, local: l, master: m, client: client}
}

// startTestNode is newTestNode, started.
func startTestNode(t *testing.T, m *masterStub, opts NodeOptions, handle func(n *Node)) *testNode {
	t.Helper()
	tn := newTestNode(t, m, opts, handle)
	if err := tn.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tn
}

// execute sends ops from master epoch epoch to the node's current
// incarnation through the transport.
func (tn *testNode) execute(epoch uint64, ops ...Op) error {
	_, err := tn.client.Execute(context.Background(),
		&ExecuteRequest{Epoch: epoch, Node: "n1", Incarnation: tn.Incarnation(), Ops: ops})
	return err
}

func (tn *testNode) mustExecute(epoch uint64, ops ...Op) {
	tn.t.Helper()
	if err := tn.execute(epoch, ops...); err != nil {
		tn.t.Fatal(err)
	}
}

// counter counts calls by operation id.
type counter struct {
	mu sync.Mutex
	n  map[OpID]int
}

func (c *counter) inc(id OpID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[OpID]int)
	}
	c.n[id]++
}

func (c *counter) get(id OpID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// echo is a handler that counts its calls and returns "done <payload>".
func (c *counter) echo(_ context.Context, op Op) ([]byte, error) {
	c.inc(op.ID)
	return append([]byte("done "), op.Payload...), nil
}

// waitClosed waits until ch is closed.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second): // a failure guard, not a measurement
		t.Fatalf("timed out waiting for %s", what)
	}
}
