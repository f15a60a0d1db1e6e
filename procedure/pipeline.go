package procedure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/procyon-dev/procyon/durable"
)

// commitPipeline makes the engine's commits (steps, rollback steps,
// submissions) durable, many to a store transaction. One per engine; it
// owns the queue, its two goroutines, the pools and the shutdown, and
// calls the Engine for every change to the procedures' state.
//
// A step never runs inside a store transaction: that would hold the
// store's write lock for as long as the step takes. A commit flows so,
// with three hand-offs between goroutines of the engine:
//
//  1. A worker (or Submit) builds the commit after the step returned and
//     sends it on queue (hand-off 1, to the committer); the worker takes
//     other work. The procedure stays held: its next step never starts
//     before this commit is durable.
//  2. The committer drains the queue, up to Options.MaxBatch, into a
//     batch and applies it in one durable.Store.WriteAsync: for each
//     commit its recorded writes, then the procedures' new records (see
//     applyBatchTx). The store queues the transaction's record in its
//     forming group; the committer hands the batch and its
//     durable.Commit to the completer (hand-off 2) and gathers the next
//     batch at once. So the store's write lock is busy with one batch
//     after another, each holds what arrived while the previous one was
//     applied, and the store's group commit puts all the batches applied
//     during one fsync into the next. Below the engine there is one
//     hand-off each way: the store's committer (woken only when idle)
//     freezes the group, the batches applied while the last group was on
//     disk, and writes and fsyncs it on its own goroutine (the log's
//     batch is the group; the log's flusher takes no part), then closes
//     the group's Commit. One group forms per fsync, in the store; it
//     waits for no more of the engine's batches (they come only once the
//     released procedures ran their next steps), and the engine's batch
//     only spreads a transaction's fixed costs.
//  3. The completer waits for each batch's Commit, in commit order (at
//     most Options.Committers batches wait), and afterBatch lets its
//     procedures go: their next steps go to the front of the run queue
//     (a new root to the back), where workers take them (hand-off 3),
//     and a submitter is woken through its commit's done channel.
//
// A commit is whole in its batch: a step's metadata writes never commit
// without its new state, nor the reverse, and a batch holds several whole
// steps. If a recorded write fails, the batch's transaction is dropped and
// made again with that step failed instead (nothing of its writes
// commits; the other steps are unaffected); if the store refuses a batch
// as too large, its commits go one by one (refused).
type commitPipeline struct {
	e *Engine

	// queue feeds the committer (Options.MaxCommits). mu orders sends
	// before its close: senders hold it shared and check closed.
	queue  chan *commit
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup // the committer (which waits for the completer)

	commits sync.Pool // *commit: at hundreds of thousands of steps a second, a large share of the garbage
	recs    sync.Pool // *recWrites, one per batch being applied
}

func newCommitPipeline(e *Engine) *commitPipeline {
	return &commitPipeline{
		e:       e,
		queue:   make(chan *commit, e.opts.MaxCommits),
		commits: sync.Pool{New: func() any { return new(commit) }},
		recs:    sync.Pool{New: func() any { return new(recWrites) }},
	}
}

// newCommit returns a zero commit, reusing one given back by freeCommit.
func (cp *commitPipeline) newCommit() *commit { return cp.commits.Get().(*commit) }

// freeCommit gives c back for reuse. Only the code that last refers to c
// calls it: finishBatch for a step or rollback commit that committed, the
// submitter for its submission once done is closed.
func (cp *commitPipeline) freeCommit(c *commit) {
	clear(c.dirty[:cap(c.dirty)])
	clear(c.wake[:cap(c.wake)])
	clear(c.finished[:cap(c.finished)])
	clear(c.added[:cap(c.added)])
	*c = commit{dirty: c.dirty[:0], wake: c.wake[:0], finished: c.finished[:0], added: c.added[:0], buf: c.buf[:0]}
	cp.commits.Put(c)
}

// start starts the committer (and through it the completer).
func (cp *commitPipeline) start() {
	cp.wg.Add(1)
	go cp.committer()
}

// send hands c to the committer. It returns false if the pipeline was
// closed.
func (cp *commitPipeline) send(c *commit) bool {
	cp.mu.RLock()
	defer cp.mu.RUnlock()
	if cp.closed {
		return false
	}
	cp.queue <- c
	return true
}

// close takes no more commits, and waits until those queued are made (or
// failed, if the store failed) and the goroutines have exited. Called
// once the workers are gone.
func (cp *commitPipeline) close() {
	cp.mu.Lock()
	if !cp.closed {
		cp.closed = true
		close(cp.queue)
	}
	cp.mu.Unlock()
	cp.wg.Wait()
}

// committer gathers the commits waiting into batches and applies them
// (step 2 of the flow), until the queue is closed; then it waits for the
// completer.
func (cp *commitPipeline) committer() {
	defer cp.wg.Done()
	applied := make(chan appliedBatch, cp.e.opts.Committers)
	completerDone := make(chan struct{})
	go cp.completer(applied, completerDone)
	defer func() {
		close(applied)
		<-completerDone
	}()
	for c := range cp.queue {
		cp.applyBatch(cp.gather(c), applied)
	}
}

