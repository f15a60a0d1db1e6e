package tstest_test

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
)

// scrape reads the master's /metrics.
func scrape(t *testing.T, c *tstest.Cluster) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + c.MasterAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// sum adds up the series of name whose labels include labels (pairs).
func sum(mfs map[string]*dto.MetricFamily, name string, labels ...string) (total float64, series int) {
	for _, m := range mfs[name].GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		series++
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total, series
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

// TestMetricsEndpoint scrapes the master's /metrics before and after a
// table is created: the counters of the engine, the store, its WAL and
// the dispatcher move, and every region server shows as live.
func TestMetricsEndpoint(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	before := scrape(t, c)
	if live, n := sum(before, "procyon_remote_node_live"); live != 3 || n != 3 {
		t.Fatalf("%v of %d servers live, want 3 of 3", live, n)
	}
	createTable(t, c, "tm", "m")

	after := scrape(t, c)
	if got, _ := sum(after, "procyon_procedure_submitted_total", "type", "create-table"); got != 1 {
		t.Errorf("create-table submitted %v, want 1", got)
	}
	if got, _ := sum(after, "procyon_procedure_finished_total", "type", "create-table", "outcome", "succeeded"); got != 1 {
		t.Errorf("create-table succeeded %v, want 1", got)
	}
	for _, name := range []string{"procyon_store_commits_total", "procyon_wal_fsyncs_total", "procyon_remote_operations_sent_total"} {
		b, _ := sum(before, name)
		a, _ := sum(after, name)
		if a <= b {
			t.Errorf("%s: %v before the create, %v after", name, b, a)
		}
	}
	// Two regions were opened on the servers: at least one operation each.
	if sent, _ := sum(after, "procyon_remote_operations_sent_total"); sent < 2 {
		t.Errorf("operations sent %v, want at least 2", sent)
	}
	h := after["procyon_procedure_step_duration_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("step duration is a %v, want a histogram", h.GetType())
	}
	for _, m := range h.GetMetric() {
		if hasLabels(m, []string{"type", "create-table"}) && m.GetHistogram().GetSampleCount() == 0 {
			t.Errorf("create-table ran no timed step")
		}
	}
}
