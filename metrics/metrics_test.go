package metrics_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/metrics"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/vfs"
)

// shout upper-cases a word on a node; "bad" fails there.
var shout = remote.OpType[string, string]{Name: "shout"}

type greeting struct {
	Word string      `json:"word"`
	Op   remote.OpID `json:"op,omitempty"`
}

type greetSM struct{ d *remote.Dispatcher }

func (sm greetSM) Execute(ctx context.Context, env *procedure.Env, s int, g *greeting) (procedure.Next, error) {
	if s == 0 {
		op, err := shout.Call(sm.d, env, "n1", g.Word)
		if err != nil {
			return procedure.Next{}, err
		}
		g.Op = op
		return remote.Await(1, op), nil
	}
	if _, err := shout.Outcome(sm.d, env, g.Op); err != nil {
		return procedure.Next{}, err
	}
	return procedure.Done(), nil
}

func (greetSM) Rollback(context.Context, *procedure.Env, int, *greeting) error { return nil }

// holdSM's only step waits until release is closed.
type holdSM struct{ release chan struct{} }

func (sm holdSM) Execute(ctx context.Context, _ *procedure.Env, _ int, _ *struct{}) (procedure.Next, error) {
	select {
	case <-sm.release:
		return procedure.Done(), nil
	case <-ctx.Done():
		return procedure.Next{}, ctx.Err()
	}
}

func (holdSM) Rollback(context.Context, *procedure.Env, int, *struct{}) error { return nil }

// master is an engine and a store on an in-memory FS, a dispatcher on
// Local and a node "n1" serving shout.
type master struct {
	store   *durable.Store
	eng     *procedure.Engine
	disp    *remote.Dispatcher
	greet   *procedure.Type[int, greeting]
	hold    *procedure.Type[int, struct{}]
	release chan struct{}
}

func newMaster(t *testing.T) *master {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	tr := remote.NewLocal()
	m := &master{release: make(chan struct{})}
	m.store = durable.New(durable.Options{Dir: "/data", FS: vfs.NewMem(), Logger: quiet})
	m.eng = procedure.New(m.store, procedure.Options{Logger: quiet, Workers: 2})
	m.disp = remote.NewDispatcher(m.eng, tr, remote.Options{Logger: quiet})
	m.greet = procedure.Register[int, greeting](m.eng, "greet", greetSM{m.disp}, nil)
	m.hold = procedure.Register[int, struct{}](m.eng, "hold", holdSM{m.release}, nil)
	if err := m.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.eng.Stop() })
	if err := m.disp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.disp.Stop() })
	tr.ServeMaster("master", m.disp.Service())
	n, err := remote.NewNode(remote.NodeOptions{Name: "n1", Addr: "n1", Master: "master", Transport: tr, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	remote.Handle(n, shout, func(ctx context.Context, word string) (string, error) {
		if word == "bad" {
			return "", errors.New("bad word")
		}
		return strings.ToUpper(word), nil
	})
	tr.ServeNode("n1", n.Service())
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return m
}

// run submits a greeting for each word and waits for them all; it returns
// how many failed.
func (m *master) run(t *testing.T, words ...string) int {
	t.Helper()
	ctx := context.Background()
	failed := 0
	for _, w := range words {
		id, err := m.greet.Submit(ctx, greeting{Word: w}, procedure.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.greet.Result(m.eng.Wait(ctx, id)); err != nil {
			failed++
		}
	}
	return failed
}

// value returns the value of the one series of name whose labels include
// labels (name=value pairs), and whether there is one: a counter's or
// gauge's value, a histogram's count.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue(), true
				case m.Gauge != nil:
					return m.Gauge.GetValue(), true
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount()), true
				}
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

func mustValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(t, reg, name, labels...)
	if !ok {
		t.Fatalf("no series %s %v", name, labels)
	}
	return v
}

