package procedure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/procyon-dev/procyon/durable"
)

// idBlock: ids are persisted as a high-water mark, raised by this much
// when the next id reaches it, so that only one submission in idBlock
// writes it.
const idBlock = 1024

// metaNextID is the meta collection's key of the id high-water mark. Part
// of the on-disk format.
const metaNextID = "next-id"

type commitKind uint8

const (
	kindStep     commitKind = iota // a forward step
	kindRollback                   // a rollback step (or the completion of an empty stack)
	kindSubmit                     // a new root
)

// commit is one change the committers make durable: a step's outcome, a
// rollback step, or a submission. Workers (and Submit) build it; a
// committer applies it, with the others of its batch, in one store
// transaction.
type commit struct {
	kind    commitKind
	p       *proc // the procedure whose step ran (rollback: the one popped; nil if none)
	t       *tree
	info    StepInfo
	state   int64
	next    Next
	stepErr error                        // the step failed
	writes  []func(tx *durable.Tx) error // the step's recorded writes
	signals []string                     // events the step signals (Env.Signal)
	data    []byte                       // p's encoded data after the step; nil: keep the stored data
	// timeoutKind: the step ran OnTimeout for this timeout; its commit
	// clears the procedure's timeout (the step's is replaced anyway).
	timeoutKind timeoutKind
	// stepDeadline: the step timeout the step set (Env.SetTimeout; unix
	// ns; 0: none). Its commit replaces the stored one.
	stepDeadline int64
	// notRun: the step failed before Execute ran (its locks could not be
	// computed): there is nothing of it to roll back.
	notRun bool

	// Submissions: the request, and the outcome for the waiting caller.
	ti    *typeInfo
	sdata []byte
	sopts SubmitOptions
	done  chan struct{}
	id    ID
	err   error

	// Set by the commit function; reset before each attempt.
	outcome   error // nil: applied; errDiscard, errRetry, errDup: nothing written
	dupID     ID
	applied   bool // in-memory state was changed: undo it if the transaction fails
	dirty     []*proc
	wake      []*proc
	finished  []*proc
	added     []*proc
	completed bool
	undo      undoLog
	buf       []byte
	recs      *recWrites // the batch's record writes, while it is applied
	result    *Result    // the completed root's result, for its waiters
}

// newCommit returns a zero commit, reusing one given back by freeCommit:
// at hundreds of thousands of steps a second, commits are a large share
// of the garbage.
func (e *Engine) newCommit() *commit { return e.commitPool.Get().(*commit) }

// freeCommit gives c back for reuse. Only the code that last refers to c
// calls it: afterBatch for a step or rollback commit that committed, the
// submitter for its submission once done is closed.
func (e *Engine) freeCommit(c *commit) {
	clear(c.dirty[:cap(c.dirty)])
	clear(c.wake[:cap(c.wake)])
	clear(c.finished[:cap(c.finished)])
	clear(c.added[:cap(c.added)])
	*c = commit{dirty: c.dirty[:0], wake: c.wake[:0], finished: c.finished[:0], added: c.added[:0], buf: c.buf[:0]}
	e.commitPool.Put(c)
}

func (c *commit) reset() {
	c.outcome, c.applied, c.completed, c.result = nil, false, false, nil
	c.dirty, c.wake, c.finished, c.added = c.dirty[:0], c.wake[:0], c.finished[:0], c.added[:0]
	c.undo = undoLog{}
}

// undoLog keeps what a commit function changed in memory, to put it back
// if the transaction fails after the function returned (a record too
// large for the log): the store undoes its side, this undoes ours.
type undoLog struct {
	procs    []savedProc
	procsArr [2]savedProc // procs' first backing array: most commits change one or two
	tree     *tree
	ts       tstate
	nprocs   int    // len(tree.procs) before
	version  uint64 // tree.ts.version after this commit's change
	newTree  bool   // the commit created the tree (a submission)
	hwm      uint64 // e.hwm before, if hwmSet
	hwmSet   bool
	hwmAfter uint64
}

type savedProc struct {
	p  *proc
	ps pstate
}

func (u *undoLog) saveProc(p *proc) {
	for _, s := range u.procs {
		if s.p == p {
			return
		}
	}
	if u.procs == nil {
		u.procs = u.procsArr[:0]
	}
	u.procs = append(u.procs, savedProc{p, p.ps})
}

// begin records the tree's state before the commit changes it, and marks
// the change.
func (c *commit) begin(t *tree) {
	c.applied = true
	c.undo.tree, c.undo.ts, c.undo.nprocs = t, t.ts, len(t.procs)
	t.ts.version++
	c.undo.version = t.ts.version
}

