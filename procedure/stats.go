package procedure

import (
	"github.com/procyon-dev/procyon/internal/pow2hist"
	"sync/atomic"
	"time"
)

// latencyBuckets: bucket i counts durations in [2^(i-1), 2^i) µs (bucket 0:
// under 1 µs); the last one is open.
const latencyBuckets = 28

type histogram struct {
	counts [latencyBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	h.counts[pow2hist.Bucket(d, latencyBuckets)].Add(1)
	h.n.Add(1)
	h.sum.Add(int64(d))
}

// Histogram is a snapshot of a latency histogram with power-of-two
// buckets.
type Histogram struct {
	Count int64
	Sum   time.Duration
	// Buckets[i] counts the observations below Bounds[i] (and at or above
	// Bounds[i-1]); the last bound is the largest finite one, and the
	// last bucket also counts everything above it.
	Bounds  []time.Duration
	Buckets []int64
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Count: h.n.Load(), Sum: time.Duration(h.sum.Load()),
		Bounds: make([]time.Duration, latencyBuckets), Buckets: make([]int64, latencyBuckets)}
	for i := range latencyBuckets {
		out.Bounds[i] = pow2hist.Bound(i)
		out.Buckets[i] = h.counts[i].Load()
	}
	return out
}

// Quantile returns an upper bound of the q-quantile (0 < q <= 1): the
// bound of the bucket it falls in.
func (h Histogram) Quantile(q float64) time.Duration { return pow2hist.Quantile(h.Buckets, q) }

// typeStats are a type's counters.
type typeStats struct {
	submitted, succeeded, failed, rolledBack, aborted, bypassed atomic.Int64
	steps, rollbackSteps, retries, timedOut                     atomic.Int64
	latency                                                     histogram
}

// TypeStats are the counters of one procedure type since Start.
type TypeStats struct {
	Submitted     int64 // roots submitted
	Succeeded     int64 // procedures that finished successfully
	Failed        int64 // steps that failed (each starts a rollback)
	RolledBack    int64 // roots whose tree completed rolled back
	Aborted       int64 // roots aborted by a client
	Bypassed      int64 // procedures bypassed (named by Bypass, or descendants of one; not ancestors)
	Steps         int64 // forward steps committed
	RollbackSteps int64 // rollback steps committed
	Retries       int64 // steps retried after a Retryable error (no commit each)
	TimedOut      int64 // procedures failed by their timeout
	// StepLatency: how long Execute and Rollback calls took (not their
	// commits).
	StepLatency Histogram
}

type engineStats struct {
	stuck        atomic.Int64
	extraStarted atomic.Int64
	swept        atomic.Int64
	recovered    atomic.Int64
	recoverTime  atomic.Int64
	lockWaiting  atomic.Int64 // lock requests waiting
	lockWait     histogram    // how long granted lock requests waited (0 for those granted at once)
}

// Stats are the engine's counters and gauges, for metrics.
type Stats struct {
	Types        map[string]TypeStats
	Live         int // procedures of unfinished trees in memory
	Trees        int // unfinished trees
	Quarantined  int // quarantined trees
	Results      int // kept results (entries of the sweeper's queue, an upper bound)
	Queued       int // run queue length
	Workers      int // workers, temporary ones included
	ExtraWorkers int // temporary workers
	Stuck        int // workers busy in one step longer than Options.StuckAfter, at the last check
	ExtraStarted int64
	Swept        int64 // results deleted
	Recovered    int   // procedures loaded by Start
	RecoverTime  time.Duration
	LockWaiting  int       // lock requests waiting (procedures and rollbacks parked for locks)
	LockWait     Histogram // how long lock requests waited to be granted (0: at once)
	Suspended    int       // procedures suspended on an event or a timer (a count over the live procedures)
	// ByStatus counts the live procedures by their recorded status.
	ByStatus map[Status]int
	// Oldest is when the oldest live procedure was created (zero: none live).
	Oldest time.Time
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{Types: map[string]TypeStats{}, ByStatus: map[Status]int{}}
	for name, ti := range e.types {
		st := &ti.stats
		s.Types[name] = TypeStats{
			Submitted: st.submitted.Load(), Succeeded: st.succeeded.Load(), Failed: st.failed.Load(),
			RolledBack: st.rolledBack.Load(), Aborted: st.aborted.Load(), Bypassed: st.bypassed.Load(),
			Steps: st.steps.Load(), RollbackSteps: st.rollbackSteps.Load(), StepLatency: st.latency.snapshot(),
			Retries: st.retries.Load(), TimedOut: st.timedOut.Load(),
		}
	}
	e.mu.Lock()
	s.Live, s.Trees, s.Results = len(e.procs), len(e.trees), len(e.results)
	for _, t := range e.trees {
		if t.quarantine != "" {
			s.Quarantined++
		}
	}
	var oldest int64
	for _, p := range e.procs {
		s.ByStatus[p.ps.status]++
		if oldest == 0 || p.created < oldest {
			oldest = p.created
		}
	}
	e.mu.Unlock()
	s.Suspended = s.ByStatus[Suspended]
	s.Oldest = timeOf(oldest)
	s.LockWaiting = int(e.stats.lockWaiting.Load())
	s.LockWait = e.stats.lockWait.snapshot()
	s.Queued = e.q.len()
	e.workers.Lock()
	s.Workers, s.ExtraWorkers = len(e.workers.all), e.workers.extra
	e.workers.Unlock()
	s.Stuck = int(e.stats.stuck.Load())
	s.ExtraStarted = e.stats.extraStarted.Load()
	s.Swept = e.stats.swept.Load()
	s.Recovered = int(e.stats.recovered.Load())
	s.RecoverTime = time.Duration(e.stats.recoverTime.Load())
	return s
}
