package remote

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/internal/testseed"
)

// TestNodeRandomResends sends new operations and resends of known ones
// from growing master epochs, while the master's replies are dropped or
// its reports fail at random; then a last master resends everything.
// Each operation must run exactly once, and each must end acknowledged
// with its result in the last master's epoch.
func TestNodeRandomResends(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 17))
	m := newMasterStub(1, time.Hour)
	var calls counter
	tn := startTestNode(t, m, NodeOptions{Workers: 1 + rng.IntN(4), MaxReportBatch: 1 + rng.IntN(8)},
		func(n *Node) { n.Handle("echo", calls.echo) })
	faults := []Fault{{}, {}, {Drop: true}, {DropReply: true}}

	var sent []Op
	epoch := uint64(1)
	for step := 0; step < 300; step++ {
		switch r := rng.IntN(10); {
		case r < 4: // new operations
			var ops []Op
			for range 1 + rng.IntN(5) {
				id := OpID(len(sent) + 1)
				op := Op{ID: id, Type: "echo", Payload: fmt.Appendf(nil, "p%d", id), Attempt: 1}
				sent = append(sent, op)
				ops = append(ops, op)
			}
			tn.mustExecute(epoch, ops...)
		case r < 7 && len(sent) > 0: // resends, in one request, no id twice
			seen := map[OpID]bool{}
			var ops []Op
			for range 1 + rng.IntN(5) {
				op := sent[rng.IntN(len(sent))]
				if !seen[op.ID] {
					seen[op.ID] = true
					op.Attempt = 2 + uint32(rng.IntN(5))
					ops = append(ops, op)
				}
			}
			tn.mustExecute(epoch, ops...)
		case r < 8:
			epoch++ // a new master
		case r < 9:
			tn.local.SetFault("master", faults[rng.IntN(len(faults))])
		default:
			n := rng.IntN(3)
			m.update(func() { m.failReports = n })
		}
	}

	tn.local.SetFault("master", Fault{})
	m.update(func() { m.failReports = 0 })
	epoch++
	for i := 0; i < len(sent); i += 16 {
		tn.mustExecute(epoch, sent[i:min(i+16, len(sent))]...)
	}
	last := func(id OpID) (Outcome, bool) {
		outs := m.outcomes(id)
		for i := len(outs) - 1; i >= 0; i-- {
			if outs[i].Epoch == epoch {
				return outs[i], true
			}
		}
		return Outcome{}, false
	}
	m.waitFor(t, "every operation acknowledged in the last epoch", func() bool {
		for _, op := range sent {
			if _, ok := last(op.ID); !ok {
				return false
			}
		}
		return true
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range sent {
		if n := calls.get(op.ID); n != 1 {
			t.Fatalf("op %d ran %d times", op.ID, n)
		}
		if o, _ := last(op.ID); string(o.Result) != "done "+string(op.Payload) || o.Error != "" {
			t.Fatalf("op %d: outcome %+v", op.ID, o)
		}
	}
	t.Logf("%d operations, %d report calls, %d acknowledged", len(sent), len(m.reportCalls), len(m.reports))
}
