package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// OS is the FS of the operating system.
var OS FS = osFS{}

type osFS struct{}

var _ FS = osFS{}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

func (osFS) OpenReadWrite(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &osFile{f: f, off: fi.Size()}, nil
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o755) }

func (osFS) List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names, nil
}

func (osFS) Stat(name string) (int64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// osLocks guards against the same process taking a directory lock twice:
// flock locks belong to the open file description, so a second flock from
// the same process on a new descriptor would conflict anyway, but some
// platforms treat them per process. Tracking paths keeps the behaviour the
// same everywhere.
var osLocks struct {
	sync.Mutex
	held map[string]bool
}

func (osFS) Lock(name string) (io.Closer, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, err
	}
	osLocks.Lock()
	defer osLocks.Unlock()
	if osLocks.held[abs] {
		return nil, fmt.Errorf("%w: %s is locked by this process", ErrLocked, name)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another process", ErrLocked, name)
		}
		return nil, fmt.Errorf("vfs: lock %s: %w", name, err)
	}
	if osLocks.held == nil {
		osLocks.held = make(map[string]bool)
	}
	osLocks.held[abs] = true
	return &osLock{f: f, path: abs}, nil
}

type osLock struct {
	f    *os.File
	path string
	once sync.Once
}

func (l *osLock) Close() error {
	var err error
	l.once.Do(func() {
		osLocks.Lock()
		delete(osLocks.held, l.path)
		osLocks.Unlock()
		// Closing the descriptor releases the flock.
		err = l.f.Close()
	})
	return err
}

// osFile writes with pwrite at a tracked offset, so that Truncate followed
// by Write never leaves a hole, and ReadAt never moves the write position.
type osFile struct {
	f   *os.File
	off int64 // owned by the single writer
}

func (f *osFile) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

func (f *osFile) Write(p []byte) (int, error) {
	n, err := f.f.WriteAt(p, f.off)
	f.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

func (f *osFile) Sync() error { return fdatasync(f.f) }

func (f *osFile) Truncate(size int64) error {
	if err := f.f.Truncate(size); err != nil {
		return err
	}
	if f.off > size {
		f.off = size
	}
	return nil
}

// preallocChunk bounds one write of Preallocate's zeros.
const preallocChunk = 256 << 10

var zeros [preallocChunk]byte

func (f *osFile) Preallocate(size int64) error {
	end, err := f.Size()
	if err != nil {
		return err
	}
	for end < size {
		n := min(size-end, preallocChunk)
		if _, err := f.f.WriteAt(zeros[:n], end); err != nil {
			return err
		}
		end += n
	}
	return nil
}

func (f *osFile) Size() (int64, error) {
	fi, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (f *osFile) Close() error { return f.f.Close() }
