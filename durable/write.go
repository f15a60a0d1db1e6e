package durable

import (
	"context"
	"fmt"
)

// Write runs fn in a transaction and commits it: fn's Puts and Deletes
// become one record, and Write returns once that record is durable and
// the new version is what readers see.
//
//   - If fn returns an error, nothing is applied or written and Write
//     returns that error. If fn panics, nothing is applied or written, and
//     the panic goes on up through Write unchanged. If an iterator in fn
//     (Collection.All, From) stopped at a value it could not decode, Write
//     returns that error, and nothing is applied or written.
//   - A transaction with no Put or Delete writes nothing.
//   - Writers are serialized while fn runs and its record is queued; the
//     lock is not held while waiting for the disk: the records of the
//     transactions that commit while the disk is busy are appended
//     together and share one fsync.
//   - If ctx carries a transaction of this store (Tx.Context), fn runs
//     inside it (a nested write): if fn fails, the outer transaction is
//     put back as it was before this call, and the outer function decides.
//     Calling Write with another context from inside fn deadlocks until
//     that context ends: the write lock is not reentrant.
//   - If ctx ends while waiting for the lock, nothing happened; if it ends
//     while waiting for the disk, the error wraps ErrOutcomeUnknown: the
//     transaction is whole, and may still commit.
//   - If the persistence fails, the error wraps ErrFailed and the cause;
//     every in-flight transaction fails, later ones are refused, and
//     readers keep the last durable version.
func (s *Store) Write(ctx context.Context, fn func(tx *Tx) error) error {
	if tx := txFrom(ctx); tx != nil && tx.s == s {
		if tx.done {
			return ErrTxDone
		}
		return tx.nested(fn)
	}
	c, err := s.write(ctx, fn, untilDurable)
	if err != nil || c == nil {
		return err
	}
	return c.Wait(ctx)
}

// WriteAsync is Write without the wait for the disk: it runs fn and, if
// fn wrote anything, queues its record, and returns a Commit to wait on.
// Everything Write says holds, except that the caller learns the outcome
// from the Commit: its Wait returns nil once the record is durable and
// the version is what readers see. Transactions become durable in the
// order their WriteAsync calls returned. The Commit is nil if fn wrote
// nothing. WriteAsync inside a transaction of this store (a ctx from
// Tx.Context) is refused with ErrNestedAsync: a nested write has no
// commit of its own.
func (s *Store) WriteAsync(ctx context.Context, fn func(tx *Tx) error) (*Commit, error) {
	if tx := txFrom(ctx); tx != nil && tx.s == s {
		return nil, ErrNestedAsync
	}
	return s.write(ctx, fn, untilQueued)
}

// Commit is a transaction queued by WriteAsync, on its way to the disk.
type Commit struct{ g *group }

// Done is closed once the commit's outcome is known (Wait then returns
// it at once).
func (c *Commit) Done() <-chan struct{} { return c.g.done }

// Wait waits until the commit is durable (nil) or failed. If ctx ends
// first, the error wraps ErrOutcomeUnknown: the transaction is whole, and
// may still commit.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.g.done:
		return c.g.err
	case <-ctx.Done():
		select {
		case <-c.g.done:
			return c.g.err
		default:
		}
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// writeLocked runs r's transaction, holding the write lock, and queues its
// record.
func (s *Store) writeLocked(r *writeReq) (*Commit, error) {
	if s.state.Load() != stateOpen {
		return nil, ErrClosed
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	tx := &Tx{s: s, parent: r.ctx, ops: make([]any, len(s.colls))}
	if err := s.run(tx, r); err != nil {
		tx.rollback()
		tx.done = true
		s.stats.aborts.Add(1)
		return nil, err
	}
	tx.done = true
	if r.panicked {
		return nil, nil
	}
	if tx.nOps == 0 {
		return nil, nil
	}
	return s.queueLocked(tx)
}

// queueLocked, holding the write lock, adds tx's record to the forming
// group and its ops to the group's layer (no B-tree work on the writers'
// path: that is the applier's), then tells the committer (and its gather)
// and starts a snapshot if the log has grown enough.
func (s *Store) queueLocked(tx *Tx) (*Commit, error) {
	g := s.w.group
	start := len(g.buf)
	g.buf = tx.encode(g.buf)
	n := len(g.buf) - start
	if n > s.w.maxRecord {
		g.buf = g.buf[:start]
		tx.rollback()
		s.stats.aborts.Add(1)
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, s.w.maxRecord)
	}
	g.ends = append(g.ends, len(g.buf))
	for i, o := range tx.ops {
		if o != nil {
			s.w.forming[i] = s.colls[i].mergeOps(s.w.forming[i], o, s.w.formHint[i])
			s.colls[i].freeOps(o)
		}
	}
	tx.ops = nil
	if !s.w.committing {
		s.w.committing = true
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.w.logBytes += int64(n)
	if s.opts.SnapshotBytes > 0 && s.w.logBytes >= s.snapshotThreshold() && s.snapRunning.CompareAndSwap(false, true) {
		s.w.logBytes = 0
		s.bg.Add(1)
		go s.autoSnapshot()
	}
	return &Commit{g: g}, nil
}

// run calls r's fn; the transaction fails with fn's error, else with the
// error an iterator in it recorded (see Tx.fail). If fn panics, it undoes
// the transaction and records the panic in r, for its writer to raise
// again.
func (s *Store) run(tx *Tx, r *writeReq) error {
	defer func() {
		if p := recover(); p != nil {
			tx.rollback()
			tx.done = true
			s.stats.aborts.Add(1)
			r.panicked, r.panicVal = true, p
		}
	}()
	if err := r.fn(tx); err != nil {
		return err
	}
	return tx.err
}
