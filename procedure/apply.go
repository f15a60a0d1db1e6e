package procedure

import (
	"errors"
	"fmt"

	"github.com/procyon-dev/procyon/durable"
)

// This file applies commits to the engine's state inside the store
// transaction of their batch: a forward step, a rollback step, a
// submission. Each change is recorded for undo (undo.go) and its records
// are stored (putrecords.go); what follows once the batch is durable is
// in after.go.

// idBlock: ids are persisted as a high-water mark, raised by this much
// when the next id reaches it, so that only one submission in idBlock
// writes it.
const idBlock = 1024

// metaNextID is the meta collection's key of the id high-water mark. Part
// of the on-disk format.
const metaNextID = "next-id"

// allocIDLocked returns a new id, raising the persisted high-water mark in
// tx when needed.
func (e *Engine) allocIDLocked(tx *durable.Tx, c *commit) (ID, error) {
	id := e.nextID
	e.nextID++
	if e.nextID > e.hwm {
		if !c.undo.hwmSet {
			c.undo.hwm, c.undo.hwmSet = e.hwm, true
		}
		e.hwm = e.nextID + idBlock
		c.undo.hwmAfter = e.hwm
		if err := e.meta.Put(tx, metaNextID, e.hwm); err != nil {
			return 0, err
		}
	}
	return ID(id), nil
}

// runWrites runs a step's recorded writes in tx.
func runWrites(tx *durable.Tx, writes []func(*durable.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &writeError{fmt.Errorf("panic: %v", r)}
		}
	}()
	for _, w := range writes {
		if err := w(tx); err != nil {
			return &writeError{err}
		}
	}
	return nil
}

var errBadWrite = errors.New("procedure: a recorded write failed")

// badWrite is the commit whose recorded write failed a batch's
// transaction (errBadWrite), and the write's error.
type badWrite struct {
	c   *commit
	err error
}

// applyBatchTx is the function of a batch's transaction: it prechecks
// every commit, runs their recorded writes (without the engine's lock:
// they are the users' code), and applies them to the engine's state,
// encoding the procedures' records under the engine's lock into recs and
// putting them in tx after it is released, so that the B-tree inserts
// never hold up the workers.
func (e *Engine) applyBatchTx(tx *durable.Tx, batch []*commit, recs *recWrites, bad *badWrite) error {
	e.mu.Lock()
	for _, c := range batch {
		c.reset()
		c.outcome = e.precheckLocked(tx, c)
	}
	e.mu.Unlock()
	for _, c := range batch {
		if c.outcome == nil && c.stepErr == nil && len(c.fx.writes) > 0 {
			if err := runWrites(tx, c.fx.writes); err != nil {
				bad.c, bad.err = c, err
				return errBadWrite
			}
		}
	}
	recs.reset()
	e.mu.Lock()
	if err := e.applyCommitsLocked(tx, batch, recs); err != nil {
		e.mu.Unlock()
		return err
	}
	e.mu.Unlock()
	return recs.apply(tx, e.procsC)
}

// applyCommitsLocked applies the batch's commits that passed the
// precheck. A commit that is to be retried (errRetry) before it changed
// anything is only marked so.
func (e *Engine) applyCommitsLocked(tx *durable.Tx, batch []*commit, recs *recWrites) error {
	for _, c := range batch {
		if c.outcome != nil {
			continue
		}
		c.recs = recs
		err := e.applyLocked(tx, c)
		c.recs = nil
		if err != nil {
			if errors.Is(err, errRetry) && !c.applied {
				c.outcome = err
				continue
			}
			return err
		}
	}
	return nil
}

// precheckLocked says whether c is to be applied (nil), or dropped with
// nothing written.
func (e *Engine) precheckLocked(tx *durable.Tx, c *commit) error {
	switch c.kind {
	case kindStep:
		if p, t := c.p, c.t; p.ps.bypass != nil || t.ts.done || t.quarantine != "" {
			return errDiscard // bypassed, completed or quarantined meanwhile
		}
	case kindRollback:
		if t := c.t; t.ts.done || t.quarantine != "" {
			return errDiscard
		}
	case kindSubmit:
		if c.sopts.Nonce != "" {
			id, ok, err := e.nonces.Get(tx, c.sopts.Nonce)
			if err != nil {
				return err
			}
			if ok {
				c.dupID = ID(id)
				return errDup
			}
		}
	}
	return nil
}

func (e *Engine) applyLocked(tx *durable.Tx, c *commit) error {
	switch c.kind {
	case kindStep:
		return e.applyStepLocked(tx, c)
	case kindRollback:
		return e.applyRollbackLocked(tx, c)
	}
	return e.applySubmitLocked(tx, c)
}

