package procedure

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

func (e *Engine) canRunLocked(p *proc) bool {
	t := p.t
	return e.running() && t.quarantine == "" && !t.ts.done && !t.ts.failed && p.committed &&
		p.ps.status == Runnable && p.ps.bypass == nil && !p.running
}

// enqueueLocked queues p for its next step if it can run.
func (e *Engine) enqueueLocked(p *proc, front bool) {
	if p.queued || !e.canRunLocked(p) {
		return
	}
	p.queued = true
	if front {
		e.q.pushFront(item{p: p})
	} else {
		e.q.pushBack(item{p: p})
	}
}

// maybeRollbackLocked queues the next rollback step of t if t is failed
// and none of its procedures runs. The lock requests of a failed tree's
// procedures are withdrawn: they will not run forward again.
func (e *Engine) maybeRollbackLocked(t *tree) {
	if !t.ts.failed {
		return
	}
	e.cancelTreeWaitsLocked(t)
	if e.running() && !t.ts.done && t.running == 0 && !t.rbQueued && t.quarantine == "" {
		t.rbQueued = true
		e.q.pushFront(item{p: t.root, rollback: true})
	}
}

// dispatch runs one queue item on worker w.
func (e *Engine) dispatch(w *worker, it item) {
	p := it.p
	t := p.t
	e.mu.Lock()
	if it.rollback {
		t.rbQueued = false
		if !e.running() || !t.ts.failed || t.ts.done || t.quarantine != "" || t.running != 0 {
			e.mu.Unlock()
			return
		}
		t.running++
		e.mu.Unlock()
		e.rollbackStep(w, t)
		return
	}
	p.queued = false
	if p.running {
		e.mu.Unlock()
		panic(fmt.Sprintf("procedure: internal error: procedure %d dispatched while running", p.id))
	}
	if !e.canRunLocked(p) {
		e.releaseStepLocksLocked(p) // granted while it waited, and no longer of use
		e.mu.Unlock()
		return
	}
	p.running = true
	t.running++
	e.changedLocked(p.id)
	state, steps, timeout := p.ps.next, p.ps.steps, p.timeoutDue
	ctx, cancel := context.WithCancelCause(e.ctx)
	p.run = &stepRun{state: state, steps: steps, cancel: cancel}
	needLocks := p.typ.locks != nil && p.rd().stepLocks == nil && p.rd().holdLocks == nil
	e.mu.Unlock()
	e.forwardStep(ctx, w, p, state, steps, timeout, needLocks)
	cancel(nil)
}

// decodeData decodes data of version through ti's upgrade and codec. A
// panicking codec or upgrade is an error, not a crash.
func (e *Engine) decodeData(ti *typeInfo, version uint32, raw []byte) (d any, err error) {
	if ti == nil {
		return nil, errors.New("unknown type")
	}
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("panic decoding data: %v", r)
		}
	}()
	b := raw
	switch {
	case version > ti.version:
		return nil, fmt.Errorf("data of %s version %d, newer than this program's %d", ti.name, version, ti.version)
	case version < ti.version:
		if ti.upgrade == nil {
			return nil, fmt.Errorf("data of %s version %d and no upgrade to version %d", ti.name, version, ti.version)
		}
		if b, err = ti.upgrade(version, raw); err != nil {
			return nil, fmt.Errorf("upgrade %s data from version %d: %w", ti.name, version, err)
		}
	}
	d, err = ti.decode(b)
	if err != nil {
		return nil, fmt.Errorf("decode %s data: %w", ti.name, err)
	}
	return d, nil
}

// ensureData decodes p's data if only its encoding is known. It returns
// false (and quarantines the tree) if that fails. The caller holds p.
func (e *Engine) ensureData(p *proc) bool {
	if p.data != nil {
		return true
	}
	d, err := e.decodeData(p.typ, p.version, p.raw)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		p.quarantine = err.Error()
		e.quarantineLocked(p.t, fmt.Sprintf("procedure %d: %v", p.id, err))
		return false
	}
	p.data, p.raw, p.version = d, nil, p.typ.version
	return true
}

