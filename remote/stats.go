package remote

import (
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/internal/pow2hist"
	"github.com/procyon-dev/procyon/procedure"
)

// NodeStats are one node's dispatch counters (Dispatcher.Stats), summed
// over its incarnations since Start. Operations per batch is
// OpsSent/Batches.
type NodeStats struct {
	Node        string
	Incarnation uint64 // the latest
	Live        bool
	Queued      int   // waiting to be sent (or resent)
	InFlight    int   // sent and not yet reported
	Batches     int64 // requests that succeeded
	OpsSent     int64 // operations in them
	Failures    int64 // requests that failed (transport error, timeout, refusal)
	Retries     int64 // batches put back to be resent
	// RTT is the round-trip time of the requests that succeeded.
	RTT procedure.Histogram
}

// rttBuckets: power-of-two µs buckets up to about 134 s (pow2hist).
const rttBuckets = 28

type nodeStats struct {
	batches, opsSent, failures, retries atomic.Int64
	rtt                                 [rttBuckets]atomic.Int64
	rttSum                              atomic.Int64
}

func newNodeStats() *nodeStats { return &nodeStats{} }

func (s *nodeStats) observe(rtt time.Duration, ops int) {
	s.batches.Add(1)
	s.opsSent.Add(int64(ops))
	s.rtt[pow2hist.Bucket(rtt, rttBuckets)].Add(1)
	s.rttSum.Add(int64(rtt))
}

func (s *nodeStats) snapshot(out *NodeStats) {
	out.Batches, out.OpsSent = s.batches.Load(), s.opsSent.Load()
	out.Failures, out.Retries = s.failures.Load(), s.retries.Load()
	h := procedure.Histogram{Sum: time.Duration(s.rttSum.Load()),
		Bounds: make([]time.Duration, rttBuckets), Buckets: make([]int64, rttBuckets)}
	for i := range rttBuckets {
		h.Bounds[i] = pow2hist.Bound(i)
		h.Buckets[i] = s.rtt[i].Load()
		h.Count += h.Buckets[i]
	}
	out.RTT = h
}

// Stats returns the dispatch counters of every node, by name.
func (d *Dispatcher) Stats() []NodeStats {
	var out []NodeStats
	for _, in := range d.Nodes() {
		d.mu.Lock()
		n := d.mu.nodes[in.Name]
		snd := n.snd
		d.mu.Unlock()
		ns := NodeStats{Node: in.Name, Incarnation: in.Incarnation, Live: in.Live}
		if snd != nil {
			ns.Queued, ns.InFlight = snd.counts()
		}
		n.st.snapshot(&ns)
		out = append(out, ns)
	}
	return out
}
