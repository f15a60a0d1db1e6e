package durable

import (
	"context"
	"runtime"
	"sync/atomic"
)

// write runs fn in a new transaction and queues its record: the part of
// Write before the wait for the disk. A nil Commit and error: nothing was
// written. With untilDurable (Write), it returns once the record is
// durable or failed (or ctx ended), so that the caller's Wait does not
// wait again.
//
// Transactions run one at a time under the write lock, and one writer at
// a time, the combiner, runs the transactions queued by all (flat
// combining): under load the lock does not pass from goroutine to
// goroutine (a wake-up each, a few microseconds on which no transaction
// runs) between transactions. So fn may run on another writer's
// goroutine; its panic is raised again in the caller's. A writer whose
// transaction another ran is woken once: when its outcome is known, which
// for Write means once its record is durable.
func (s *Store) write(ctx context.Context, fn func(tx *Tx) error, until writeUntil) (*Commit, error) {
	if s.state.Load() != stateOpen {
		return nil, ErrClosed
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	r := &writeReq{ctx: ctx, fn: fn, until: until, wake: make(chan struct{}, 1)}
	s.wq.Lock()
	s.wq.reqs = append(s.wq.reqs, r)
	s.wq.Unlock()
	for {
		switch r.state.Load() {
		case reqDone:
			if r.panicked {
				panic(r.panicVal)
			}
			return r.c, r.err
		case reqQueued:
			if s.combining.CompareAndSwap(false, true) {
				s.combine(r)
				continue
			}
		case reqLead:
			// A combiner handed the combining over to this writer.
			if r.state.CompareAndSwap(reqLead, reqQueued) {
				s.combine(r)
			}
			continue
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return s.cancel(r)
		}
	}
}

// cancel is write once r's context ended: r is dropped if no combiner
// took it yet, else its outcome is awaited.
func (s *Store) cancel(r *writeReq) (*Commit, error) {
	if r.state.CompareAndSwap(reqQueued, reqCancelled) {
		return nil, r.ctx.Err() // nothing happened
	}
	if r.state.CompareAndSwap(reqLead, reqCancelled) {
		// Nothing happened to this transaction, but the combining was
		// handed over to this writer: do it.
		s.combine(r)
		return nil, r.ctx.Err()
	}
	// A combiner took it: its outcome is known soon (for Write, whether
	// it was queued; the caller's Wait then reports an unknown outcome).
	for st := r.state.Load(); st != reqRan && st != reqDone; st = r.state.Load() {
		runtime.Gosched()
	}
	if r.panicked {
		panic(r.panicVal)
	}
	return r.c, r.err
}

// writeUntil says when a writer whose transaction committed is done.
type writeUntil int

const (
	untilQueued  writeUntil = iota // WriteAsync: once its record is queued
	untilDurable                   // Write: once its record is durable (or failed)
)

// writeReq is a transaction waiting for the write lock.
type writeReq struct {
	ctx   context.Context
	fn    func(tx *Tx) error
	until writeUntil
	// state moves queued (or lead) -> taken -> ran -> done, or queued
	// (or lead) -> cancelled; wake is signalled (capacity 1) after it
	// moves to done or lead.
	state    atomic.Int32
	wake     chan struct{}
	c        *Commit
	err      error
	panicked bool
	panicVal any
}

const (
	reqQueued    int32 = iota
	reqLead            // queued, and its writer is to take over the combining
	reqTaken           // a combiner is running it
	reqRan             // ran: c, err, panicked are set; waiting for its group
	reqDone            // outcome known
	reqCancelled       // its context ended before it ran: nothing happened
)

// finish marks r done and wakes its writer.
func (r *writeReq) finish() {
	r.state.Store(reqDone)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// maxCombine bounds the transactions the combiner runs under the write
// lock at a time: between runs it lets go of the lock (the committer needs
// it to freeze a group).
const maxCombine = 64

// combine is the combiner's work: with s.combining set by the caller,
// whose request is own, it runs queued transactions, in order, maxCombine
// at a time under the write lock, until the queue is empty, then clears
// s.combining. Once its own transaction has run and it has done a round
// for others, it hands the combining over to the next queued writer
// rather than go on working for others.
func (s *Store) combine(own *writeReq) {
	for rounds := 0; ; rounds++ {
		if rounds > 0 && own.state.Load() >= reqRan && s.handOff() {
			return
		}
		s.sem.Lock()
		n := s.runQueued()
		s.sem.Unlock()
		if n > 0 {
			continue
		}
		s.combining.Store(false)
		// A writer that queued after the queue was last looked at, and
		// found s.combining still set, waits for a combiner.
		s.wq.Lock()
		empty := len(s.wq.reqs) == 0
		s.wq.Unlock()
		if empty || !s.combining.CompareAndSwap(false, true) {
			return
		}
	}
}

// handOff makes the first queued writer the combiner (s.combining stays
// set) and reports whether there was one.
func (s *Store) handOff() bool {
	s.wq.Lock()
	defer s.wq.Unlock()
	for _, r := range s.wq.reqs {
		if r.state.CompareAndSwap(reqQueued, reqLead) {
			select {
			case r.wake <- struct{}{}:
			default:
			}
			return true
		}
	}
	return false
}

// runQueued runs up to maxCombine queued transactions, in order, holding
// the write lock, and returns how many it took from the queue.
func (s *Store) runQueued() int {
	s.wq.Lock()
	reqs := s.wq.reqs
	if len(reqs) > maxCombine {
		s.wq.reqs = append(s.wq.spare[:0], reqs[maxCombine:]...)
		reqs = reqs[:maxCombine]
	} else {
		s.wq.reqs = s.wq.spare[:0]
	}
	s.wq.spare = nil
	s.wq.Unlock()
	for i, r := range reqs {
		reqs[i] = nil
		if !r.state.CompareAndSwap(reqQueued, reqTaken) && !r.state.CompareAndSwap(reqLead, reqTaken) {
			continue // cancelled
		}
		c, err := s.writeLocked(r)
		r.c, r.err = c, err
		if r.until == untilDurable && c != nil {
			// Its writer is woken with the group's.
			r.state.Store(reqRan)
			c.g.waiters = append(c.g.waiters, r)
			s.formingWaiters.Store(int64(len(c.g.waiters)))
			s.w.gate.Joined(len(c.g.waiters))
			continue
		}
		r.finish()
	}
	s.wq.Lock()
	if s.wq.spare == nil {
		s.wq.spare = reqs[:0]
	}
	s.wq.Unlock()
	return len(reqs)
}

// queued returns the number of transactions waiting for a combiner (for
// tests).
func (s *Store) queued() int {
	s.wq.Lock()
	defer s.wq.Unlock()
	return len(s.wq.reqs)
}
