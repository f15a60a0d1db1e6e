package procedure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// Result is how a procedure finished.
type Result struct {
	ID      ID
	Type    string
	Version uint32 // of Data's encoding
	// Status is Succeeded, or RolledBack for a root whose tree failed.
	Status Status
	// Data is the procedure's final data, encoded by its type's codec:
	// the result of a successful procedure. Decode it with Type.Result.
	Data      []byte
	Error     *Error  // why the tree rolled back
	Bypass    *Bypass // set if it was bypassed
	Completed time.Time
}

// Err returns the outcome as an error: nil for a success, an *Error (for
// which errors.Is(err, ErrRolledBack) holds; see Error for what else it
// matches) for a rollback, an error wrapping ErrBypassed for a bypassed
// procedure (and the *Error too, for a tree bypassed while it rolled
// back).
func (r Result) Err() error {
	switch {
	case r.Status == RolledBack:
		e := &Error{Message: "rolled back"}
		if r.Error != nil {
			e = r.Error.withOutcome(0)
		}
		e.outcome |= outcomeRolledBack
		if r.Bypass != nil {
			e.outcome |= outcomeBypassed
		}
		if r.Bypass != nil {
			return fmt.Errorf("%w: procedure %d by %s: %s: %w", ErrBypassed, r.ID, r.Bypass.Who, r.Bypass.Why, e)
		}
		return e
	case r.Bypass != nil:
		return fmt.Errorf("%w: procedure %d by %s: %s", ErrBypassed, r.ID, r.Bypass.Who, r.Bypass.Why)
	}
	return nil
}

// waiter is one Wait call waiting for a live procedure to finish. root is
// set if it finished because its tree completed (its record may be gone).
type waiter struct {
	done chan struct{}
	root ID
	res  *Result // the result, if known when notified (a root that completed)
}

// notifyLocked wakes the waiters of id, handing them res if not nil.
func (e *Engine) notifyLocked(id, root ID, res *Result) {
	for i, w := range e.waiters[id] {
		w.root, w.res = root, res
		if res != nil && i > 0 {
			// Each caller gets its own copy of the data.
			r := *res
			r.Data = bytes.Clone(r.Data)
			w.res = &r
		}
		close(w.done)
	}
	delete(e.waiters, id)
	e.changedLocked(id)
}

// resultOf reads id's durable record: its result if it finished (a
// completed root, or a child that succeeded).
func (e *Engine) resultOf(id ID) (Result, bool, error) {
	b, ok, err := e.procsC.Get(e.store.Latest(), uint64(id))
	if err != nil {
		return Result{}, false, err
	}
	if !ok {
		return Result{}, false, fmt.Errorf("%w: procedure %d", ErrNotFound, id)
	}
	r, err := decodeRecord(b)
	if err != nil {
		return Result{}, false, fmt.Errorf("%w: procedure %d: %v", ErrQuarantined, id, err)
	}
	done := (r.parent == 0 && r.completed != 0) || (r.parent != 0 && r.status == Succeeded)
	return resultOfRecord(id, r), done, nil
}

// resultOfRecord returns the Result that procedure id's record r holds.
func resultOfRecord(id ID, r *record) Result {
	return Result{ID: id, Type: r.typ, Version: r.version, Status: r.status, Data: r.data, Error: r.err,
		Bypass: r.bypass, Completed: timeOf(r.completed)}
}

// Wait waits until procedure id has finished, and returns how. For a
// root, that is when its tree completed; its Result says whether it
// succeeded (and holds its data) or rolled back (and why: Result.Err).
// For a child, it is when the child succeeded, or when its tree
// completed without that (the result is then the root's rollback). Wait
// returns the context's error if ctx ends first, and the engine's if it
// fails. Type.Result decodes the result's data:
//
//	table, err := createTable.Result(e.Wait(ctx, id))
//
// To wait for something else than the end (a status, a lock wait), use
// WaitFor.
func (e *Engine) Wait(ctx context.Context, id ID) (Result, error) {
	for {
		// Register first, then read the durable state: a completion
		// notifies (under mu) only after it is durable, so it is either
		// seen by the read or delivered to the waiter.
		// Memory is ahead of the durable state (by at most the commits in
		// flight), and a procedure never goes from finished to
		// unfinished: if memory says it is not finished, the durable
		// state cannot say otherwise, and the read can be skipped.
		var w *waiter
		maybeDone := true
		e.mu.Lock()
		if p := e.procs[id]; p != nil && p.committed {
			w = &waiter{done: make(chan struct{})}
			e.waiters[id] = append(e.waiters[id], w)
			// A completed tree tells its waiters when it retires (after
			// its commit is durable): waiting for that, rather than
			// reading the store once it is durable, means that what
			// follows Wait (Stats, List) sees the tree gone.
			maybeDone = p.ps.status == Succeeded && !p.t.ts.done
		}
		e.mu.Unlock()
		if maybeDone {
			res, done, err := e.resultOf(id)
			if err == nil && done {
				e.dropWaiter(id, w)
				return res, nil
			}
			if w == nil {
				if err == nil {
					// Not live and not finished: its tree is quarantined
					// by a record that cannot be read, or it is gone.
					err = fmt.Errorf("%w: procedure %d", ErrNotFound, id)
				}
				return Result{}, err
			}
		}
		select {
		case <-w.done:
			if w.res != nil {
				// The completion's own result: no need to read it back.
				return *w.res, nil
			}
			if w.root != 0 && w.root != id {
				if res, done, err := e.resultOf(id); err == nil && done {
					return res, nil
				}
				res, _, err := e.resultOf(w.root)
				if err != nil {
					return Result{}, err
				}
				res.ID, res.Data = id, nil
				return res, nil
			}
		case <-ctx.Done():
			e.dropWaiter(id, w)
			return Result{}, ctx.Err()
		case <-e.failedCh:
			e.dropWaiter(id, w)
			return Result{}, e.Err()
		}
	}
}