func (c *commit) markDirty(p *proc) {
	if !slices.Contains(c.dirty, p) {
		c.undo.saveProc(p)
		c.dirty = append(c.dirty, p)
	}
}

// markDirtyNoPut saves p for undo without writing its record: a change
// that is derived on load (a parent's count of running children).
func (c *commit) markDirtyNoPut(p *proc) { c.undo.saveProc(p) }

// undoLocked puts back what c's commit function changed. If another commit
// changed the tree since, that is no longer possible: the tree is
// quarantined until a restart rebuilds it from the store. (Within a batch
// the undo runs in reverse, so this happens only across batches.)
func (e *Engine) undoLocked(c *commit) {
	u := &c.undo
	if u.hwmSet && e.hwm == u.hwmAfter {
		e.hwm = u.hwm
	}
	t := u.tree
	if t == nil {
		return
	}
	if t.ts.version != u.version {
		e.quarantineLocked(t, "a commit of the tree failed after later commits of the tree; restart to rebuild it from the store")
		return
	}
	for i := len(u.procs) - 1; i >= 0; i-- {
		u.procs[i].p.ps = u.procs[i].ps
	}
	for _, p := range c.added {
		delete(e.procs, p.id)
	}
	t.ts = u.ts
	t.procs = t.procs[:u.nprocs]
	if u.newTree {
		delete(e.trees, t.root.id)
		delete(e.procs, t.root.id)
	}
}

func (e *Engine) quarantineLocked(t *tree, reason string) {
	if t.quarantine != "" {
		return
	}
	t.quarantine = reason
	id := ID(0)
	if t.root != nil {
		id = t.root.id
	}
	e.log.Error("procedure: tree quarantined", "root", id, "reason", reason)
}

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

// record returns p's record with data.
func (p *proc) record(data []byte) record {
	r := record{
		status: p.ps.status, aborted: p.ps.aborted, parent: p.parent, typ: p.typeName, version: p.version,
		next: p.ps.next, steps: p.ps.steps, entries: p.ps.entries, created: p.created, updated: p.ps.updated,
		submitter: p.submitter, nonce: p.nonce, data: data, err: p.ps.err, bypass: p.ps.bypass,
		completed: p.ps.completed, acked: p.ps.acked, timeout: p.ps.timeout(), locks: p.ps.locks(),
		stepTimeout: p.ps.stepTimeout(),
	}
	if p.ps.status == Suspended {
		r.wait = p.ps.wait()
	}
	if p.t != nil && p.t.root != nil {
		r.root = p.t.root.id
	}
	return r
}

// putDirtyLocked stores the record of every procedure c changed. The data
// of the procedure whose step ran is c.data; the others' is what the
// store holds (their data belongs to whoever runs them). With c.recs set
// (a batch of commits), the records are only encoded here, under the
// engine's lock, and put in the transaction after it is released.
func (e *Engine) putDirtyLocked(tx *durable.Tx, c *commit) error {
	for _, q := range c.dirty {
		e.clearWokenLocked(q) // its record no longer says suspended
		if c.completed && q != c.t.root {
			continue // completeLocked deleted its record
		}
		var data []byte
		shared := false // data is in a buffer that is reused or in the store
		switch {
		case q == c.p && c.data != nil:
			data = c.data
		case q.raw != nil:
			data = q.raw
		default:
			shared = true
			b, ok := c.recs.lookup(uint64(q.id))
			if !ok {
				var err error
				if b, ok, err = e.procsC.Get(tx, uint64(q.id)); err != nil {
					return err
				}
			}
			if !ok {
				return fmt.Errorf("procedure: internal error: record of live procedure %d missing", q.id)
			}
			old, err := decodeRecord(b)
			if err != nil {
				return err
			}
			data = old.data
		}
		r := q.record(data)
		if c.completed && q == c.t.root {
			res := resultOfRecord(q.id, &r)
			if shared {
				res.Data = bytes.Clone(data)
			}
			c.result = &res
		}
		if c.recs != nil {
			c.recs.put(uint64(q.id), &r)
			continue
		}
		c.buf = appendRecord(c.buf[:0], &r)
		if err := e.procsC.Put(tx, uint64(q.id), c.buf); err != nil {
			return err
		}
	}
	return nil
}

