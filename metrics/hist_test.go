package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A power-of-two histogram becomes cumulative buckets with upper bounds in
// seconds; the open last bucket counts only in the total.
func TestConstHistogram(t *testing.T) {
	desc := prometheus.NewDesc("x_seconds", "x", nil, nil)
	m := constHistogram(desc, []int64{1, 2, 3}, 1500*time.Millisecond)
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	h := out.GetHistogram()
	if h.GetSampleCount() != 6 || h.GetSampleSum() != 1.5 {
		t.Fatalf("count %d, sum %v; want 6, 1.5", h.GetSampleCount(), h.GetSampleSum())
	}
	want := []struct {
		le  float64
		cum uint64
	}{{1e-6, 1}, {2e-6, 3}}
	if len(h.GetBucket()) != len(want) {
		t.Fatalf("buckets %v", h.GetBucket())
	}
	for i, b := range h.GetBucket() {
		if b.GetUpperBound() != want[i].le || b.GetCumulativeCount() != want[i].cum {
			t.Errorf("bucket %d: le %v count %d, want le %v count %d", i, b.GetUpperBound(), b.GetCumulativeCount(), want[i].le, want[i].cum)
		}
	}
}
