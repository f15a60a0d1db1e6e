package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/internal/pow2hist"
	"github.com/procyon-dev/procyon/procedure"
)

// constHistogram converts a power-of-two histogram (pow2hist: bucket i
// counts durations under 2^i µs, the last one also everything above) to a
// Prometheus histogram in seconds. The last bucket is open, so its bound
// is left out: its observations only count in +Inf (the count).
func constHistogram(desc *prometheus.Desc, counts []int64, sum time.Duration, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(counts))
	var cum uint64
	for i, c := range counts {
		cum += uint64(max(c, 0))
		if i < len(counts)-1 {
			buckets[pow2hist.Bound(i).Seconds()] = cum
		}
	}
	return prometheus.MustNewConstHistogram(desc, cum, sum.Seconds(), buckets, labels...)
}

// fromHistogram converts the engine's histogram snapshot.
func fromHistogram(desc *prometheus.Desc, h procedure.Histogram, labels ...string) prometheus.Metric {
	return constHistogram(desc, h.Buckets, h.Sum, labels...)
}

// counter, gauge and the rest keep the collect functions short.
func counter(desc *prometheus.Desc, v int64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
}

func gauge(desc *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
}

// descs collects the descriptors a part defines, for describe.
type descs []*prometheus.Desc

func (d *descs) add(ns, name, help string, labels ...string) *prometheus.Desc {
	desc := prometheus.NewDesc(ns+"_"+name, help, labels, nil)
	*d = append(*d, desc)
	return desc
}

func (d descs) describe(ch chan<- *prometheus.Desc) {
	for _, desc := range d {
		ch <- desc
	}
}