// deleteRecordLocked deletes procedure id's record in tx, or defers it
// like putDirtyLocked's puts.
func (e *Engine) deleteRecordLocked(tx *durable.Tx, c *commit, id ID) error {
	if c.recs != nil {
		c.recs.del(uint64(id))
		return nil
	}
	return e.procsC.Delete(tx, uint64(id))
}

// recWrites are the procedure-record writes of a batch of commits,
// encoded under the engine's lock and applied to the transaction, in
// order, after it is released: the B-tree inserts then hold only the
// store's write lock, not the lock every worker needs.
type recWrites struct {
	ids   []uint64
	ends  []int // end of each record in arena; -1: a delete
	arena []byte
}

func (w *recWrites) reset() { w.ids, w.ends, w.arena = w.ids[:0], w.ends[:0], w.arena[:0] }

func (w *recWrites) put(id uint64, r *record) {
	w.arena = appendRecord(w.arena, r)
	w.ids, w.ends = append(w.ids, id), append(w.ends, len(w.arena))
}

func (w *recWrites) del(id uint64) { w.ids, w.ends = append(w.ids, id), append(w.ends, -1) }

// lookup returns the latest record written for id in the batch (ok
// false: none, or deleted).
func (w *recWrites) lookup(id uint64) ([]byte, bool) {
	if w == nil {
		return nil, false
	}
	for i := len(w.ids) - 1; i >= 0; i-- {
		if w.ids[i] != id {
			continue
		}
		if w.ends[i] < 0 {
			return nil, false
		}
		return w.arena[w.start(i):w.ends[i]], true
	}
	return nil, false
}

func (w *recWrites) start(i int) int {
	for j := i - 1; j >= 0; j-- {
		if w.ends[j] >= 0 {
			return w.ends[j]
		}
	}
	return 0
}

