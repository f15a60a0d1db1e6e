package wal

import (
	"errors"
	"fmt"
)

// Errors returned by the log. Test them with errors.Is; a *CorruptionError
// (errors.As) gives the segment and offset of corruption.
var (
	// ErrCorrupt: the log holds damage that is not a torn tail. Open fails
	// and changes nothing; Repair can cut the log at the damage when no
	// intact records follow it.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrFailed: a write or fsync failed. The log refuses every later
	// append and never reports the records of the failed batch (or any
	// later one) durable. The error wraps the cause.
	ErrFailed = errors.New("wal: log failed")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("wal: log closed")
	// ErrVersion: a segment was written by a newer format version.
	ErrVersion = errors.New("wal: unsupported format version")
	// ErrTruncated: the records asked for were deleted by TruncateFront or
	// MarkFlushed.
	ErrTruncated = errors.New("wal: records truncated")
	// ErrTooLarge: a record exceeds Options.MaxRecordSize.
	ErrTooLarge = errors.New("wal: record too large")
	// ErrNotLog: the path is not a log: it is missing, is a file, or is a
	// directory with no segment file and no LOCK file. Returned by Verify,
	// Dump, PlanRepair, and by Open with Options.ReadOnly,
	// Options.MustExist or Options.DeferWrites; they change nothing then.
	ErrNotLog = errors.New("wal: not a procyon log")
	// ErrReadOnly: a write (append, Sync of appends, Roll, TruncateFront,
	// MarkFlushed) on a log opened with Options.ReadOnly, or with
	// Options.DeferWrites before OpenForWrites.
	ErrReadOnly = errors.New("wal: log opened read-only")
	// ErrRepairRefused: the only repair at the damage would drop an intact
	// later segment holding records. The error names those segments and
	// their sequence ranges; nothing was changed.
	ErrRepairRefused = errors.New("wal: repair refused")
)

// CorruptionError describes damage found in a log: the file that is wrong
// (a segment file, or a file or directory with a segment's name) and the
// offset in it where the damage starts (0 for a bad header, a foreign file
// or a directory, and for a sequence gap, which is reported on the segment
// after the gap).
type CorruptionError struct {
	Segment string // file name, relative to the log directory
	Offset  int64  // byte offset of the damaged header, frame or gap
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt log: segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(seg string, off int64, format string, args ...any) *CorruptionError {
	return &CorruptionError{Segment: seg, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
