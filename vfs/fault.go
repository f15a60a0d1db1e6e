package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
)

// ErrNoSpace is a disk-full error for injectors:
// errors.Is(ErrNoSpace, syscall.ENOSPC) holds, as for a real ENOSPC.
var ErrNoSpace error = fmt.Errorf("vfs: %w", syscall.ENOSPC)

// OpKind is the kind of an FS or File operation seen by an Injector.
type OpKind int

// The operation kinds. File.Size is an OpStat. File.Close and the Close of
// a lock are never failed: a failed Close that did not release its file
// would leak it.
const (
	OpCreate        OpKind = iota // FS.Create
	OpOpen                        // FS.Open
	OpOpenReadWrite               // FS.OpenReadWrite
	OpWrite                       // File.Write
	OpSync                        // File.Sync
	OpTruncate                    // File.Truncate
	OpRename                      // FS.Rename
	OpRemove                      // FS.Remove
	OpMkdirAll                    // FS.MkdirAll
	OpList                        // FS.List
	OpStat                        // FS.Stat, File.Size
	OpLock                        // FS.Lock
	OpSyncDir                     // FS.SyncDir
	OpRead                        // File.ReadAt
	OpPreallocate                 // File.Preallocate
	numOpKinds
)

var opKindNames = [numOpKinds]string{
	OpCreate:        "create",
	OpOpen:          "open",
	OpOpenReadWrite: "open-rw",
	OpWrite:         "write",
	OpSync:          "sync",
	OpTruncate:      "truncate",
	OpRename:        "rename",
	OpRemove:        "remove",
	OpMkdirAll:      "mkdir",
	OpList:          "list",
	OpStat:          "stat",
	OpLock:          "lock",
	OpSyncDir:       "syncdir",
	OpRead:          "read",
	OpPreallocate:   "preallocate",
}

