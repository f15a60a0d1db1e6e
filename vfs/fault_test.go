package vfs_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// recorder is an Injector that fails nothing and records every operation
// it sees: put under a FaultyFS, it shows which operations got through.
type recorder struct {
	mu  sync.Mutex
	ops []vfs.Op
}

func (r *recorder) MaybeError(op vfs.Op) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// faultyStack is a FaultyFS over a recording FaultyFS over a MemFS holding
// /d/f = "base", with a handle h on /d/f opened through the top.
type faultyStack struct {
	mem *vfs.MemFS
	rec *recorder
	fs  *vfs.FaultyFS
	h   vfs.File
}

func newFaultyStack(t *testing.T, inj vfs.Injector) *faultyStack {
	t.Helper()
	s := &faultyStack{mem: vfs.NewMem(), rec: &recorder{}}
	mustOK(t, s.mem.MkdirAll("/d"))
	mustOK(t, s.mem.WriteFile("/d/f", []byte("base")))
	s.fs = vfs.NewFaulty(vfs.NewFaulty(s.mem, s.rec), inj)
	var err error
	s.h, err = s.fs.OpenReadWrite("/d/f")
	mustOK(t, err)
	return s
}

// faultOps has one operation of each kind, on a faultyStack.
var faultOps = []struct {
	kind vfs.OpKind
	path string
	do   func(s *faultyStack) error
}{
	{vfs.OpCreate, "/d/new", func(s *faultyStack) error { _, err := s.fs.Create("/d/new"); return err }},
	{vfs.OpOpen, "/d/f", func(s *faultyStack) error { _, err := s.fs.Open("/d/f"); return err }},
	{vfs.OpOpenReadWrite, "/d/f", func(s *faultyStack) error { _, err := s.fs.OpenReadWrite("/d/f"); return err }},
	{vfs.OpWrite, "/d/f", func(s *faultyStack) error { _, err := s.h.Write([]byte("more")); return err }},
	{vfs.OpSync, "/d/f", func(s *faultyStack) error { return s.h.Sync() }},
	{vfs.OpTruncate, "/d/f", func(s *faultyStack) error { return s.h.Truncate(1) }},
	{vfs.OpPreallocate, "/d/f", func(s *faultyStack) error { return s.h.Preallocate(64) }},
	{vfs.OpRename, "/d/f", func(s *faultyStack) error { return s.fs.Rename("/d/f", "/d/g") }},
	{vfs.OpRemove, "/d/f", func(s *faultyStack) error { return s.fs.Remove("/d/f") }},
	{vfs.OpMkdirAll, "/d/sub", func(s *faultyStack) error { return s.fs.MkdirAll("/d/sub") }},
	{vfs.OpList, "/d", func(s *faultyStack) error { _, err := s.fs.List("/d"); return err }},
	{vfs.OpStat, "/d/f", func(s *faultyStack) error { _, err := s.fs.Stat("/d/f"); return err }},
	{vfs.OpStat, "/d/f", func(s *faultyStack) error { _, err := s.h.Size(); return err }},
	{vfs.OpLock, "/d/LOCK", func(s *faultyStack) error {
		l, err := s.fs.Lock("/d/LOCK")
		if err == nil {
			l.Close()
		}
		return err
	}},
	{vfs.OpSyncDir, "/d", func(s *faultyStack) error { return s.fs.SyncDir("/d") }},
	{vfs.OpRead, "/d/f", func(s *faultyStack) error { _, err := s.h.ReadAt(make([]byte, 4), 0); return err }},
}

// TestFailNthEachKind fails one operation of each kind: it returns an
// error wrapping ErrInjected with its path, never reaches the underlying
// FS, and the next operation of the kind runs normally.
func TestFailNthEachKind(t *testing.T) {
	for _, op := range faultOps {
		t.Run(op.kind.String(), func(t *testing.T) {
			n := 1
			if op.kind == vfs.OpOpenReadWrite {
				n = 2 // the stack's own handle was the first
			}
			s := newFaultyStack(t, vfs.FailNth(op.kind, n, nil))
			seen, state, ops := s.rec.count(), s.mem.String(), s.mem.Ops()
			err := op.do(s)
			if !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("got %v, want ErrInjected", err)
			}
			var pe *fs.PathError
			var le *os.LinkError
			switch {
			case errors.As(err, &pe):
				if pe.Path != op.path {
					t.Errorf("error path %q, want %q", pe.Path, op.path)
				}
			case errors.As(err, &le):
				if op.kind != vfs.OpRename || le.Old != "/d/f" || le.New != "/d/g" {
					t.Errorf("error %#v", le)
				}
			default:
				t.Errorf("error %T is neither *fs.PathError nor *os.LinkError", err)
			}
			if s.rec.count() != seen || s.mem.String() != state || s.mem.Ops() != ops {
				t.Fatalf("the failed operation reached the underlying FS: ops %v\n%s", s.rec.ops[seen:], s.mem.String())
			}
			if err := op.do(s); err != nil {
				t.Fatalf("the next %s failed: %v", op.kind, err)
			}
			if s.rec.count() != seen+1 || s.rec.ops[seen].Kind != op.kind || s.rec.ops[seen].Path != op.path {
				t.Fatalf("the next %s did not reach the FS as itself: %v", op.kind, s.rec.ops[seen:])
			}
		})
	}
}

