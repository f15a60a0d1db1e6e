package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/procedure"
)

// engineMetrics reads procedure.Engine.Stats.
type engineMetrics struct {
	e *procedure.Engine
	descs
	submitted, finished, stepFailures, timedOut, steps, retries, stepSeconds *prometheus.Desc
	active, oldest, quarantined, queued, workers, stuck                      *prometheus.Desc
	lockWaiting, lockWait, recovered, recoverSeconds                         *prometheus.Desc
	duration, eventWaits, eventWait                                          *prometheus.Desc
}

func newEngineMetrics(ns string, e *procedure.Engine) *engineMetrics {
	m := &engineMetrics{e: e}
	ns += "_procedure"
	m.submitted = m.add(ns, "submitted_total", "Root procedures submitted.", "type")
	m.finished = m.add(ns, "finished_total", "Procedures finished, by outcome: succeeded, rolled_back (roots), aborted (roots), bypassed.", "type", "outcome")
	m.stepFailures = m.add(ns, "step_failures_total", "Steps that failed (each starts a rollback).", "type")
	m.timedOut = m.add(ns, "timed_out_total", "Procedures failed by their timeout.", "type")
	m.steps = m.add(ns, "steps_total", "Steps committed, by direction: forward or rollback.", "type", "direction")
	m.retries = m.add(ns, "step_retries_total", "Steps retried after a retryable error.", "type")
	m.stepSeconds = m.add(ns, "step_duration_seconds", "How long Execute and Rollback calls took (their commits not included).", "type")
	m.duration = m.add(ns, "duration_seconds", "How long procedures took from creation to end: a root's submission to its tree's completion (any outcome), a child's creation to its success.", "type")
	m.eventWaits = m.add(ns, "event_waits_total", "Steps committed that wait for an event (WaitEvent).", "type")
	m.eventWait = m.add(ns, "event_wait_seconds", "How long event waits lasted, from the suspending commit to the wake-up by the signal or a handled timeout (0: signalled already).", "type")
	m.active = m.add(ns, "active", "Live procedures (of unfinished trees), by recorded status; suspended ones wait for an event or a timer.", "status")
	m.oldest = m.add(ns, "oldest_active_age_seconds", "Age of the oldest live procedure (0: none).")
	m.quarantined = m.add(ns, "quarantined_trees", "Procedure trees quarantined (never run).")
	m.queued = m.add(ns, "run_queue_length", "Procedures waiting in the run queue for a worker.")
	m.workers = m.add(ns, "workers", "Workers, temporary ones included.")
	m.stuck = m.add(ns, "stuck_workers", "Workers busy in one step longer than Options.StuckAfter at the last check.")
	m.lockWaiting = m.add(ns, "lock_waiting", "Lock requests waiting to be granted.")
	m.lockWait = m.add(ns, "lock_wait_seconds", "How long granted lock requests waited (0 for those granted at once).")
	m.recovered = m.add(ns, "recovered", "Procedures loaded by the engine's Start.")
	m.recoverSeconds = m.add(ns, "recovery_duration_seconds", "How long the engine's Start took to load the procedures.")
	return m
}

func (m *engineMetrics) collect(ch chan<- prometheus.Metric) {
	st := m.e.Stats()
	for name, ts := range st.Types {
		m.collectType(ch, name, ts)
	}
	for status, n := range st.ByStatus {
		ch <- gauge(m.active, float64(n), status.String())
	}
	var age time.Duration
	if !st.Oldest.IsZero() {
		age = max(time.Since(st.Oldest), 0)
	}
	ch <- gauge(m.oldest, age.Seconds())
	ch <- gauge(m.quarantined, float64(st.Quarantined))
	ch <- gauge(m.queued, float64(st.Queued))
	ch <- gauge(m.workers, float64(st.Workers))
	ch <- gauge(m.stuck, float64(st.Stuck))
	ch <- gauge(m.lockWaiting, float64(st.LockWaiting))
	ch <- fromHistogram(m.lockWait, st.LockWait)
	ch <- gauge(m.recovered, float64(st.Recovered))
	ch <- gauge(m.recoverSeconds, st.RecoverTime.Seconds())
}

func (m *engineMetrics) collectType(ch chan<- prometheus.Metric, name string, ts procedure.TypeStats) {
	ch <- counter(m.submitted, ts.Submitted, name)
	ch <- counter(m.finished, ts.Succeeded, name, "succeeded")
	ch <- counter(m.finished, ts.RolledBack, name, "rolled_back")
	ch <- counter(m.finished, ts.Aborted, name, "aborted")
	ch <- counter(m.finished, ts.Bypassed, name, "bypassed")
	ch <- counter(m.stepFailures, ts.Failed, name)
	ch <- counter(m.timedOut, ts.TimedOut, name)
	ch <- counter(m.steps, ts.Steps, name, "forward")
	ch <- counter(m.steps, ts.RollbackSteps, name, "rollback")
	ch <- counter(m.retries, ts.Retries, name)
	ch <- fromHistogram(m.stepSeconds, ts.StepLatency, name)
	ch <- fromHistogram(m.duration, ts.Duration, name)
	ch <- counter(m.eventWaits, ts.EventWaits, name)
	ch <- fromHistogram(m.eventWait, ts.EventWait, name)
}
