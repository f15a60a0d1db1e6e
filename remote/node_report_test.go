package remote

import (
	"slices"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// refusedOps returns n operations of a type no node handles: their
// outcomes (refused) are ready when Execute returns.
func refusedOps(first, n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{ID: OpID(first + i), Type: "unhandled"}
	}
	return ops
}

func TestNodeReportBatchBySize(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	clock := procedure.NewManualClock(time.Unix(1000, 0))
	tn := startTestNode(t, m, NodeOptions{MaxReportBatch: 4, ReportDelay: time.Second, Clock: clock}, nil)
	tn.mustExecute(1, refusedOps(1, 10)...)
	m.waitFor(t, "2 reports", func() bool { return len(m.reports) == 2 })
	// The last 2 wait for the delay, which only the clock ends.
	clock.Advance(time.Second)
	m.waitFor(t, "3 reports", func() bool { return len(m.reports) == 3 })
	m.mu.Lock()
	defer m.mu.Unlock()
	if got := m.reportSizes(); !slices.Equal(got, []int{4, 4, 2}) {
		t.Fatalf("report sizes %v, want [4 4 2]", got)
	}
	var ids []OpID
	for _, r := range m.reports {
		for _, o := range r.Outcomes {
			ids = append(ids, o.Op)
		}
	}
	if !slices.Equal(ids, []OpID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("reported %v, want ops 1..10 in order", ids)
	}
}

func TestNodeReportBatchByDelay(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	clock := procedure.NewManualClock(time.Unix(1000, 0))
	tn := startTestNode(t, m, NodeOptions{MaxReportBatch: 100, ReportDelay: time.Second, Clock: clock}, nil)
	tn.mustExecute(1, refusedOps(1, 5)...)
	tn.mustExecute(1, refusedOps(6, 3)...)
	tn.checkWaiting(8)
	clock.Advance(time.Second)
	m.waitFor(t, "1 report", func() bool { return len(m.reports) == 1 })
	tn.mustExecute(1, refusedOps(9, 2)...)
	tn.checkWaiting(2)
	clock.Advance(time.Second)
	m.waitFor(t, "2 reports", func() bool { return len(m.reports) == 2 })
	m.mu.Lock()
	defer m.mu.Unlock()
	if got := m.reportSizes(); !slices.Equal(got, []int{8, 2}) {
		t.Fatalf("report sizes %v, want [8 2]", got)
	}
	if r := m.reports[0]; r.Node != "n1" || r.Incarnation != tn.Incarnation() || r.Epoch != 1 {
		t.Fatalf("report header %+v", r)
	}
}

func TestNodeResendsReportUntilAcked(t *testing.T) {
	const failures = 3
	m := newMasterStub(1, time.Hour)
	m.failReports = failures
	var calls counter
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) { n.Handle("echo", calls.echo) })
	tn.mustExecute(1, Op{ID: 7, Type: "echo", Payload: []byte("p"), Attempt: 1})
	m.waitFor(t, "op 7 acknowledged", func() bool { return len(m.outcomes(7)) == 1 })
	// Op 8 goes in the next report, after op 7's was acknowledged: op 7
	// is not sent again.
	tn.mustExecute(1, Op{ID: 8, Type: "echo"})
	m.waitFor(t, "op 8 acknowledged", func() bool { return len(m.outcomes(8)) == 1 })
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.reportCalls) != failures+2 {
		t.Fatalf("%d report calls, want %d failed + 2", len(m.reportCalls), failures)
	}
	want := Outcome{Op: 7, Attempt: 1, Epoch: 1, Result: []byte("done p")}
	for i, r := range m.reportCalls[:failures+1] {
		if len(r.Outcomes) != 1 || !outcomeEqual(r.Outcomes[0], want) {
			t.Fatalf("report call %d: %+v, want %+v", i, r.Outcomes, want)
		}
	}
	if calls.get(7) != 1 {
		t.Fatalf("op 7 ran %d times", calls.get(7))
	}
}

// checkWaiting checks that n outcomes wait for the batching delay: all
// unsent, and the reporter not woken to send them.
func (tn *testNode) checkWaiting(n int) {
	tn.t.Helper()
	tn.rep.mu.Lock()
	defer tn.rep.mu.Unlock()
	if len(tn.rep.mu.unsent) != n || len(tn.rep.wake) != 0 {
		tn.t.Fatalf("%d outcomes unsent (want %d), reporter woken: %v", len(tn.rep.mu.unsent), n, len(tn.rep.wake) != 0)
	}
}

func outcomeEqual(a, b Outcome) bool {
	return a.Op == b.Op && a.Attempt == b.Attempt && a.Epoch == b.Epoch && string(a.Result) == string(b.Result) &&
		a.Refused == b.Refused && a.Error == b.Error
}

func TestNodeRemembersAckedOpsForRemember(t *testing.T) {
	const remember = time.Minute
	m := newMasterStub(1, time.Hour)
	clock := procedure.NewManualClock(time.Unix(1000, 0))
	var calls counter
	// Reports leave by size only (2): the delay never passes.
	tn := startTestNode(t, m, NodeOptions{MaxReportBatch: 2, ReportDelay: time.Hour, Remember: remember, Clock: clock},
		func(n *Node) { n.Handle("echo", calls.echo) })
	tn.mustExecute(1, Op{ID: 1, Type: "echo"}, Op{ID: 2, Type: "echo"})
	m.waitFor(t, "ops 1, 2 reported", func() bool { return len(m.reports) == 1 })
	// The second report is sent after the first was acknowledged and
	// recorded as such.
	tn.mustExecute(1, refusedOps(3, 2)...)
	m.waitFor(t, "ops 3, 4 reported", func() bool { return len(m.reports) == 2 })

	clock.Advance(remember - time.Millisecond)
	tn.mustExecute(1, Op{ID: 2, Type: "echo", Attempt: 2}) // remembered: reported again
	clock.Advance(time.Millisecond)
	tn.mustExecute(1, Op{ID: 1, Type: "echo", Attempt: 2}) // forgotten: runs again
	m.waitFor(t, "ops 2, 1 reported", func() bool { return len(m.reports) == 3 })
	if calls.get(1) != 2 || calls.get(2) != 1 {
		t.Fatalf("op 1 ran %d times (want 2: forgotten), op 2 %d (want 1: remembered)", calls.get(1), calls.get(2))
	}
	// Bounded memory: past Remember, everything acknowledged is forgotten.
	tn.mustExecute(1, refusedOps(5, 2)...)
	m.waitFor(t, "ops 5, 6 reported", func() bool { return len(m.reports) == 4 })
	clock.Advance(remember)
	tn.ops.sweep()
	tn.ops.mu.Lock()
	defer tn.ops.mu.Unlock()
	if len(tn.ops.byID) > 2 { // ops 5 and 6 if their acknowledgement came after the move
		t.Fatalf("%d operations remembered after Remember passed", len(tn.ops.byID))
	}
}
