package wal

import (
	"github.com/procyon-dev/procyon/internal/pow2hist"
	"sync/atomic"
	"time"
)

// syncBuckets is the number of latency buckets: bucket i counts syncs that
// took less than 2^i microseconds (the last one catches the rest).
const syncBuckets = 24

type stats struct {
	appends  atomic.Int64
	bytes    atomic.Int64
	syncs    atomic.Int64
	syncNs   atomic.Int64
	failures atomic.Int64
	segments atomic.Int64
	hist     [syncBuckets]atomic.Int64
}

func (s *stats) noteAppend(records, bytes int) {
	s.appends.Add(int64(records))
	s.bytes.Add(int64(bytes))
}

func (s *stats) observeSync(d time.Duration) {
	s.syncs.Add(1)
	s.syncNs.Add(int64(d))
	s.hist[pow2hist.Bucket(d, syncBuckets)].Add(1)
}

// Stats are cumulative counters of a log since Open, for metrics.
type Stats struct {
	Appends        int64         // records appended
	Bytes          int64         // bytes appended, framing included
	Syncs          int64         // fsyncs of batches
	SyncTime       time.Duration // total time spent in those fsyncs
	Failures       int64         // write or sync failures (0 or 1: the first is final)
	Segments       int64         // segment files in the log now
	DurableSeq     uint64
	SyncLatency    [syncBuckets]int64 // SyncLatency[i]: syncs under 2^i µs (last: the rest)
	RecordsPerSync float64
}

// Stats returns the log's counters.
func (w *WAL) Stats() Stats {
	st := Stats{
		Appends:    w.stats.appends.Load(),
		Bytes:      w.stats.bytes.Load(),
		Syncs:      w.stats.syncs.Load(),
		SyncTime:   time.Duration(w.stats.syncNs.Load()),
		Failures:   w.stats.failures.Load(),
		Segments:   w.stats.segments.Load(),
		DurableSeq: w.durableSeq.Load(),
	}
	for i := range st.SyncLatency {
		st.SyncLatency[i] = w.stats.hist[i].Load()
	}
	if st.Syncs > 0 {
		st.RecordsPerSync = float64(st.Appends) / float64(st.Syncs)
	}
	return st
}

// SyncQuantile estimates the q-quantile (0..1) of sync latency from the
// histogram, as the upper bound of the bucket it falls in.
func (s Stats) SyncQuantile(q float64) time.Duration { return pow2hist.Quantile(s.SyncLatency[:], q) }
