package barrier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// CoordinatorOptions configure a Coordinator. The zero value gives the
// defaults written on each field.
type CoordinatorOptions struct {
	// Timeout bounds one procedure from Start to its outcome; when it fires
	// the coordinator aborts the procedure with ErrTimeout (HBase's
	// TimeoutExceptionInjector). Default 1 minute.
	Timeout time.Duration
	// WriteTimeout bounds each transport write the coordinator makes on its
	// own behalf (recording the barrier, the completion or an abort,
	// removing the procedure's keys). Default 10 s.
	WriteTimeout time.Duration
	// Logger receives a line for each phase change. Default: none.
	Logger *slog.Logger
}

// EnsureDefaults fills unset fields with their defaults.
func (o *CoordinatorOptions) EnsureDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Coordinator starts barrier procedures and follows them to their outcome.
// It opens its transport session on the first Start (on etcd that waits
// until it is the only active coordinator) and reopens it after the session
// is lost. It is safe for concurrent use.
type Coordinator struct {
	t    Transport
	opts CoordinatorOptions

	openMu sync.Mutex // serializes opening the session; held across OpenCoordinator

	mu struct {
		sync.Mutex
		conn   CoordinatorConn    // nil until the first Start
		procs  map[string]*Handle // running procedures by name; a name is reserved here before the transport creates it
		closed bool
	}
	wg sync.WaitGroup // one count per running procedure
}

// NewCoordinator returns a coordinator on t. It does no I/O.
func NewCoordinator(t Transport, opts CoordinatorOptions) *Coordinator {
	opts.EnsureDefaults()
	c := &Coordinator{t: t, opts: opts}
	c.mu.procs = make(map[string]*Handle)
	return c
}