func (k OpKind) String() string {
	if k >= 0 && k < numOpKinds {
		return opKindNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is an operation about to run on a FaultyFS.
type Op struct {
	Kind OpKind
	// Path is the path as the caller gave it: for a File operation, the
	// name the file was opened with; for OpRename, the old name.
	Path string
}

// Injector decides which operations of a FaultyFS fail. MaybeError is
// called before every operation; a non-nil error makes the operation fail
// with it (wrapped in an *fs.PathError, or an *os.LinkError for Rename)
// without reaching the underlying FS. One exception: when the error of an
// OpWrite matches io.ErrShortWrite, the first half of the buffer is
// written before the error is returned (a short write). Injectors must be
// safe for concurrent use.
type Injector interface {
	MaybeError(op Op) error
}

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(op Op) error

// MaybeError implements Injector.
func (f InjectorFunc) MaybeError(op Op) error { return f(op) }

// FailNth returns an Injector that fails the n-th operation of the given
// kind (counting from 1) with err, or with an error wrapping ErrInjected if
// err is nil. It counts every operation of that kind it sees, in the order
// MaybeError is called; wrap it with WithPathSuffix or WithPathFilter to
// count only some paths.
func FailNth(kind OpKind, n int, err error) Injector {
	return newNth(kind, n, false, err, "FailNth")
}

// FailFrom is FailNth that also fails every later operation of the kind:
// a device that broke for good.
func FailFrom(kind OpKind, n int, err error) Injector {
	return newNth(kind, n, true, err, "FailFrom")
}

// ShortWriteNth returns an Injector that makes the n-th File.Write
// (counting from 1) write only the first half of its buffer (len(p)/2
// bytes) and return that count with an error wrapping io.ErrShortWrite and
// ErrInjected.
func ShortWriteNth(n int) Injector {
	return newNth(OpWrite, n, false, errShortWrite, "ShortWriteNth")
}

var errShortWrite = &injectedError{msg: "vfs: injected short write", errs: []error{io.ErrShortWrite, ErrInjected}}

// injectedError is an error that matches several sentinels.
type injectedError struct {
	msg  string
	errs []error
}

func (e *injectedError) Error() string   { return e.msg }
func (e *injectedError) Unwrap() []error { return e.errs }

type nthInjector struct {
	kind OpKind
	n    int
	from bool
	err  error
	mu   sync.Mutex
	seen int // operations of kind seen; guarded by mu
}

func newNth(kind OpKind, n int, from bool, err error, fn string) *nthInjector {
	if n < 1 {
		panic(fmt.Sprintf("vfs: %s: n must be at least 1, got %d", fn, n))
	}
	if err == nil {
		err = ErrInjected
	}
	return &nthInjector{kind: kind, n: n, from: from, err: err}
}

func (in *nthInjector) MaybeError(op Op) error {
	if op.Kind != in.kind {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.seen++
	if in.seen == in.n || (in.from && in.seen > in.n) {
		return in.err
	}
	return nil
}

// WithPathFilter returns an Injector that passes to inj only the operations
// whose path match accepts; inj does not see (and so does not count) the
// others, which never fail.
func WithPathFilter(match func(path string) bool, inj Injector) Injector {
	return InjectorFunc(func(op Op) error {
		if !match(op.Path) {
			return nil
		}
		return inj.MaybeError(op)
	})
}

// WithPathSuffix is WithPathFilter for the paths that end in suffix:
// WithPathSuffix(".wal", FailNth(OpSync, 2, nil)) fails the second sync of
// a ".wal" file.
func WithPathSuffix(suffix string, inj Injector) Injector {
	return WithPathFilter(func(path string) bool { return strings.HasSuffix(path, suffix) }, inj)
}

// FaultyFS is an FS that asks an Injector before every operation whether
// to fail it, and otherwise passes the operation to another FS (a MemFS,
// or OS). A failed operation does not reach the underlying FS, except for
// the written prefix of a short write.
type FaultyFS struct {
	fs  FS
	inj Injector
}

var _ FS = (*FaultyFS)(nil)

// NewFaulty returns a FaultyFS over fs. A nil inj injects nothing.
func NewFaulty(fs FS, inj Injector) *FaultyFS {
	if inj == nil {
		inj = InjectorFunc(func(Op) error { return nil })
	}
	return &FaultyFS{fs: fs, inj: inj}
}

// check asks the injector about an operation and wraps its error as the OS
// would.
func check(inj Injector, kind OpKind, path string) error {
	if err := inj.MaybeError(Op{Kind: kind, Path: path}); err != nil {
		return &fs.PathError{Op: kind.String(), Path: path, Err: err}
	}
	return nil
}

// Create implements FS.
func (f *FaultyFS) Create(name string) (File, error) {
	return f.open(OpCreate, name, f.fs.Create)
}

// Open implements FS.
func (f *FaultyFS) Open(name string) (File, error) {
	return f.open(OpOpen, name, f.fs.Open)
}

// OpenReadWrite implements FS.
func (f *FaultyFS) OpenReadWrite(name string) (File, error) {
	return f.open(OpOpenReadWrite, name, f.fs.OpenReadWrite)
}

func (f *FaultyFS) open(kind OpKind, name string, open func(string) (File, error)) (File, error) {
	if err := check(f.inj, kind, name); err != nil {
		return nil, err
	}
	file, err := open(name)
	if err != nil {
		return nil, err
	}
	return &faultyFile{f: file, path: name, inj: f.inj}, nil
}

// Remove implements FS.
func (f *FaultyFS) Remove(name string) error {
	if err := check(f.inj, OpRemove, name); err != nil {
		return err
	}
	return f.fs.Remove(name)
}

// Rename implements FS.
func (f *FaultyFS) Rename(oldname, newname string) error {
	if err := f.inj.MaybeError(Op{Kind: OpRename, Path: oldname}); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return f.fs.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (f *FaultyFS) MkdirAll(dir string) error {
	if err := check(f.inj, OpMkdirAll, dir); err != nil {
		return err
	}
	return f.fs.MkdirAll(dir)
}

// List implements FS.
func (f *FaultyFS) List(dir string) ([]string, error) {
	if err := check(f.inj, OpList, dir); err != nil {
		return nil, err
	}
	return f.fs.List(dir)
}

// Stat implements FS.
func (f *FaultyFS) Stat(name string) (int64, error) {
	if err := check(f.inj, OpStat, name); err != nil {
		return 0, err
	}
	return f.fs.Stat(name)
}

// Lock implements FS.
func (f *FaultyFS) Lock(name string) (io.Closer, error) {
	if err := check(f.inj, OpLock, name); err != nil {
		return nil, err
	}
	return f.fs.Lock(name)
}

// SyncDir implements FS.
func (f *FaultyFS) SyncDir(dir string) error {
	if err := check(f.inj, OpSyncDir, dir); err != nil {
		return err
	}
	return f.fs.SyncDir(dir)
}

type faultyFile struct {
	f    File
	path string
	inj  Injector
}

func (f *faultyFile) ReadAt(p []byte, off int64) (int, error) {
	if err := check(f.inj, OpRead, f.path); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *faultyFile) Write(p []byte) (int, error) {
	err := check(f.inj, OpWrite, f.path)
	if err == nil {
		return f.f.Write(p)
	}
	if !errors.Is(err, io.ErrShortWrite) {
		return 0, err
	}
	k := len(p) / 2
	if k == 0 {
		return 0, err
	}
	n, werr := f.f.Write(p[:k])
	if werr != nil {
		return n, werr
	}
	return n, err
}

func (f *faultyFile) Sync() error {
	if err := check(f.inj, OpSync, f.path); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	if err := check(f.inj, OpTruncate, f.path); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

func (f *faultyFile) Preallocate(size int64) error {
	if err := check(f.inj, OpPreallocate, f.path); err != nil {
		return err
	}
	return f.f.Preallocate(size)
}

func (f *faultyFile) Size() (int64, error) {
	if err := check(f.inj, OpStat, f.path); err != nil {
		return 0, err
	}
	return f.f.Size()
}

func (f *faultyFile) Close() error { return f.f.Close() }