// gather returns a batch of c and the commits waiting after it, up to
// Options.MaxBatch.
func (cp *commitPipeline) gather(c *commit) []*commit {
	maxBatch := cp.e.opts.MaxBatch
	batch := make([]*commit, 1, min(maxBatch, 1+len(cp.queue)))
	batch[0] = c
	for len(batch) < maxBatch {
		select {
		case c, ok := <-cp.queue:
			if !ok {
				return batch
			}
			batch = append(batch, c)
		default:
			return batch
		}
	}
	return batch
}

// appliedBatch is a batch whose transaction is queued: cm (nil if it
// wrote nothing) says when it is durable.
type appliedBatch struct {
	batch []*commit
	cm    *durable.Commit
}

// completer waits for each applied batch's commit, in order, and does
// what follows (step 3 of the flow): afterBatch, or, if the store failed,
// the engine's failure.
func (cp *commitPipeline) completer(applied <-chan appliedBatch, done chan<- struct{}) {
	defer close(done)
	e := cp.e
	for a := range applied {
		if a.cm != nil {
			if err := a.cm.Wait(context.Background()); err != nil {
				// Nothing of the batch committed, and the store takes no
				// more: undo it in memory too, and fail.
				e.undoBatch(a.batch)
				e.fail(err)
				e.finishFailed(a.batch, e.Err())
				continue
			}
		}
		e.afterBatch(a.batch)
		cp.finishBatch(a.batch)
	}
}

// applyBatch applies batch in one transaction and hands it to the
// completer; if the transaction is refused, refused says what to try
// next.
func (cp *commitPipeline) applyBatch(batch []*commit, applied chan<- appliedBatch) {
	e := cp.e
	cp.beforeCommitHooks(batch)
	recs := cp.recs.Get().(*recWrites)
	defer cp.recs.Put(recs)
	for round := 0; len(batch) > 0; round++ {
		if err := e.Err(); err != nil {
			e.finishFailed(batch, err)
			return
		}
		var bad badWrite
		cm, err := e.store.WriteAsync(context.Background(), func(tx *durable.Tx) error {
			return e.applyBatchTx(tx, batch, recs, &bad)
		})
		if err == nil {
			applied <- appliedBatch{batch, cm}
			return
		}
		// Nothing of the batch was queued: undo it in memory too.
		e.undoBatch(batch)
		batch = cp.refused(batch, bad, err, round, applied)
	}
}

// refused deals with a batch whose transaction failed with err, and
// returns what to apply again (nil or empty: nothing). A failed recorded
// write fails its step (or retries its rollback step) and the rest goes
// again; a batch the store refused (too large) goes one commit at a time;
// a lone commit refused fails its step, and if even that cannot commit,
// quarantines its tree; a failed store fails the engine.
func (cp *commitPipeline) refused(batch []*commit, bad badWrite, err error, round int, applied chan<- appliedBatch) []*commit {
	e := cp.e
	switch {
	case bad.c != nil && errors.Is(err, errBadWrite):
		if bad.c.kind == kindRollback {
			batch = slices.DeleteFunc(batch, func(c *commit) bool { return c == bad.c })
			e.rollbackFailed(bad.c, bad.err)
			return batch
		}
		// The step fails instead; its failure commits with the rest.
		bad.c.stepErr, bad.c.fx = bad.err, effects{}
		return batch
	case len(batch) > 1 && e.storeHealthy(err):
		for _, c := range batch {
			cp.applyBatch([]*commit{c}, applied)
		}
		return nil
	case e.storeHealthy(err):
		c := batch[0]
		switch {
		case c.kind == kindStep && c.stepErr == nil && round == 0:
			c.stepErr, c.fx = err, effects{} // the step's commit was refused: it fails
			return batch
		case c.kind == kindStep:
			// Even its failure cannot be committed (its data alone is
			// too large): keep its tree from running, visibly.
			e.mu.Lock()
			e.quarantineLocked(c.t, fmt.Sprintf("procedure %d: cannot commit step: %v", c.p.id, err))
			e.mu.Unlock()
			e.endStep(c.p, c.info, endPlain, nil)
		case c.kind == kindRollback:
			e.rollbackFailed(c, err)
		default:
			c.finishSubmit(0, err)
		}
		return nil
	default:
		e.fail(err)
		e.finishFailed(batch, e.Err())
		return nil
	}
}

// beforeCommitHooks calls Hooks.BeforeCommit for the steps of batch.
func (cp *commitPipeline) beforeCommitHooks(batch []*commit) {
	h := &cp.e.opts.Hooks
	if h.BeforeCommit == nil {
		return
	}
	for _, c := range batch {
		if c.kind != kindSubmit {
			info := c.info
			info.Err = c.stepErr
			h.BeforeCommit(info)
		}
	}
}

// finishBatch ends the commits of a batch afterBatch is done with: step
// and rollback commits go back to the pool, submitters learn their id.
func (cp *commitPipeline) finishBatch(batch []*commit) {
	for _, c := range batch {
		if c.kind != kindSubmit {
			cp.freeCommit(c)
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
