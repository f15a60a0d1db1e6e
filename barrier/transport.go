package barrier

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Transport carries the barrier protocol between one coordinator and many
// members. The package provides two: NewInProc (one process) and NewEtcd.
// A transport stores the facts of each procedure (its record, each member's
// joined/acquired/done markers, the reached, complete and abort decisions),
// enforces the rules below atomically, and reports changes as Events. The
// phase logic, timeouts, cleanup and statistics live in Coordinator and
// Member, the same for every transport.
//
// Every session a transport opens is bound to a liveness lease: when it ends
// (Close, crash, lost lease) everything written under it vanishes, and the
// other side is told (EventLost to the coordinator, EventGone to members).
type Transport interface {
	// OpenCoordinator opens a coordinator session and waits until it is the
	// only active coordinator (leadership). ctx bounds only the opening; the
	// session lives until Close or until it is lost.
	OpenCoordinator(ctx context.Context) (CoordinatorConn, error)
	// OpenMember opens the session of the member called name. It fails with
	// ErrDuplicateMember while another live session holds the name. ctx
	// bounds only the opening.
	OpenMember(ctx context.Context, name string) (MemberConn, error)
}

// CoordinatorConn is a coordinator's session.
type CoordinatorConn interface {
	// Create records spec (Instance is ignored) unless a procedure with the
	// same name exists (ErrDuplicate) or this session no longer leads
	// (ErrCoordinatorLost). It sweeps stale keys a dead run of the same name
	// left behind. The channel reports the procedure's member markers
	// (EventJoined, EventAcquired, EventDone, EventLost), its abort
	// (EventAborted) and an EventFailed if the transport stops following it;
	// it is closed by Remove or when the session ends.
	Create(ctx context.Context, spec Spec) (Ref, <-chan Event, error)
	// Reach records that the barrier is reached, atomically checking that no
	// abort is recorded, every member's acquired marker exists and this
	// session still leads. If a check fails it returns an *AbortError saying
	// why (the recorded abort, or one still to be recorded).
	Reach(ctx context.Context, ref Ref) error
	// Complete records the completion, atomically checking that no abort is
	// recorded and this session still leads; otherwise as Reach.
	Complete(ctx context.Context, ref Ref) error
	// Abort is the coordinator's MemberConn.Abort.
	Abort(ctx context.Context, ref Ref, err *AbortError) (*AbortError, error)
	// Remove deletes everything the procedure wrote and closes its channel.
	Remove(ctx context.Context, ref Ref) error
	// Done is closed when the session ends; Err then says why.
	Done() <-chan struct{}
	Err() error
	// Close ends the session and gives up leadership.
	Close() error
}

// MemberConn is a member's session.
type MemberConn interface {
	// Events reports the procedures that name this member (EventStarted,
	// also for procedures that began before the member joined), and their
	// decisions: EventReached, EventCompleted, EventAborted, and EventGone
	// when a procedure's record vanishes. A procedure may be reported more
	// than once (after a reconnection); the Member ignores repeats. The
	// channel is closed when the session ends; Err then says why.
	Events() <-chan Event
	// Mark records this member's progress in the procedure, under the
	// session's lease. It returns the recorded *AbortError if the procedure
	// was aborted, ErrNoProcedure if it is gone, and (for PhaseJoined only)
	// ErrLate if the procedure is past its acquire phase.
	Mark(ctx context.Context, ref Ref, mark Mark) error
	// Abort records err as the procedure's abort unless an abort or the
	// completion was recorded first (first writer wins). It returns the
	// abort that won, or (nil, nil) if the procedure had completed, or
	// ErrNoProcedure if it is gone.
	Abort(ctx context.Context, ref Ref, err *AbortError) (*AbortError, error)
	Err() error
	// Close ends the session; its markers vanish.
	Close() error
}

// Spec is a procedure as the transport stores it.
type Spec struct {
	Name    string   // unique among running procedures
	Type    string   // selects the members' Factory
	Args    []byte   // passed to the Factory
	Members []string // sorted, without duplicates
	// Instance is set by the transport when it creates the procedure; it
	// tells apart two runs that reuse a name.
	Instance int64
}

// Ref names one run of a procedure.
type Ref struct {
	Name     string
	Instance int64
}

func (r Ref) String() string { return fmt.Sprintf("%s#%d", r.Name, r.Instance) }

// Phase is a member's progress marker.
type Phase uint8

const (
	PhaseJoined   Phase = iota + 1 // the member learned of the procedure and is acquiring
	PhaseAcquired                  // Acquire returned nil
	PhaseDone                      // Inside returned its result
)

func (p Phase) String() string {
	switch p {
	case PhaseJoined:
		return "joined"
	case PhaseAcquired:
		return "acquired"
	case PhaseDone:
		return "done"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// Mark is one progress report of a member.
type Mark struct {
	Phase  Phase
	Took   time.Duration // how long Acquire or Inside ran on the member
	Result []byte        // Inside's result, for PhaseDone
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// To the coordinator, on a procedure's channel.
	EventJoined   EventKind = iota + 1 // Member wrote its joined marker
	EventAcquired                      // Member's Acquire returned nil after Took
	EventDone                          // Member's Inside returned Result after Took
	EventLost                          // Member's markers vanished: its session ended
	EventFailed                        // the transport lost track of the procedure: Err says why
	// To both.
	EventAborted // Err is the recorded abort
	// To members.
	EventStarted   // Spec names this member
	EventReached   // the barrier is reached: run Inside
	EventCompleted // every member is done
	EventGone      // the procedure's record vanished
)

var eventNames = [...]string{"", "joined", "acquired", "done", "lost", "failed", "aborted", "started", "reached", "completed", "gone"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one change reported by a transport.
type Event struct {
	Kind   EventKind
	Ref    Ref
	Spec   *Spec  // EventStarted
	Member string // coordinator events
	Took   time.Duration
	Result []byte      // EventDone
	Err    *AbortError // EventAborted, EventFailed
}

// maxNameLen bounds procedure, type and member names.
const maxNameLen = 128

// checkName validates a procedure, type or member name: 1 to 128 bytes of
// UTF-8 without '/' or control characters (names become etcd key segments).
func checkName(what, s string) error {
	if s == "" || len(s) > maxNameLen || !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q: want 1 to %d bytes of UTF-8", ErrInvalid, what, s, maxNameLen)
	}
	for _, r := range s {
		if r == '/' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q: contains %q", ErrInvalid, what, s, r)
		}
	}
	return nil
}

// CheckMemberName reports whether name is usable as a member name.
func CheckMemberName(name string) error {
	if err := checkName("member name", name); err != nil {
		return err
	}
	if name == CoordinatorSource {
		return fmt.Errorf("%w: member name %q is reserved", ErrInvalid, name)
	}
	return nil
}

// normalizeMembers validates members and returns them sorted and unique.
func normalizeMembers(members []string) ([]string, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: no members", ErrInvalid)
	}
	out := slices.Clone(members)
	slices.Sort(out)
	for i, m := range out {
		if err := CheckMemberName(m); err != nil {
			return nil, err
		}
		if i > 0 && out[i-1] == m {
			return nil, fmt.Errorf("%w: member %q listed twice", ErrInvalid, m)
		}
	}
	return out, nil
}