// apply puts and deletes the records in tx, in the order they were made.
func (w *recWrites) apply(tx *durable.Tx, c *durable.Collection[uint64, []byte]) error {
	start := 0
	for i, id := range w.ids {
		var err error
		if end := w.ends[i]; end < 0 {
			err = c.Delete(tx, id)
		} else {
			err = c.Put(tx, id, w.arena[start:end])
			start = end
		}
		if err != nil {
			return err
		}
	}
	return nil
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

// storeHealthy reports whether a failed Write left the store working (the
// transaction alone was refused).
func (e *Engine) storeHealthy(err error) bool {
	return e.store.Err() == nil && !errors.Is(err, durable.ErrClosed) && !errors.Is(err, durable.ErrFailed)
}

// send hands c to the committers. It returns false if the engine stopped
// taking commits.
func (e *Engine) send(c *commit) bool {
	e.commitMu.RLock()
	defer e.commitMu.RUnlock()
	if e.commitClosed {
		return false
	}
	e.commitCh <- c
	return true
}

// committer gathers the commits waiting, up to Options.MaxBatch, into a
// batch and applies it: one store transaction (durable.Store.WriteAsync)
// whose record is queued in the store's forming group. It hands the batch
// to the completer, which waits for the disk, and gathers the next batch
// at once. So the store's write lock is busy with one batch after
// another, every batch holds what arrived while the previous one was
// applied, and the store's group commit puts all the batches applied
// during one fsync into the next. At most Options.Committers batches wait
// for the disk; the completer lets them go in commit order.
func (e *Engine) committer() {
	defer e.committersWG.Done()
	applied := make(chan appliedBatch, e.opts.Committers)
	completerDone := make(chan struct{})
	go e.completer(applied, completerDone)
	defer func() {
		close(applied)
		<-completerDone
	}()
	for c := range e.commitCh {
		batch := make([]*commit, 1, min(e.opts.MaxBatch, 1+len(e.commitCh)))
		batch[0] = c
	drain:
		for len(batch) < e.opts.MaxBatch {
			select {
			case c, ok := <-e.commitCh:
				if !ok {
					break drain
				}
				batch = append(batch, c)
			default:
				break drain
			}
		}
		e.applyBatch(batch, applied)
	}
}

// appliedBatch is a batch whose transaction is queued: cm (nil if it
// wrote nothing) says when it is durable.
type appliedBatch struct {
	batch []*commit
	cm    *durable.Commit
}

// completer waits for each applied batch's commit, in order, and does
// what follows: afterBatch, or, if the store failed, the engine's
// failure.
func (e *Engine) completer(applied <-chan appliedBatch, done chan<- struct{}) {
	defer close(done)
	for a := range applied {
		if a.cm != nil {
			if err := a.cm.Wait(context.Background()); err != nil {
				// Nothing of the batch committed, and the store takes no
				// more: undo it in memory too, and fail.
				e.mu.Lock()
				for i := len(a.batch) - 1; i >= 0; i-- {
					if a.batch[i].applied {
						e.undoLocked(a.batch[i])
					}
				}
				e.mu.Unlock()
				e.fail(err)
				e.finishFailed(a.batch, e.Err())
				continue
			}
		}
		e.afterBatch(a.batch)
	}
}

var errBadWrite = errors.New("procedure: a recorded write failed")

// applyBatch applies batch in one transaction, every commit's recorded
// writes and its procedures' new records, and hands it to the completer.
// Each commit is whole in it: a step's metadata never commits without its
// state, nor the reverse. If a step's recorded write fails, the
// transaction is dropped and made again with that step failed instead
// (the others unchanged); if the store refuses the whole (too large), the
// commits go one by one.
func (e *Engine) applyBatch(batch []*commit, applied chan<- appliedBatch) {
	h := &e.opts.Hooks
	if h.BeforeCommit != nil {
		for _, c := range batch {
			if c.kind != kindSubmit {
				info := c.info
				info.Err = c.stepErr
				h.BeforeCommit(info)
			}
		}
	}
	recs := e.recPool.Get().(*recWrites)
	defer e.recPool.Put(recs)
	for round := 0; len(batch) > 0; round++ {
		if err := e.Err(); err != nil {
			e.finishFailed(batch, err)
			return
		}
		var bad *commit
		var badErr error
		cm, err := e.store.WriteAsync(context.Background(), func(tx *durable.Tx) error {
			e.mu.Lock()
			for _, c := range batch {
				c.reset()
				c.outcome = e.precheckLocked(tx, c)
			}
			e.mu.Unlock()
			// The recorded writes run without the engine's lock: they are
			// the users' code.
			for _, c := range batch {
				if c.outcome == nil && c.stepErr == nil && len(c.writes) > 0 {
					if err := runWrites(tx, c.writes); err != nil {
						bad, badErr = c, err
						return errBadWrite
					}
				}
			}
			recs.reset()
			e.mu.Lock()
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
					e.mu.Unlock()
					return err
				}
			}
			e.mu.Unlock()
			return recs.apply(tx, e.procsC)
		})
		if err == nil {
			applied <- appliedBatch{batch, cm}
			return
		}
		// Nothing of the batch was queued: undo it in memory too.
		e.mu.Lock()
		for i := len(batch) - 1; i >= 0; i-- {
			if batch[i].applied {
				e.undoLocked(batch[i])
			}
		}
		e.mu.Unlock()
		switch {
		case bad != nil && errors.Is(err, errBadWrite):
			if bad.kind == kindRollback {
				batch = slices.DeleteFunc(batch, func(c *commit) bool { return c == bad })
				e.rollbackFailed(bad, badErr)
			} else {
				// The step fails instead; its failure commits with the rest.
				bad.stepErr, bad.writes = badErr, nil
			}
		case len(batch) > 1 && e.storeHealthy(err):
			for _, c := range batch {
				e.applyBatch([]*commit{c}, applied)
			}
			return
		case e.storeHealthy(err):
			c := batch[0]
			switch {
			case c.kind == kindStep && c.stepErr == nil && round == 0:
				c.stepErr, c.writes = err, nil // the step's commit was refused: it fails
			case c.kind == kindStep:
				// Even its failure cannot be committed (its data alone is
				// too large): keep its tree from running, visibly.
				e.mu.Lock()
				e.quarantineLocked(c.t, fmt.Sprintf("procedure %d: cannot commit step: %v", c.p.id, err))
				e.mu.Unlock()
				e.endStep(c.p, c.info, endPlain, nil)
				return
			case c.kind == kindRollback:
				e.rollbackFailed(c, err)
				return
			default:
				c.finishSubmit(0, err)
				return
			}
		default:
			e.fail(err)
			e.finishFailed(batch, e.Err())
			return
		}
	}
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
			p, t := c.p, c.t
			p.running, p.run = false, nil
			t.running--
			e.releaseStepLocksLocked(p)
			switch {
			case c.outcome == nil:
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
		case kindRollback:
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
		case kindSubmit:
			if c.outcome == nil {
				c.p.committed = true
				e.armTimeoutLocked(c.p)
				e.enqueueLocked(c.p, false)
			}
		}
	}
	e.mu.Unlock()
	for _, c := range batch {
		if c.kind != kindSubmit {
			e.freeCommit(c)
			continue
		}
		// After finishSubmit, c belongs to its submitter: not touched again.
		switch {
		case c.outcome == nil:
			c.ti.stats.submitted.Add(1)
			c.finishSubmit(c.p.id, nil)
		case errors.Is(c.outcome, errDup):
			c.finishSubmit(c.dupID, nil)
		default:
			c.finishSubmit(0, c.outcome)
		}
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
	if p := c.p; p != nil && p.ps.status == Suspended && p.ps.wait().kind == waitTimer && !c.completed {
		e.armSleepLocked(p)
	}
	if p := c.p; c.kind == kindStep && p != nil && !c.completed && p.ps.status != Succeeded {
		e.armTimeoutLocked(p) // the step may have set, replaced or cleared its step timeout
	}
	for _, ev := range c.signals {
		e.wakeEventLocked(ev)
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
	if p.rd().holdLocks != nil && ps.locks() == nil {
		ps.w().locks = p.rd().holdLocks.locks // stored with the step that took them
	}
	if c.timeoutKind == timeoutProc {
		ps.w().timeout = 0 // handled: it does not fire again
	}
	if ps.stepTimeout() != c.stepDeadline {
		ps.w().stepTimeout = c.stepDeadline // the wait it bounded ended with this step
	}
	if c.stepErr == nil {
		for _, ev := range c.signals {
			if err := e.events.Put(tx, ev, uint64(now)); err != nil {
				return err
			}
		}
	}
	switch {
	case c.stepErr != nil:
		if !c.notRun { // Execute may have done part of its work: its Rollback runs
			e.pushEntryLocked(p, c.state, false)
		}
		ps.status = Failed
		if ps.err == nil { // else the first failure (an abort, a timeout) stays
			ps.err = toError(c.stepErr, fmt.Sprintf("%s#%d", p.typeName, p.id))
		}
		t.ts.failed = true
	case c.next.kind == nextDone:
		e.pushEntryLocked(p, c.state, false)
		ps.status = Succeeded
		ps.ext = nil // no locks, no timeout; not suspended
		c.finished = append(c.finished, p)
		if !t.ts.failed {
			if p == t.root {
				if err := e.completeLocked(tx, c, t, Succeeded, now); err != nil {
					return err
				}
			} else if parent := e.procs[p.parent]; parent != nil {
				if err := e.childDoneLocked(tx, c, parent, now); err != nil {
					return err
				}
			}
		}
	case c.next.kind == nextSpawn && len(c.next.children) > 0:
		e.pushEntryLocked(p, c.state, true)
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
			t.procs = append(t.procs, cp)
			c.added = append(c.added, cp)
			c.markDirty(cp)
			c.wake = append(c.wake, cp)
			e.checkPONRLocked(t, cp, cp.ps.next)
		}
	case c.next.kind == nextEvent:
		e.pushEntryLocked(p, c.state, false)
		ps.next = c.next.state
		e.checkPONRLocked(t, p, ps.next)
		_, set, err := e.events.Get(tx, c.next.event)
		if err != nil {
			return err
		}
		if set {
			c.wake = append(c.wake, p)
		} else {
			ps.status = Suspended
			ps.w().wait = waitState{kind: waitEvent, event: c.next.event}
			e.suspendOnEventLocked(p, c.next.event)
		}
	case c.next.kind == nextSleep:
		e.pushEntryLocked(p, c.state, false)
		ps.next = c.next.state
		e.checkPONRLocked(t, p, ps.next)
		if until := c.next.until.UnixNano(); until > now {
			ps.status = Suspended
			ps.w().wait = waitState{kind: waitTimer, until: until}
		} else {
			c.wake = append(c.wake, p)
		}
	default: // GoTo, Again, Spawn without children
		e.pushEntryLocked(p, c.state, false)
		if c.next.kind != nextAgain {
			ps.next = c.next.state
		}
		e.checkPONRLocked(t, p, ps.next)
		c.wake = append(c.wake, p)
	}
	ps.steps++
	ps.updated = now
	return e.putDirtyLocked(tx, c)
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
		p.ps.entries = es[:len(es)-1]
		p.ps.steps++
		p.ps.updated = now
		t.ts.nextIdx--
	} else {
		c.markDirty(t.root)
		t.root.ps.steps++
	}
	for _, ev := range c.signals {
		if err := e.events.Put(tx, ev, uint64(now)); err != nil {
			return err
		}
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
	if c.sopts.Nonce != "" {
		if err := e.nonces.Put(tx, c.sopts.Nonce, uint64(id)); err != nil {
			return err
		}
	}
	return e.putDirtyLocked(tx, c)
}
