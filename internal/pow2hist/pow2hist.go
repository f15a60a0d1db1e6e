// Package pow2hist is the latency histogram shape the packages share:
// bucket i counts durations d with 2^(i-1) µs <= d < 2^i µs (bucket 0:
// under 1 µs), the last bucket also everything above. Callers keep the
// counts (atomics, arrays) their own way; this package maps durations to
// buckets and counts to quantiles, so that every histogram in procyon
// reads the same.
package pow2hist

import (
	"math"
	"math/bits"
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
