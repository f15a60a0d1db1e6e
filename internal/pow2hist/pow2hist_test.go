package pow2hist

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0}, {0, 0}, {999 * time.Nanosecond, 0}, {time.Microsecond, 1},
		{3 * time.Microsecond, 2}, {4 * time.Microsecond, 3}, {100 * time.Microsecond, 7}, {time.Hour, 7},
	} {
		if got := Bucket(tc.d, 8); got != tc.want {
			t.Errorf("Bucket(%v, 8) = %d, want %d", tc.d, got, tc.want)
		}
		if tc.d >= 0 && tc.want < 7 && tc.d >= Bound(tc.want) {
			t.Errorf("%v is not below its bucket's bound %v", tc.d, Bound(tc.want))
		}
	}
}

func TestQuantile(t *testing.T) {
	counts := []int64{0, 10, 0, 80, 9, 1} // 100 observations
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.01, 2 * time.Microsecond}, {0.10, 2 * time.Microsecond}, {0.11, 8 * time.Microsecond},
		{0.5, 8 * time.Microsecond}, {0.90, 8 * time.Microsecond}, {0.99, 16 * time.Microsecond},
		{1, 32 * time.Microsecond},
	} {
		if got := Quantile(counts, tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := Quantile(make([]int64, 4), 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
}

// A Recorder counts each duration in its bucket, with the number and the
// sum.
func TestRecorder(t *testing.T) {
	var r Recorder
	for _, d := range []time.Duration{0, 3 * time.Microsecond, 3 * time.Microsecond, time.Hour} {
		r.Observe(d)
	}
	counts, n, sum := r.Load()
	want := [Buckets]int64{}
	want[0], want[2], want[Buckets-1] = 1, 2, 1
	if counts != want || n != 4 || sum != time.Hour+6*time.Microsecond {
		t.Fatalf("counts %v, n %d, sum %v", counts, n, sum)
	}
}
