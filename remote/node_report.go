package remote

import (
	"context"
	"errors"
	"sync"

	"github.com/procyon-dev/procyon/procedure"
)

// reporter sends a node's outcomes to the master in batches, one report
// at a time, each resent until acknowledged. A batch leaves when
// MaxReportBatch outcomes wait or ReportDelay after the first of them
// arrived.
type reporter struct {
	n    *Node
	wake chan struct{} // capacity 1: there may be a batch to send

	mu struct {
		sync.Mutex
		gen     uint64 // bumped by reset: a batch of an older gen is dropped
		inc     uint64 // the incarnation the outcomes belong to
		pending map[OpID]*pendingOutcome
		unsent  []OpID // pending and in no report in flight, oldest first
		timer   procedure.Timer
		timerID uint64 // identifies timer, so that a late one is ignored
		due     bool   // the delay has passed for the oldest unsent outcome
	}
}

// pendingOutcome is an outcome not yet acknowledged. version counts its
// changes (a resend in a newer epoch), so that the acknowledgement of an
// older version does not drop the newer one.
type pendingOutcome struct {
	out     Outcome
	version uint64
	queued  bool // in unsent
}

// reportBatch is one report in flight.
type reportBatch struct {
	gen, inc uint64
	outcomes []Outcome
	versions []uint64
}

func newReporter(n *Node) *reporter {
	r := &reporter{n: n, wake: make(chan struct{}, 1)}
	r.mu.pending = make(map[OpID]*pendingOutcome)
	return r
}

func (r *reporter) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// add queues out for reporting, replacing an unacknowledged outcome of
// the same operation.
func (r *reporter) add(out Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.mu.pending[out.Op]
	if p == nil {
		p = &pendingOutcome{}
		r.mu.pending[out.Op] = p
	}
	p.out = out
	p.version++
	if !p.queued {
		p.queued = true
		r.mu.unsent = append(r.mu.unsent, out.Op)
	}
	switch {
	case len(r.mu.unsent) >= r.n.opts.MaxReportBatch || r.mu.due:
		r.signal()
	case r.mu.timer == nil:
		r.mu.timerID++
		id := r.mu.timerID
		r.mu.timer = r.n.opts.Clock.AfterFunc(r.n.opts.ReportDelay, func() { r.fire(id) })
	}
}

// fire is the end of the batching delay.
func (r *reporter) fire(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id != r.mu.timerID || r.mu.timer == nil {
		return
	}
	r.mu.timer = nil
	r.mu.due = true
	r.signal()
}

func (r *reporter) stopTimer() {
	if r.mu.timer != nil {
		r.mu.timer.Stop()
		r.mu.timer = nil
	}
}

// take returns the next batch to send, or nil if none is ready.
func (r *reporter) take() *reportBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mu.unsent) == 0 || len(r.mu.unsent) < r.n.opts.MaxReportBatch && !r.mu.due {
		return nil
	}
	k := min(len(r.mu.unsent), r.n.opts.MaxReportBatch)
	b := &reportBatch{gen: r.mu.gen, inc: r.mu.inc,
		outcomes: make([]Outcome, k), versions: make([]uint64, k)}
	for i, id := range r.mu.unsent[:k] {
		p := r.mu.pending[id]
		p.queued = false
		b.outcomes[i], b.versions[i] = p.out, p.version
	}
	r.mu.unsent = r.mu.unsent[k:]
	if len(r.mu.unsent) == 0 {
		r.mu.unsent = nil
		r.mu.due = false
		r.stopTimer()
	}
	return b
}

// acked drops the outcomes of b that did not change since it was sent
// and tells the node which they are.
func (r *reporter) acked(b *reportBatch) {
	r.mu.Lock()
	if b.gen != r.mu.gen {
		r.mu.Unlock()
		return
	}
	ids := make([]OpID, 0, len(b.outcomes))
	for i, out := range b.outcomes {
		if p := r.mu.pending[out.Op]; p != nil && p.version == b.versions[i] {
			delete(r.mu.pending, out.Op)
			ids = append(ids, out.Op)
		}
	}
	r.mu.Unlock()
	r.n.ops.ack(b.inc, ids, r.n.opts.Clock.Now())
}

// current reports whether b still belongs to the current incarnation.
func (r *reporter) current(b *reportBatch) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return b.gen == r.mu.gen
}

// reset drops every outcome: they belong to a dead incarnation. inc is
// the new one.
func (r *reporter) reset(inc uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.gen++
	r.mu.inc = inc
	r.mu.pending = make(map[OpID]*pendingOutcome)
	r.mu.unsent = nil
	r.mu.due = false
	r.stopTimer()
}

// run sends batches until ctx ends.
func (r *reporter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for b := r.take(); b != nil; b = r.take() {
			if err := r.send(ctx, b); err != nil {
				return
			}
		}
	}
}

// send reports b until the master acknowledges it, b's incarnation dies
// or ctx ends (the error).
func (r *reporter) send(ctx context.Context, b *reportBatch) error {
	for attempt := 1; r.current(b); attempt++ {
		req := &ReportRequest{Node: r.n.opts.Name, Incarnation: b.inc,
			Epoch: r.n.ops.newestEpoch(), Outcomes: b.outcomes}
		err := r.report(ctx, req)
		if err == nil {
			r.acked(b)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.failed(err, len(b.outcomes), attempt)
		if err := sleepClock(ctx, r.n.opts.Clock, backoff(r.n.opts.Retry, attempt)); err != nil {
			return err
		}
	}
	return nil
}

func (r *reporter) report(ctx context.Context, req *ReportRequest) error {
	ctx, cancel := context.WithTimeout(ctx, r.n.opts.CallTimeout)
	defer cancel()
	_, err := r.n.master().Report(ctx, req)
	return err
}

// failed logs a failed report; a master that does not know the
// incarnation makes the node register again.
func (r *reporter) failed(err error, outcomes, attempt int) {
	switch {
	case errors.Is(err, ErrUnknownNode):
		r.n.log.Warn("remote: master does not know this incarnation; registering again", "err", err)
		r.n.session.kick()
	case errors.Is(err, ErrStaleEpoch):
		r.n.log.Warn("remote: report to a stale master; retrying", "err", err)
	default:
		r.n.log.Warn("remote: report failed; retrying", "outcomes", outcomes, "attempt", attempt, "err", err)
	}
}