func TestFailFrom(t *testing.T) {
	s := newFaultyStack(t, vfs.FailFrom(vfs.OpSync, 2, nil))
	mustOK(t, s.h.Sync())
	for i := range 5 {
		if err := s.h.Sync(); !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("sync %d: %v, want ErrInjected", i+2, err)
		}
		mustWrite(t, s.h, []byte("x")) // other kinds are not affected
	}
	if got, err := s.mem.ReadFile("/d/f"); err != nil || string(got) != "basexxxxx" {
		t.Fatalf("content %q, %v", got, err)
	}
}

func TestFailNthError(t *testing.T) {
	s := newFaultyStack(t, vfs.FailNth(vfs.OpWrite, 2, vfs.ErrNoSpace))
	mustWrite(t, s.h, []byte("1"))
	n, err := s.h.Write([]byte("2"))
	if n != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write = %d, %v; want 0 and ENOSPC", n, err)
	}
	if errors.Is(err, vfs.ErrInjected) {
		t.Error("an injected ENOSPC should look like a real one, not match ErrInjected")
	}
	mustWrite(t, s.h, []byte("3"))
	if got, _ := s.mem.ReadFile("/d/f"); string(got) != "base13" {
		t.Fatalf("content %q, want base13", got)
	}
	//lint:ignore SA1032 the order is the point: ErrNoSpace must wrap syscall.ENOSPC
	if !errors.Is(vfs.ErrNoSpace, syscall.ENOSPC) {
		t.Fatal("ErrNoSpace does not match syscall.ENOSPC")
	}
}

func TestShortWriteNth(t *testing.T) {
	s := newFaultyStack(t, vfs.ShortWriteNth(2))
	mustWrite(t, s.h, []byte("-"))
	n, err := s.h.Write([]byte("0123456789"))
	if n != 5 || !errors.Is(err, io.ErrShortWrite) || !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Write = %d, %v; want 5 and io.ErrShortWrite", n, err)
	}
	if got, _ := s.mem.ReadFile("/d/f"); string(got) != "base-01234" {
		t.Fatalf("after a short write: %q, want exactly the prefix written", got)
	}
	mustWrite(t, s.h, []byte("!"))
	if got, _ := s.mem.ReadFile("/d/f"); string(got) != "base-01234!" {
		t.Fatalf("after the next write: %q", got)
	}

	// A one-byte write cut in half writes nothing.
	s = newFaultyStack(t, vfs.ShortWriteNth(1))
	if n, err := s.h.Write([]byte("x")); n != 0 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got, _ := s.mem.ReadFile("/d/f"); string(got) != "base" {
		t.Fatalf("content %q", got)
	}
}

func TestWithPathSuffix(t *testing.T) {
	mem := vfs.NewMem()
	fsys := vfs.NewFaulty(mem, vfs.WithPathSuffix(".wal", vfs.FailNth(vfs.OpWrite, 2, nil)))
	dat, err := fsys.Create("/x.dat")
	mustOK(t, err)
	wal, err := fsys.Create("/x.wal")
	mustOK(t, err)
	for range 3 {
		mustWrite(t, dat, []byte("d"))
	}
	mustWrite(t, wal, []byte("w"))
	for range 3 {
		mustWrite(t, dat, []byte("d"))
	}
	if _, err := wal.Write([]byte("w")); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("second write of the .wal file: %v", err)
	}
	mustWrite(t, wal, []byte("w"))
	mustWrite(t, dat, []byte("d"))
}

// TestInjectorsConcurrent: counting is exact under concurrent use.
func TestInjectorsConcurrent(t *testing.T) {
	nth := vfs.FailNth(vfs.OpWrite, 500, nil)
	from := vfs.FailFrom(vfs.OpWrite, 500, nil)
	var mu sync.Mutex
	failedNth, failedFrom := 0, 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				op := vfs.Op{Kind: vfs.OpWrite, Path: "/f"}
				e1, e2 := nth.MaybeError(op), from.MaybeError(op)
				nth.MaybeError(vfs.Op{Kind: vfs.OpSync, Path: "/f"}) // other kinds do not count
				mu.Lock()
				if e1 != nil {
					failedNth++
				}
				if e2 != nil {
					failedFrom++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failedNth != 1 || failedFrom != 301 {
		t.Fatalf("FailNth failed %d of 800 (want 1), FailFrom %d (want 301)", failedNth, failedFrom)
	}
}

func TestFaultyOS(t *testing.T) {
	dir := t.TempDir()
	fsys := vfs.NewFaulty(vfs.OS, vfs.FailNth(vfs.OpSync, 1, vfs.ErrNoSpace))
	f, err := fsys.Create(filepath.Join(dir, "f"))
	mustOK(t, err)
	defer f.Close()
	mustWrite(t, f, []byte("data"))
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync: %v, want ENOSPC", err)
	}
	mustOK(t, f.Sync())
	names, err := fsys.List(dir)
	mustOK(t, err)
	if !slices.Equal(names, []string{"f"}) {
		t.Fatalf("List = %q", names)
	}
}

func TestOpKindString(t *testing.T) {
	seen := map[string]bool{}
	for k := vfs.OpCreate; k <= vfs.OpRead; k++ {
		s := k.String()
		if s == "" || seen[s] {
			t.Errorf("OpKind %d has name %q", int(k), s)
		}
		seen[s] = true
	}
	if got := vfs.OpKind(99).String(); got != "OpKind(99)" {
		t.Errorf("unknown kind: %q", got)
	}
}

func TestFailNthRejectsZero(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("FailNth(kind, 0, nil) did not panic")
		}
	}()
	vfs.FailNth(vfs.OpWrite, 0, nil)
}
