// Package pow2hist is the latency histogram shape the packages share:
// bucket i counts durations d with 2^(i-1) µs <= d < 2^i µs (bucket 0:
// under 1 µs), the last bucket also everything above. Callers keep the
// counts (atomics, arrays) their own way; this package maps durations to
// buckets and counts to quantiles, so that every histogram in procyon
// reads the same. Recorder is a ready-made one, for the histograms that
// need no other shape.
package pow2hist

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Bucket returns the bucket of d among n buckets.
func Bucket(d time.Duration, n int) int {
	us := uint64(max(d, 0) / time.Microsecond)
	return min(bits.Len64(us), n-1)
}

// Bound returns bucket i's upper bound.
func Bound(i int) time.Duration { return time.Duration(1<<i) * time.Microsecond }

// Quantile returns the upper bound of the bucket holding the q-quantile
// (0 < q <= 1, nearest rank) of counts, or 0 if counts are all zero.
func Quantile(counts []int64, q float64) time.Duration {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(total))), 1)
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return Bound(i)
		}
	}
	return Bound(len(counts) - 1)
}

// Buckets is the number of buckets a Recorder keeps: the last one counts
// durations of 2^(Buckets-2) µs (about 67 s) and above.
const Buckets = 28

// Recorder counts durations into Buckets buckets, with their number and
// sum. Observe is safe for concurrent use and allocates nothing; the zero
// Recorder is empty and ready.
type Recorder struct {
	counts [Buckets]atomic.Int64
	n, sum atomic.Int64
}

// Observe counts d.
func (r *Recorder) Observe(d time.Duration) {
	r.counts[Bucket(d, Buckets)].Add(1)
	r.n.Add(1)
	r.sum.Add(int64(d))
}

// Load returns the bucket counts, how many durations were observed, and
// their sum. Read while Observe runs elsewhere, the three may each miss
// an observation in flight.
func (r *Recorder) Load() (counts [Buckets]int64, n int64, sum time.Duration) {
	for i := range counts {
		counts[i] = r.counts[i].Load()
	}
	return counts, r.n.Load(), time.Duration(r.sum.Load())
}