// Start starts the procedure name of type procType with args on members and
// returns once it is recorded by the transport. The type selects the
// Factory each member registered; the name identifies this run, and a
// second Start with a name that is still running fails with ErrDuplicate.
//
// As with exec.CommandContext, ctx governs the whole procedure, not just
// Start: canceling it aborts the procedure (ErrCanceled, or ErrTimeout for
// an expired deadline). The procedure is also bounded by
// CoordinatorOptions.Timeout.
func (c *Coordinator) Start(ctx context.Context, name, procType string, args []byte, members []string) (*Handle, error) {
	if err := checkName("procedure name", name); err != nil {
		return nil, err
	}
	if err := checkName("procedure type", procType); err != nil {
		return nil, err
	}
	members, err := normalizeMembers(members)
	if err != nil {
		return nil, err
	}
	conn, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	spec := Spec{Name: name, Type: procType, Args: args, Members: members}
	h := newHandle(c, spec)
	pctx, cancel := context.WithCancelCause(ctx)
	h.cancel = cancel

	c.mu.Lock()
	switch {
	case c.mu.closed:
		c.mu.Unlock()
		cancel(nil)
		return nil, ErrClosed
	case c.mu.procs[name] != nil:
		c.mu.Unlock()
		cancel(nil)
		return nil, fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	c.mu.procs[name] = h
	c.wg.Add(1)
	c.mu.Unlock()

	ref, events, err := conn.Create(ctx, spec)
	if err != nil {
		c.forget(h)
		c.wg.Done()
		cancel(nil)
		return nil, err
	}
	h.spec.Instance = ref.Instance
	h.mu.Lock()
	h.mu.stats.Instance = ref.Instance
	h.changedLocked()
	h.mu.Unlock()
	c.opts.Logger.Info("barrier: started", "procedure", ref, "type", procType, "members", len(members))
	go h.run(pctx, conn, ref, events)
	return h, nil
}

// session returns the open session, opening a new one if there is none or
// the last one was lost.
func (c *Coordinator) session(ctx context.Context) (CoordinatorConn, error) {
	c.openMu.Lock()
	defer c.openMu.Unlock()
	c.mu.Lock()
	conn, closed := c.mu.conn, c.mu.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if conn != nil {
		select {
		case <-conn.Done():
			conn.Close() // lost; running procedures notice through Done
		default:
			return conn, nil
		}
	}
	conn, err := c.t.OpenCoordinator(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		conn.Close()
		return nil, ErrClosed
	}
	c.mu.conn = conn
	return conn, nil
}

// Running returns the Stats of the procedures that have not finished,
// sorted by name: each a copy as Handle.Stats returns it, with Total the
// time so far. A procedure being started has Instance 0 until the
// transport has recorded it.
func (c *Coordinator) Running() []Stats {
	c.mu.Lock()
	handles := slices.Collect(maps.Values(c.mu.procs))
	c.mu.Unlock()
	out := make([]Stats, 0, len(handles))
	for _, h := range handles {
		if s := h.Stats(); !s.Finished {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close aborts the running procedures (ErrCanceled), waits for them to
// finish and ends the session, giving up leadership.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	handles := make([]*Handle, 0, len(c.mu.procs))
	for _, h := range c.mu.procs {
		handles = append(handles, h)
	}
	c.mu.Unlock()
	for _, h := range handles {
		h.abortWith(newAbort(CoordinatorSource, KindCanceled, nil, "coordinator closed"))
	}
	c.wg.Wait()
	c.mu.Lock()
	conn := c.mu.conn
	c.mu.conn = nil
	c.mu.Unlock()
	if conn != nil {
		return conn.Close()
	}
	return nil
}

func (c *Coordinator) forget(h *Handle) {
	c.mu.Lock()
	if c.mu.procs[h.spec.Name] == h {
		delete(c.mu.procs, h.spec.Name)
	}
	c.mu.Unlock()
}

// Handle follows one running procedure.
type Handle struct {
	c    *Coordinator
	spec Spec // Instance set once Create returns, before run starts

	// Immutable after newHandle.
	start  time.Time
	index  map[string]int // member name -> position in spec.Members and stats.Members
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the outcome is final and the keys are removed

	mu struct {
		sync.Mutex
		stats   Stats         // Members sorted by name
		changed chan struct{} // closed and replaced on every change of stats
		results map[string][]byte
		err     error
	}
}

func newHandle(c *Coordinator, spec Spec) *Handle {
	h := &Handle{c: c, spec: spec, start: time.Now(), done: make(chan struct{})}
	h.mu.stats = Stats{Name: spec.Name, Type: spec.Type, Start: h.start, Members: make([]MemberStats, len(spec.Members))}
	h.mu.changed = make(chan struct{})
	h.index = make(map[string]int, len(spec.Members))
	for i, m := range spec.Members {
		h.mu.stats.Members[i].Name = m
		h.index[m] = i
	}
	return h
}

// Name returns the procedure's name.
func (h *Handle) Name() string { return h.spec.Name }

// Ref returns the procedure's name and instance.
func (h *Handle) Ref() Ref { return Ref{h.spec.Name, h.spec.Instance} }

// Done is closed when the procedure has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

// Wait waits for the procedure to finish and returns each member's result,
// or the *AbortError that ended it. If ctx ends first it returns ctx's error
// and the procedure goes on; use Cancel to abort it.
func (h *Handle) Wait(ctx context.Context) (map[string][]byte, error) {
	select {
	case <-h.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.err != nil {
		return nil, h.mu.err
	}
	return maps.Clone(h.mu.results), nil
}

// Cancel aborts the procedure (ErrCanceled) with reason as the message
// every member sees. It does nothing if the procedure already finished.
func (h *Handle) Cancel(reason string) {
	h.abortWith(newAbort(CoordinatorSource, KindCanceled, nil, "%s", reason))
}

func (h *Handle) abortWith(ae *AbortError) { h.cancel(ae) }

// Stats returns the procedure's timeline so far.
func (h *Handle) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.mu.stats
	s.Members = append([]MemberStats(nil), s.Members...)
	if !s.Finished {
		s.Total = time.Since(s.Start)
	}
	return s
}

// WaitFor waits until cond holds for the procedure's Stats and returns
// them. cond is checked at once and after every change the coordinator
// sees (a member's marker, the instance, the barrier, the outcome); it runs
// without the handle's lock and must not block. WaitFor returns ctx's
// error if ctx ends first, and the Stats with ErrFinished if the procedure
// finished without cond holding: nothing about it changes any more.
func (h *Handle) WaitFor(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		h.mu.Lock()
		changed := h.mu.changed
		h.mu.Unlock()
		s := h.Stats()
		switch {
		case cond(s):
			return s, nil
		case s.Finished:
			return s, fmt.Errorf("%w: %s", ErrFinished, h.Ref())
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

// changedLocked wakes WaitFor. Call with h.mu held, after changing stats.
func (h *Handle) changedLocked() {
	close(h.mu.changed)
	h.mu.changed = make(chan struct{})
}

// Stats is a procedure's timeline as the coordinator saw it, for operators.
type Stats struct {
	Name     string
	Type     string
	Instance int64
	Start    time.Time
	// Acquire runs from Start until the reached decision was recorded:
	// every member acquired its piece of the barrier.
	Acquire time.Duration
	// Inside runs from the barrier until the last member reported done.
	Inside time.Duration
	// Complete is the time taken to record the completion.
	Complete time.Duration
	// Total runs from Start to the outcome (so far, while running).
	Total    time.Duration
	Finished bool
	Err      error // the outcome: nil if completed (or still running)
	Members  []MemberStats
}

// MemberStats is one member's part in a procedure. Offsets are from
// Stats.Start, when the coordinator saw the member's marker; zero means not
// seen. The Took durations were measured by the member itself.
type MemberStats struct {
	Name        string
	Phase       Phase // the last marker seen; 0 if none
	Lost        bool  // the member's markers vanished
	Joined      time.Duration
	Acquired    time.Duration
	Done        time.Duration
	AcquireTook time.Duration
	InsideTook  time.Duration
}

// note records that member i reached phase; it reports whether that is
// new (markers may be reported twice).
func (h *Handle) note(i int, phase Phase, took time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := &h.mu.stats.Members[i]
	at := time.Since(h.start)
	switch phase {
	case PhaseJoined:
		if m.Joined != 0 {
			return false
		}
		m.Joined = at
	case PhaseAcquired:
		if m.Acquired != 0 {
			return false
		}
		m.Acquired, m.AcquireTook = at, took
	case PhaseDone:
		if m.Done != 0 {
			return false
		}
		m.Done, m.InsideTook = at, took
	}
	if phase > m.Phase {
		m.Phase = phase
	}
	h.changedLocked()
	return true
}

// run follows the procedure to its outcome. It owns the procedure's state.
func (h *Handle) run(ctx context.Context, conn CoordinatorConn, ref Ref, events <-chan Event) {
	defer h.c.wg.Done()
	opts := h.c.opts
	log := opts.Logger.With("procedure", ref)
	timer := time.NewTimer(opts.Timeout)
	defer timer.Stop()

	n := len(h.spec.Members)
	results := make(map[string][]byte, n)
	var (
		acquired, done int
		reached        bool
		reachedAt      time.Duration
		lastDoneAt     time.Duration
		outcome        *AbortError
		completed      bool
	)
	writeCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), opts.WriteTimeout)
	}
	// abort records ae (first writer wins) and returns the outcome.
	abort := func(ae *AbortError) {
		outcome, completed = h.recordAbort(conn, ref, ae)
	}
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				abort(newAbort(CoordinatorSource, KindCoordinatorLost, conn.Err(), "the transport stopped reporting the procedure"))
				break loop
			}
			i, named := h.index[ev.Member]
			switch ev.Kind {
			case EventJoined:
				if named && h.note(i, PhaseJoined, 0) {
					log.Debug("barrier: member joined", "member", ev.Member)
				}
			case EventAcquired:
				if named && h.note(i, PhaseAcquired, ev.Took) {
					acquired++
					log.Debug("barrier: member acquired", "member", ev.Member, "took", ev.Took)
				}
				if acquired == n && !reached {
					wctx, cancel := writeCtx()
					err := conn.Reach(wctx, ref)
					cancel()
					if err != nil {
						abort(asAbort(err, CoordinatorSource))
						break loop
					}
					reached, reachedAt = true, time.Since(h.start)
					h.setPhases(reachedAt, 0, 0)
					log.Info("barrier: reached", "took", reachedAt)
				}
			case EventDone:
				if !named || !reached {
					continue // a done marker cannot precede the barrier this run recorded
				}
				if h.note(i, PhaseDone, ev.Took) {
					log.Debug("barrier: member done", "member", ev.Member, "took", ev.Took)
					done++
					results[ev.Member] = ev.Result
				}
				if done == n {
					lastDoneAt = time.Since(h.start)
					wctx, cancel := writeCtx()
					err := conn.Complete(wctx, ref)
					cancel()
					if err != nil {
						abort(asAbort(err, CoordinatorSource))
					} else {
						completed = true
					}
					break loop
				}
			case EventLost:
				if !named || h.phaseOf(i) == PhaseDone {
					continue // its result is in; nothing more is needed from it
				}
				h.markLost(i)
				abort(newAbort(ev.Member, KindMemberLost, nil, "member %s's session ended (%s)", ev.Member, h.stage(reached)))
				break loop
			case EventAborted:
				outcome = ev.Err
				break loop
			case EventFailed:
				abort(ev.Err)
				break loop
			}
		case <-timer.C:
			abort(newAbort(CoordinatorSource, KindTimeout, nil, "no outcome after %v (%s; %d of %d members acquired, %d done)",
				opts.Timeout, h.stage(reached), acquired, n, done))
			break loop
		case <-ctx.Done():
			abort(causeAbort(ctx))
			break loop
		case <-conn.Done():
			abort(newAbort(CoordinatorSource, KindCoordinatorLost, conn.Err(), "coordinator session ended"))
			break loop
		}
	}
	end := time.Since(h.start)
	if completed {
		if !reached { // the completion was recorded by an earlier, ambiguous write
			reachedAt = end
		}
		if lastDoneAt == 0 {
			lastDoneAt = end
		}
		h.setPhases(reachedAt, lastDoneAt-reachedAt, end-lastDoneAt)
		log.Info("barrier: complete", "took", end)
	} else {
		if reached {
			h.setPhases(reachedAt, end-reachedAt, 0)
		}
		log.Info("barrier: aborted", "took", end, "err", outcome)
	}
	h.mu.Lock()
	h.mu.stats.Total = end
	h.mu.stats.Finished = true
	if completed {
		h.mu.results = results
	} else {
		h.mu.err = outcome
		h.mu.stats.Err = outcome
	}
	h.changedLocked()
	h.mu.Unlock()

	wctx, cancel := writeCtx()
	if err := conn.Remove(wctx, ref); err != nil {
		log.Warn("barrier: removing the procedure's keys failed; the next start of the name sweeps them", "err", err)
	}
	cancel()
	h.c.forget(h)
	h.cancel(nil)
	close(h.done)
}

