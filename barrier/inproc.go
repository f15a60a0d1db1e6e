package barrier

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// InProc is the in-process transport: coordinator and members in one
// process share its state. It implements the same rules as the etcd
// transport (first abort wins, the barrier is reached only when every
// member holds its acquired marker, markers vanish with their session), so
// it serves tests and single-binary deployments. Sessions never expire on
// their own; ExpireMember and ExpireCoordinator simulate a lost lease.
type InProc struct {
	leader chan struct{} // holds one token while a coordinator session is open

	mu struct {
		sync.Mutex
		lastInstance int64
		coord        *ipCoordConn             // the open coordinator session, if any
		procs        map[string]*ipProc       // by name
		members      map[string]*ipMemberConn // live member sessions by name
	}
}

var _ Transport = (*InProc)(nil)

// NewInProc returns an empty in-process transport.
func NewInProc() *InProc {
	t := &InProc{leader: make(chan struct{}, 1)}
	t.mu.procs = make(map[string]*ipProc)
	t.mu.members = make(map[string]*ipMemberConn)
	return t
}

type ipProc struct {
	spec      Spec
	coord     *ipCoordConn
	box       *mailbox            // the coordinator's events
	marks     map[string]*ipMarks // by member
	reached   bool
	completed bool
	abort     *AbortError
}

// ipMarks are one member's markers in one procedure, held by its session.
type ipMarks struct {
	owner *ipMemberConn
	phase Phase
}

