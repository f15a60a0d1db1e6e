package procedure

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// This file is the scheduling around steps: locks, events, timers,
// timeouts and retries. Nothing here holds a worker while it waits: a
// procedure waiting for a lock, an event, a time or a retry is parked
// outside the run queue and pushed to its front when woken.

// lockSet returns the locks p needs to run (or roll back) state: its
// type's Locks, checked. The caller holds p (a worker), not mu.
func (e *Engine) lockSet(p *proc, state int64) (ls []Lock, err error) {
	if p.typ.locks == nil {
		return nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("procedure: Locks panicked", "id", p.id, "type", p.typeName, "panic", r, "stack", string(debug.Stack()))
			ls, err = nil, fmt.Errorf("panic in Locks of %s state %s: %v", p.typeName, p.typ.stateName(state), r)
		}
	}()
	ls = p.typ.locks(state, p.data)
	if err := validateLocks(ls); err != nil {
		return nil, fmt.Errorf("procedure: Locks of %s state %s: %w", p.typeName, p.typ.stateName(state), err)
	}
	return ls, nil
}

// lockGrantedLocked wakes w, the owner of r, which the lock table just
// granted: it goes to the front of the run queue holding its locks. It
// reports whether w uses r (if not, the lock manager releases it).
func (e *Engine) lockGrantedLocked(r *lockReq, w lockWait) (use bool) {
	if p := w.p; p != nil {
		p.lockWaiting = false
		switch {
		case e.procs[p.id] != p:
			p.sched().stepLocks = nil
		case p.running:
			// Its worker is parking it: endStep sees the grant.
			use = true
		case e.canRunLocked(p):
			e.enqueueLocked(p, true)
			use = true
		default:
			p.sched().stepLocks = nil
		}
		if use && p.typ.holdLocks {
			p.sched().stepLocks, p.sched().holdLocks = nil, r
		}
	} else if t := w.t; t.rbLocks == r {
		t.rbQueued = false
		if e.running() && t.ts.failed && !t.ts.done && t.quarantine == "" {
			e.maybeRollbackLocked(t)
			use = true
		} else {
			t.rbLocks = nil
		}
	}
	return use
}

// releaseStepLocksLocked lets go of the locks p took for one step.
func (e *Engine) releaseStepLocksLocked(p *proc) {
	if p.rd().stepLocks != nil && !p.lockWaiting {
		r := p.rd().stepLocks
		p.sched().stepLocks = nil
		e.locks.release(r)
	}
}

// dropProcLocked lets go of everything a finished procedure holds or
// waits for: locks, lock requests, timers, event registrations.
func (e *Engine) dropProcLocked(p *proc) {
	if p.lockWaiting {
		p.lockWaiting = false
		r := p.rd().stepLocks
		p.sched().stepLocks = nil
		e.locks.cancelWait(r)
	}
	e.releaseStepLocksLocked(p)
	if r := p.rd().holdLocks; r != nil {
		p.sched().holdLocks = nil
		e.locks.release(r)
	}
	e.stopTimerLocked(p.rd().sleepTimer)
	e.stopTimerLocked(p.rd().timeoutTimer)
	e.stopTimerLocked(p.rd().retryTimer)
	p.sched().sleepTimer, p.sched().timeoutTimer, p.sched().retryTimer = nil, nil, nil
	e.eventWaits.unsuspend(p)
	e.eventWaits.clearWoken(p)
}

// cancelTreeWaitsLocked withdraws the lock requests of t's procedures
// (t failed: none of them will run forward again).
func (e *Engine) cancelTreeWaitsLocked(t *tree) {
	for _, p := range t.procs {
		if p.lockWaiting {
			p.lockWaiting = false
			r := p.rd().stepLocks
			p.sched().stepLocks = nil
			e.locks.cancelWait(r)
		}
	}
}

// Locks returns the lock table: every resource locked or waited for, with
// its holders and waiters (FIFO) and since when, by resource.
func (e *Engine) Locks() []LockInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.locks.table.view()
}

