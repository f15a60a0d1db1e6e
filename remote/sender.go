package remote

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// sender sends the operations of one live node incarnation: a queue, a
// batch formed when it reaches MaxBatch or BatchDelay after its first
// operation, at most MaxInFlight operations sent and not yet reported,
// and resends with backoff while the node lives. Its goroutine (run)
// does the sending: an operation goes Call's commit -> the engine's
// completer (AfterCommit: enqueue) -> run -> the transport, one hand-off
// (two when the batch waits for BatchDelay: the clock's timer pokes run).
type sender struct {
	d    *Dispatcher
	node NodeInfo
	st   *nodeStats
	poke chan struct{} // cap 1: something changed; run looks again

	mu struct {
		sync.Mutex
		queue    []Op              // not sent (or to be resent), oldest first
		inflight map[OpID]struct{} // sent, not reported
		// cancelled are in-flight ops cancelled since they were sent: a
		// resend of their request leaves them out.
		cancelled map[OpID]struct{}
		armed     bool            // a BatchDelay timer runs for the queue
		due       bool            // the queue's first op waited BatchDelay
		paused    bool            // backing off after a failed request
		closed    bool            // the incarnation died, or Stop
		batchT    procedure.Timer // the BatchDelay timer (close stops it)
		backoffT  procedure.Timer // the resend timer (close stops it)
	}
}

func newSender(d *Dispatcher, node NodeInfo, st *nodeStats) *sender {
	s := &sender{d: d, node: node, st: st, poke: make(chan struct{}, 1)}
	s.mu.inflight = make(map[OpID]struct{})
	s.mu.cancelled = make(map[OpID]struct{})
	return s
}

func (s *sender) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// enqueue adds op to the queue; false if the sender is closed (its node
// died: the caller fails the op).
func (s *sender) enqueue(op Op) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false
	}
	s.mu.queue = append(s.mu.queue, op)
	switch {
	case len(s.mu.queue) >= s.d.opts.MaxBatch || s.d.opts.BatchDelay < 0:
		s.wake()
	case !s.mu.armed && !s.mu.due:
		s.mu.armed = true
		s.mu.batchT = s.d.clock.AfterFunc(s.d.opts.BatchDelay, func() {
			s.mu.Lock()
			s.mu.armed, s.mu.due = false, len(s.mu.queue) > 0
			s.mu.Unlock()
			s.wake()
		})
	}
	return true
}

// forget drops a cancelled op from the queue; one in flight is left out
// if its request has to be resent.
func (s *sender) forget(id OpID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.queue = slices.DeleteFunc(s.mu.queue, func(op Op) bool { return op.ID == id })
	if _, ok := s.mu.inflight[id]; ok {
		s.mu.cancelled[id] = struct{}{}
	}
}

// reported frees the in-flight slots of ops the node reported.
func (s *sender) reported(ids []OpID) {
	s.mu.Lock()
	freed := false
	for _, id := range ids {
		if _, ok := s.mu.inflight[id]; ok {
			delete(s.mu.inflight, id)
			delete(s.mu.cancelled, id)
			freed = true
		}
	}
	s.mu.Unlock()
	if freed {
		s.wake()
	}
}

// close stops the sender: its goroutine exits, enqueue refuses.
func (s *sender) close() {
	s.mu.Lock()
	s.mu.closed = true
	for _, t := range []procedure.Timer{s.mu.batchT, s.mu.backoffT} {
		if t != nil {
			t.Stop()
		}
	}
	s.mu.Unlock()
	s.wake()
}

func (s *sender) counts() (queued, inflight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.queue), len(s.mu.inflight)
}