// applyStepLocked applies a forward step: its procedure's new state (and
// its new children, or its tree's completion).
func (e *Engine) applyStepLocked(tx *durable.Tx, c *commit) error {
	p, t := c.p, c.t
	if c.stepErr != nil && t.ts.pastPONR && !t.ts.failed {
		return errRetry
	}
	c.begin(t)
	c.markDirty(p)
	now := e.now()
	ps := &p.ps
	stepExtLocked(c)
	if c.stepErr == nil {
		if err := e.applyEventsLocked(tx, c, now); err != nil {
			return err
		}
	}
	var err error
	switch {
	case c.stepErr != nil:
		e.stepFailedLocked(c, now)
	case c.next.kind == nextDone:
		err = e.stepDoneLocked(tx, c, now)
	case c.next.kind == nextSpawn && len(c.next.children) > 0:
		err = e.spawnLocked(tx, c, now)
	case c.next.kind == nextEvent:
		err = e.waitEventLocked(tx, c, now)
	case c.next.kind == nextSleep:
		e.sleepLocked(c, now)
	default: // GoTo, Again, Spawn without children
		e.pushEntryLocked(p, entry{state: c.state, at: now})
		if c.next.kind != nextAgain {
			ps.next = c.next.state
		}
		e.checkPONRLocked(t, p, ps.next)
		c.wake = append(c.wake, p)
	}
	if err != nil {
		return err
	}
	ps.steps++
	ps.updated = now
	return e.putDirtyLocked(tx, c)
}

// stepExtLocked updates the step's procedure's locks, timeout and step
// timeout as the step's commit stores them.
func stepExtLocked(c *commit) {
	p := c.p
	ps := &p.ps
	if p.rd().holdLocks != nil && ps.locks() == nil {
		ps.w().locks = p.rd().holdLocks.locks // stored with the step that took them
	}
	if c.timeoutKind == timeoutProc {
		ps.w().timeout = 0 // handled: it does not fire again
	}
	if ps.stepTimeout() != c.stepDeadline {
		ps.w().stepTimeout = c.stepDeadline // the wait it bounded ended with this step
	}
}

// stepFailedLocked records a failed step: its procedure failed, its tree
// rolls back.
func (e *Engine) stepFailedLocked(c *commit, now int64) {
	p, ps := c.p, &c.p.ps
	if !c.notRun { // Execute may have done part of its work: its Rollback runs
		e.pushEntryLocked(p, entry{state: c.state, at: now})
	}
	ps.status = Failed
	if ps.err == nil { // else the first failure (an abort, a timeout) stays
		ps.err = toError(c.stepErr, fmt.Sprintf("%s#%d", p.typeName, p.id))
	}
	c.t.ts.failed = true
}

// stepDoneLocked records a procedure that succeeded: a root completes its
// tree, a child tells its parent.
func (e *Engine) stepDoneLocked(tx *durable.Tx, c *commit, now int64) error {
	p, t, ps := c.p, c.t, &c.p.ps
	e.pushEntryLocked(p, entry{state: c.state, at: now})
	ps.status = Succeeded
	ps.finished() // no locks, no timeout; not suspended
	c.finished = append(c.finished, p)
	if t.ts.failed {
		return nil
	}
	if p == t.root {
		return e.completeLocked(tx, c, t, Succeeded, now)
	}
	if parent := e.procs[p.parent]; parent != nil {
		return e.childDoneLocked(tx, c, parent, now)
	}
	return nil
}

// spawnLocked records a step that spawned children: the procedure waits
// for them, and they are created runnable.
func (e *Engine) spawnLocked(tx *durable.Tx, c *commit, now int64) error {
	p, t, ps := c.p, c.t, &c.p.ps
	e.pushEntryLocked(p, entry{state: c.state, at: now, spawn: true})
	ps.next = c.next.state
	ps.status = Waiting
	ps.pending = int32(len(c.next.children))
	for _, ch := range c.next.children {
		id, err := e.allocIDLocked(tx, c)
		if err != nil {
			return err
		}
		cp := &proc{id: id, parent: p.id, t: t, typ: ch.t, typeName: ch.t.name, version: ch.t.version, created: now,
			submitter: p.submitter, raw: ch.enc, ps: pstate{status: Runnable, next: ch.t.initial, updated: now}}
		if ch.t.timeout > 0 {
			cp.ps.w().timeout = now + int64(ch.t.timeout)
		}
		e.procs[id] = cp
		e.indexNewLocked(cp)
		t.procs = append(t.procs, cp)
		c.added = append(c.added, cp)
		c.markDirty(cp)
		c.wake = append(c.wake, cp)
		e.checkPONRLocked(t, cp, cp.ps.next)
	}
	return nil
}

