package procedure

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by the engine. Test them with errors.Is.
var (
	// ErrNotFound: no procedure has this id (never had, or its result
	// expired and was deleted).
	ErrNotFound = errors.New("procedure: not found")
	// ErrFinished: the procedure already finished (succeeded or rolled
	// back); it can no longer be aborted or bypassed, and a condition
	// WaitFor waits for that its Info does not meet never will be.
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
	// ErrAborted: the tree was rolled back because a client aborted it
	// (Abort). Wait returns an *Error for which errors.Is(err, ErrAborted)
	// and errors.Is(err, ErrRolledBack) hold, also after a restart. It is
	// also the cause (context.Cause) of the context of a step running
	// when its tree was aborted.
	ErrAborted = errors.New("procedure: aborted")
	// ErrChildFailed: the tree was rolled back because a descendant of the
	// root failed (its step's error, or its timeout); Wait on the root
	// returns that descendant's *Error, for which errors.Is(err,
	// ErrChildFailed) holds, also after a restart.
	ErrChildFailed = errors.New("procedure: a child procedure failed")
	// ErrBypassed: Wait on a procedure an administrator bypassed (or on
	// an ancestor of one, or a tree completed by a bypass); it has no
	// result of its own. A bypassed root of a tree that was rolling back
	// returns an *Error matching both ErrBypassed and ErrRolledBack. It is
	// also the cause (context.Cause) of the context of a step running
	// when its procedure was bypassed.
	ErrBypassed = errors.New("procedure: bypassed")
	// ErrUnknownType: Submit of a type name that was not registered.
	ErrUnknownType = errors.New("procedure: unknown type")
	// ErrTypeMismatch: Type.Result of a procedure whose data is not the type's D.
	ErrTypeMismatch = errors.New("procedure: data type mismatch")
	// ErrNotStarted: the engine was not started, or was stopped.
	ErrNotStarted = errors.New("procedure: engine not running")
	// ErrTimeout: the procedure's timeout (SubmitOptions.Timeout,
	// TypeOptions.Timeout) or its step's (Env.SetTimeout) passed and it
	// failed; its tree rolled back. Wait returns an *Error for which
	// errors.Is(err, ErrTimeout) holds, also after a restart.
	ErrTimeout = errors.New("procedure: timed out")
	// ErrEngineFailed: the store under the engine failed (a log write or
	// fsync); the engine stopped. Restart it on the data directory. The
	// error also wraps the store's.
	ErrEngineFailed = errors.New("procedure: engine failed")
)

// Error is a procedure's failure, kept with its result across restarts
// (HBase's RemoteProcedureException). Its shape is the same before and
// after a restart, because only what it holds is stored: where it came
// from, what it said, the code of the ErrorCode the step's error wrapped,
// and which of the engine's outcomes it is. Match it with errors.Is:
//
//	ErrRolledBack   the error Wait returns for a rolled-back tree
//	ErrAborted      a client aborted the tree
//	ErrTimeout      a procedure's or a step's timeout passed
//	ErrChildFailed  the failure was a descendant's (Wait on the root)
//	ErrBypassed     the procedure was bypassed while its tree rolled back
//	an *ErrorCode   the step's error wrapped an ErrorCode with that code
//
// Nothing else of the step's error survives (its chain is not stored):
// give the errors a caller must tell apart an ErrorCode.
//
// A step may return an *Error itself (or wrap one) to name another source,
// such as the server a remote call failed on; otherwise the source is the
// failing procedure's "type#id".
type Error struct {
	Source  string
	Message string
	// Code is the code of the ErrorCode the step's error wrapped ("" if
	// none). It is kept as stored also when this program declares no
	// ErrorCode with that code.
	Code string
	// outcome is which of the engine's outcomes this is.
	outcome outcome
}

// outcome is a set of the engine's outcomes an Error stands for. The
// values are part of the on-disk format: never change them.
type outcome uint8

const (
	outcomeAborted     outcome = 1 << 0
	outcomeTimedOut    outcome = 1 << 1
	outcomeChildFailed outcome = 1 << 2
	outcomeBypassed    outcome = 1 << 3 // not stored: Result.Err sets it (the record's bypass says it)
	outcomeRolledBack  outcome = 1 << 4 // not stored: Result.Err sets it (the record's status says it)

	outcomeStored = outcomeAborted | outcomeTimedOut | outcomeChildFailed
)

func (e *Error) Error() string {
	if e.Source == "" {
		return e.Message
	}
	return e.Source + ": " + e.Message
}

// Is reports whether e is one of the engine's outcomes (ErrRolledBack,
// ErrAborted, ErrTimeout, ErrChildFailed, ErrBypassed) or carries the code
// of an *ErrorCode target.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrRolledBack:
		return e.outcome&outcomeRolledBack != 0
	case ErrAborted:
		return e.outcome&outcomeAborted != 0
	case ErrTimeout:
		return e.outcome&outcomeTimedOut != 0
	case ErrChildFailed:
		return e.outcome&outcomeChildFailed != 0
	case ErrBypassed:
		return e.outcome&outcomeBypassed != 0
	}
	if c, ok := target.(*ErrorCode); ok {
		return e.Code != "" && c.code == e.Code
	}
	return false
}

// ErrorCode is a kind of step error that a caller can tell apart after
// the procedure's error was stored: a step returns it (or wraps it, with
// %w), and errors.Is(waitErr, code) holds for the error Wait returns,
// also after a restart. Declare one per kind, at package level:
//
//	var ErrRegionOffline = procedure.NewErrorCode("tables.region-offline", "region offline")
//
//	return procedure.Next{}, fmt.Errorf("assign %s: %w", region, ErrRegionOffline)
//
// Two ErrorCodes with the same code match each other's errors: prefix
// codes with the package's name.
type ErrorCode struct {
	code, message string
}

// maxCodeLen bounds an ErrorCode's code (it is stored with every error).
const maxCodeLen = 128

// NewErrorCode returns the error kind code, whose Error is message. The
// code is stored: it must be 1 to 128 bytes of letters, digits and
// ".-_/"; NewErrorCode panics otherwise (codes are part of the program,
// like flags).
func NewErrorCode(code, message string) *ErrorCode {
	if err := checkCode(code); err != nil {
		panic(err)
	}
	return &ErrorCode{code: code, message: message}
}

func checkCode(code string) error {
	if code == "" || len(code) > maxCodeLen {
		return fmt.Errorf("procedure: bad error code %q (1 to %d bytes)", code, maxCodeLen)
	}
	for _, c := range []byte(code) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_/", c) >= 0
		if !ok {
			return fmt.Errorf("procedure: bad error code %q (letters, digits and .-_/ only)", code)
		}
	}
	return nil
}

// Code returns the code stored with errors of this kind.
func (c *ErrorCode) Code() string { return c.code }

func (c *ErrorCode) Error() string { return c.message }

// toError turns a step's error into the one recorded: an *Error it wraps
// (its source, message and code), else the error's message from source;
// either way with the code of an *ErrorCode it wraps, if it has none.
func toError(err error, source string) *Error {
	out := &Error{Source: source, Message: err.Error()}
	var pe *Error
	if errors.As(err, &pe) {
		out = &Error{Source: pe.Source, Message: pe.Message, Code: pe.Code}
	}
	var ec *ErrorCode
	if out.Code == "" && errors.As(err, &ec) {
		out.Code = ec.code
	}
	return out
}

// withOutcome returns a copy of e that is also o.
func (e *Error) withOutcome(o outcome) *Error {
	c := *e
	c.outcome |= o
	return &c
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