// run sends batches until the sender is closed.
func (s *sender) run() {
	var client NodeService
	failures := 0
	for {
		batch, ok := s.next()
		if !ok {
			return
		}
		var err error
		if client == nil {
			if client, err = s.d.tr.DialNode(s.node.Addr); err != nil {
				client = nil // dialled again for the resend
				s.st.failures.Add(1)
			}
		}
		if err == nil {
			err = s.send(client, batch)
		}
		switch {
		case err == nil:
			failures = 0
		case errors.Is(err, ErrBadRequest):
			// The node refuses the request itself: resending it would be
			// refused again. Its operations fail; the node stays live.
			ids := make([]OpID, len(batch))
			for i, op := range batch {
				ids[i] = op.ID
			}
			s.d.log.Warn("remote: node refused a request; failing its operations", "node", s.node.Name, "ops", len(batch), "err", err)
			s.d.refuseLater("the node refused the request: "+err.Error(), ids...)
			s.reported(ids)
		case errors.Is(err, ErrWrongNode) || errors.Is(err, ErrUnknownNode):
			s.d.kill(s.d.ctx, s.node.Name, s.node.Incarnation, "the node does not know this incarnation: "+err.Error())
			return
		case s.d.ctx.Err() != nil:
			return
		default:
			failures++
			if a := s.d.opts.Retry.Attempts; a > 0 && failures > a {
				s.d.kill(s.d.ctx, s.node.Name, s.node.Incarnation, "requests failed: "+err.Error())
				return
			}
			s.d.log.Warn("remote: request failed; resending", "node", s.node.Name, "ops", len(batch), "failures", failures, "err", err)
			s.retry(batch, backoff(s.d.opts.Retry, failures))
		}
	}
}

// next waits for a batch to send: up to MaxBatch queued ops, within the
// in-flight bound, once the batch is full or its first op waited
// BatchDelay. The ops are in flight when it returns.
func (s *sender) next() ([]Op, bool) {
	for {
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			return nil, false
		}
		room := s.d.opts.MaxInFlight - len(s.mu.inflight)
		q := len(s.mu.queue)
		ready := q >= s.d.opts.MaxBatch || s.mu.due || (q > 0 && s.d.opts.BatchDelay < 0)
		if ready && room > 0 && !s.mu.paused {
			n := batchLen(s.mu.queue[:min(q, s.d.opts.MaxBatch, room)])
			batch := s.mu.queue[:n:n] // the queue moves past it: O(batch), not O(queue)
			s.mu.queue = s.mu.queue[n:]
			for _, op := range batch {
				s.mu.inflight[op.ID] = struct{}{}
			}
			if len(s.mu.queue) == 0 {
				s.mu.queue, s.mu.due = nil, false // let the backing array go
			}
			s.mu.Unlock()
			return batch, true
		}
		s.mu.Unlock()
		<-s.poke
	}
}

// maxBatchBytes bounds the payloads of one request (the first operation
// of a batch always goes: Options.MaxPayload is at most this).
const maxBatchBytes = 4 << 20

// batchLen returns how many of ops, from the first, fit one request.
func batchLen(ops []Op) int {
	size := 0
	for i, op := range ops {
		size += len(op.Payload)
		if i > 0 && size > maxBatchBytes {
			return i
		}
	}
	return len(ops)
}

// send sends one batch and records its statistics.
func (s *sender) send(client NodeService, batch []Op) error {
	req := &ExecuteRequest{Epoch: s.d.Epoch(), Node: s.node.Name, Incarnation: s.node.Incarnation, Ops: batch}
	ctx, cancel := context.WithTimeout(s.d.ctx, s.d.opts.RequestTimeout)
	defer cancel()
	start := time.Now()
	_, err := client.Execute(ctx, req)
	if err != nil {
		s.st.failures.Add(1)
		return err
	}
	s.st.observe(time.Since(start), len(batch))
	return nil
}

// retry puts a failed batch back at the front of the queue, one attempt
// more, and pauses the sender for delay.
func (s *sender) retry(batch []Op, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.st.retries.Add(1) // counted once the resend is arranged
	// A copy: the transport may still hold the request that carried batch.
	again := make([]Op, 0, len(batch)+len(s.mu.queue))
	for _, op := range batch {
		delete(s.mu.inflight, op.ID)
		if _, gone := s.mu.cancelled[op.ID]; gone {
			delete(s.mu.cancelled, op.ID) // cancelled while in flight: not resent
			continue
		}
		op.Attempt++
		again = append(again, op)
	}
	s.mu.queue = append(again, s.mu.queue...)
	s.mu.due = true // they waited already
	if s.mu.closed {
		return
	}
	s.mu.paused = true
	s.mu.backoffT = s.d.clock.AfterFunc(delay, func() {
		s.mu.Lock()
		s.mu.paused = false
		s.mu.Unlock()
		s.wake()
	})
}

// backoff is the delay before retry n (1 for the first): p.Initial
// doubling up to p.Max, moved by up to ±p.Jitter of itself (at most all
// of it), and never under a microsecond. The dispatcher's resends and
// the node's retries of Register and reports both wait this.
func backoff(p procedure.RetryPolicy, n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if p.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + min(p.Jitter, 1)*(2*rand.Float64()-1)))
	}
	return max(d, time.Microsecond)
}
