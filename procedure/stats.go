package procedure

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/internal/pow2hist"
)

// histogram is one of the engine's latency histograms (pow2hist's shape).
type histogram struct{ r pow2hist.Recorder }

func (h *histogram) observe(d time.Duration) { h.r.Observe(d) }

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
	counts, n, sum := h.r.Load()
	out := Histogram{Count: n, Sum: sum, Bounds: make([]time.Duration, len(counts)), Buckets: counts[:]}
	for i := range out.Bounds {
		out.Bounds[i] = pow2hist.Bound(i)
	}
	return out
}

// Quantile returns an upper bound of the q-quantile (0 < q <= 1): the
// bound of the bucket it falls in.
func (h Histogram) Quantile(q float64) time.Duration { return pow2hist.Quantile(h.Buckets, q) }

// typeStats are a type's counters.
type typeStats struct {
	submitted, succeeded, failed, rolledBack, aborted, bypassed atomic.Int64
	steps, rollbackSteps, retries, timedOut, eventWaits         atomic.Int64
	latency, duration, eventWait                                histogram
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
	// Duration: how long procedures took on the engine's clock, from
	// their creation (a root's submission) to their end: a root's when its
	// tree completed, whatever the outcome; a child's when it succeeded
	// (children whose tree rolled them back are not in it).
	Duration Histogram
	// EventWaits counts the committed steps that returned WaitEvent.
	EventWaits int64
	// EventWait: how long those waits lasted, from the commit of the step
	// (the record's update time) to the wake-up by the event's signal, a
	// timeout with OnTimeout, or a recovery that found the event
	// signalled; 0 when the event was signalled already. Waits ended by a
	// failure, an abort or a bypass are not in it.
	EventWait Histogram
}

// sinceNs is the duration from from to to (unix ns on the engine's
// clock), 0 if the clock went back.
func sinceNs(from, to int64) time.Duration { return max(time.Duration(to-from), 0) }

// retired counts root, whose tree completed (with root.ps.completed
// set): its outcome if it rolled back, and its duration.
func (st *typeStats) retired(root *proc) {
	if root.ps.status == RolledBack {
		st.rolledBack.Add(1)
	}
	st.duration.observe(sinceNs(root.created, root.ps.completed))
}

// countStepLocked counts what the durable forward step c ended or began
// (countCommitted counts the steps themselves): a child's duration when
// it succeeded, an event wait, and its end when the event was signalled
// already (the commit woke the procedure at once).
func countStepLocked(c *commit) {
	p := c.p
	if p.typ == nil || c.stepErr != nil {
		return
	}
	st := &p.typ.stats
	switch c.next.kind {
	case nextDone:
		if p.parent != 0 { // roots: when their tree completes (retired)
			st.duration.observe(sinceNs(p.created, p.ps.updated))
		}
	case nextEvent:
		st.eventWaits.Add(1)
		if slices.Contains(c.wake, p) {
			st.eventWait.observe(0)
		}
	}
}

// countWakeLocked counts the end of p's wait if p is suspended on an
// event: it is being woken.
func (e *Engine) countWakeLocked(p *proc) {
	if p.ps.status == Suspended && p.ps.wait().kind == waitEvent {
		countEventWait(p, e.now())
	}
}

// countEventWait counts the end at now of p's wait for an event, which
// began with the commit that suspended p (its record's update time).
func countEventWait(p *proc, now int64) {
	if p.typ != nil {
		p.typ.stats.eventWait.observe(sinceNs(p.ps.updated, now))
	}
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
	// ByStatus counts the live procedures (of trees not yet completed and
	// retired) by status, as Get reports it once their commits are durable.
	// It is kept by List's index: reading it visits no procedure.
	ByStatus map[Status]int
	// Oldest is when the live procedure with the smallest id, the oldest
	// unless the clock went back, was created (zero: none live).
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
			Retries: st.retries.Load(), TimedOut: st.timedOut.Load(), Duration: st.duration.snapshot(),
			EventWaits: st.eventWaits.Load(), EventWait: st.eventWait.snapshot(),
		}
	}
	e.mu.Lock()
	s.Live, s.Trees, s.Results = len(e.procs), len(e.trees), len(e.results)
	s.Quarantined = e.quarantined
	for st, n := range e.ix.live {
		if n > 0 {
			s.ByStatus[Status(st)] = n
		}
	}
	oldest := e.oldestLiveLocked()
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

// oldestLiveLocked returns when the oldest live procedure was created
// (unix ns; 0: none live), without visiting them: the live procedure
// with the smallest id is the root of a tree that is not finished, so its
// status is one of the unfinished ones, and the smallest id of those
// index sets is it (ids grow with creation, unless the clock went back).
func (e *Engine) oldestLiveLocked() int64 {
	var first uint64
	for _, st := range []Status{Runnable, Waiting, Failed, Suspended, 0} {
		if id, ok := e.ix.status(st).Min(); ok && (first == 0 || id < first) {
			first = id
		}
	}
	if p := e.procs[ID(first)]; p != nil {
		return p.created
	}
	return 0
}
