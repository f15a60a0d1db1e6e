package barrier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Subprocedure is a member's local part of one procedure. The Member calls
// Acquire, then (once every member has acquired) Inside, each at most once
// and from one goroutine; the context each receives is canceled with the
// procedure's *AbortError (see context.Cause) when the procedure aborts or
// the member's timeout fires, and both must return promptly then.
type Subprocedure interface {
	// Acquire takes this member's piece of the barrier (for example blocks
	// writes). If it fails it must undo whatever it did itself: Cleanup is
	// not called for a member whose Acquire returned an error.
	Acquire(ctx context.Context) error
	// Inside does the work while every member holds the barrier and returns
	// the result the coordinator collects.
	Inside(ctx context.Context) ([]byte, error)
	// Cleanup is called exactly once, with the procedure's *AbortError, if
	// Acquire returned nil and the procedure then did not complete: after a
	// failure anywhere, a timeout, a cancel or a lost coordinator, even after
	// Inside returned. It is not called when the procedure completes: a
	// subprocedure releases its barrier at the end of Inside.
	Cleanup(err error)
}

// Factory makes the Subprocedure for the procedure called name. args are
// the bytes given to Coordinator.Start. A Factory error aborts the
// procedure (ErrMemberFailed).
type Factory func(name string, args []byte) (Subprocedure, error)

// MemberOptions configure a Member. The zero value gives the defaults
// written on each field.
type MemberOptions struct {
	// Timeout bounds this member's part in one procedure, from learning of
	// it to its outcome; when it fires the member aborts the procedure with
	// ErrTimeout, so it never waits forever on a slow or paused peer.
	// Default 1 minute.
	Timeout time.Duration
	// WriteTimeout bounds each transport write (markers, aborts). Default 10 s.
	WriteTimeout time.Duration
	// MaxActive bounds the procedures this member takes part in at once;
	// beyond it, new ones are aborted (ErrMemberFailed). Default 256.
	MaxActive int
	// Remember is how many finished procedures the member remembers so that
	// one reported again (after a reconnection) is never run twice.
	// Default 4096.
	Remember int
	// Logger receives a line for each phase of each procedure. Default: none.
	Logger *slog.Logger
	// OnFinish, if set, is called when this member is done with a
	// procedure (after Cleanup, if that ran), with the outcome as this
	// member knows it: nil if the procedure completed, else the
	// *AbortError. It must not block for long.
	OnFinish func(ref Ref, outcome error)
}

// EnsureDefaults fills unset fields with their defaults.
func (o *MemberOptions) EnsureDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxActive <= 0 {
		o.MaxActive = 256
	}
	if o.Remember <= 0 {
		o.Remember = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Member runs the subprocedures of the procedures that name it.
type Member struct {
	t    Transport
	name string
	opts MemberOptions

	mu struct {
		sync.Mutex
		factories map[string]Factory // by procedure type
		running   bool
	}
}

// NewMember returns a member called name on t. It does no I/O; Run joins.
func NewMember(t Transport, name string, opts MemberOptions) *Member {
	opts.EnsureDefaults()
	m := &Member{t: t, name: name, opts: opts}
	m.mu.factories = make(map[string]Factory)
	return m
}

// Name returns the member's name.
func (m *Member) Name() string { return m.name }

// Register makes f build the subprocedures of procedures of type procType.
// It panics if procType is invalid or already registered, or f is nil.
// It may be called while Run runs; it affects procedures learned of later.
func (m *Member) Register(procType string, f Factory) {
	if err := checkName("procedure type", procType); err != nil {
		panic(err)
	}
	if f == nil {
		panic("barrier: Register with a nil Factory")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.mu.factories[procType]; dup {
		panic(fmt.Sprintf("barrier: procedure type %q registered twice", procType))
	}
	m.mu.factories[procType] = f
}

func (m *Member) factory(procType string) Factory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.factories[procType]
}

// Run joins the transport as this member and runs the subprocedures of
// every procedure that names it, including procedures started before it
// joined. It returns when ctx ends (aborting the procedures it is still
// part of, ErrCanceled) or when its session is lost (ErrMemberLost: its
// procedures abort and clean up; call Run again to rejoin with a new
// session). In both cases it returns only after every Cleanup it owed ran.
func (m *Member) Run(ctx context.Context) error {
	if err := CheckMemberName(m.name); err != nil {
		return err
	}
	m.mu.Lock()
	if m.mu.running {
		m.mu.Unlock()
		return fmt.Errorf("barrier: member %s is already running", m.name)
	}
	m.mu.running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.mu.running = false
		m.mu.Unlock()
	}()

	conn, err := m.t.OpenMember(ctx, m.name)
	if err != nil {
		return err
	}
	defer conn.Close()
	d := &dispatcher{
		m:        m,
		conn:     conn,
		log:      m.opts.Logger.With("member", m.name),
		active:   make(map[Ref]*sub),
		recent:   newRefSet(m.opts.Remember),
		finished: make(chan Ref, m.opts.MaxActive),
	}
	return d.loop(ctx)
}