// reloadData replaces p's data by the stored one, dropping what a step
// that persisted nothing changed. The caller holds p.
func (e *Engine) reloadData(p *proc) {
	b, ok, err := e.procsC.Get(e.store.Latest(), uint64(p.id))
	var r *record
	if err == nil && ok {
		r, err = decodeRecord(b)
	}
	if err == nil && !ok {
		err = errors.New("record missing")
	}
	var d any
	if err == nil {
		d, err = e.decodeData(p.typ, r.version, r.data)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		if !p.t.ts.done {
			e.quarantineLocked(p.t, fmt.Sprintf("procedure %d: reload data: %v", p.id, err))
		}
		return
	}
	p.data, p.raw, p.version = d, nil, p.typ.version
}

// callStep calls a step's function, Execute or OnTimeout (what names
// it), turning a panic into the step's error.
func (e *Engine) callStep(ctx context.Context, what string, fn func(ctx context.Context, env *Env, state int64, data any) (Next, error),
	env *Env, p *proc, state int64) (next Next, err error) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("procedure: "+what+" panicked", "id", p.id, "type", p.typeName, "state", state, "panic", r, "stack", string(debug.Stack()))
			in := p.typeName
			if what != "Execute" {
				in = what + " of " + in
			}
			next, err = Next{}, fmt.Errorf("panic in %s state %s: %v", in, p.typ.stateName(state), r)
		}
	}()
	return fn(ctx, env, state, p.data)
}

func (e *Engine) callRollback(env *Env, p *proc, state int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("procedure: Rollback panicked", "id", p.id, "type", p.typeName, "state", state, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic in rollback of %s state %s: %v", p.typeName, p.typ.stateName(state), r)
		}
	}()
	return p.typ.rollback(e.ctx, env, state, p.data)
}

// forwardStep runs one Execute of p (held by this worker), or its
// OnTimeout if its timeout passed, and hands its commit to the
// committer, so that the worker is free while the commit waits for the
// disk. p stays held until the commit is durable: its next step never
// starts before. First it takes the locks the step needs (needLocks: it
// holds none yet), all or none; if it cannot, p is parked without a
// worker until it can.
func (e *Engine) forwardStep(ctx context.Context, w *worker, p *proc, state int64, steps uint32, timeout timeoutKind, needLocks bool) {
	t := p.t
	info := StepInfo{ID: p.id, Root: t.root.id, Type: p.typeName, State: state, Step: int(steps)}
	h := &e.opts.Hooks
	if h.StepStart != nil {
		h.StepStart(info)
	}
	if !e.ensureData(p) {
		e.endStep(p, info, endPlain, nil)
		return
	}
	var lockErr error
	if needLocks {
		var parked bool
		if lockErr, parked = e.takeStepLocks(p, state); parked {
			e.endStep(p, info, parkLocks, nil)
			return
		}
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrBypassed) || errors.Is(cause, ErrAborted) || !e.running() {
		// Bypassed, or its tree aborted, since it was taken: it does not
		// run (an abort already put its state on the rollback stack). Or
		// the engine is stopping or failed, which cancels every step's
		// context with its own cause (hiding a bypass's): the step would
		// be dropped anyway, and it runs again after a restart.
		e.endStep(p, info, endPlain, nil)
		return
	}
	env := &Env{e: e, id: p.id, parent: p.parent, root: t.root.id, timedOut: timeout}
	nx, err := e.runStep(ctx, w, env, p, state, timeout, lockErr)
	if !e.running() {
		// Stopping: drop the step; it runs again after a restart.
		e.endStep(p, info, endPlain, nil)
		return
	}
	if err == nil {
		nx, err = e.checkNext(p, state, nx)
	}
	if err == nil && h.FailStep != nil {
		err = h.FailStep(info)
	}
	if err == nil && nx.kind == nextYield {
		e.reloadData(p)
		e.endStep(p, info, yieldBack, nil)
		return
	}
	if err != nil && IsRetryable(err) && e.retryAttempt(p) {
		// Nothing of the attempt commits: no store write per retry.
		e.reloadData(p)
		e.endStep(p, info, retryLater, err)
		return
	}
	e.pipeline.send(e.stepCommit(p, info, nx, err, timeout, lockErr != nil, env))
}

