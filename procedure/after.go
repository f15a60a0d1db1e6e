package procedure

import "errors"

// This file is what happens once a batch of commits is durable (or
// cannot be): procedures let go, woken, retried, retired, and
// submitters answered.

// finishFailed lets go of the commits of a batch that cannot commit (the
// store failed).
func (e *Engine) finishFailed(batch []*commit, err error) {
	for _, c := range batch {
		switch c.kind {
		case kindStep:
			e.endStep(c.p, c.info, endPlain, nil)
		case kindRollback:
			e.endRollback(c.t, c.info)
		default:
			c.finishSubmit(0, err)
		}
	}
}

func (c *commit) finishSubmit(id ID, err error) {
	c.id, c.err = id, err
	close(c.done)
}

func (e *Engine) rollbackFailed(c *commit, err error) {
	p := c.p
	if p == nil {
		p = c.t.root
	}
	e.retryRollback(c.t, p, c.state, err, c.info)
}

// afterBatch does what follows a durable batch: hooks, counters, and,
// under one lock, the procedures let go, woken, retired.
func (e *Engine) afterBatch(batch []*commit) {
	e.countCommitted(batch)
	h := &e.opts.Hooks
	for _, c := range batch {
		if c.kind == kindStep && errors.Is(c.outcome, errRetry) {
			e.reloadData(c.p) // the failed step's changes to the data are dropped
		}
		if c.kind != kindSubmit && h.StepEnd != nil {
			h.StepEnd(c.info) // before the procedure is let go: hooks see its steps in order
		}
	}
	e.mu.Lock()
	for _, c := range batch {
		switch c.kind {
		case kindStep:
			e.afterStepLocked(c)
		case kindRollback:
			e.afterRollbackLocked(c)
		case kindSubmit:
			if c.outcome == nil {
				c.p.committed = true
				e.armTimeoutLocked(c.p)
				e.enqueueLocked(c.p, false)
			}
		}
	}
	e.mu.Unlock()
}

// countCommitted calls Hooks.AfterCommit and the steps' own after-commit
// functions (Env.AfterCommit) for the steps of batch that committed, and
// counts them in their types' stats.
func (e *Engine) countCommitted(batch []*commit) {
	h := &e.opts.Hooks
	for _, c := range batch {
		if c.kind == kindSubmit || c.outcome != nil {
			continue
		}
		if h.AfterCommit != nil {
			info := c.info
			info.Err = c.stepErr
			h.AfterCommit(info)
		}
		if c.stepErr == nil {
			for _, fn := range c.fx.afterCommit {
				fn() // Env.AfterCommit
			}
		}
		if c.p == nil || c.p.typ == nil {
			continue
		}
		st := &c.p.typ.stats
		switch {
		case c.kind == kindRollback:
			st.rollbackSteps.Add(1)
		case c.stepErr != nil:
			st.steps.Add(1)
			st.failed.Add(1)
			e.log.Info("procedure: step failed; rolling back its tree", "id", c.p.id, "type", c.p.typeName,
				"state", c.p.typ.stateName(c.state), "root", c.t.root.id, "err", c.stepErr)
		default:
			st.steps.Add(1)
			if c.next.kind == nextDone {
				st.succeeded.Add(1)
			}
		}
	}
}

// afterStepLocked lets go of the procedure of a durable (or dropped)
// forward step: it runs on, is retried, or its tree rolls back.
func (e *Engine) afterStepLocked(c *commit) {
	p, t := c.p, c.t
	p.running, p.run = false, nil
	t.running--
	e.releaseStepLocksLocked(p)
	switch {
	case c.outcome == nil:
		countStepLocked(c)
		p.retries, p.lastErr = 0, ""
		if p.timeoutDue == c.timeoutKind || !e.timeoutPassedLocked(p, p.timeoutDue) {
			p.timeoutDue = 0 // handled, or replaced by the step
		}
		e.postCommitLocked(c)
		if p.timeoutDue != 0 {
			// Its timeout passed while this step ran.
			switch p.ps.status {
			case Suspended:
				e.wakeLocked(p)
			case Waiting:
				go e.failTimedOut(p)
			}
		}
		// Woken (an event, a timer) while its commit was in flight.
		e.enqueueLocked(p, true)
	case errors.Is(c.outcome, errRetry):
		e.retryStepLocked(c)
	default:
		e.maybeRollbackLocked(t)
	}
}

// afterRollbackLocked lets go of the tree of a durable (or dropped)
// rollback step: its rollback goes on.
func (e *Engine) afterRollbackLocked(c *commit) {
	t := c.t
	t.running--
	e.releaseRollbackLocksLocked(t)
	if c.outcome == nil {
		t.retries, t.lastErr = 0, ""
		e.changedLocked(t.root.id)
		e.postCommitLocked(c)
	} else {
		e.maybeRollbackLocked(t)
	}
}

// retryStepLocked parks a procedure whose step failed past the point of
// no return, and queues it again after a delay.
func (e *Engine) retryStepLocked(c *commit) {
	e.retryLaterLocked(c.p, c.state, c.stepErr, "procedure: step failed past the point of no return; retrying")
}

// postCommitLocked does what follows a durable commit: new procedures
// become visible, woken ones are queued, waiters are told, a completed
// tree is retired, a failed one starts rolling back.
func (e *Engine) postCommitLocked(c *commit) {
	t := c.t
	for _, q := range c.added {
		q.committed = true
		e.armTimeoutLocked(q)
	}
	for _, q := range c.dirty { // before a completed tree retires (dirty holds added)
		e.indexLocked(q)
	}
	for _, q := range c.wake {
		e.indexLocked(q)
	}
	if p := c.p; p != nil && p.ps.status == Suspended && p.ps.wait().kind == waitTimer && !c.completed {
		e.armSleepLocked(p)
	}
	if p := c.p; c.kind == kindStep && p != nil && !c.completed && p.ps.status != Succeeded {
		e.armTimeoutLocked(p) // the step may have set, replaced or cleared its step timeout
	}
	for _, ev := range c.fx.resets {
		e.eventWaits.reset(ev, c.rewrite)
	}
	for _, ev := range c.fx.signals {
		e.eventWaits.signal(ev)
	}
	for _, q := range c.finished {
		e.dropProcLocked(q)
	}
	if c.completed {
		e.retireLocked(t, c.result)
	} else {
		for _, q := range c.wake {
			e.enqueueLocked(q, true)
		}
		e.maybeRollbackLocked(t)
	}
	for _, q := range c.finished {
		e.notifyLocked(q.id, 0, nil)
	}
	for _, q := range c.dirty {
		e.changedLocked(q.id)
	}
}