// A collector over a real engine, store and dispatcher reports what ran:
// exact outcome counters, the step and round-trip histograms, the WAL and
// the snapshot; the names pass Prometheus' lint.
func TestCollector(t *testing.T) {
	m := newMaster(t)
	if failed := m.run(t, "a", "b", "bad", "c"); failed != 1 {
		t.Fatalf("%d greetings failed, want 1", failed)
	}
	if _, err := m.store.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := metrics.NewCollector(metrics.Options{Engine: m.eng, Store: m.store, Dispatcher: m.disp})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	const want = `
# HELP procyon_procedure_finished_total Procedures finished, by outcome: succeeded, rolled_back (roots), aborted (roots), bypassed.
# TYPE procyon_procedure_finished_total counter
procyon_procedure_finished_total{outcome="aborted",type="greet"} 0
procyon_procedure_finished_total{outcome="aborted",type="hold"} 0
procyon_procedure_finished_total{outcome="bypassed",type="greet"} 0
procyon_procedure_finished_total{outcome="bypassed",type="hold"} 0
procyon_procedure_finished_total{outcome="rolled_back",type="greet"} 1
procyon_procedure_finished_total{outcome="rolled_back",type="hold"} 0
procyon_procedure_finished_total{outcome="succeeded",type="greet"} 3
procyon_procedure_finished_total{outcome="succeeded",type="hold"} 0
# HELP procyon_procedure_submitted_total Root procedures submitted.
# TYPE procyon_procedure_submitted_total counter
procyon_procedure_submitted_total{type="greet"} 4
procyon_procedure_submitted_total{type="hold"} 0
# HELP procyon_procedure_step_failures_total Steps that failed (each starts a rollback).
# TYPE procyon_procedure_step_failures_total counter
procyon_procedure_step_failures_total{type="greet"} 1
procyon_procedure_step_failures_total{type="hold"} 0
# HELP procyon_procedure_steps_total Steps committed, by direction: forward or rollback.
# TYPE procyon_procedure_steps_total counter
procyon_procedure_steps_total{direction="forward",type="greet"} 8
procyon_procedure_steps_total{direction="forward",type="hold"} 0
procyon_procedure_steps_total{direction="rollback",type="greet"} 2
procyon_procedure_steps_total{direction="rollback",type="hold"} 0
# HELP procyon_store_snapshots_total Snapshots written.
# TYPE procyon_store_snapshots_total counter
procyon_store_snapshots_total 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"procyon_procedure_finished_total", "procyon_procedure_submitted_total", "procyon_procedure_step_failures_total",
		"procyon_procedure_steps_total", "procyon_store_snapshots_total"); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	// 4 greetings called Execute 8 times, and the failed one Rollback twice.
	if got := mustValue(t, reg, "procyon_procedure_step_duration_seconds", "type", "greet"); got != 10 {
		t.Errorf("step duration count %v, want 10", got)
	}
	// Each greeting waited once for its operation's event, and ended.
	for name, want := range map[string]float64{"procyon_procedure_duration_seconds": 4,
		"procyon_procedure_event_waits_total": 4, "procyon_procedure_event_wait_seconds": 4} {
		if got := mustValue(t, reg, name, "type", "greet"); got != want {
			t.Errorf("%s{type=greet} = %v, want %v", name, got, want)
		}
	}
	if got := mustValue(t, reg, "procyon_remote_operations_sent_total", "node", "n1"); got < 4 {
		t.Errorf("operations sent to n1: %v, want at least 4", got)
	}
	if rtt, batches := mustValue(t, reg, "procyon_remote_round_trip_seconds", "node", "n1"),
		mustValue(t, reg, "procyon_remote_batches_total", "node", "n1"); rtt != batches || batches < 1 {
		t.Errorf("round trips %v, batches %v: want equal and at least 1", rtt, batches)
	}
	if got := mustValue(t, reg, "procyon_remote_node_live", "node", "n1"); got != 1 {
		t.Errorf("n1 live = %v", got)
	}
	if got := mustValue(t, reg, "procyon_remote_operations_in_flight", "node", "n1"); got != 0 {
		t.Errorf("in flight after all reported: %v", got)
	}
	st := m.store.Stats()
	if got := mustValue(t, reg, "procyon_store_commit_seconds"); got != float64(st.Groups) || got < 1 {
		t.Errorf("commit latency count %v, store stats say %d groups", got, st.Groups)
	}
	if got := mustValue(t, reg, "procyon_wal_fsyncs_total"); got != float64(st.WAL.Syncs) || got < 1 {
		t.Errorf("fsyncs %v, WAL stats say %d", got, st.WAL.Syncs)
	}
	if got := mustValue(t, reg, "procyon_wal_fsync_duration_seconds"); got != float64(st.WAL.Syncs) {
		t.Errorf("fsync latency count %v, want %d", got, st.WAL.Syncs)
	}
	if got := mustValue(t, reg, "procyon_store_snapshot_size_bytes"); got <= 0 || got != float64(st.SnapshotSize) {
		t.Errorf("snapshot size %v, store says %d", got, st.SnapshotSize)
	}
	if _, ok := value(t, reg, "procyon_procedure_active"); ok {
		t.Errorf("active procedures reported with none live")
	}
	if got := mustValue(t, reg, "procyon_procedure_oldest_active_age_seconds"); got != 0 {
		t.Errorf("oldest age %v with none live", got)
	}
}

// A procedure that runs shows as active, and the oldest age grows from
// its creation.
func TestCollectorActive(t *testing.T) {
	m := newMaster(t)
	ctx := context.Background()
	id, err := m.hold.Submit(ctx, struct{}{}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.eng.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(metrics.Options{Engine: m.eng, Namespace: "cp"}))
	if got := mustValue(t, reg, "cp_procedure_active", "status", "runnable"); got != 1 {
		t.Errorf("runnable %v, want 1", got)
	}
	before := mustValue(t, reg, "cp_procedure_oldest_active_age_seconds")
	if sinceCreated := mustValue(t, reg, "cp_procedure_oldest_active_age_seconds"); before <= 0 || sinceCreated < before {
		t.Errorf("oldest age %v then %v, want > 0 and not decreasing (created %v)", before, sinceCreated, info.Created)
	}
	if _, ok := value(t, reg, "procyon_procedure_active"); ok {
		t.Errorf("the default namespace used with Namespace set")
	}
	close(m.release)
	if _, err := m.eng.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// A collector over no components exports nothing, and registering it is
// fine.
func TestCollectorNil(t *testing.T) {
	c := metrics.NewCollector(metrics.Options{})
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("%d metrics from no components", n)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 0 {
		t.Fatalf("gather: %d families, %v", len(mfs), err)
	}
}
