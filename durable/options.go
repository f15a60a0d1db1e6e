package durable

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/procyon-dev/procyon/vfs"
)

// UnknownPolicy says what recovery does with a collection that a snapshot
// or log record names but the program did not register.
type UnknownPolicy int

const (
	// FailUnknown fails recovery with ErrUnknownCollection (the default):
	// the data was written by another program, or a newer version of
	// this one.
	FailUnknown UnknownPolicy = iota
	// DropUnknown drops the collection's data; the next snapshot no
	// longer has it. Use it to retire a collection on purpose.
	DropUnknown
	// KeepUnknown keeps the collection as opaque bytes, carried into
	// every snapshot and backup unchanged (tools such as "procyon backup"
	// use it). Writes cannot reach it.
	KeepUnknown
)

// Options configure a Store. The zero value needs only Dir (or
// Persistence); every other field has a default, written in its comment.
type Options struct {
	// Dir is the data directory: snapshots in it, the log in Dir/wal.
	// Required unless Persistence is set.
	Dir string
	// FS is the file system under Dir. Default vfs.OS.
	FS vfs.FS
	// Persistence replaces the WAL-backed persistence in Dir (for example
	// NewMemPersistence in tests). Default: the WAL in Dir.
	Persistence Persistence
	// Logger receives recovery decisions, snapshots and failures. Default
	// slog.Default().
	Logger *slog.Logger
	// SnapshotBytes: a snapshot is taken in the background once the
	// records logged since the last one exceed the larger of SnapshotBytes
	// and the last snapshot's size. Default 64 MiB; negative: only
	// snapshots asked for with Store.Snapshot.
	SnapshotBytes int64
	// SegmentSize is the WAL segment size. Default 64 MiB.
	SegmentSize int64
	// SnapshotSyncBytes: while a snapshot file is written, it is fsynced
	// every SnapshotSyncBytes. Small, frequent fsyncs keep each one short:
	// on ext4 the log's fdatasync waits behind whatever journal commit a
	// large snapshot fsync forces, so large ones show up as write-latency
	// spikes. Default 1 MiB.
	SnapshotSyncBytes int64
	// SnapshotShare bounds the share of wall time a snapshot or backup
	// spends serializing: after each chunk it sleeps so that it works at
	// most this fraction of the time. On a machine with few cores this
	// keeps writers' latency while a large snapshot is written, at the
	// cost of a longer snapshot. Default 0.5; 1 disables pacing.
	SnapshotShare float64
	// UnknownCollections says what recovery does with data of collections
	// not registered. Default FailUnknown.
	UnknownCollections UnknownPolicy
	// ReadOnly opens an existing store without changing anything on disk:
	// no directory, lock file or log segment is created, a torn log tail
	// is read up to its last whole record but not truncated, unfinished
	// snapshots are not removed, and no snapshot is written. Open fails
	// with ErrNotStore if Dir holds no store; Write, WriteAsync and
	// Snapshot fail with ErrReadOnly. No lock is taken: a store in use by
	// another process may change under it. With Persistence set, only
	// writes and snapshots are refused. Default false.
	ReadOnly bool
}

func (o *Options) ensureDefaults() {
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SnapshotBytes == 0 {
		o.SnapshotBytes = 64 << 20
	}
	if o.SnapshotSyncBytes <= 0 {
		o.SnapshotSyncBytes = 1 << 20
	}
	if o.SnapshotShare <= 0 || o.SnapshotShare > 1 {
		o.SnapshotShare = 0.5
	}
}

func (o *Options) validate() error {
	if o.Persistence == nil && o.Dir == "" {
		return errors.New("durable: Options.Dir or Options.Persistence is required")
	}
	if o.UnknownCollections < FailUnknown || o.UnknownCollections > KeepUnknown {
		return fmt.Errorf("durable: bad Options.UnknownCollections %d", o.UnknownCollections)
	}
	return nil
}
