package wal

import (
	"errors"
	"fmt"
)

// Errors returned by the log. Test them with errors.Is; a *CorruptionError
// (errors.As) gives the segment and offset of corruption.
var (
	// ErrCorrupt: the log holds damage that is not a torn tail. Open fails
	// and deletes nothing; Repair can truncate at the damage.
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
)

// CorruptionError describes damage found in a segment.
type CorruptionError struct {
	Segment string // file name of the segment
	Offset  int64  // byte offset of the damaged frame or header
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt log: segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(seg string, off int64, format string, args ...any) error {
	return &CorruptionError{Segment: seg, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
