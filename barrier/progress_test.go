package barrier_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/procyon-dev/procyon/barrier"
)

// gated returns a behavior whose Acquire waits until acquire is closed
// and whose Inside waits until inside is closed.
func gated(acquire, inside chan struct{}) behavior {
	pass := func(ctx context.Context, gate chan struct{}) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return behavior{
		acquire: func(ctx context.Context) error { return pass(ctx, acquire) },
		inside: func(ctx context.Context) ([]byte, error) {
			return []byte("ok"), pass(ctx, inside)
		},
	}
}

// waitStats waits until cond holds for h's Stats.
func waitStats(t *testing.T, h *barrier.Handle, what string, cond func(barrier.Stats) bool) barrier.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s, err := h.WaitFor(ctx, cond)
	if err != nil {
		t.Fatalf("%s: waiting until %s: %v; stats %+v", h.Name(), what, err, s)
	}
	return s
}

// phasesAre reports whether s's members are at the given phases, in
// member order.
func phasesAre(want ...barrier.Phase) func(barrier.Stats) bool {
	return func(s barrier.Stats) bool {
		return slices.Equal(memberPhases(s), want)
	}
}

func memberPhases(s barrier.Stats) []barrier.Phase {
	out := make([]barrier.Phase, len(s.Members))
	for i, m := range s.Members {
		out[i] = m.Phase
	}
	return out
}

// checkRunning checks that Running lists exactly the procedures of want,
// in name order, each with its members at the given phases (in member
// order), and whether it reached the barrier.
func checkRunning(t *testing.T, c *barrier.Coordinator, step string, want ...runningWant) {
	t.Helper()
	got := c.Running()
	if len(got) != len(want) {
		t.Fatalf("%s: Running() = %+v, want %d procedures", step, got, len(want))
	}
	for i, w := range want {
		s := got[i]
		switch {
		case s.Name != w.name || s.Type != "test" || s.Instance == 0 || s.Finished || s.Total <= 0:
			t.Errorf("%s: Running()[%d] = %+v, want %s running", step, i, s, w.name)
		case !slices.Equal(memberPhases(s), w.phases):
			t.Errorf("%s: %s's member phases %v, want %v", step, s.Name, memberPhases(s), w.phases)
		case (s.Acquire > 0) != w.reached:
			t.Errorf("%s: %s: Acquire %v, want the barrier reached: %v", step, s.Name, s.Acquire, w.reached)
		}
	}
}

type runningWant struct {
	name    string
	phases  []barrier.Phase
	reached bool
}

// TestRunningShowsProgress holds members in Acquire and Inside and checks
// that Running reports each member's phase as it moves, sorted by name,
// and that a finished procedure leaves the list.
func TestRunningShowsProgress(t *testing.T) {
	const joined, acquired, done = barrier.PhaseJoined, barrier.PhaseAcquired, barrier.PhaseDone
	c := newCluster(t, &inprocEnv{tr: barrier.NewInProc()}, clusterOptions{})
	gates := map[string][2]chan struct{}{}
	bs := map[string]behavior{}
	members := []string{"m1", "m2"}
	for _, m := range members {
		gates[m] = [2]chan struct{}{make(chan struct{}), make(chan struct{})}
		bs[m] = gated(gates[m][0], gates[m][1])
	}
	c.startMembers(members, bs, barrier.MemberOptions{})
	if got := c.coord.Running(); got == nil || len(got) != 0 {
		t.Fatalf("Running() before any start = %#v, want an empty list", got)
	}

	// zeta runs on m1 alone, snap on both; m1's gates hold both.
	zeta := c.start(context.Background(), "zeta", []string{"m1"})
	snap := c.start(context.Background(), "snap", members)
	waitStats(t, zeta, "m1 joined", phasesAre(joined))
	waitStats(t, snap, "both joined", phasesAre(joined, joined))
	checkRunning(t, c.coord, "both acquiring",
		runningWant{"snap", []barrier.Phase{joined, joined}, false},
		runningWant{"zeta", []barrier.Phase{joined}, false})

	close(gates["m1"][0])
	waitStats(t, zeta, "zeta reached", func(s barrier.Stats) bool { return s.Acquire > 0 })
	waitStats(t, snap, "m1 acquired", phasesAre(acquired, joined))
	checkRunning(t, c.coord, "m1 acquired",
		runningWant{"snap", []barrier.Phase{acquired, joined}, false},
		runningWant{"zeta", []barrier.Phase{acquired}, true})

	close(gates["m2"][0])
	waitStats(t, snap, "snap reached", func(s barrier.Stats) bool { return s.Acquire > 0 })
	checkRunning(t, c.coord, "both inside",
		runningWant{"snap", []barrier.Phase{acquired, acquired}, true},
		runningWant{"zeta", []barrier.Phase{acquired}, true})

	close(gates["m1"][1])
	if _, err := wait(t, zeta); err != nil {
		t.Fatalf("zeta: %v", err)
	}
	waitStats(t, snap, "m1 done", phasesAre(done, acquired))
	checkRunning(t, c.coord, "zeta finished",
		runningWant{"snap", []barrier.Phase{done, acquired}, true})

	// Running returns copies.
	got := c.coord.Running()
	got[0].Members[0].Phase = 0
	if s := snap.Stats(); s.Members[0].Phase != done {
		t.Fatalf("changing Running's result changed the handle's stats: %+v", s)
	}

	close(gates["m2"][1])
	if _, err := wait(t, snap); err != nil {
		t.Fatalf("snap: %v", err)
	}
	checkRunning(t, c.coord, "both finished")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if s, err := snap.WaitFor(ctx, func(barrier.Stats) bool { return false }); !errors.Is(err, barrier.ErrFinished) || !s.Finished {
		t.Fatalf("WaitFor on a finished procedure: %v, %+v; want ErrFinished", err, s)
	}
}
