package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/remote"
)

// remoteMetrics reads remote.Dispatcher.Stats: one series per node.
type remoteMetrics struct {
	d *remote.Dispatcher
	descs
	live, queued, inFlight, batches, opsSent, failures, retries, rtt *prometheus.Desc
}

func newRemoteMetrics(ns string, d *remote.Dispatcher) *remoteMetrics {
	m := &remoteMetrics{d: d}
	ns += "_remote"
	m.live = m.add(ns, "node_live", "1 if the node is live (its lease holds), 0 if it died.", "node")
	m.queued = m.add(ns, "operations_queued", "Operations waiting to be sent (or resent) to the node.", "node")
	m.inFlight = m.add(ns, "operations_in_flight", "Operations sent to the node and not yet reported.", "node")
	m.batches = m.add(ns, "batches_total", "Requests to the node that succeeded.", "node")
	m.opsSent = m.add(ns, "operations_sent_total", "Operations in the requests that succeeded.", "node")
	m.failures = m.add(ns, "request_failures_total", "Requests to the node that failed (transport error, timeout, refusal).", "node")
	m.retries = m.add(ns, "batch_retries_total", "Batches put back to be resent.", "node")
	m.rtt = m.add(ns, "round_trip_seconds", "Round-trip time of the requests that succeeded.", "node")
	return m
}

func (m *remoteMetrics) collect(ch chan<- prometheus.Metric) {
	for _, ns := range m.d.Stats() {
		live := 0.0
		if ns.Live {
			live = 1
		}
		ch <- gauge(m.live, live, ns.Node)
		ch <- gauge(m.queued, float64(ns.Queued), ns.Node)
		ch <- gauge(m.inFlight, float64(ns.InFlight), ns.Node)
		ch <- counter(m.batches, ns.Batches, ns.Node)
		ch <- counter(m.opsSent, ns.OpsSent, ns.Node)
		ch <- counter(m.failures, ns.Failures, ns.Node)
		ch <- counter(m.retries, ns.Retries, ns.Node)
		ch <- fromHistogram(m.rtt, ns.RTT, ns.Node)
	}
}
