package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/internal/pow2hist"
	"github.com/procyon-dev/procyon/metrics"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// waiterSM waits for the event "a" in state 0, for "b" in state 1, and
// is done in state 2.
type waiterSM struct{}

func (waiterSM) Execute(_ context.Context, _ *procedure.Env, s int, _ *struct{}) (procedure.Next, error) {
	switch s {
	case 0:
		return procedure.WaitEvent(1, "a"), nil
	case 1:
		return procedure.WaitEvent(2, "b"), nil
	}
	return procedure.Done(), nil
}

func (waiterSM) Rollback(context.Context, *procedure.Env, int, *struct{}) error { return nil }

// histText is the exposition of histogram series name{labels} holding
// the durations obs, with the buckets the collector exports.
func histText(name, labels string, obs ...time.Duration) string {
	counts := make([]int64, pow2hist.Buckets)
	var sum time.Duration
	for _, d := range obs {
		counts[pow2hist.Bucket(d, len(counts))]++
		sum += d
	}
	return bucketsText(name, labels, counts, sum)
}

// bucketsText is the exposition of histogram series name{labels} with
// pow2hist's counts: its finite bounds in seconds, the last bucket only in
// +Inf.
func bucketsText(name, labels string, counts []int64, sum time.Duration) string {
	var b strings.Builder
	series := func(suffix, le string) string {
		ls := labels
		if le != "" {
			ls = strings.TrimPrefix(ls+",le="+strconv.Quote(le), ",")
		}
		if ls == "" {
			return name + suffix
		}
		return name + suffix + "{" + ls + "}"
	}
	var cum int64
	for i, c := range counts {
		cum += c
		if i < len(counts)-1 {
			fmt.Fprintf(&b, "%s %d\n", series("_bucket", strconv.FormatFloat(pow2hist.Bound(i).Seconds(), 'g', -1, 64)), cum)
		}
	}
	fmt.Fprintf(&b, "%s %d\n", series("_bucket", "+Inf"), cum)
	fmt.Fprintf(&b, "%s %s\n", series("_sum", ""), strconv.FormatFloat(sum.Seconds(), 'g', -1, 64))
	fmt.Fprintf(&b, "%s %d\n", series("_count", ""), cum)
	return b.String()
}

// The procedure duration and event wait histograms hold exactly what the
// engine's clock measured: a root that waited 3 s and then 4 s for its
// events, and one that found them signalled.
func TestCollectorDurations(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	clock := procedure.NewManualClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	store := durable.New(durable.Options{Dir: "/data", FS: vfs.NewMem(), Logger: quiet})
	eng := procedure.New(store, procedure.Options{Logger: quiet, Clock: clock})
	waiter := procedure.Register[int, struct{}](eng, "waiter", waiterSM{}, nil)
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop()

	a, err := waiter.Submit(ctx, struct{}{}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, event := range []string{"a", "b"} {
		if _, err := eng.WaitFor(ctx, a, func(in procedure.Info) bool { return in.Status == procedure.Suspended && in.State == int64(i+1) }); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Duration(3+i) * time.Second)
		if err := eng.Signal(ctx, event); err != nil {
			t.Fatal(err)
		}
	}
	b, err := waiter.Submit(ctx, struct{}{}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []procedure.ID{a, b} {
		if r, err := eng.Wait(ctx, id); err != nil || r.Err() != nil {
			t.Fatalf("procedure %d: %v, %v", id, err, r.Err())
		}
	}

	c := metrics.NewCollector(metrics.Options{Engine: eng, Store: store})
	const labels = `type="waiter"`
	want := `# HELP procyon_procedure_duration_seconds How long procedures took from creation to end: a root's submission to its tree's completion (any outcome), a child's creation to its success.
# TYPE procyon_procedure_duration_seconds histogram
` + histText("procyon_procedure_duration_seconds", labels, 7*time.Second, 0) + `# HELP procyon_procedure_event_wait_seconds How long event waits lasted, from the suspending commit to the wake-up by the signal or a handled timeout (0: signalled already).
# TYPE procyon_procedure_event_wait_seconds histogram
` + histText("procyon_procedure_event_wait_seconds", labels, 3*time.Second, 4*time.Second, 0, 0) + `# HELP procyon_procedure_event_waits_total Steps committed that wait for an event (WaitEvent).
# TYPE procyon_procedure_event_waits_total counter
procyon_procedure_event_waits_total{type="waiter"} 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "procyon_procedure_duration_seconds",
		"procyon_procedure_event_wait_seconds", "procyon_procedure_event_waits_total"); err != nil {
		t.Fatal(err)
	}

	// The store's commit latency histogram is its Stats' (still now: the
	// engine is idle).
	st := store.Stats()
	if st.Groups < 5 {
		t.Fatalf("%d group commits for 2 submissions, 2 signals and 6 steps", st.Groups)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(storeCommitText(st)), "procyon_store_commit_seconds"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// storeCommitText is the exposition of procyon_store_commit_seconds for
// st.
func storeCommitText(st durable.Stats) string {
	return "# HELP procyon_store_commit_seconds Group commit latency: how long batches of transactions made durable together took from append to durable.\n" +
		"# TYPE procyon_store_commit_seconds histogram\n" +
		bucketsText("procyon_store_commit_seconds", "", st.CommitLatency[:], st.GroupTime)
}