// OpenCoordinator waits until no other coordinator session is open.
func (t *InProc) OpenCoordinator(ctx context.Context) (CoordinatorConn, error) {
	select {
	case t.leader <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c := &ipCoordConn{t: t, done: make(chan struct{})}
	t.mu.Lock()
	t.mu.coord = c
	t.mu.Unlock()
	return c, nil
}

// OpenMember opens name's session; it learns of running procedures that
// name it at once.
func (t *InProc) OpenMember(ctx context.Context, name string) (MemberConn, error) {
	if err := CheckMemberName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.members[name] != nil {
		return nil, fmt.Errorf("%w: %q", ErrDuplicateMember, name)
	}
	c := &ipMemberConn{t: t, name: name, box: newMailbox()}
	t.mu.members[name] = c
	// The late joiner's view: every running procedure naming it, in the
	// order they were created, with the decisions already taken.
	procs := make([]*ipProc, 0, len(t.mu.procs))
	for _, p := range t.mu.procs {
		if p.names(name) {
			procs = append(procs, p)
		}
	}
	slices.SortFunc(procs, func(a, b *ipProc) int { return cmp.Compare(a.spec.Instance, b.spec.Instance) })
	for _, p := range procs {
		ref := p.ref()
		c.box.put(Event{Kind: EventStarted, Ref: ref, Spec: p.specCopy()})
		if p.reached {
			c.box.put(Event{Kind: EventReached, Ref: ref})
		}
		if p.abort != nil {
			c.box.put(Event{Kind: EventAborted, Ref: ref, Err: p.abort})
		}
		if p.completed {
			c.box.put(Event{Kind: EventCompleted, Ref: ref})
		}
	}
	return c, nil
}

// ExpireMember ends member name's session as if its lease expired: its
// markers vanish and its Run returns ErrMemberLost. It reports whether the
// member had a session.
func (t *InProc) ExpireMember(name string) bool {
	t.mu.Lock()
	c := t.mu.members[name]
	t.mu.Unlock()
	if c == nil {
		return false
	}
	c.end(&AbortError{Source: name, Kind: KindMemberLost, Message: fmt.Sprintf("member %s's session expired", name)}, true)
	return true
}

// ExpireCoordinator ends the open coordinator session as if its lease
// expired: its procedures vanish. It reports whether one was open.
func (t *InProc) ExpireCoordinator() bool {
	t.mu.Lock()
	c := t.mu.coord
	t.mu.Unlock()
	if c == nil {
		return false
	}
	c.end(&AbortError{Source: CoordinatorSource, Kind: KindCoordinatorLost, Message: "coordinator session expired"})
	return true
}

func (p *ipProc) ref() Ref { return Ref{p.spec.Name, p.spec.Instance} }

func (p *ipProc) names(member string) bool {
	_, ok := slices.BinarySearch(p.spec.Members, member)
	return ok
}

func (p *ipProc) specCopy() *Spec {
	s := p.spec
	s.Args = slices.Clone(s.Args)
	s.Members = slices.Clone(s.Members)
	return &s
}

// lookup returns the live procedure ref names. Call with t.mu held.
func (t *InProc) lookup(ref Ref) (*ipProc, error) {
	p := t.mu.procs[ref.Name]
	if p == nil || p.spec.Instance != ref.Instance {
		return nil, fmt.Errorf("%w: %s", ErrNoProcedure, ref)
	}
	return p, nil
}

// toMembers sends ev to every live member session p names. Call with t.mu
// held.
func (t *InProc) toMembers(p *ipProc, ev Event) {
	for _, m := range p.spec.Members {
		if c := t.mu.members[m]; c != nil {
			c.box.put(ev)
		}
	}
}

// remove deletes p and tells its members it is gone. Call with t.mu held.
func (t *InProc) remove(p *ipProc) {
	delete(t.mu.procs, p.spec.Name)
	p.box.close(false)
	t.toMembers(p, Event{Kind: EventGone, Ref: p.ref()})
}

// abort implements first-writer-wins for both sides.
func (t *InProc) abort(ref Ref, ae *AbortError) (*AbortError, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, err := t.lookup(ref)
	switch {
	case err != nil:
		return nil, err
	case p.abort != nil:
		return p.abort, nil
	case p.completed:
		return nil, nil
	}
	p.abort = ae
	p.box.put(Event{Kind: EventAborted, Ref: ref, Err: ae})
	t.toMembers(p, Event{Kind: EventAborted, Ref: ref, Err: ae})
	return ae, nil
}

type ipCoordConn struct {
	t    *InProc
	done chan struct{}

	// Guarded by t.mu.
	ended bool
	err   error
}

var _ CoordinatorConn = (*ipCoordConn)(nil)

func (c *ipCoordConn) Create(ctx context.Context, spec Spec) (Ref, <-chan Event, error) {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.ended {
		return Ref{}, nil, fmt.Errorf("%w: session ended", ErrCoordinatorLost)
	}
	if t.mu.procs[spec.Name] != nil {
		return Ref{}, nil, fmt.Errorf("%w: %q", ErrDuplicate, spec.Name)
	}
	t.mu.lastInstance++
	spec.Instance = t.mu.lastInstance
	spec.Args = slices.Clone(spec.Args)
	spec.Members = slices.Clone(spec.Members)
	p := &ipProc{spec: spec, coord: c, box: newMailbox(), marks: make(map[string]*ipMarks, len(spec.Members))}
	t.mu.procs[spec.Name] = p
	t.toMembers(p, Event{Kind: EventStarted, Ref: p.ref(), Spec: p.specCopy()})
	return p.ref(), p.box.out, nil
}

// check returns why p may not move on, if it may not. Call with t.mu held.
func (c *ipCoordConn) check(p *ipProc) error {
	switch {
	case p.abort != nil:
		return p.abort
	case c.ended || p.coord != c:
		return &AbortError{Source: CoordinatorSource, Kind: KindCoordinatorLost, Message: "this coordinator no longer leads"}
	}
	return nil
}

func (c *ipCoordConn) Reach(ctx context.Context, ref Ref) error {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	p, err := t.lookup(ref)
	if err != nil {
		return err
	}
	if err := c.check(p); err != nil {
		return err
	}
	for _, m := range p.spec.Members {
		if mk := p.marks[m]; mk == nil || mk.phase < PhaseAcquired {
			return &AbortError{Source: m, Kind: KindMemberLost, Message: fmt.Sprintf("member %s's acquired marker is missing", m)}
		}
	}
	if !p.reached {
		p.reached = true
		t.toMembers(p, Event{Kind: EventReached, Ref: ref})
	}
	return nil
}

func (c *ipCoordConn) Complete(ctx context.Context, ref Ref) error {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	p, err := t.lookup(ref)
	if err != nil {
		return err
	}
	if err := c.check(p); err != nil {
		return err
	}
	if !p.completed {
		p.completed = true
		t.toMembers(p, Event{Kind: EventCompleted, Ref: ref})
	}
	return nil
}

func (c *ipCoordConn) Abort(ctx context.Context, ref Ref, ae *AbortError) (*AbortError, error) {
	return c.t.abort(ref, ae)
}

func (c *ipCoordConn) Remove(ctx context.Context, ref Ref) error {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, err := t.lookup(ref); err == nil && p.coord == c {
		t.remove(p)
	}
	return nil
}

func (c *ipCoordConn) Done() <-chan struct{} { return c.done }

func (c *ipCoordConn) Err() error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.err
}

func (c *ipCoordConn) Close() error {
	c.end(ErrClosed)
	return nil
}

// end ends the session: its procedures vanish and leadership is released.
func (c *ipCoordConn) end(why error) {
	t := c.t
	t.mu.Lock()
	if c.ended {
		t.mu.Unlock()
		return
	}
	c.ended, c.err = true, why
	for _, p := range t.mu.procs {
		if p.coord == c {
			t.remove(p)
		}
	}
	if t.mu.coord == c {
		t.mu.coord = nil
	}
	t.mu.Unlock()
	close(c.done)
	<-t.leader
}

