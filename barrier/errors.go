package barrier

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; an *AbortError matches
// ErrAborted and the sentinel of its Kind.
var (
	// ErrAborted matches every *AbortError: the procedure did not complete.
	ErrAborted = errors.New("barrier: procedure aborted")
	// ErrMemberFailed: a member's factory, Acquire or Inside returned an error.
	ErrMemberFailed = errors.New("barrier: member failed")
	// ErrCanceled: the coordinator's caller canceled the procedure, or a
	// member was stopped while taking part in it.
	ErrCanceled = errors.New("barrier: procedure canceled")
	// ErrTimeout: the coordinator's procedure timeout or a member's own
	// timeout fired before the outcome.
	ErrTimeout = errors.New("barrier: procedure timed out")
	// ErrMemberLost: a member's session ended (its lease expired, it was
	// killed, or it closed) while the procedure still needed it.
	ErrMemberLost = errors.New("barrier: member lost")
	// ErrCoordinatorLost: the coordinator's session ended or it lost
	// leadership; its procedures vanish and their members clean up.
	ErrCoordinatorLost = errors.New("barrier: coordinator lost")
	// ErrTransport: the transport could no longer follow the procedure (for
	// example an etcd watch was compacted away).
	ErrTransport = errors.New("barrier: transport failed")

	// ErrDuplicate is returned by Coordinator.Start when a procedure with the
	// same name is still running.
	ErrDuplicate = errors.New("barrier: procedure already running")
	// ErrDuplicateMember is returned when a member joins under a name that a
	// live member already holds.
	ErrDuplicateMember = errors.New("barrier: member name already in use")
	// ErrInvalid is returned for a malformed name, type or member list.
	ErrInvalid = errors.New("barrier: invalid argument")
	// ErrClosed is returned by a closed Coordinator, Member or connection.
	ErrClosed = errors.New("barrier: closed")
	// ErrFinished is returned by Handle.WaitFor when the procedure finished
	// without the condition holding.
	ErrFinished = errors.New("barrier: procedure finished")

	// ErrNoProcedure is returned by transports when the procedure instance
	// named by a Ref no longer exists (it ended, or its coordinator died).
	ErrNoProcedure = errors.New("barrier: no such procedure")
	// ErrLate is returned by a transport when a member tries to join a
	// procedure that is already past its acquire phase or finished.
	ErrLate = errors.New("barrier: procedure already past the acquire phase")
)

// Kind says why a procedure was aborted. Kinds travel between processes as
// their string values: part of the wire format; never change them.
type Kind string

const (
	KindFailed          Kind = "failed"           // ErrMemberFailed
	KindCanceled        Kind = "canceled"         // ErrCanceled
	KindTimeout         Kind = "timeout"          // ErrTimeout
	KindMemberLost      Kind = "member-lost"      // ErrMemberLost
	KindCoordinatorLost Kind = "coordinator-lost" // ErrCoordinatorLost
	KindTransport       Kind = "transport"        // ErrTransport
)

// CoordinatorSource is the AbortError.Source of errors raised by the
// coordinator. It is reserved: no member may use it as its name.
const CoordinatorSource = "coordinator"

// AbortError is the error that ended a procedure: the first one raised
// anywhere wins, and every participant (the coordinator's Wait and every
// member's Cleanup) receives the same Source, Kind and Message. It is
// encoded as JSON when it crosses a process boundary (HBase calls this a
// ForeignException).
type AbortError struct {
	// Source is the member that raised the error, or CoordinatorSource. For
	// KindMemberLost it is the member that was lost.
	Source  string `json:"source"`
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`

	// cause is the local error that raised this one, when it was raised in
	// this process; it does not cross process boundaries.
	cause error
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("barrier: aborted by %s (%s): %s", e.Source, e.Kind, e.Message)
}

// Unwrap returns the local cause, if the error was raised in this process.
func (e *AbortError) Unwrap() error { return e.cause }

// Is reports whether target is ErrAborted or the sentinel of e's Kind.
func (e *AbortError) Is(target error) bool {
	if target == ErrAborted {
		return true
	}
	s, ok := kindSentinels[e.Kind]
	return ok && s == target
}

var kindSentinels = map[Kind]error{
	KindFailed:          ErrMemberFailed,
	KindCanceled:        ErrCanceled,
	KindTimeout:         ErrTimeout,
	KindMemberLost:      ErrMemberLost,
	KindCoordinatorLost: ErrCoordinatorLost,
	KindTransport:       ErrTransport,
}

// newAbort builds an AbortError whose message is cause's text.
func newAbort(source string, kind Kind, cause error, format string, args ...any) *AbortError {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		if msg == "" {
			msg = cause.Error()
		} else {
			msg += ": " + cause.Error()
		}
	}
	return &AbortError{Source: source, Kind: kind, Message: msg, cause: cause}
}

// asAbort returns err as an *AbortError, wrapping it as a transport failure
// raised by source if it is not one already.
func asAbort(err error, source string) *AbortError {
	var ae *AbortError
	if errors.As(err, &ae) {
		return ae
	}
	return newAbort(source, KindTransport, err, "")
}
