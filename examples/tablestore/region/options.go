package region

import (
	"log/slog"

	"github.com/procyon-dev/procyon/vfs"
)

// Options configure a Region. The zero value is usable: every field has a
// default, written in its comment.
type Options struct {
	// FS is the file system. Default vfs.OS; tests use vfs.NewMem() and
	// its crash clones.
	FS vfs.FS
	// FlushBytes is the size of the writes (keys plus values) taken into
	// the memstore since it was last flushed at which a Put flushes it to
	// a new row file. Default 4 MiB.
	FlushBytes int
	// MaxFiles is the number of row files past which a flush is followed
	// by a compaction of all of them into one. Default 8.
	MaxFiles int
	// LogSegmentSize is the size past which the log starts a new segment
	// file; it also bounds the zeros the log preallocates ahead of its
	// records. Default 64 MiB (the log's default).
	LogSegmentSize int64
	// Logger receives flushes, compactions and what Open cleans up.
	// Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = 4 << 20
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = 8
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}