// takeStepLocks takes the locks p's step of state needs, all or none. If
// it cannot, p's request waits in the lock table and parked is true. An
// error computing them (the type's Locks) fails the step.
func (e *Engine) takeStepLocks(p *proc, state int64) (lockErr error, parked bool) {
	ls, err := e.lockSet(p, state)
	if err != nil || len(ls) == 0 {
		return err, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	req, ok := e.locks.acquire(p, ls, lockWait{p: p})
	switch {
	case !ok:
		p.sched().stepLocks, p.lockWaiting = req, true
	case p.typ.holdLocks:
		p.sched().holdLocks = req
	default:
		p.sched().stepLocks = req
	}
	e.changedLocked(p.id) // Info.Locks or WaitingForLocks changed
	return nil, !ok
}

// runStep calls p's Execute, or its OnTimeout for a passed timeout, with
// the worker marked busy for the stuck-worker monitor. A step whose locks
// could not be computed (lockErr) fails with that error without running.
func (e *Engine) runStep(ctx context.Context, w *worker, env *Env, p *proc, state int64, timeout timeoutKind, lockErr error) (Next, error) {
	start := time.Now()
	w.busy.Store(start.UnixNano())
	var next Next
	var err error
	switch {
	case lockErr != nil:
		err = lockErr
	case timeout != 0:
		next, err = e.callStep(ctx, "OnTimeout", p.typ.onTimeout, env, p, state)
	default:
		next, err = e.callStep(ctx, "Execute", p.typ.execute, env, p, state)
	}
	took := time.Since(start)
	w.busy.Store(0)
	env.closed.Store(true)
	p.typ.stats.latency.observe(took)
	return next, err
}

// checkNext checks the Next a step returned (an event's name, a Spawn's
// children), and resolves a Sleep's duration to a time on the engine's
// clock.
func (e *Engine) checkNext(p *proc, state int64, next Next) (Next, error) {
	switch next.kind {
	case nextGoTo, nextAgain, nextDone, nextYield:
	case nextEvent:
		return next, checkEventName(next.event)
	case nextSleep:
		if next.until.IsZero() {
			next.until = e.opts.Clock.Now().Add(next.sleep)
		}
	case nextSpawn:
		for _, ch := range next.children {
			switch {
			case ch.t == nil:
				return next, errors.New("procedure: Spawn with a zero Child")
			case ch.err != nil:
				return next, ch.err
			case e.types[ch.t.name] != ch.t:
				return next, fmt.Errorf("procedure: child type %s is not registered on this engine", ch.t.name)
			}
		}
	default:
		return next, fmt.Errorf("procedure: %s state %s returned a zero Next", p.typeName, p.typ.stateName(state))
	}
	return next, nil
}

// retryAttempt reports whether a step of p that returned a Retryable
// error is retried later (not past the point of no return, attempts
// left) rather than failed.
func (e *Engine) retryAttempt(p *proc) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !p.t.ts.pastPONR && (p.typ.retry.Attempts == 0 || p.retries < p.typ.retry.Attempts)
}

// stepCommit returns the commit of p's step: its outcome (next, or its
// failure err; notRun: it failed before Execute ran), its recorded
// writes and signals if it succeeded, and p's encoded data.
func (e *Engine) stepCommit(p *proc, info StepInfo, next Next, err error, timeout timeoutKind, notRun bool, env *Env) *commit {
	c := e.pipeline.newCommit()
	c.kind, c.p, c.t, c.info, c.state = kindStep, p, p.t, info, info.State
	c.next, c.stepErr, c.timeoutKind, c.notRun = next, err, timeout, notRun
	if err == nil {
		c.fx = env.fx
		if env.timeout > 0 {
			c.stepDeadline = e.opts.Clock.Now().Add(env.timeout).UnixNano()
		}
	}
	if b, encErr := p.typ.encode(p.data); encErr != nil {
		if c.stepErr == nil {
			c.stepErr = fmt.Errorf("procedure: encode data: %w", encErr)
		}
		c.fx = effects{}
	} else {
		c.data = b
	}
	return c
}

type endHow int

const (
	endPlain   endHow = iota
	yieldBack         // requeue at the back (a yield)
	parkLocks         // parked until its lock request is granted
	retryLater        // parked until its retry delay passed
)

