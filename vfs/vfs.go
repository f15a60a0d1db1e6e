package vfs

import (
	"errors"
	"io"
)

// Errors returned by file systems in this package. Callers test them with errors.Is.
var (
	// ErrLocked is returned by Lock when another process (or, for MemFS,
	// another owner in this process) holds the lock.
	ErrLocked = errors.New("vfs: lock held by another process")
	// ErrCrashed is returned by every operation on a MemFS after its crash
	// point was reached: the simulated process is dead.
	ErrCrashed = errors.New("vfs: simulated crash")
	// ErrInjected is the default error of an injected fault.
	ErrInjected = errors.New("vfs: injected fault")
)

// FS is the file-system seam under the log and the snapshot files. It covers
// exactly what those need; paths are joined with path/filepath and are
// either absolute or relative to the process's working directory.
//
// Durability contract (the one every implementation and every caller
// assumes): data written to a File is durable only after File.Sync returns
// nil; a directory entry change (Create, Rename, Remove) is durable only
// after SyncDir of its parent directory returns nil. A failed Sync is final:
// callers must not retry it and must not assume anything written since the
// last successful Sync survived.
type FS interface {
	// Create creates the named file for reading and writing, truncating it
	// if it exists. Writes start at offset 0.
	Create(name string) (File, error)
	// Open opens the named file read-only.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing. Writes
	// start at the current end of the file.
	OpenReadWrite(name string) (File, error)
	// Remove removes the named file.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and any missing parents.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries in dir, sorted.
	List(dir string) ([]string, error)
	// Stat returns the size of the named file; errors.Is(err, fs.ErrNotExist)
	// when it does not exist.
	Stat(name string) (size int64, err error)
	// Lock takes an exclusive lock on the named file, creating it if
	// needed. It fails at once with ErrLocked if the lock is held. Closing
	// the returned Closer releases the lock.
	Lock(name string) (io.Closer, error)
	// SyncDir makes the directory's entries (creates, renames, removes)
	// durable.
	SyncDir(dir string) error
}

// File is an open file. Writes append at the file's write offset, which
// starts at 0 for Create and at the end for OpenReadWrite, and moves back to
// the new end when Truncate shrinks the file below it. ReadAt is safe to call
// concurrently with Write from other goroutines; two concurrent writers are
// not supported.
type File interface {
	io.ReaderAt
	io.Writer
	// Sync makes the file's data durable (fdatasync where available).
	Sync() error
	// Truncate changes the size of the file.
	Truncate(size int64) error
	// Preallocate makes the file at least size bytes long by writing zeros
	// past its end: real writes, not a hole or an unwritten extent, so
	// that later writes over them change no file metadata and a
	// data-only sync (fdatasync) has no metadata to commit. The write
	// offset does not move. Like any write, the zeros are durable after
	// Sync.
	Preallocate(size int64) error
	// Size returns the current size of the file.
	Size() (int64, error)
	io.Closer
}
