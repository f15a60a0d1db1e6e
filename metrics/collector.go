package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

// Options say which components a collector reads.
type Options struct {
	// Engine is the procedure engine to report on. Default: none (no
	// procyon_procedure_* metrics).
	Engine *procedure.Engine
	// Store is the durable store to report on. Default: none (no
	// procyon_store_* and procyon_wal_* metrics).
	Store *durable.Store
	// Dispatcher is the remote dispatcher to report on. Default: none (no
	// procyon_remote_* metrics).
	Dispatcher *remote.Dispatcher
	// Namespace prefixes every metric name. Default: "procyon".
	Namespace string
}

func (o *Options) ensureDefaults() {
	if o.Namespace == "" {
		o.Namespace = "procyon"
	}
}

// collector reads its components' Stats at each scrape.
type collector struct {
	parts []part
}

// part is the metrics of one component.
type part interface {
	describe(ch chan<- *prometheus.Desc)
	collect(ch chan<- prometheus.Metric)
}

var _ prometheus.Collector = (*collector)(nil)

// NewCollector returns a collector of the components in opts that are not
// nil. It keeps no state of its own: each Collect reads their Stats.
func NewCollector(opts Options) prometheus.Collector {
	opts.ensureDefaults()
	c := &collector{}
	if opts.Engine != nil {
		c.parts = append(c.parts, newEngineMetrics(opts.Namespace, opts.Engine))
	}
	if opts.Store != nil {
		c.parts = append(c.parts, newStoreMetrics(opts.Namespace, opts.Store))
	}
	if opts.Dispatcher != nil {
		c.parts = append(c.parts, newRemoteMetrics(opts.Namespace, opts.Dispatcher))
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, p := range c.parts {
		p.describe(ch)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.parts {
		p.collect(ch)
	}
}
