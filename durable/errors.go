package durable

import (
	"errors"
	"fmt"
)

// Errors returned by the store. Test them with errors.Is; a *CorruptionError
// (errors.As) names the file or record and the offset of damage.
var (
	// ErrFailed: the persistence failed (a write or fsync of the log). The
	// store refuses every later write; reads keep serving the last durable
	// version. The error also wraps the cause, so errors.Is(err,
	// wal.ErrFailed) holds for the WAL-backed persistence.
	ErrFailed = errors.New("durable: store failed")
	// ErrClosed: the store was closed (or never opened).
	ErrClosed = errors.New("durable: store closed")
	// ErrAlreadyOpen: Open was called on a store that was opened before
	// (a Store opens once, even after Close).
	ErrAlreadyOpen = errors.New("durable: store already opened")
	// ErrCorrupt: a snapshot or log record is damaged. Recovery fails with
	// it unless an older snapshot that the log still covers can be used.
	ErrCorrupt = errors.New("durable: corrupt data")
	// ErrVersion: a snapshot or record was written by a newer format
	// version than this program reads.
	ErrVersion = errors.New("durable: written by a newer format version")
	// ErrUnknownCollection: a snapshot or record names a collection the
	// program did not register (see Options.UnknownCollections).
	ErrUnknownCollection = errors.New("durable: unknown collection")
	// ErrTxDone: a Tx was used after its Write returned.
	ErrTxDone = errors.New("durable: transaction already finished")
	// ErrNestedAsync: WriteAsync was called inside a transaction of the
	// same store; a nested write joins the outer one and has no commit of
	// its own (use Write).
	ErrNestedAsync = errors.New("durable: WriteAsync inside a transaction")
	// ErrOutcomeUnknown: the context of a Write ended while its record was
	// being made durable. The transaction is whole either way, but it may
	// or may not have committed; readers see it once it is durable.
	ErrOutcomeUnknown = errors.New("durable: transaction outcome unknown")
	// ErrTooLarge: a transaction's record exceeds what the persistence
	// accepts. Nothing was written; the store goes on working.
	ErrTooLarge = errors.New("durable: record too large")
	// ErrNotEmpty: Restore was given a directory that is not empty.
	ErrNotEmpty = errors.New("durable: directory not empty")
	// ErrNoState: a log or snapshot needed for recovery is missing (the
	// log does not reach back to the snapshot, or ends before it).
	ErrNoState = errors.New("durable: log does not cover the snapshot")
	// ErrNotStore: the directory given is not a store's data directory
	// (it holds neither DIR/<20 digits>.snap nor DIR/wal/<20 digits>.wal),
	// and the operation does not create one: a read-only Open, Verify,
	// PlanRepair, or a read-write Open of a directory holding other files.
	ErrNotStore = errors.New("durable: not a store")
	// ErrReadOnly: a write or snapshot on a store opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("durable: store opened read-only")
)

// CorruptionError describes damage in a snapshot file or stream, or in a
// log record.
type CorruptionError struct {
	File   string // snapshot file name, "backup stream", or "" for a log record
	Seq    uint64 // the record's sequence number (log records only)
	Offset int64  // byte offset of the damage in the file or record
	Reason string
}

func (e *CorruptionError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("durable: corrupt log record %d at offset %d: %s", e.Seq, e.Offset, e.Reason)
	}
	return fmt.Sprintf("durable: corrupt snapshot %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// LogDamageError is damage in the log that recovery did without (see
// Store.Damage): errors.Is(err, ErrCorrupt) holds, and it wraps the log's
// own error (a *wal.CorruptionError for the WAL).
type LogDamageError struct {
	Segment string // the damaged segment, relative to the data directory
	Err     error
}

func (e *LogDamageError) Error() string {
	return fmt.Sprintf("durable: damaged log segment %s: %v", e.Segment, e.Err)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *LogDamageError) Is(target error) bool { return target == ErrCorrupt }

func (e *LogDamageError) Unwrap() error { return e.Err }
