package procedure

import (
	"errors"

	"github.com/procyon-dev/procyon/durable"
)

type commitKind uint8

const (
	kindStep     commitKind = iota // a forward step
	kindRollback                   // a rollback step (or the completion of an empty stack)
	kindSubmit                     // a new root
)

// commit is one change the commit pipeline makes durable: a step's
// outcome, a rollback step, or a submission. Workers (and Submit) build
// it; the committer applies it, with the others of its batch, in one
// store transaction.
type commit struct {
	kind    commitKind
	p       *proc // the procedure whose step ran (rollback: the one popped; nil if none)
	t       *tree
	info    StepInfo
	state   int64
	next    Next
	stepErr error   // the step failed
	fx      effects // the step's writes, signals, resets and after-commit calls (from its Env)
	data    []byte  // p's encoded data after the step; nil: keep the stored data
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
	rewrite   []*proc    // procedures an event c resets had woken (stored as runnable)
	result    *Result    // the completed root's result, for its waiters
}

func (c *commit) reset() {
	c.outcome, c.applied, c.completed, c.result = nil, false, false, nil
	c.dirty, c.wake, c.finished, c.added = c.dirty[:0], c.wake[:0], c.finished[:0], c.added[:0]
	c.undo = undoLog{}
	c.rewrite = c.rewrite[:0]
}

// storeHealthy reports whether a failed Write left the store working (the
// transaction alone was refused).
func (e *Engine) storeHealthy(err error) bool {
	return e.store.Err() == nil && !errors.Is(err, durable.ErrClosed) && !errors.Is(err, durable.ErrFailed)
}
