package metrics_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/metrics"
	"github.com/procyon-dev/procyon/procedure"
)

// stepsSM goes through three states and is done.
type stepsSM struct{}

func (stepsSM) Execute(_ context.Context, _ *procedure.Env, s int, _ *struct{}) (procedure.Next, error) {
	if s < 2 {
		return procedure.GoTo(s + 1), nil
	}
	return procedure.Done(), nil
}

func (stepsSM) Rollback(context.Context, *procedure.Env, int, *struct{}) error { return nil }

// scrapeHTTP reads url as Prometheus does, and returns every series'
// values: a counter's or gauge's value, a histogram's _count, _sum and
// each _bucket, by name and labels.
func scrapeHTTP(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := name + seriesLabels(m)
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				out[name+"_count"+seriesLabels(m)] = float64(h.GetSampleCount())
				out[name+"_sum"+seriesLabels(m)] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[name+"_bucket"+seriesLabels(m)+"le="+model.FloatString(b.GetUpperBound()).String()] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func seriesLabels(m *dto.Metric) string {
	var b strings.Builder
	b.WriteString("{")
	for _, lp := range m.GetLabel() {
		b.WriteString(lp.GetName() + "=" + lp.GetValue() + ",")
	}
	b.WriteString("}")
	return b.String()
}

// isGauge reports whether series key is a gauge's: it may go down, or
// go (procyon_procedure_active has a series per status present); the
// rest is cumulative.
func isGauge(gauges map[string]bool, key string) bool {
	return gauges[key[:strings.IndexByte(key, '{')]]
}

// Scraped over HTTP while procedures run on an engine over a store in a
// directory, the counters move between scrapes and none goes backwards.
// Between two scrapes the test waits for a procedure submitted after the
// first one to finish, so each counter listed must have grown.
func TestScrapeDuringWorkload(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	store := durable.New(durable.Options{Dir: t.TempDir(), Logger: quiet})
	eng := procedure.New(store, procedure.Options{Logger: quiet, Workers: 2})
	work := procedure.Register[int, struct{}](eng, "work", stepsSM{}, nil)
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(metrics.Options{Engine: eng, Store: store}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()

	// Clients submit and wait in a loop; each finished procedure reports
	// how many scrapes had been done when it was submitted.
	var scrapes atomic.Int64
	finished := make(chan int64, 64)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				at := scrapes.Load()
				id, err := work.Submit(ctx, struct{}{}, procedure.SubmitOptions{})
				if err == nil {
					_, err = eng.Wait(ctx, id)
				}
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				select {
				case finished <- at:
				default: // the test is not waiting: it scrapes
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	gauges := map[string]bool{}
	for _, name := range []string{"procyon_procedure_active", "procyon_procedure_oldest_active_age_seconds",
		"procyon_procedure_quarantined_trees", "procyon_procedure_run_queue_length", "procyon_procedure_workers",
		"procyon_procedure_stuck_workers", "procyon_procedure_lock_waiting", "procyon_procedure_recovered",
		"procyon_procedure_recovery_duration_seconds", "procyon_store_snapshot_size_bytes",
		"procyon_store_snapshot_duration_seconds", "procyon_store_damaged_files", "procyon_store_recovery_duration_seconds",
		"procyon_wal_segments", "procyon_wal_records_per_fsync"} {
		gauges[name] = true
	}
	moving := []string{
		`procyon_procedure_submitted_total{type=work,}`,
		`procyon_procedure_finished_total{outcome=succeeded,type=work,}`,
		`procyon_procedure_steps_total{direction=forward,type=work,}`,
		`procyon_procedure_duration_seconds_count{type=work,}`,
		`procyon_procedure_step_duration_seconds_count{type=work,}`,
		`procyon_store_commits_total{}`,
		`procyon_store_commit_seconds_count{}`,
		`procyon_wal_records_total{}`,
		`procyon_wal_fsyncs_total{}`,
		`procyon_wal_fsync_duration_seconds_count{}`,
	}
	const rounds = 5
	prev := scrapeHTTP(t, srv.URL)
	for round := 1; round <= rounds; round++ {
		scrapes.Store(int64(round))
		for waiting := true; waiting; {
			select {
			case at := <-finished:
				waiting = at < int64(round)
			case err := <-errs:
				t.Fatalf("workload: %v", err)
			}
		}
		cur := scrapeHTTP(t, srv.URL)
		for _, key := range moving {
			if cur[key] <= prev[key] {
				t.Errorf("round %d: %s went from %v to %v, want it to grow", round, key, prev[key], cur[key])
			}
		}
		for key, was := range prev {
			now, ok := cur[key]
			switch {
			case isGauge(gauges, key):
			case !ok:
				t.Errorf("round %d: %s gone", round, key)
			case now < was:
				t.Errorf("round %d: %s went back from %v to %v", round, key, was, now)
			}
		}
		prev = cur
	}
	if t.Failed() {
		return
	}
	t.Logf("after %d scrapes: %v procedures finished, %v fsyncs", rounds+1,
		prev[`procyon_procedure_finished_total{outcome=succeeded,type=work,}`], prev[`procyon_wal_fsyncs_total{}`])
}