// recordAbort records ae as the procedure's abort and returns the outcome:
// the abort that won, or completed if the completion was recorded first (by
// a write whose reply was lost).
func (h *Handle) recordAbort(conn CoordinatorConn, ref Ref, ae *AbortError) (outcome *AbortError, completed bool) {
	var err error
	for attempt := 0; attempt < writeAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), h.c.opts.WriteTimeout)
		var winner *AbortError
		winner, err = conn.Abort(ctx, ref, ae)
		cancel()
		switch {
		case err == nil && winner == nil:
			return nil, true
		case err == nil:
			return winner, false
		case errors.Is(err, ErrNoProcedure):
			if ae.Kind == KindCoordinatorLost {
				return ae, false
			}
			// The record vanished with this coordinator's lease: members see
			// a lost coordinator, whatever the abort was going to say.
			return newAbort(CoordinatorSource, KindCoordinatorLost, nil,
				"the procedure's record vanished before the abort (%s: %s) was recorded", ae.Kind, ae.Message), false
		}
		select {
		case <-conn.Done():
			return ae, false
		default:
		}
	}
	h.c.opts.Logger.Warn("barrier: could not record the abort", "procedure", ref, "err", err)
	return ae, false
}

// writeAttempts bounds the retries of a write whose outcome matters.
const writeAttempts = 3

// causeAbort turns the reason ctx ended into an abort.
func causeAbort(ctx context.Context) *AbortError {
	cause := context.Cause(ctx)
	var ae *AbortError
	switch {
	case errors.As(cause, &ae):
		return ae
	case errors.Is(cause, context.DeadlineExceeded):
		return newAbort(CoordinatorSource, KindTimeout, cause, "the procedure's context expired")
	default:
		return newAbort(CoordinatorSource, KindCanceled, cause, "the procedure's context was canceled")
	}
}

func (h *Handle) stage(reached bool) string {
	if reached {
		return "inside the barrier"
	}
	return "acquiring the barrier"
}

func (h *Handle) phaseOf(i int) Phase {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.stats.Members[i].Phase
}

func (h *Handle) markLost(i int) {
	h.mu.Lock()
	h.mu.stats.Members[i].Lost = true
	h.changedLocked()
	h.mu.Unlock()
}

func (h *Handle) setPhases(acquire, inside, complete time.Duration) {
	h.mu.Lock()
	h.mu.stats.Acquire, h.mu.stats.Inside, h.mu.stats.Complete = acquire, inside, complete
	h.changedLocked()
	h.mu.Unlock()
}