// dispatcher routes a member session's events to its subprocedures.
type dispatcher struct {
	m    *Member
	conn MemberConn
	log  *slog.Logger

	// Owned by the loop goroutine.
	active map[Ref]*sub
	recent *refSet        // finished or refused procedures: never run again
	wg     sync.WaitGroup // one count per goroutine started for a procedure
	// finished receives each sub's Ref when its goroutine is done; its
	// capacity is MaxActive, so a finishing sub never blocks.
	finished chan Ref
}

func (d *dispatcher) loop(ctx context.Context) error {
	for {
		select {
		case ev, ok := <-d.conn.Events():
			if !ok {
				ae := asAbort(d.conn.Err(), d.m.name)
				d.log.Warn("barrier: member session ended", "err", ae)
				d.shutdown(ae)
				return ae
			}
			d.handle(ev)
		case ref := <-d.finished:
			delete(d.active, ref)
		case <-ctx.Done():
			d.shutdown(newAbort(d.m.name, KindCanceled, context.Cause(ctx), "member %s stopped", d.m.name))
			return ctx.Err()
		}
	}
}

// shutdown aborts every procedure still running here with ae, ends them
// locally whether or not the abort could be recorded, and waits for their
// goroutines (and so their Cleanups).
func (d *dispatcher) shutdown(ae *AbortError) {
	var writes sync.WaitGroup
	for _, s := range d.active {
		writes.Add(1)
		go func() {
			defer writes.Done()
			d.abort(s, ae)
		}()
	}
	writes.Wait()
	for _, s := range d.active {
		s.end(ae)
	}
	d.wg.Wait()
}

func (d *dispatcher) handle(ev Event) {
	s := d.active[ev.Ref]
	switch ev.Kind {
	case EventStarted:
		if s != nil || d.recent.has(ev.Ref) || ev.Spec == nil {
			return // already running or run: never twice
		}
		if _, named := slices.BinarySearch(ev.Spec.Members, d.m.name); !named {
			return
		}
		f := d.m.factory(ev.Spec.Type)
		var refuse *AbortError
		switch {
		case f == nil:
			refuse = newAbort(d.m.name, KindFailed, nil, "member %s has no subprocedure for type %q", d.m.name, ev.Spec.Type)
		case len(d.active) >= d.m.opts.MaxActive:
			refuse = newAbort(d.m.name, KindFailed, nil, "member %s is busy: %d procedures running", d.m.name, len(d.active))
		}
		if refuse != nil {
			d.recent.add(ev.Ref)
			s := newSub(ev.Ref, ev.Spec)
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.abort(s, refuse)
				s.end(refuse) // whether or not it was recorded: this member is done with it
				d.finish(s)
			}()
			return
		}
		s := newSub(ev.Ref, ev.Spec)
		d.active[ev.Ref] = s
		d.recent.add(ev.Ref)
		d.wg.Add(1)
		go d.run(s, f)
	case EventReached:
		if s != nil {
			s.reach()
		}
	case EventCompleted:
		if s != nil {
			s.end(nil)
		}
	case EventAborted:
		if s != nil {
			s.end(ev.Err)
		}
	case EventGone:
		if s != nil {
			s.end(newAbort(CoordinatorSource, KindCoordinatorLost, nil, "the procedure's record vanished: its coordinator's session ended"))
		}
	}
}

// sub is one procedure as seen by this member.
type sub struct {
	ref  Ref
	spec *Spec

	reached   chan struct{} // closed on EventReached
	reachOnce sync.Once
	ended     chan struct{} // closed once the outcome is known

	mu struct {
		sync.Mutex
		ended   bool
		outcome *AbortError // nil once ended: completed
	}
}

func newSub(ref Ref, spec *Spec) *sub {
	return &sub{ref: ref, spec: spec, reached: make(chan struct{}), ended: make(chan struct{})}
}

func (s *sub) reach() { s.reachOnce.Do(func() { close(s.reached) }) }

// end sets the outcome (nil: completed) unless one is set; the first wins.
func (s *sub) end(outcome *AbortError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ended {
		return
	}
	s.mu.ended, s.mu.outcome = true, outcome
	close(s.ended)
}

func (s *sub) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

// outcome returns the outcome; call it only once ended is closed.
func (s *sub) outcome() *AbortError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.outcome
}

