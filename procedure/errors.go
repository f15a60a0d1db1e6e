package procedure

import (
	"errors"
	"fmt"
)

// Errors returned by the engine. Test them with errors.Is.
var (
	// ErrNotFound: no procedure has this id (never had, or its result
	// expired and was deleted).
	ErrNotFound = errors.New("procedure: not found")
	// ErrFinished: the procedure already finished (succeeded or rolled
	// back); it can no longer be aborted or bypassed.
	ErrFinished = errors.New("procedure: already finished")
	// ErrNotFinished: the procedure is still running (Ack needs a result).
	ErrNotFinished = errors.New("procedure: not finished")
	// ErrAbortRefused: the procedure's tree is past its point of no return
	// (a state that declared NoReturn has been reached), so it cannot be
	// rolled back.
	ErrAbortRefused = errors.New("procedure: abort refused")
	// ErrQuarantined: the procedure's tree is quarantined (unknown type,
	// undecodable data, failed upgrade, or an inconsistent rollback stack)
	// and does not run; see Info.Quarantined.
	ErrQuarantined = errors.New("procedure: quarantined")
	// ErrRolledBack: the procedure failed and its tree was rolled back.
	// Wait returns an *Error for which errors.Is(err, ErrRolledBack) holds.
	ErrRolledBack = errors.New("procedure: rolled back")
	// ErrBypassed: Wait on a procedure an administrator bypassed (or on
	// an ancestor of one, or a tree completed by a bypass); it has no
	// result of its own. It is also the cause (context.Cause) of the
	// context of a step running when its procedure was bypassed.
	ErrBypassed = errors.New("procedure: bypassed")
	// ErrUnknownType: Submit of a type name that was not registered.
	ErrUnknownType = errors.New("procedure: unknown type")
	// ErrTypeMismatch: Wait[D] on a procedure whose data is not a D.
	ErrTypeMismatch = errors.New("procedure: data type mismatch")
	// ErrNotStarted: the engine was not started, or was stopped.
	ErrNotStarted = errors.New("procedure: engine not running")
	// ErrTimeout: the procedure's timeout passed (SubmitOptions.Timeout,
	// TypeOptions.Timeout) and it failed; its tree rolled back. Wait
	// returns an *Error for which errors.Is(err, ErrTimeout) holds, also
	// after a restart.
	ErrTimeout = errors.New("procedure: timed out")
	// ErrAborted: the cause (context.Cause) of a step's context when a
	// client aborted its tree while the step ran (Engine.Abort).
	ErrAborted = errors.New("procedure: aborted")
	// ErrEngineFailed: the store under the engine failed (a log write or
	// fsync); the engine stopped. Restart it on the data directory. The
	// error also wraps the store's.
	ErrEngineFailed = errors.New("procedure: engine failed")
)

// Error is a procedure's failure, kept with its result across restarts
// (HBase's RemoteProcedureException): where it came from and what it said.
// Only these two strings survive a restart, so they are all that Wait
// returns after one; errors.Is(err, ErrRolledBack) holds for the error of
// a rolled-back procedure.
//
// A step may return an *Error itself (or wrap one) to name another source,
// such as the server a remote call failed on; otherwise the source is the
// failing procedure's "type#id".
type Error struct {
	Source  string
	Message string
	// rolledBack marks the error returned by Wait for a rolled-back tree.
	rolledBack bool
}

func (e *Error) Error() string {
	if e.Source == "" {
		return e.Message
	}
	return e.Source + ": " + e.Message
}

// Is makes errors.Is(err, ErrRolledBack) hold for errors Wait returns,
// and errors.Is(err, ErrTimeout) for a timeout's.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrRolledBack:
		return e.rolledBack
	case ErrTimeout:
		return e.Source == timeoutSource
	}
	return false
}

// toError turns a step's error into the one recorded.
func toError(err error, source string) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return &Error{Source: pe.Source, Message: pe.Message}
	}
	return &Error{Source: source, Message: err.Error()}
}

// writeError is a recorded write (Env.Write) that failed inside the
// commit; the step fails with its error.
type writeError struct{ err error }

func (e *writeError) Error() string { return fmt.Sprintf("procedure: recorded write: %v", e.err) }
func (e *writeError) Unwrap() error { return e.err }

// Internal outcomes of a commit function: nothing was written.
var (
	errDiscard = errors.New("procedure: step discarded") // bypassed, completed or quarantined meanwhile
	errRetry   = errors.New("procedure: step failed past the point of no return; retrying")
	errDup     = errors.New("procedure: duplicate nonce")
)