// applyEventsLocked resets and then signals the events c's step asked
// for (Env.ResetEvent, Env.Signal). The procedures a reset event had
// woken are stored as runnable by the same transaction.
func (e *Engine) applyEventsLocked(tx *durable.Tx, c *commit, now int64) error {
	for _, ev := range c.fx.resets {
		var err error
		if c.rewrite, err = e.resetEventLocked(tx, ev, c.rewrite, c.p); err != nil {
			return err
		}
	}
	if err := e.putRewritesLocked(tx, c, c.rewrite); err != nil {
		return err
	}
	for _, ev := range c.fx.signals {
		if err := e.events.Put(tx, ev, uint64(now)); err != nil {
			return err
		}
	}
	return nil
}

// waitEventLocked records a step that waits for an event: suspended,
// unless the event is signalled in this transaction's state (so a signal
// is never lost).
func (e *Engine) waitEventLocked(tx *durable.Tx, c *commit, now int64) error {
	p, ps := c.p, &c.p.ps
	e.pushEntryLocked(p, entry{state: c.state, at: now})
	ps.next = c.next.state
	e.checkPONRLocked(c.t, p, ps.next)
	_, set, err := e.events.Get(tx, c.next.event)
	if err != nil {
		return err
	}
	if set {
		c.wake = append(c.wake, p)
	} else {
		ps.status = Suspended
		ps.w().wait = waitState{kind: waitEvent, event: c.next.event}
		e.eventWaits.suspend(p, c.next.event)
	}
	return nil
}

// sleepLocked records a step that sleeps: suspended until its time,
// unless that has passed.
func (e *Engine) sleepLocked(c *commit, now int64) {
	p, ps := c.p, &c.p.ps
	e.pushEntryLocked(p, entry{state: c.state, at: now})
	ps.next = c.next.state
	e.checkPONRLocked(c.t, p, ps.next)
	if until := c.next.until.UnixNano(); until > now {
		ps.status = Suspended
		ps.w().wait = waitState{kind: waitTimer, until: until}
	} else {
		c.wake = append(c.wake, p)
	}
}

// applyRollbackLocked applies a rollback step: pop the top of the stack,
// and complete the tree when it is empty.
func (e *Engine) applyRollbackLocked(tx *durable.Tx, c *commit) error {
	t := c.t
	c.begin(t)
	now := e.now()
	if p := c.p; p != nil {
		es := p.ps.entries
		if n := len(es); n == 0 || es[n-1].idx != t.ts.nextIdx-1 {
			return fmt.Errorf("procedure: internal error: rollback of procedure %d is not the top of the stack", p.id)
		}
		c.markDirty(p)
		top := es[len(es)-1]
		p.ps.entries = es[:len(es)-1]
		u := p.ps.undone()
		p.ps.w().undone = append(u[:len(u):len(u)], undoneEntry{state: top.state, at: top.at, undoneAt: now})
		p.ps.steps++
		p.ps.updated = now
		t.ts.nextIdx--
	} else {
		c.markDirty(t.root)
		t.root.ps.steps++
	}
	if err := e.applyEventsLocked(tx, c, now); err != nil {
		return err
	}
	if t.ts.nextIdx == 0 {
		if err := e.completeLocked(tx, c, t, RolledBack, now); err != nil {
			return err
		}
	}
	return e.putDirtyLocked(tx, c)
}

// applySubmitLocked creates a new root.
func (e *Engine) applySubmitLocked(tx *durable.Tx, c *commit) error {
	c.applied = true
	c.undo.newTree = true
	id, err := e.allocIDLocked(tx, c)
	if err != nil {
		return err
	}
	ti, now := c.ti, e.now()
	p := &proc{id: id, typ: ti, typeName: ti.name, version: ti.version, created: now, submitter: c.sopts.Submitter,
		nonce: c.sopts.Nonce, raw: c.sdata, ps: pstate{status: Runnable, next: ti.initial, updated: now}}
	if d := c.sopts.Timeout; d > 0 {
		p.ps.w().timeout = now + int64(d)
	} else if ti.timeout > 0 {
		p.ps.w().timeout = now + int64(ti.timeout)
	}
	t := &tree{root: p, procs: []*proc{p}}
	p.t = t
	c.p, c.t = p, t
	c.begin(t)
	c.markDirty(p)
	e.checkPONRLocked(t, p, p.ps.next)
	e.procs[id], e.trees[id] = p, t
	e.indexNewLocked(p)
	if c.sopts.Nonce != "" {
		if err := e.nonces.Put(tx, c.sopts.Nonce, uint64(id)); err != nil {
			return err
		}
	}
	return e.putDirtyLocked(tx, c)
}
