package vfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// checkSemantics runs the semantics every FS in this package shares, taking
// the OS as the reference, on fsys under the existing directory root.
func checkSemantics(t *testing.T, fsys vfs.FS, root string) {
	t.Helper()
	p := func(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }
	notExist := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: got %v, want an error matching fs.ErrNotExist", what, err)
		}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	write := func(f vfs.File, s string) {
		t.Helper()
		if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	content := func(f vfs.File) string {
		t.Helper()
		size, err := f.Size()
		must("Size", err)
		buf := make([]byte, size)
		n, err := f.ReadAt(buf, 0)
		if n != int(size) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(all) = %d, %v; size %d", n, err, size)
		}
		return string(buf)
	}
	create := func(name, s string) {
		t.Helper()
		f, err := fsys.Create(name)
		must("Create "+name, err)
		write(f, s)
		must("Sync", f.Sync())
		must("Close", f.Close())
	}
	read := func(name string) string {
		t.Helper()
		f, err := fsys.Open(name)
		must("Open "+name, err)
		defer f.Close()
		return content(f)
	}

	// What does not exist.
	_, err := fsys.Open(p("nope"))
	notExist("Open", err)
	_, err = fsys.OpenReadWrite(p("nope"))
	notExist("OpenReadWrite", err)
	_, err = fsys.Stat(p("nope"))
	notExist("Stat", err)
	notExist("Remove", fsys.Remove(p("nope")))
	_, err = fsys.List(p("nope"))
	notExist("List", err)
	notExist("SyncDir", fsys.SyncDir(p("nope")))
	notExist("Rename of a missing file", fsys.Rename(p("nope"), p("x")))
	_, err = fsys.Create(p("nodir", "f"))
	notExist("Create in a missing directory", err)
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("Create in a missing directory: %T is not an *fs.PathError", err)
	}

	// Directories.
	must("MkdirAll", fsys.MkdirAll(p("d", "e")))
	must("MkdirAll again", fsys.MkdirAll(p("d", "e")))
	create(p("d", "f"), "f")
	notExist("Rename into a missing directory", fsys.Rename(p("d", "f"), p("nodir", "f")))
	if got := read(p("d", "f")); got != "f" {
		t.Fatalf("after a failed Rename: d/f = %q", got)
	}
	names, err := fsys.List(p("d"))
	must("List", err)
	if !slices.Equal(names, []string{"e", "f"}) {
		t.Fatalf("List = %q, want [e f]", names)
	}
	if _, err := fsys.Create(p("d", "e")); err == nil {
		t.Fatal("Create of a directory succeeded")
	}
	if err := fsys.Remove(p("d")); err == nil {
		t.Fatal("Remove of a non-empty directory succeeded")
	}
	must("Remove of an empty directory", fsys.Remove(p("d", "e")))
	must("SyncDir", fsys.SyncDir(p("d")))

	// Writing and reading.
	f, err := fsys.Create(p("d", "a"))
	must("Create", err)
	write(f, "hello, world")
	if size, err := fsys.Stat(p("d", "a")); err != nil || size != 12 {
		t.Fatalf("Stat = %d, %v; want 12", size, err)
	}
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 0); n != 5 || err != nil || string(buf) != "hello" {
		t.Fatalf("ReadAt(5, 0) = %d, %v, %q", n, err, buf)
	}
	buf = make([]byte, 10)
	if n, err := f.ReadAt(buf, 7); n != 5 || err != io.EOF || string(buf[:n]) != "world" {
		t.Fatalf("ReadAt(10, 7) = %d, %v, %q; want 5, EOF, world", n, err, buf[:n])
	}
	if n, err := f.ReadAt(buf, 12); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	// Truncate below the write offset moves it back: no hole.
	must("Truncate", f.Truncate(5))
	write(f, "!")
	if got := content(f); got != "hello!" {
		t.Fatalf("after Truncate(5) and Write: %q, want %q", got, "hello!")
	}
	// Truncate above it leaves it where it is.
	must("Truncate up", f.Truncate(10))
	write(f, "?")
	if got := content(f); got != "hello!?\x00\x00\x00" {
		t.Fatalf("after Truncate(10) and Write: %q", got)
	}
	must("Sync", f.Sync())
	must("Close", f.Close())
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("ReadAt after Close: %v, want fs.ErrClosed", err)
	}

	// Create truncates; OpenReadWrite appends at the end.
	create(p("d", "a"), "abc")
	f, err = fsys.OpenReadWrite(p("d", "a"))
	must("OpenReadWrite", err)
	write(f, "def")
	if got := content(f); got != "abcdef" {
		t.Fatalf("after OpenReadWrite and Write: %q, want abcdef", got)
	}
	must("Close", f.Close())

	// A read-only file refuses writes.
	f, err = fsys.Open(p("d", "a"))
	must("Open", err)
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("Write to a file opened with Open succeeded")
	}
	if err := f.Truncate(0); err == nil {
		t.Fatal("Truncate of a file opened with Open succeeded")
	}
	if err := f.Preallocate(100); err == nil {
		t.Fatal("Preallocate of a file opened with Open succeeded")
	}
	must("Close", f.Close())

	// Preallocate writes zeros past the end and leaves the write offset
	// where it was; a smaller size changes nothing.
	f, err = fsys.Create(p("d", "pre"))
	must("Create", err)
	write(f, "abc")
	must("Preallocate", f.Preallocate(10))
	if got := content(f); got != "abc\x00\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("after Preallocate(10): %q", got)
	}
	write(f, "de")
	must("Preallocate", f.Preallocate(5))
	if got := content(f); got != "abcde\x00\x00\x00\x00\x00" {
		t.Fatalf("after a write over preallocated zeros and Preallocate(5): %q", got)
	}
	big := int64(600 << 10) // more than one chunk of zeros
	must("Preallocate", f.Preallocate(big))
	if size, err := f.Size(); err != nil || size != big {
		t.Fatalf("Size after Preallocate(%d) = %d, %v", big, size, err)
	}
	must("Close", f.Close())
	must("Remove", fsys.Remove(p("d", "pre")))

	// Rename replaces the target.
	create(p("d", "b"), "old")
	create(p("d", "c"), "new")
	must("Rename", fsys.Rename(p("d", "c"), p("d", "b")))
	if got := read(p("d", "b")); got != "new" {
		t.Fatalf("after Rename over it: %q, want new", got)
	}
	_, err = fsys.Stat(p("d", "c"))
	notExist("Stat of a renamed file", err)

	// Open handles outlive Remove, for reading and writing.
	r, err := fsys.Open(p("d", "b"))
	must("Open", err)
	w, err := fsys.OpenReadWrite(p("d", "b"))
	must("OpenReadWrite", err)
	must("Remove", fsys.Remove(p("d", "b")))
	_, err = fsys.Stat(p("d", "b"))
	notExist("Stat of a removed file", err)
	write(w, "er")
	if got := content(r); got != "newer" {
		t.Fatalf("reading a removed file: %q, want newer", got)
	}
	must("Close", w.Close())
	must("Close", r.Close())

	// Lock creates the file and excludes a second holder until released.
	l, err := fsys.Lock(p("d", "LOCK"))
	must("Lock", err)
	if _, err := fsys.Stat(p("d", "LOCK")); err != nil {
		t.Fatalf("Lock did not create its file: %v", err)
	}
	if l2, err := fsys.Lock(p("d", "LOCK")); !errors.Is(err, vfs.ErrLocked) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second Lock: %v, want ErrLocked", err)
	}
	must("unlock", l.Close())
	l, err = fsys.Lock(p("d", "LOCK"))
	must("Lock after release", err)
	must("unlock", l.Close())

	names, err = fsys.List(p("d"))
	must("List", err)
	if want := []string{"LOCK", "a", "f"}; !slices.Equal(names, want) {
		t.Fatalf("List = %q, want %q", names, want)
	}
}