type ipMemberConn struct {
	t    *InProc
	name string
	box  *mailbox

	// Guarded by t.mu.
	ended bool
	err   error
}

var _ MemberConn = (*ipMemberConn)(nil)

func (c *ipMemberConn) Events() <-chan Event { return c.box.out }

func (c *ipMemberConn) Mark(ctx context.Context, ref Ref, mk Mark) error {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.ended {
		return &AbortError{Source: c.name, Kind: KindMemberLost, Message: fmt.Sprintf("member %s's session ended", c.name)}
	}
	p, err := t.lookup(ref)
	switch {
	case err != nil:
		return err
	case p.abort != nil:
		return p.abort
	case !p.names(c.name):
		return fmt.Errorf("%w: %s does not name member %s", ErrInvalid, ref, c.name)
	case mk.Phase == PhaseJoined && (p.reached || p.completed):
		return fmt.Errorf("%w: %s", ErrLate, ref)
	}
	cur := p.marks[c.name]
	if cur == nil {
		cur = &ipMarks{owner: c}
		p.marks[c.name] = cur
	}
	if mk.Phase <= cur.phase {
		return nil // repeated
	}
	cur.phase = mk.Phase
	ev := Event{Ref: ref, Member: c.name, Took: mk.Took}
	switch mk.Phase {
	case PhaseJoined:
		ev.Kind = EventJoined
	case PhaseAcquired:
		ev.Kind = EventAcquired
	case PhaseDone:
		ev.Kind, ev.Result = EventDone, slices.Clone(mk.Result)
	default:
		return fmt.Errorf("%w: phase %v", ErrInvalid, mk.Phase)
	}
	p.box.put(ev)
	return nil
}

func (c *ipMemberConn) Abort(ctx context.Context, ref Ref, ae *AbortError) (*AbortError, error) {
	return c.t.abort(ref, ae)
}

func (c *ipMemberConn) Err() error {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return c.err
}

func (c *ipMemberConn) Close() error {
	c.end(ErrClosed, false)
	return nil
}

// end ends the session: its markers vanish (the coordinators see
// EventLost) and its events stop, after the queued ones if drain.
func (c *ipMemberConn) end(why error, drain bool) {
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.ended {
		return
	}
	c.ended, c.err = true, why
	delete(t.mu.members, c.name)
	for _, p := range t.mu.procs {
		if mk := p.marks[c.name]; mk != nil && mk.owner == c {
			delete(p.marks, c.name)
			p.box.put(Event{Kind: EventLost, Ref: p.ref(), Member: c.name})
		}
	}
	c.box.close(drain)
}

// mailbox is an unbounded FIFO of events feeding a channel, so that the
// transport never blocks while holding its lock. Its length is bounded by
// the events of the procedures a session takes part in (a few per member
// per procedure).
type mailbox struct {
	out  chan Event
	wake chan struct{} // capacity 1

	mu struct {
		sync.Mutex
		queue  []Event
		closed bool
		drop   bool // closed without draining
	}
}

func newMailbox() *mailbox {
	b := &mailbox{out: make(chan Event), wake: make(chan struct{}, 1)}
	go b.pump()
	return b
}

func (b *mailbox) put(ev Event) {
	b.mu.Lock()
	if !b.mu.closed {
		b.mu.queue = append(b.mu.queue, ev)
	}
	b.mu.Unlock()
	b.signal()
}

// close stops the mailbox: out is closed after the queued events if drain,
// or at once (dropping them) otherwise.
func (b *mailbox) close(drain bool) {
	b.mu.Lock()
	if !b.mu.closed {
		b.mu.closed, b.mu.drop = true, !drain
	}
	b.mu.Unlock()
	b.signal()
}

func (b *mailbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *mailbox) pump() {
	defer close(b.out)
	for {
		b.mu.Lock()
		if b.mu.drop || (b.mu.closed && len(b.mu.queue) == 0) {
			b.mu.queue = nil
			b.mu.Unlock()
			return
		}
		if len(b.mu.queue) == 0 {
			b.mu.Unlock()
			<-b.wake
			continue
		}
		ev := b.mu.queue[0]
		b.mu.queue[0] = Event{}
		b.mu.queue = b.mu.queue[1:]
		b.mu.Unlock()
		for sent := false; !sent; {
			select {
			case b.out <- ev:
				sent = true
			case <-b.wake:
				b.mu.Lock()
				drop := b.mu.drop
				b.mu.Unlock()
				if drop {
					return
				}
			}
		}
	}
}
