package remote

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNodeReregistersWhenHeartbeatIsUnknown(t *testing.T) {
	m := newMasterStub(1, time.Millisecond)
	tn := startTestNode(t, m, NodeOptions{}, nil)
	inc := tn.Incarnation()
	m.update(func() { delete(m.live, inc) }) // e.g. a new master that has not seen it yet
	m.waitFor(t, "a second registration", func() bool { return len(m.registers) == 2 })
	m.mu.Lock()
	defer m.mu.Unlock()
	if got := m.registers[1].Incarnation; got != inc || tn.Incarnation() != inc {
		t.Fatalf("registered again as %d (node says %d), want the same incarnation %d", got, tn.Incarnation(), inc)
	}
}

func TestNodeReregistersWhenReportIsUnknown(t *testing.T) {
	m := newMasterStub(1, time.Hour) // no heartbeat during the test
	var calls counter
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) { n.Handle("echo", calls.echo) })
	inc := tn.Incarnation()
	m.update(func() { delete(m.live, inc) })
	tn.mustExecute(1, Op{ID: 1, Type: "echo"})
	m.waitFor(t, "op 1 acknowledged", func() bool { return len(m.outcomes(1)) == 1 })
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.registers) != 2 || m.registers[1].Incarnation != inc {
		t.Fatalf("registrations %+v, want a second one of incarnation %d", m.registers, inc)
	}
	if m.reports[0].Incarnation != inc {
		t.Fatalf("reported as incarnation %d, want %d", m.reports[0].Incarnation, inc)
	}
}

func TestNodeDeclaredDeadStartsNewIncarnation(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	m.failReports = 1 << 30 // outcomes stay unreported
	var calls counter
	cancelled := make(chan struct{})
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) {
		n.Handle("echo", calls.echo)
		n.Handle("wait", func(ctx context.Context, op Op) ([]byte, error) {
			<-ctx.Done()
			close(cancelled)
			return []byte("late"), nil
		})
	})
	old := tn.Incarnation()
	tn.mustExecute(1, Op{ID: 1, Type: "wait"}, Op{ID: 2, Type: "echo"})
	m.waitFor(t, "op 2 offered", func() bool { return len(m.reportCalls) > 0 })

	// The master declares the incarnation dead (it failed ops 1 and 2).
	m.update(func() { delete(m.live, old); m.dead[old] = true; m.failReports = 0 })
	m.waitFor(t, "a new incarnation registered", func() bool {
		return m.live[m.registers[len(m.registers)-1].Incarnation]
	})
	waitClosed(t, cancelled, "the dead incarnation's running operation cancelled")
	inc := tn.Incarnation()
	if inc == old || inc == 0 {
		t.Fatalf("incarnation %d after %d was declared dead", inc, old)
	}
	if _, err := tn.client.Execute(context.Background(),
		&ExecuteRequest{Epoch: 1, Node: "n1", Incarnation: old, Ops: []Op{{ID: 3, Type: "echo"}}}); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("request for the dead incarnation: %v, want ErrWrongNode", err)
	}
	// The dead incarnation's memory is gone: op 2 runs again if sent again.
	tn.mustExecute(1, Op{ID: 2, Type: "echo"})
	m.waitFor(t, "op 2 reported", func() bool { return len(m.outcomes(2)) == 1 })
	if calls.get(2) != 2 {
		t.Fatalf("op 2 ran %d times, want again in the new incarnation", calls.get(2))
	}
	if err := tn.Stop(); err != nil { // waits for op 1's handler
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.reports {
		if r.Incarnation != inc || len(r.Outcomes) != 1 || r.Outcomes[0].Op != 2 {
			t.Fatalf("acknowledged report %+v: only op 2 of incarnation %d expected", r, inc)
		}
	}
	tn.rep.mu.Lock()
	defer tn.rep.mu.Unlock()
	if p := tn.rep.mu.pending[1]; p != nil {
		t.Fatalf("the dead incarnation's op 1 is pending: %+v", p.out)
	}
}
