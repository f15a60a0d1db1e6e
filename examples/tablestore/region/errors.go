package region

import (
	"errors"
	"fmt"

	"github.com/procyon-dev/procyon/vfs"
)

// Errors returned by this package. Test them with errors.Is; a
// *CorruptionError (errors.As) names the file and offset of damage.
var (
	// ErrCorrupt: a row file, a manifest or a log record is damaged or
	// was not written by this package. Nothing is skipped silently.
	ErrCorrupt = errors.New("region: corrupt data")
	// ErrLocked: another Region (in this process or another live one)
	// has the directory open. It is vfs.ErrLocked.
	ErrLocked = vfs.ErrLocked
	// ErrClosed: the region was closed.
	ErrClosed = errors.New("region: closed")
	// ErrFailed: a write, fsync, flush or compaction failed; the region
	// refuses every later call but Close. What was acknowledged is
	// durable: reopen the region to go on.
	ErrFailed = errors.New("region: failed")
	// ErrBadRow: a Put was given a row with an empty key. Nothing was
	// written.
	ErrBadRow = errors.New("region: row key must not be empty")
	// ErrOverlap: a snapshot directory and the region (or a clone's
	// destination) are one directory or one holds the other. Nothing was
	// changed.
	ErrOverlap = errors.New("region: directories overlap")
	// ErrNotEmpty: Clone's destination holds files that are not a copy
	// of the snapshot (another region). Nothing was changed.
	ErrNotEmpty = errors.New("region: destination is not empty")
)

// CorruptionError says which file is damaged and where: the offset of the
// record, field or checksum that is wrong (for a file of the wrong size,
// the size it has).
type CorruptionError struct {
	File   string // path of the file
	Offset int64
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("region: corrupt file %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(file string, off int64, format string, args ...any) *CorruptionError {
	return &CorruptionError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