// endStep lets go of p after a step that committed nothing, and of the
// locks it took for the step (unless it is parked waiting for them).
func (e *Engine) endStep(p *proc, info StepInfo, how endHow, err error) {
	if h := e.opts.Hooks.StepEnd; h != nil {
		h(info) // before p is let go, so that hooks see steps of p in order
	}
	e.mu.Lock()
	t := p.t
	p.running, p.run = false, nil
	t.running--
	e.changedLocked(p.id)
	if how == parkLocks {
		// Granted between the request and now: run with them, or let
		// them go if p can no longer run.
		if !p.lockWaiting {
			if e.canRunLocked(p) {
				e.enqueueLocked(p, true)
			} else {
				e.releaseStepLocksLocked(p)
			}
		}
	} else {
		e.releaseStepLocksLocked(p)
	}
	switch how {
	case yieldBack:
		e.enqueueLocked(p, false)
	case retryLater:
		if p.typ != nil {
			p.typ.stats.retries.Add(1)
		}
		if e.canRunLocked(p) {
			e.retryLaterLocked(p, info.State, err, "procedure: step failed; retrying")
		}
	}
	if e.procs[p.id] == p {
		// A step timeout that passed while the step ran still stands:
		// nothing replaced it.
		e.armTimeoutLocked(p)
	}
	e.maybeRollbackLocked(t)
	e.mu.Unlock()
}

// pushEntryLocked adds en (a state, the time its step commits, whether
// it spawned children) to p's executed states, at the top of the tree's
// rollback stack, unless p's last executed state is the same one and did
// not spawn children: a state run again (Again, or a GoTo to itself) is
// one entry, rolled back once, and takes the later time (and spawn). It
// runs inside the commit function, and the store runs commit functions
// one at a time, so the stack's index order is the commit order of the
// tree's steps (whichever of its procedures made them). The state whose
// Execute failed gets an entry too (it may have done part of its work),
// unless the step failed before Execute ran (commit.notRun).
func (e *Engine) pushEntryLocked(p *proc, en entry) {
	es := p.ps.entries
	if n := len(es); n > 0 && es[n-1].state == en.state && !es[n-1].spawn {
		if top := es[n-1]; top.at != en.at || en.spawn {
			es = slices.Clone(es) // entries are never changed in place (undo keeps the old slice)
			es[n-1].at, es[n-1].spawn = en.at, en.spawn
			p.ps.entries = es
		}
		return
	}
	t := p.t
	en.idx = t.ts.nextIdx
	p.ps.entries = append(es, en)
	t.ts.nextIdx++
}

// childDoneLocked counts a child of parent as finished; the last one
// makes the parent runnable, or, if the parent was bypassed as an
// ancestor, finishes it too (and so on up: the root completes the tree).
func (e *Engine) childDoneLocked(tx *durable.Tx, c *commit, parent *proc, now int64) error {
	c.markDirtyNoPut(parent)
	parent.ps.pending--
	if parent.ps.pending > 0 || parent.ps.status != Waiting {
		return nil
	}
	if parent.ps.bypass == nil {
		parent.ps.status = Runnable
		c.wake = append(c.wake, parent)
		e.checkPONRLocked(parent.t, parent, parent.ps.next)
		return nil
	}
	// Bypassed as an ancestor: it finishes without running further states.
	c.markDirty(parent)
	parent.ps.status = Succeeded
	parent.ps.updated = now
	parent.ps.finished() // no locks, no timeout; not suspended
	c.finished = append(c.finished, parent)
	t := parent.t
	if parent == t.root {
		return e.completeLocked(tx, c, t, Succeeded, now)
	}
	if grand := e.procs[parent.parent]; grand != nil {
		return e.childDoneLocked(tx, c, grand, now)
	}
	return nil
}

// checkPONRLocked marks t past its point of no return if a procedure of
// type ti is now runnable at state (or runs it). A procedure waiting for
// children is not there yet: its children may still fail and roll the
// tree back.
func (e *Engine) checkPONRLocked(t *tree, p *proc, state int64) {
	if !t.ts.failed && !t.ts.pastPONR && p.typ.noReturn != nil && p.typ.noReturn(state) {
		t.ts.pastPONR = true
		t.ts.ponr = fmt.Sprintf("procedure %d (%s) is at state %s", p.id, p.typeName, p.typ.stateName(state))
	}
}

// completeLocked finishes tree t with status: the root's record becomes
// its result, and the descendants' records are deleted. The tree leaves
// memory after the commit (retireLocked).
func (e *Engine) completeLocked(tx *durable.Tx, c *commit, t *tree, status Status, now int64) error {
	root := t.root
	for _, q := range t.procs[1:] {
		if err := e.deleteRecordLocked(tx, c, q.id); err != nil {
			return err
		}
	}
	c.markDirty(root)
	if status == RolledBack && root.ps.err == nil {
		root.ps.err = e.treeErrorLocked(t)
	}
	root.ps.status = status
	root.ps.completed = now
	root.ps.updated = now
	// root.ps.entries stay: the result keeps its timeline (Info.History).
	root.ps.finished() // no wait, timeout or locks
	t.ts.done = true
	c.completed = true
	return nil
}