// run drives one subprocedure through its phases. It returns only once
// the outcome is known (the watch goroutine enforces the member's timeout
// meanwhile), so that Cleanup and OnFinish see the procedure's outcome.
func (d *dispatcher) run(s *sub, f Factory) {
	defer d.wg.Done()
	defer func() { d.finished <- s.ref }()
	name := d.m.name
	log := d.log.With("procedure", s.ref)

	// work is canceled with the outcome when the procedure ends.
	work, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := make(chan struct{})
	defer close(stop)
	go d.watch(s, cancel, stop)

	var (
		sp       Subprocedure
		acquired bool // Acquire returned nil: Cleanup is owed unless the procedure completes
	)
	defer func() {
		<-s.ended
		if out := s.outcome(); out != nil && acquired {
			log.Info("barrier: cleanup", "err", out)
			sp.Cleanup(out)
		}
		d.finish(s)
	}()

	sp, err := f(s.spec.Name, s.spec.Args)
	if err != nil {
		d.abort(s, newAbort(name, KindFailed, err, "member %s: create %s subprocedure", name, s.spec.Type))
		return
	}
	if err := d.mark(s, Mark{Phase: PhaseJoined}); err != nil {
		if errors.Is(err, ErrLate) {
			log.Info("barrier: joined too late to take part", "err", err)
		}
		d.markFailed(s, PhaseJoined, err)
		return
	}
	if s.isEnded() {
		return // aborted before this member acquired anything
	}

	t0 := time.Now()
	err = sp.Acquire(work)
	took := time.Since(t0)
	if err != nil {
		log.Info("barrier: acquire failed", "took", took, "err", err)
		d.abort(s, newAbort(name, KindFailed, err, "member %s: acquire", name))
		return // a failed Acquire undoes its own work: no Cleanup
	}
	acquired = true
	log.Debug("barrier: acquired", "took", took)
	if s.isEnded() {
		return
	}
	if err := d.mark(s, Mark{Phase: PhaseAcquired, Took: took}); err != nil {
		d.markFailed(s, PhaseAcquired, err)
		return
	}
	select {
	case <-s.reached:
	case <-s.ended:
	}
	if s.isEnded() {
		return
	}

	t0 = time.Now()
	res, err := sp.Inside(work)
	took = time.Since(t0)
	if err != nil {
		log.Info("barrier: inside failed", "took", took, "err", err)
		d.abort(s, newAbort(name, KindFailed, err, "member %s: inside", name))
		return
	}
	log.Debug("barrier: inside done", "took", took)
	if s.isEnded() {
		return
	}
	if err := d.mark(s, Mark{Phase: PhaseDone, Took: took, Result: res}); err != nil {
		d.markFailed(s, PhaseDone, err)
	}
}

// finish reports s's outcome to OnFinish.
func (d *dispatcher) finish(s *sub) {
	if d.m.opts.OnFinish == nil {
		return
	}
	var err error
	if out := s.outcome(); out != nil {
		err = out
	}
	d.m.opts.OnFinish(s.ref, err)
}

// watch enforces the member's timeout on s and cancels its work context
// with the outcome once there is one.
func (d *dispatcher) watch(s *sub, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	timer := time.NewTimer(d.m.opts.Timeout)
	defer timer.Stop()
	select {
	case <-s.ended:
	case <-timer.C:
		d.abort(s, newAbort(d.m.name, KindTimeout, nil, "member %s: no outcome after %v", d.m.name, d.m.opts.Timeout))
		select {
		case <-s.ended:
		case <-stop:
			return
		}
	case <-stop:
		return
	}
	if out := s.outcome(); out != nil {
		cancel(out)
	} else {
		cancel(nil)
	}
}

func (d *dispatcher) mark(s *sub, mk Mark) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.m.opts.WriteTimeout)
	defer cancel()
	return d.conn.Mark(ctx, s.ref, mk)
}

// markFailed handles a marker write that failed: an abort already recorded
// ends the procedure; a vanished one is ended by the events to come; any
// other error aborts the procedure.
func (d *dispatcher) markFailed(s *sub, phase Phase, err error) {
	var ae *AbortError
	switch {
	case errors.As(err, &ae):
		s.end(ae)
	case errors.Is(err, ErrNoProcedure), errors.Is(err, ErrLate):
		// EventCompleted, EventAborted or EventGone follows.
	default:
		d.abort(s, newAbort(d.m.name, KindTransport, err, "member %s: report %s", d.m.name, phase))
	}
}

// abort records ae as s's abort (first writer wins) and ends s with the
// winner. If the write keeps failing the outcome is left to the events to
// come (or to the end of the session, which ends every procedure).
func (d *dispatcher) abort(s *sub, ae *AbortError) {
	for attempt := 0; attempt < writeAttempts && !s.isEnded(); attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), d.m.opts.WriteTimeout)
		winner, err := d.conn.Abort(ctx, s.ref, ae)
		cancel()
		switch {
		case err == nil:
			s.end(winner) // nil: the procedure completed first
			return
		case errors.Is(err, ErrNoProcedure):
			return
		}
		d.log.Warn("barrier: could not record abort", "procedure", s.ref, "attempt", attempt+1, "err", err)
	}
}

// refSet is a set of Refs that forgets the oldest beyond its capacity.
type refSet struct {
	max   int
	set   map[Ref]struct{}
	order []Ref // insertion order; order[0] is the oldest
}

func newRefSet(max int) *refSet { return &refSet{max: max, set: make(map[Ref]struct{})} }

func (r *refSet) has(ref Ref) bool { _, ok := r.set[ref]; return ok }

func (r *refSet) add(ref Ref) {
	if r.has(ref) {
		return
	}
	if len(r.order) >= r.max {
		delete(r.set, r.order[0])
		r.order[0] = Ref{}
		r.order = r.order[1:]
	}
	r.set[ref] = struct{}{}
	r.order = append(r.order, ref)
}