// ---- Events ----

// Signal signals the named event: it stays signalled (until
// ResetEvent), and every procedure suspended on it (WaitEvent) goes to
// the front of the run queue. The signal is durable when Signal returns.
func (e *Engine) Signal(ctx context.Context, event string) error {
	if err := checkEventName(event); err != nil {
		return err
	}
	return e.SignalWrite(ctx, func(_ *durable.Tx, signal func(string)) error {
		signal(event)
		return nil
	})
}

// SignalWrite is Signal with writes: it runs fn in one store transaction,
// and the events fn passes to signal are signalled by that transaction,
// atomically with fn's writes. The procedures suspended on them are woken
// once it is durable, so a woken step reads what fn wrote. If fn returns
// an error (or signal is given a bad name), nothing is written or
// signalled. This is how an outcome that arrives from outside (a remote
// operation's result) reaches the procedure waiting for it: recorded and
// announced in one commit, or not at all.
func (e *Engine) SignalWrite(ctx context.Context, fn func(tx *durable.Tx, signal func(event string)) error) error {
	if !e.running() {
		return e.notRunning()
	}
	var events []string
	err := e.store.Write(context.WithoutCancel(ctx), func(tx *durable.Tx) error {
		events = events[:0]
		var bad error
		err := fn(tx, func(event string) {
			if err := checkEventName(event); err != nil && bad == nil {
				bad = err
			}
			events = append(events, event)
		})
		if err != nil {
			return err
		}
		if bad != nil {
			return bad
		}
		now := uint64(e.now())
		for _, ev := range events {
			if err := e.events.Put(tx, ev, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return e.afterFailedAdmin(&commit{}, err)
	}
	e.mu.Lock()
	for _, ev := range events {
		e.eventWaits.signal(ev)
	}
	e.mu.Unlock()
	return nil
}

// ResetEvent makes the named event not signalled: procedures that wait
// on it from now on are suspended until it is signalled again. The
// procedures it woke that have not committed a step since are stored as
// runnable in the same transaction, so that a crash cannot put them back
// to waiting.
func (e *Engine) ResetEvent(ctx context.Context, event string) error {
	if err := checkEventName(event); err != nil {
		return err
	}
	if !e.running() {
		return e.notRunning()
	}
	var rewritten []*proc
	err := e.store.Write(context.WithoutCancel(ctx), func(tx *durable.Tx) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		var err error
		rewritten, err = e.resetEventLocked(tx, event, rewritten[:0], nil)
		if err != nil {
			return err
		}
		return e.putRewritesLocked(tx, &commit{}, rewritten)
	})
	if err != nil {
		return e.afterFailedAdmin(&commit{}, err)
	}
	e.mu.Lock()
	e.eventWaits.reset(event, rewritten)
	e.mu.Unlock()
	return nil
}

// resetEventLocked deletes event's signal in tx and appends to rewrite
// the live procedures it woke whose records still say suspended (except
// self, whose record the caller writes anyway): the caller stores them as
// runnable in the same transaction, so that a crash cannot put them back
// to waiting.
func (e *Engine) resetEventLocked(tx *durable.Tx, event string, rewrite []*proc, self *proc) ([]*proc, error) {
	if err := e.events.Delete(tx, event); err != nil {
		return rewrite, err
	}
	for p := range e.eventWaits.wokenBy(event) {
		if p == self || e.procs[p.id] != p || p.rd().wokenBy != event {
			continue
		}
		rewrite = append(rewrite, p)
	}
	return rewrite, nil
}

// Signalled reports whether the named event is signalled (durably).
func (e *Engine) Signalled(event string) (bool, error) {
	_, ok, err := e.events.Get(e.store.Latest(), event)
	return ok, err
}

func checkEventName(event string) error {
	if event == "" || len(event) > 1024 {
		return fmt.Errorf("procedure: bad event name %q (1 to 1024 bytes)", event)
	}
	return nil
}

// wakeLocked makes suspended p runnable (in memory: its record is
// rewritten by its next commit) and queues it at the front.
func (e *Engine) wakeLocked(p *proc) {
	e.countWakeLocked(p)
	e.eventWaits.unsuspend(p)
	p.ps.status = Runnable
	p.ps.w().wait = waitState{}
	e.indexLocked(p)
	e.stopTimerLocked(p.rd().sleepTimer)
	p.sched().sleepTimer = nil
	e.enqueueLocked(p, true)
}

// ---- Timers ----

// armSleepLocked starts the timer that wakes p from Sleep.
func (e *Engine) armSleepLocked(p *proc) {
	e.stopTimerLocked(p.rd().sleepTimer)
	until := p.ps.wait().until
	p.sched().sleepTimer = e.afterFuncLocked(time.Duration(until-e.now()), func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.procs[p.id] != p || p.ps.status != Suspended || p.ps.wait().kind != waitTimer || p.ps.wait().until != until {
			return
		}
		p.sched().sleepTimer = nil
		if e.now() < until {
			e.armSleepLocked(p) // the clock's timer fired early: never wake before the time
			return
		}
		e.wakeLocked(p)
	})
}

// timeoutKind says which timeout of a procedure passed.
type timeoutKind uint8

const (
	timeoutProc timeoutKind = iota + 1 // the procedure's (SubmitOptions.Timeout, TypeOptions.Timeout)
	timeoutStep                        // the one its last step set (Env.SetTimeout)
)

// deadlineLocked returns p's earlier deadline, its own or its step's (0:
// none).
func deadlineLocked(p *proc) int64 {
	d, s := p.ps.timeout(), p.ps.stepTimeout()
	if d == 0 || (s != 0 && s < d) {
		return s
	}
	return d
}

// passedTimeoutLocked returns which of p's timeouts has passed (0: none):
// the procedure's first, as the bound on everything it does.
func (e *Engine) passedTimeoutLocked(p *proc) timeoutKind {
	now := e.now()
	if d := p.ps.timeout(); d != 0 && now >= d {
		return timeoutProc
	}
	if d := p.ps.stepTimeout(); d != 0 && now >= d {
		return timeoutStep
	}
	return 0
}

// timeoutPassedLocked reports whether p's timeout of kind k has passed.
func (e *Engine) timeoutPassedLocked(p *proc, k timeoutKind) bool {
	switch k {
	case timeoutProc:
		return p.ps.timeout() != 0 && e.now() >= p.ps.timeout()
	case timeoutStep:
		return p.ps.stepTimeout() != 0 && e.now() >= p.ps.stepTimeout()
	}
	return false
}

// armTimeoutLocked starts the timer of p's earlier deadline, if it has
// one and the timer is not armed for it already.
func (e *Engine) armTimeoutLocked(p *proc) {
	at := deadlineLocked(p)
	if p.rd().timeoutTimer != nil && p.rt.timeoutAt == at {
		return
	}
	if p.rt == nil && at == 0 {
		return // most procedures: no timeout, no scheduling state
	}
	e.stopTimerLocked(p.rd().timeoutTimer)
	p.sched().timeoutTimer, p.rt.timeoutAt = nil, 0
	if at == 0 || p.ps.status == Succeeded || p.ps.status == Failed || p.ps.bypass != nil {
		return
	}
	p.rt.timeoutAt = at
	p.rt.timeoutTimer = e.afterFuncLocked(time.Duration(at-e.now()), func() { e.timeoutFired(p) })
}

// timeoutFired handles p's timeouts: with an OnTimeout method (and p not
// waiting for children), p is woken to run it as its next step;
// otherwise p fails, durably, and its tree rolls back. A step timeout
// that passes while a step of p runs waits for that step's commit, which
// replaces it (the wait it bounded is over).
func (e *Engine) timeoutFired(p *proc) {
	e.mu.Lock()
	p.sched().timeoutTimer, p.rt.timeoutAt = nil, 0
	t := p.t
	if e.procs[p.id] != p || !e.running() || t.ts.done || t.ts.failed || t.quarantine != "" || deadlineLocked(p) == 0 ||
		p.ps.status == Succeeded || p.ps.status == Failed || p.ps.bypass != nil {
		e.mu.Unlock()
		return
	}
	kind := e.passedTimeoutLocked(p)
	if kind == 0 {
		e.armTimeoutLocked(p) // never before the deadline
		e.mu.Unlock()
		return
	}
	if kind == timeoutStep && p.running {
		e.mu.Unlock()
		return // its commit (or endStep) arms the timer again
	}
	if t.ts.pastPONR {
		e.log.Warn("procedure: timeout passed past the point of no return; the procedure goes on", "id", p.id, "type", p.typeName)
		e.mu.Unlock()
		return
	}
	if p.typ != nil && p.typ.onTimeout != nil && p.ps.status != Waiting {
		p.timeoutDue = kind
		switch {
		case p.ps.status == Suspended:
			e.wakeLocked(p)
		case p.rd().retryTimer != nil:
			e.stopTimerLocked(p.rd().retryTimer)
			p.sched().retryTimer, p.queued = nil, false
			e.enqueueLocked(p, true)
		}
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	e.failTimedOut(p)
}

// The Error.Source of a timeout's failure and of an abort.
const (
	timeoutSource = "timeout"
	abortSource   = "abort"
)

// failTimedOut fails p, one of whose timeouts passed, and rolls its tree
// back.
func (e *Engine) failTimedOut(p *proc) {
	if !e.running() {
		return // it fires again after a restart
	}
	t := p.t
	c, _ := e.adminCommit(context.Background(), func(tx *durable.Tx, c *commit) error {
		if e.procs[p.id] != p || t.ts.done || t.ts.failed || t.ts.pastPONR || t.quarantine != "" ||
			p.ps.status == Succeeded || p.ps.status == Failed || p.ps.bypass != nil {
			return errNoop
		}
		kind := e.passedTimeoutLocked(p)
		if kind == 0 || (kind == timeoutStep && p.running) {
			return errNoop
		}
		now := e.now()
		c.p, c.t = p, t
		c.begin(t)
		c.markDirty(p)
		// The message names no time: it is the same in every run.
		what := "its deadline"
		if kind == timeoutStep {
			what = "the deadline its step set"
		}
		p.ps.err = &Error{Source: timeoutSource, Message: fmt.Sprintf("procedure %d (%s) passed %s", p.id, p.typeName, what),
			outcome: outcomeTimedOut}
		p.ps.status = Failed
		x := p.ps.w()
		x.timeout, x.stepTimeout = 0, 0
		p.ps.updated = now
		t.ts.failed = true
		return nil
	})
	if c == nil {
		return // nothing to do, or not committed: it fires again after a restart
	}
	if p.typ != nil {
		p.typ.stats.timedOut.Add(1)
	}
	e.log.Info("procedure: timed out; rolling back its tree", "id", p.id, "type", p.typeName, "root", t.root.id)
	e.mu.Lock()
	e.eventWaits.unsuspend(p)
	e.stopTimerLocked(p.rd().sleepTimer)
	p.sched().sleepTimer = nil
	e.maybeRollbackLocked(t)
	e.mu.Unlock()
}

// ---- Retries ----

// retryLaterLocked parks p, whose step at state failed with err (a
// Retryable error, or any error past the point of no return), and queues
// it again after its type's backoff. Nothing is written.
func (e *Engine) retryLaterLocked(p *proc, state int64, err error, msg string) {
	p.retries++
	p.lastErr = err.Error()
	e.changedLocked(p.id)
	d := p.typ.retry.delay(p.retries)
	e.log.Warn(msg, "id", p.id, "type", p.typeName, "state", p.typ.stateName(state), "retries", p.retries, "delay", d, "err", err)
	p.queued = true // parked until the timer
	p.sched().retryTimer = e.afterFuncLocked(d, func() {
		e.mu.Lock()
		p.sched().retryTimer = nil
		p.queued = false
		e.enqueueLocked(p, true)
		e.mu.Unlock()
	})
}
