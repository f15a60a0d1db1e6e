package procedure

import (
	"context"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/internal/pow2hist"
)

// checkHist fails the test unless h holds exactly the durations want.
func checkHist(t *testing.T, what string, h Histogram, want ...time.Duration) {
	t.Helper()
	counts := make([]int64, len(h.Buckets))
	var sum time.Duration
	for _, d := range want {
		counts[pow2hist.Bucket(d, len(counts))]++
		sum += d
	}
	if h.Count != int64(len(want)) || h.Sum != sum {
		t.Errorf("%s: %d observations, sum %v; want %d, %v", what, h.Count, h.Sum, len(want), sum)
	}
	for i := range counts {
		if h.Buckets[i] != counts[i] {
			t.Errorf("%s: bucket %d (under %v) counts %d, want %d", what, i, h.Bounds[i], h.Buckets[i], counts[i])
		}
	}
}

// Stats time procedures on the engine's clock, from creation to their
// end (a root's tree completing, whatever the outcome; a child's
// success), and event waits from the suspending commit to the wake-up
// (0 when the event was signalled already; a timeout with OnTimeout
// ends one too).
func TestStatsDurationAndEventWait(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fw := newFlowWorld(t, Options{Clock: clock})
	defer fw.close()
	signal := func(event string) {
		t.Helper()
		if err := fw.e.Signal(context.Background(), event); err != nil {
			t.Fatal(err)
		}
	}

	// a waits 3 s for "go" and then completes: 3 s in all.
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "go"}, {}}})
	fw.waitStatus(a, Suspended)
	clock.Advance(3 * time.Second)
	signal("go")
	fw.wait(a)
	// b finds "go" signalled: no wait, no time.
	fw.wait(fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{Wait: "go"}, {}}}))
	// p's child k waits 5 s for "k"; k and then p end at once after.
	p := fw.submit(fw.flow, flow{Name: "p", Steps: []flowStep{{Kids: []flow{{Name: "k", Steps: []flowStep{{Wait: "k"}}}}}, {}}})
	waitFor(t, "child suspended", func() bool { return fw.e.Stats().Suspended == 1 })
	clock.Advance(5 * time.Second)
	signal("k")
	fw.wait(p)
	// f waits 2 s for "f", fails, and rolls back.
	f := fw.submit(fw.flow, flow{Name: "f", Steps: []flowStep{{Wait: "f"}, {Fail: true}}})
	fw.waitStatus(f, Suspended)
	clock.Advance(2 * time.Second)
	signal("f")
	if r := fw.wait(f); r.Status != RolledBack {
		t.Fatalf("f: %v", r.Status)
	}
	// h's timeout ends its wait after a minute; OnTimeout finishes it.
	h := fw.submit(fw.handler, flow{Name: "h", Steps: []flowStep{{Wait: "never"}, {}, {}}, TimeoutTo: 2}, SubmitOptions{Timeout: time.Minute})
	fw.waitStatus(h, Suspended)
	clock.Advance(time.Minute)
	if r := fw.wait(h); r.Err() != nil {
		t.Fatal(r.Err())
	}

	st := fw.e.Stats().Types
	if got := st["flow"].EventWaits; got != 4 {
		t.Errorf("flow: %d event waits, want 4", got)
	}
	checkHist(t, "flow event wait", st["flow"].EventWait, 3*time.Second, 0, 5*time.Second, 2*time.Second)
	checkHist(t, "flow duration", st["flow"].Duration, 3*time.Second, 0, 5*time.Second, 5*time.Second, 2*time.Second)
	if got := st["flow-handler"].EventWaits; got != 1 {
		t.Errorf("flow-handler: %d event waits, want 1", got)
	}
	checkHist(t, "flow-handler event wait", st["flow-handler"].EventWait, time.Minute)
	checkHist(t, "flow-handler duration", st["flow-handler"].Duration, time.Minute)
	checkHist(t, "flow-hold duration", st["flow-hold"].Duration)
}

// A wait whose event was signalled before a crash, but whose procedure
// had not committed a step since, ends at recovery: the restarted engine
// counts it from the suspending commit.
func TestStatsEventWaitRecovered(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fw := newFlowWorld(t, Options{Clock: clock})
	defer fw.close()
	fw.gates.set("flow:a:1")
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "go"}, {Gate: true}, {}}})
	fw.waitStatus(a, Suspended)
	clock.Advance(7 * time.Second)
	if err := fw.e.Signal(context.Background(), "go"); err != nil {
		t.Fatal(err)
	}
	reach(t, fw.gates, "flow:a:1") // woken; its record still says suspended
	crashed := fw.fs.CrashClone(1)
	fw.gates.open("flow:a:1")
	fw.close()
	fw.fs = crashed
	clock.Advance(time.Second)
	fw.open()
	checkHist(t, "event wait after the restart", fw.e.Stats().Types["flow"].EventWait, 8*time.Second)
	fw.wait(a)
}