func TestOSSemantics(t *testing.T) {
	checkSemantics(t, vfs.OS, t.TempDir())
}

func TestFaultyOSSemantics(t *testing.T) {
	checkSemantics(t, vfs.NewFaulty(vfs.OS, nil), t.TempDir())
}

const lockHelperEnv = "PROCYON_VFS_LOCK_HELPER"

// TestOSLockAcrossProcesses holds a lock and has a child process (this
// test binary, re-executed) try to take it: flock must exclude it. Once
// the lock is released, the child must get it.
func TestOSLockAcrossProcesses(t *testing.T) {
	if os.Getenv(lockHelperEnv) != "" {
		t.Skip("running as the helper")
	}
	path := filepath.Join(t.TempDir(), "LOCK")
	child := func() string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestOSLockHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper process: %v\n%s", err, out)
		}
		return string(out)
	}
	l, err := vfs.OS.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if out := child(); !bytes.Contains([]byte(out), []byte("helper: locked out")) {
		l.Close()
		t.Fatalf("child took a lock this process holds:\n%s", out)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if out := child(); !bytes.Contains([]byte(out), []byte("helper: acquired")) {
		t.Fatalf("child could not take a released lock:\n%s", out)
	}
}

// TestOSLockHelperProcess is the child of TestOSLockAcrossProcesses.
func TestOSLockHelperProcess(t *testing.T) {
	path := os.Getenv(lockHelperEnv)
	if path == "" {
		t.Skip("only run as a helper process")
	}
	l, err := vfs.OS.Lock(path)
	switch {
	case errors.Is(err, vfs.ErrLocked):
		fmt.Println("helper: locked out")
	case err == nil:
		fmt.Println("helper: acquired")
		l.Close()
	default:
		t.Fatalf("helper: Lock: %v", err)
	}
}
