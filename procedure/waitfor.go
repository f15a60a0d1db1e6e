package procedure

import (
	"context"
	"fmt"
	"slices"
)

// WaitFor waits until cond holds for procedure id's Info (as Get returns
// it) and returns that Info, for example until it is suspended:
//
//	in, err := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
//
// cond is checked at once and each time the procedure's Info may have
// changed: its record commits, a step of it starts, takes its locks (or
// waits for them) or ends, a step or rollback fails and is retried, it
// finishes. It runs without the engine's lock and must not block. WaitFor returns the context's
// error if ctx ends first, the engine's if it fails, ErrNotFound if the
// procedure is unknown or gone (a child of a tree that completed), and
// the Info with an error matching ErrFinished if its tree completed
// without cond holding: nothing about it changes any more. To wait for a
// result, use Wait.
func (e *Engine) WaitFor(ctx context.Context, id ID, cond func(Info) bool) (Info, error) {
	ch := make(chan struct{}, 1)
	e.mu.Lock()
	e.watchers[id] = append(e.watchers[id], ch)
	e.mu.Unlock()
	defer e.unwatch(id, ch)
	for {
		// Registered first, then read: a change after the read is told.
		in, err := e.Get(id)
		switch {
		case err != nil:
			return Info{}, err
		case cond(in):
			return in, nil
		case in.Parent == 0 && !in.Completed.IsZero():
			return in, fmt.Errorf("%w: procedure %d, and the condition does not hold", ErrFinished, id)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Info{}, ctx.Err()
		case <-e.failedCh:
			return Info{}, e.Err()
		}
	}
}

// changedLocked tells the WaitFor calls watching id to look again.
func (e *Engine) changedLocked(id ID) {
	if len(e.watchers) == 0 {
		return
	}
	for _, ch := range e.watchers[id] {
		select {
		case ch <- struct{}{}:
		default: // told already
		}
	}
}

func (e *Engine) unwatch(id ID, ch chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ws := slices.DeleteFunc(e.watchers[id], func(x chan struct{}) bool { return x == ch })
	if len(ws) == 0 {
		delete(e.watchers, id)
	} else {
		e.watchers[id] = ws
	}
}