// treeErrorLocked returns the error a rolled-back tree reports: the
// root's own (its failure or abort), else that of the failed procedure
// with the smallest id (the same choice before and after a restart),
// marked as a child's (ErrChildFailed).
func (e *Engine) treeErrorLocked(t *tree) *Error {
	if t.root.ps.err != nil {
		return t.root.ps.err
	}
	var best *proc
	for _, q := range t.procs {
		if q.ps.err != nil && (best == nil || q.id < best.id) {
			best = q
		}
	}
	if best != nil {
		return best.ps.err.withOutcome(outcomeChildFailed)
	}
	return &Error{Source: fmt.Sprintf("%s#%d", t.root.typeName, t.root.id), Message: "rolled back"}
}

// retireLocked removes a completed tree from memory and keeps its result
// for the sweeper.
func (e *Engine) retireLocked(t *tree, res *Result) {
	root := t.root
	e.stopTimerLocked(t.rbTimer) // a bypass completed it while its rollback waited to retry
	t.rbTimer = nil
	if r := t.rbLocks; r != nil {
		t.rbLocks = nil
		if e.locks.waiting(r) {
			e.locks.cancelWait(r)
		} else {
			e.locks.release(r)
		}
	}
	if root.typ != nil {
		root.typ.stats.retired(root) // before the waiters are told: they may read Stats at once
	}
	for _, q := range t.procs {
		e.dropProcLocked(q)
		if q == root {
			e.indexLocked(q) // its record stays: the result
			e.ix.countLive(q, false)
		} else {
			e.unindexLocked(q)
		}
		if e.procs[q.id] == q {
			delete(e.procs, q.id)
		}
		if q == root {
			e.notifyLocked(q.id, root.id, res)
		} else {
			e.notifyLocked(q.id, root.id, nil)
		}
	}
	delete(e.trees, root.id)
	if t.quarantine != "" {
		e.quarantined--
	}
	e.results.add(root.id, e.expiry(root.ps.completed, root.ps.acked))
}

// topLocked returns the procedure owning the top of t's rollback stack
// and the state there (nil if the stack is empty). It checks that the
// top is where the stack size says.
func (e *Engine) topLocked(t *tree) (*proc, int64, error) {
	var top *proc
	var best uint32
	for _, q := range t.procs {
		if n := len(q.ps.entries); n > 0 {
			if idx := q.ps.entries[n-1].idx; top == nil || idx > best {
				top, best = q, idx
			}
		}
	}
	if top == nil {
		if t.ts.nextIdx != 0 {
			return nil, 0, fmt.Errorf("rollback stack of %d entries, but no procedure holds any", t.ts.nextIdx)
		}
		return nil, 0, nil
	}
	if best != t.ts.nextIdx-1 {
		return nil, 0, fmt.Errorf("rollback stack top is index %d, expected %d", best, t.ts.nextIdx-1)
	}
	return top, top.ps.entries[len(top.ps.entries)-1].state, nil
}