func (e *Engine) dropWaiter(id ID, w *waiter) {
	if w == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ws := e.waiters[id]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(e.waiters, id)
	} else {
		e.waiters[id] = ws
	}
}

// expiry returns when a result finished at completed and acknowledged at
// acked (0: not yet) expires.
func (e *Engine) expiry(completed, acked int64) int64 {
	x := completed + int64(e.opts.ResultTTL)
	if acked != 0 {
		x = min(x, acked+int64(e.opts.AckedResultTTL))
	}
	return x
}

// resultHeap orders kept results by expiry (a binary min-heap). An Ack
// adds a second, earlier entry; entries of results already deleted are
// skipped. Expiries mostly grow with time, so an add rarely moves up.
type resultHeap []resultEntry

type resultEntry struct {
	expiry int64
	id     ID
}

func (h *resultHeap) add(id ID, expiry int64) {
	*h = append(*h, resultEntry{expiry, id})
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent].expiry <= s[i].expiry {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

// pop removes and returns the entry that expires first.
func (h *resultHeap) pop() resultEntry {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < n && s[l].expiry < s[small].expiry {
			small = l
		}
		if r := l + 1; r < n && s[r].expiry < s[small].expiry {
			small = r
		}
		if small == i {
			break
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
	*h = s
	return top
}

// Sweep deletes the results that expired (Options.ResultTTL after they
// finished, Options.AckedResultTTL after their Ack), with their nonces,
// at most Options.SweepBatch per commit, and returns how many it deleted.
// The engine calls it every Options.SweepInterval.
func (e *Engine) Sweep(ctx context.Context) (int, error) {
	if !e.running() {
		return 0, e.notRunning()
	}
	total := 0
	for {
		now := e.now()
		e.mu.Lock()
		var batch []ID
		for len(e.results) > 0 && e.results[0].expiry <= now && len(batch) < e.opts.SweepBatch {
			batch = append(batch, e.results.pop().id)
		}
		e.mu.Unlock()
		if len(batch) == 0 {
			return total, nil
		}
		var later []resultEntry
		var gone []sweptRecord
		err := e.store.Write(context.WithoutCancel(ctx), func(tx *durable.Tx) error {
			later, gone = later[:0], gone[:0]
			for _, id := range batch {
				b, ok, err := e.procsC.Get(tx, uint64(id))
				if err != nil {
					return err
				}
				if !ok {
					continue // deleted by an earlier entry
				}
				r, err := decodeRecord(b)
				if err != nil || r.completed == 0 {
					continue
				}
				if x := e.expiry(r.completed, r.acked); x > now {
					later = append(later, resultEntry{x, id})
					continue
				}
				if err := e.procsC.Delete(tx, uint64(id)); err != nil {
					return err
				}
				if r.nonce != "" {
					if n, ok, _ := e.nonces.Get(tx, r.nonce); ok && ID(n) == id {
						if err := e.nonces.Delete(tx, r.nonce); err != nil {
							return err
						}
					}
				}
				gone = append(gone, sweptRecord{id, r.status, r.typ})
			}
			return nil
		})
		deleted := len(gone)
		e.mu.Lock()
		if err == nil {
			for _, g := range gone {
				e.ix.remove(g.id, g.status, g.typ)
			}
		}
		if err != nil {
			for _, id := range batch { // try again later
				e.results.add(id, now)
			}
		}
		for _, x := range later {
			e.results.add(x.id, x.expiry)
		}
		e.mu.Unlock()
		if err != nil {
			if !e.storeHealthy(err) {
				e.fail(err)
			}
			return total, err
		}
		total += deleted
		e.stats.swept.Add(int64(deleted))
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// sweptRecord is a result Sweep deleted, for the index.
type sweptRecord struct {
	id     ID
	status Status
	typ    string
}

func (e *Engine) sweeper() {
	defer e.bgWG.Done()
	tick := time.NewTicker(e.opts.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := e.Sweep(e.ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrNotStarted) {
			e.log.Error("procedure: sweeping results", "err", err)
		}
	}
}