// rollbackStep undoes the top of t's rollback stack: it calls Rollback of
// the owning procedure for its last executed state (skipped if that
// procedure was bypassed) and commits the pop. When the stack is empty,
// the same commit completes the tree as rolled back. A failing Rollback
// is retried after a bounded delay.
func (e *Engine) rollbackStep(w *worker, t *tree) {
	e.mu.Lock()
	top, state, err := e.topLocked(t)
	if err != nil {
		e.quarantineLocked(t, err.Error())
		t.running--
		e.mu.Unlock()
		return
	}
	// With the stack empty, the step only completes the tree: it is a
	// step of the root.
	info := StepInfo{Root: t.root.id, Rollback: true, ID: t.root.id, Type: t.root.typeName, Step: int(t.root.ps.steps)}
	skip := true
	if top != nil {
		info.ID, info.Type, info.State, info.Step = top.id, top.typeName, state, int(top.ps.steps)
		skip = (top.ps.bypass != nil && top.ps.bypass.Role != BypassAncestor) || e.keptLocked(top)
	}
	e.mu.Unlock()
	h := &e.opts.Hooks
	if h.StepStart != nil {
		h.StepStart(info)
	}
	c := e.pipeline.newCommit()
	c.kind, c.p, c.t, c.info, c.state = kindRollback, top, t, info, state
	if !skip {
		if !e.ensureData(top) {
			e.endRollback(t, info)
			return
		}
		e.mu.Lock()
		need := top.typ.locks != nil && top.rd().holdLocks == nil && t.rbLocks == nil
		e.mu.Unlock()
		if need {
			// The rollback of a state takes the locks its Execute took
			// (a procedure that holds its locks has them already).
			ls, err := e.lockSet(top, state)
			if err != nil {
				e.retryRollback(t, top, state, err, info)
				return
			}
			if len(ls) > 0 && !e.rollbackLocks(t, top, ls, info) {
				return
			}
		}
		env := &Env{e: e, id: top.id, parent: top.parent, root: t.root.id, rollback: true}
		start := time.Now()
		w.busy.Store(start.UnixNano())
		err := e.callRollback(env, top, state)
		w.busy.Store(0)
		env.closed.Store(true)
		top.typ.stats.latency.observe(time.Since(start))
		if err == nil {
			c.fx = env.fx
			c.data, err = top.typ.encode(top.data)
		}
		if err != nil {
			e.retryRollback(t, top, state, err, info)
			return
		}
	}
	e.pipeline.send(c)
}

// keptLocked reports whether p's states are left unrolled when its tree
// rolls back: p, or an ancestor of p, is of a KeepSucceeded type and
// succeeded (then all its descendants did too).
func (e *Engine) keptLocked(p *proc) bool {
	for q, n := p, 0; q != nil && n < 1<<20; q, n = e.procs[q.parent], n+1 {
		if q.ps.status == Succeeded && q.typ != nil && q.typ.keep {
			return true
		}
		if q.parent == 0 {
			break
		}
	}
	return false
}

// rollbackLocks takes ls for the rollback step of t's top procedure p. If
// it cannot, the rollback is parked without a worker until it can, and
// rollbackLocks returns false.
func (e *Engine) rollbackLocks(t *tree, p *proc, ls []Lock, info StepInfo) bool {
	e.mu.Lock()
	req, ok := e.locks.acquire(p, ls, lockWait{t: t})
	t.rbLocks = req
	if !ok {
		t.rbQueued = true // parked until granted
	}
	e.mu.Unlock()
	if ok {
		return true
	}
	if h := e.opts.Hooks.StepEnd; h != nil {
		h(info)
	}
	e.mu.Lock()
	t.running--
	if !e.locks.waiting(req) && t.rbLocks == req {
		t.rbQueued = false // granted meanwhile
		e.maybeRollbackLocked(t)
	}
	e.mu.Unlock()
	return false
}

// releaseRollbackLocksLocked lets go of the locks t's rollback step took.
func (e *Engine) releaseRollbackLocksLocked(t *tree) {
	if r := t.rbLocks; r != nil {
		if !e.locks.waiting(r) {
			t.rbLocks = nil
			e.locks.release(r)
		}
	}
}

// retryRollback schedules t's rollback again after a failed rollback step.
func (e *Engine) retryRollback(t *tree, p *proc, state int64, err error, info StepInfo) {
	if h := e.opts.Hooks.StepEnd; h != nil {
		h(info)
	}
	e.mu.Lock()
	t.running--
	e.releaseRollbackLocksLocked(t)
	if e.running() {
		t.retries++
		t.lastErr = err.Error()
		e.changedLocked(t.root.id)
		e.changedLocked(p.id)
		d := p.typ.retry.delay(t.retries)
		e.log.Warn("procedure: rollback step failed; retrying", "root", t.root.id, "id", p.id, "type", p.typeName,
			"state", p.typ.stateName(state), "retries", t.retries, "delay", d, "err", err)
		t.rbQueued = true // parked until the timer
		t.rbTimer = e.afterFuncLocked(d, func() {
			e.mu.Lock()
			t.rbTimer = nil
			t.rbQueued = false
			e.maybeRollbackLocked(t)
			e.mu.Unlock()
		})
	}
	e.mu.Unlock()
}

func (e *Engine) endRollback(t *tree, info StepInfo) {
	if h := e.opts.Hooks.StepEnd; h != nil {
		h(info)
	}
	e.mu.Lock()
	t.running--
	e.releaseRollbackLocksLocked(t)
	e.maybeRollbackLocked(t)
	e.mu.Unlock()
}
