package vfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

func TestMemSemantics(t *testing.T) {
	m := vfs.NewMem()
	if err := m.MkdirAll("/data"); err != nil {
		t.Fatal(err)
	}
	checkSemantics(t, m, "/data")
}

func TestFaultyMemSemantics(t *testing.T) {
	m := vfs.NewMem()
	if err := m.MkdirAll("/data"); err != nil {
		t.Fatal(err)
	}
	checkSemantics(t, vfs.NewFaulty(m, nil), "/data")
}

func TestMemPaths(t *testing.T) {
	m := vfs.NewMem()
	if err := m.MkdirAll("a/b"); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteFile("/a//b/../b/./f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/a/b/f", "a/b/f", "/a/b/../b/f", "/../a/b/f"} {
		if got, err := m.ReadFile(name); err != nil || string(got) != "x" {
			t.Errorf("ReadFile(%q) = %q, %v", name, got, err)
		}
	}
	if _, err := m.Create("/a/b/f/g"); err == nil {
		t.Error("Create under a file succeeded")
	}
	if err := m.MkdirAll("/a/b/f/g"); err == nil {
		t.Error("MkdirAll through a file succeeded")
	}
	if err := m.Rename("/a", "/a/b/c"); err == nil {
		t.Error("moving a directory into itself succeeded")
	}
	if err := m.Rename("/a", "/z"); err != nil {
		t.Fatal(err)
	}
	if got, err := m.ReadFile("/z/b/f"); err != nil || string(got) != "x" {
		t.Errorf("after moving its directory: %q, %v", got, err)
	}
}

// files returns every file of m by path, and every directory as path + "/".
func files(t *testing.T, m *vfs.MemFS) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	var walk func(dir string)
	walk = func(dir string) {
		names, err := m.List(dir)
		if err != nil {
			t.Fatalf("List(%s): %v", dir, err)
		}
		for _, name := range names {
			p := filepath.Join(dir, name)
			data, err := m.ReadFile(p)
			if err == nil {
				out[p] = data
				continue
			}
			out[p+"/"] = nil
			walk(p)
		}
	}
	walk("/")
	return out
}

func mustWrite(t *testing.T, f vfs.File, data []byte) {
	t.Helper()
	if n, err := f.Write(data); err != nil || n != len(data) {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// crashRun is the state of the crash-point workload.
type crashRun struct {
	fs      *vfs.MemFS
	pre     vfs.File // opened before the crash point was set
	f, g, h vfs.File
}

// crashSteps are one mutating operation each.
var crashSteps = []func(w *crashRun) error{
	func(w *crashRun) error { return w.fs.MkdirAll("/d") },
	func(w *crashRun) (err error) { w.f, err = w.fs.Create("/d/a"); return err },
	func(w *crashRun) error { _, err := w.f.Write([]byte("hello")); return err },
	func(w *crashRun) error { return w.f.Sync() },
	func(w *crashRun) error { return w.fs.SyncDir("/d") },
	func(w *crashRun) error { _, err := w.f.Write([]byte(" world")); return err },
	func(w *crashRun) error { return w.f.Truncate(8) },
	func(w *crashRun) error { return w.fs.Rename("/d/a", "/d/b") },
	func(w *crashRun) (err error) { w.g, err = w.fs.OpenReadWrite("/d/b"); return err },
	func(w *crashRun) error { _, err := w.g.Write([]byte("!!")); return err },
	func(w *crashRun) error { return w.g.Sync() },
	func(w *crashRun) (err error) { w.h, err = w.fs.Create("/d/c"); return err },
	func(w *crashRun) error { return w.fs.Remove("/d/c") },
	func(w *crashRun) error { return w.fs.SyncDir("/d") },
	func(w *crashRun) error { _, err := w.pre.Write([]byte("pre")); return err },
}

// reads runs operations that must not count as mutating; they may fail
// (the file may not exist yet).
func (w *crashRun) reads() {
	w.fs.List("/d")
	w.fs.Stat("/d/a")
	if f, err := w.fs.Open("/pre/x"); err == nil {
		f.ReadAt(make([]byte, 4), 0)
		f.Size()
		f.Close()
	}
	if l, err := w.fs.Lock("/pre/LOCK"); err == nil {
		l.Close()
	}
}

func newCrashRun(t *testing.T) *crashRun {
	t.Helper()
	w := &crashRun{fs: vfs.NewMem()}
	mustOK(t, w.fs.MkdirAll("/pre"))
	var err error
	w.pre, err = w.fs.Create("/pre/x")
	mustOK(t, err)
	return w
}

const crashSetupOps = 2

// TestMemCrashPoint crashes the workload at each of its operations: the
// k-th has no effect, and it and everything after it fail with ErrCrashed.
func TestMemCrashPoint(t *testing.T) {
	full := newCrashRun(t)
	for i, step := range crashSteps {
		if err := step(full); err != nil {
			t.Fatalf("step %d without a crash point: %v", i+1, err)
		}
		full.reads()
	}
	if got, want := full.fs.Ops(), crashSetupOps+len(crashSteps); got != want {
		t.Fatalf("Ops() = %d after %d mutating operations", got, want)
	}
	if full.fs.Crashed() {
		t.Fatal("crashed without a crash point")
	}

	for k := 1; k <= len(crashSteps); k++ {
		w := newCrashRun(t)
		w.fs.SetCrashAfter(k)
		ref := newCrashRun(t)
		for i, step := range crashSteps {
			err := step(w)
			if i < k-1 {
				if err != nil {
					t.Fatalf("k=%d: step %d failed before the crash point: %v", k, i+1, err)
				}
				mustOK(t, step(ref))
				w.reads()
				ref.reads()
				continue
			}
			if !errors.Is(err, vfs.ErrCrashed) {
				t.Fatalf("k=%d: step %d: %v, want ErrCrashed", k, i+1, err)
			}
			if !w.fs.Crashed() {
				t.Fatalf("k=%d: Crashed() = false at the crash point", k)
			}
			break // later steps may need a handle the crash kept from opening
		}
		if got := w.fs.Ops(); got != crashSetupOps+k-1 {
			t.Errorf("k=%d: Ops() = %d, want %d", k, got, crashSetupOps+k-1)
		}
		// The k-th operation had no effect: the state is the one after k-1.
		got := strings.TrimPrefix(w.fs.String(), "(crashed)\n")
		if want := ref.fs.String(); got != want {
			t.Fatalf("k=%d: state after the crash\n%s\nwant the state before the crashing operation\n%s", k, got, want)
		}
		checkAllCrashed(t, w.fs, w.pre)
	}
}

// checkAllCrashed checks that every operation of m, and of f, fails with
// ErrCrashed.
func checkAllCrashed(t *testing.T, m *vfs.MemFS, f vfs.File) {
	t.Helper()
	errs := map[string]error{}
	_, errs["Create"] = m.Create("/pre/y")
	_, errs["Open"] = m.Open("/pre/x")
	_, errs["OpenReadWrite"] = m.OpenReadWrite("/pre/x")
	errs["Remove"] = m.Remove("/pre/x")
	errs["Rename"] = m.Rename("/pre/x", "/pre/z")
	errs["MkdirAll"] = m.MkdirAll("/new")
	_, errs["List"] = m.List("/")
	_, errs["Stat"] = m.Stat("/pre/x")
	_, errs["Lock"] = m.Lock("/pre/LOCK2")
	errs["SyncDir"] = m.SyncDir("/pre")
	_, errs["ReadFile"] = m.ReadFile("/pre/x")
	errs["WriteFile"] = m.WriteFile("/pre/x", nil)
	_, errs["ReadAt"] = f.ReadAt(make([]byte, 1), 0)
	_, errs["Write"] = f.Write([]byte("x"))
	errs["Sync"] = f.Sync()
	errs["Truncate"] = f.Truncate(0)
	_, errs["Size"] = f.Size()
	errs["Close"] = f.Close()
	for _, op := range slices.Sorted(maps.Keys(errs)) {
		if !errors.Is(errs[op], vfs.ErrCrashed) {
			t.Errorf("%s after the crash: %v, want ErrCrashed", op, errs[op])
		}
	}
	if !m.Crashed() {
		t.Error("Crashed() = false")
	}
}

func TestMemCrash(t *testing.T) {
	w := newCrashRun(t)
	mustWrite(t, w.pre, []byte("data"))
	w.fs.Crash()
	checkAllCrashed(t, w.fs, w.pre)
	if got := w.fs.Ops(); got != crashSetupOps+1 {
		t.Errorf("Ops() = %d, want %d", got, crashSetupOps+1)
	}
}

// TestMemCrashConcurrent hits the crash point from several goroutines: the
// operation count stops exactly there and every goroutine ends on
// ErrCrashed.
func TestMemCrashConcurrent(t *testing.T) {
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	m.SetCrashAfter(200)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for g := range errs {
		wg.Go(func() {
			f, err := m.Create(fmt.Sprintf("/d/%d", g))
			for i := 0; err == nil; i++ {
				if i%10 == 9 {
					err = f.Sync()
				} else {
					_, err = f.Write([]byte("record"))
				}
			}
			errs[g] = err
		})
	}
	wg.Wait()
	for g, err := range errs {
		if !errors.Is(err, vfs.ErrCrashed) {
			t.Errorf("goroutine %d ended with %v", g, err)
		}
	}
	if got := m.Ops(); got != 1+199 {
		t.Errorf("Ops() = %d, want 200", got)
	}
}

// randBytes returns n bytes from rng with no zero byte, so that zeroed
// tails are always visible.
func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(1 + rng.IntN(255))
	}
	return b
}

func TestCrashCloneSyncedDataIntact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	synced, extra := randBytes(rng, 3000), randBytes(rng, 2000)

	// all: synced whole. tail: synced, then an unsynced tail.
	// trunc: synced, then truncated without a sync. over: synced, then
	// truncated and rewritten longer without a sync.
	all, err := m.Create("/d/all")
	mustOK(t, err)
	tail, err := m.Create("/d/tail")
	mustOK(t, err)
	trunc, err := m.Create("/d/trunc")
	mustOK(t, err)
	over, err := m.Create("/d/over")
	mustOK(t, err)
	for _, f := range []vfs.File{all, tail, trunc, over} {
		mustWrite(t, f, synced)
		mustOK(t, f.Sync())
	}
	mustOK(t, m.SyncDir("/d"))
	mustWrite(t, tail, extra)
	mustOK(t, trunc.Truncate(1000))
	mustOK(t, over.Truncate(1000))
	mustWrite(t, over, extra[:1500])
	mustWrite(t, over, extra)
	overFull := slices.Concat(synced[:1000], extra[:1500], extra)

	for seed := range int64(300) {
		c := m.CrashClone(seed)
		read := func(name string) []byte {
			t.Helper()
			b, err := c.ReadFile(name)
			if err != nil {
				t.Fatalf("seed %d: %s lost: %v", seed, name, err)
			}
			return b
		}
		if got := read("/d/all"); !bytes.Equal(got, synced) {
			t.Fatalf("seed %d: a synced file changed", seed)
		}
		if got := read("/d/tail"); len(got) < len(synced) || !bytes.Equal(got[:len(synced)], synced) {
			t.Fatalf("seed %d: synced data under an unsynced tail changed", seed)
		}
		if got := read("/d/trunc"); !bytes.Equal(got, synced) && !bytes.Equal(got, synced[:1000]) {
			t.Fatalf("seed %d: unsynced truncate gave %d bytes, neither the synced nor the truncated content", seed, len(got))
		}
		got := read("/d/over")
		if !bytes.Equal(got[:1000], synced[:1000]) {
			t.Fatalf("seed %d: bytes never rewritten changed", seed)
		}
		// A torn rewrite is the rewrite up to a cut (the last 512 bytes
		// before it possibly damaged), and the synced content after it.
		if !bytes.Equal(got, synced) && !bytes.Equal(got, overFull) && !tornMix(got, overFull, synced) {
			t.Fatalf("seed %d: rewritten file (%d bytes) is neither synced, nor rewritten, nor torn between them", seed, len(got))
		}
	}
}

// tornMix reports whether got is what a write of cur over old, cut short,
// can leave: cur up to a cut, with at most the 512 bytes before the cut
// damaged, and old past the cut.
func tornMix(got, cur, old []byte) bool {
	p := 0 // got and cur agree before p
	for p < len(got) && p < len(cur) && got[p] == cur[p] {
		p++
	}
	if len(got) >= len(old) && len(got) <= len(cur) && p >= len(got)-512 {
		return true // cut at or past the old end
	}
	if len(got) != len(old) {
		return false
	}
	s := len(got) // got and old agree from s on
	for s > 0 && got[s-1] == old[s-1] {
		s--
	}
	return s <= p+512 && s <= len(cur)
}

// TestCrashCloneTornOverwrite: a write over synced bytes (preallocated
// zeros, say) that a crash cuts short leaves the new bytes up to the cut
// and the synced ones after it; every outcome occurs.
func TestCrashCloneTornOverwrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	f, err := m.Create("/d/a")
	mustOK(t, err)
	head := randBytes(rng, 1000)
	mustWrite(t, f, head)
	mustOK(t, f.Preallocate(8000))
	mustOK(t, f.Sync())
	mustOK(t, m.SyncDir("/d"))
	rec := randBytes(rng, 3000)
	mustWrite(t, f, rec) // over the zeros, at offset 1000
	m.Crash()
	old := slices.Concat(head, make([]byte, 7000))
	cur := slices.Concat(head, rec, make([]byte, 4000))
	seen := map[string]int{}
	for seed := range int64(300) {
		got, err := m.CrashClone(seed).ReadFile("/d/a")
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		switch {
		case len(got) != 8000:
			t.Fatalf("seed %d: %d bytes; an overwrite does not change the size", seed, len(got))
		case !bytes.Equal(got[:1000], head):
			t.Fatalf("seed %d: bytes before the overwrite changed", seed)
		case !bytes.Equal(got[4000:], old[4000:]):
			t.Fatalf("seed %d: zeros past the overwrite changed", seed)
		case bytes.Equal(got, old):
			seen["dropped"]++
		case bytes.Equal(got, cur):
			seen["kept"]++
		case tornMix(got, cur, old):
			seen["torn"]++
		default:
			t.Fatalf("seed %d: not the old content, the new one, or the new one up to a cut", seed)
		}
	}
	t.Logf("outcomes over 300 seeds: %v", seen)
	for _, o := range []string{"dropped", "kept", "torn"} {
		if seen[o] == 0 {
			t.Errorf("outcome %q never seen: %v", o, seen)
		}
	}
}

// TestCrashCloneTornTail classifies what becomes of an unsynced tail: every
// outcome must occur, and a torn tail is a prefix of what was written but
// for at most its last 512 bytes.
func TestCrashCloneTornTail(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	synced, extra := randBytes(rng, 3000), randBytes(rng, 2000)
	full := slices.Concat(synced, extra)
	f, err := m.Create("/d/a")
	mustOK(t, err)
	mustWrite(t, f, synced)
	mustOK(t, f.Sync())
	mustOK(t, m.SyncDir("/d"))
	mustWrite(t, f, extra[:700])
	mustWrite(t, f, extra[700:])
	m.Crash()

	seen := map[string]int{}
	for seed := range int64(200) {
		got, err := m.CrashClone(seed).ReadFile("/d/a")
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if len(got) < len(synced) || len(got) > len(full) || !bytes.Equal(got[:len(synced)], synced) {
			t.Fatalf("seed %d: %d bytes, not between the synced and the written content", seed, len(got))
		}
		switch {
		case len(got) == len(synced):
			seen["dropped"]++
		case bytes.Equal(got, full):
			seen["kept"]++
		default:
			first := len(got)
			zeros := true
			for i := range got {
				if got[i] != full[i] {
					first = min(first, i)
					zeros = zeros && got[i] == 0
				}
			}
			switch {
			case first == len(got):
				seen["torn, clean cut"]++
			case first < len(got)-512:
				t.Fatalf("seed %d: %d bytes differ from what was written at offset %d, more than 512 before the end",
					seed, len(got), first)
			case zeros:
				seen["torn, zeroed"]++
			default:
				seen["torn, garbage"]++
			}
		}
	}
	t.Logf("outcomes over 200 seeds: %v", seen)
	for _, o := range []string{"dropped", "kept", "torn, clean cut", "torn, zeroed", "torn, garbage"} {
		if seen[o] == 0 {
			t.Errorf("outcome %q never seen in 200 seeds: %v", o, seen)
		}
	}
}

func TestCrashCloneCreate(t *testing.T) {
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	for _, name := range []string{"/d/durable", "/d/unsynced"} {
		f, err := m.Create(name)
		mustOK(t, err)
		mustWrite(t, f, []byte("content of "+name))
		mustOK(t, f.Sync())
		if name == "/d/durable" {
			mustOK(t, m.SyncDir("/d"))
		}
	}
	m.Crash()
	seen := map[bool]int{}
	for seed := range int64(100) {
		c := m.CrashClone(seed)
		if got, err := c.ReadFile("/d/durable"); err != nil || string(got) != "content of /d/durable" {
			t.Fatalf("seed %d: synced create: %q, %v", seed, got, err)
		}
		got, err := c.ReadFile("/d/unsynced")
		switch {
		case errors.Is(err, fs.ErrNotExist):
			seen[false]++
		case err != nil:
			t.Fatalf("seed %d: %v", seed, err)
		case string(got) != "content of /d/unsynced":
			t.Fatalf("seed %d: a file with synced data but an unsynced entry has %q", seed, got)
		default:
			seen[true]++
		}
	}
	if seen[false] == 0 || seen[true] == 0 {
		t.Fatalf("unsynced create: kept %d times, lost %d times in 100 seeds; want both", seen[true], seen[false])
	}
}

func TestCrashCloneRenameRemove(t *testing.T) {
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	for _, name := range []string{"a", "c", "e", "r"} {
		mustOK(t, m.WriteFile("/d/"+name, []byte("data of "+name)))
	}
	mustOK(t, m.Rename("/d/a", "/d/b"))
	mustOK(t, m.Rename("/d/c", "/d/e")) // replaces e
	mustOK(t, m.Remove("/d/r"))
	m.Crash()
	seen := map[string]int{}
	for seed := range int64(100) {
		fsys := files(t, m.CrashClone(seed))
		delete(fsys, "/d/")
		switch {
		case string(fsys["/d/a"]) == "data of a" && fsys["/d/b"] == nil:
			seen["rename lost"]++
		case string(fsys["/d/b"]) == "data of a" && fsys["/d/a"] == nil:
			seen["rename kept"]++
		default:
			t.Fatalf("seed %d: rename a->b left %q", seed, fsys)
		}
		switch {
		case string(fsys["/d/c"]) == "data of c" && string(fsys["/d/e"]) == "data of e":
			seen["replace lost"]++
		case string(fsys["/d/e"]) == "data of c" && fsys["/d/c"] == nil:
			seen["replace kept"]++
		default:
			t.Fatalf("seed %d: rename c->e over e left %q", seed, fsys)
		}
		switch {
		case string(fsys["/d/r"]) == "data of r":
			seen["remove lost"]++
		case fsys["/d/r"] == nil:
			seen["remove kept"]++
		default:
			t.Fatalf("seed %d: remove left r = %q", seed, fsys["/d/r"])
		}
		for name := range fsys {
			if !strings.Contains("abcer", filepath.Base(name)) {
				t.Fatalf("seed %d: unexpected file %s", seed, name)
			}
		}
	}
	if len(seen) != 6 {
		t.Fatalf("not every outcome seen in 100 seeds: %v", seen)
	}
}

// TestCrashCloneSkipsStaleChanges: a rename whose create was lost does not
// bring the file back.
func TestCrashCloneSkipsStaleChanges(t *testing.T) {
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	mustOK(t, m.SyncDir("/d"))
	f, err := m.Create("/d/tmp")
	mustOK(t, err)
	mustWrite(t, f, []byte("x"))
	mustOK(t, f.Sync())
	mustOK(t, m.Rename("/d/tmp", "/d/final"))
	m.Crash()
	seen := map[string]int{}
	for seed := range int64(100) {
		names := slices.Sorted(maps.Keys(files(t, m.CrashClone(seed))))
		seen[strings.Join(names, " ")]++
	}
	want := map[string]bool{"/d/": true, "/d/ /d/tmp": true, "/d/ /d/final": true}
	for got := range seen {
		if !want[got] {
			t.Errorf("crash state %q", got)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("states seen: %v; want each of %v", seen, slices.Sorted(maps.Keys(want)))
	}
}

// TestCrashCloneRenameAcrossDirs: a rename between directories is kept or
// lost whole while both are unsynced; syncing only the source leaves the
// destination's half to chance.
func TestCrashCloneRenameAcrossDirs(t *testing.T) {
	for _, syncSrc := range []bool{false, true} {
		m := vfs.NewMem()
		mustOK(t, m.MkdirAll("/a"))
		mustOK(t, m.MkdirAll("/b"))
		mustOK(t, m.WriteFile("/a/f", []byte("f")))
		mustOK(t, m.Rename("/a/f", "/b/f"))
		if syncSrc {
			mustOK(t, m.SyncDir("/a"))
		}
		m.Crash()
		seen := map[string]int{}
		for seed := range int64(100) {
			fsys := files(t, m.CrashClone(seed))
			var names []string
			for _, name := range []string{"/a/f", "/b/f"} {
				if string(fsys[name]) == "f" {
					names = append(names, name)
				}
			}
			seen[strings.Join(names, " ")]++
		}
		want := []string{"/a/f", "/b/f"}
		if syncSrc {
			want = []string{"", "/b/f"}
		}
		if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, want) {
			t.Errorf("source synced %v: states %v, want each of %q", syncSrc, seen, want)
		}
	}
}

// TestCrashCloneStaleRename: a kept rename whose source entry was lost
// must not remove another file of that name.
func TestCrashCloneStaleRename(t *testing.T) {
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	mustOK(t, m.WriteFile("/d/a", []byte("one")))
	mustOK(t, m.Rename("/d/a", "/d/b"))
	f, err := m.Create("/d/a")
	mustOK(t, err)
	mustWrite(t, f, []byte("two"))
	mustOK(t, f.Sync())
	mustOK(t, m.Rename("/d/a", "/d/c"))
	// The same with a rename over a name whose earlier file moved away.
	mustOK(t, m.WriteFile("/d/x", []byte("ex")))
	mustOK(t, m.WriteFile("/d/y", []byte("why")))
	mustOK(t, m.Rename("/d/y", "/d/z"))
	g, err := m.Create("/d/y")
	mustOK(t, err)
	mustOK(t, g.Sync())
	mustOK(t, m.Rename("/d/x", "/d/y"))
	m.Crash()
	for seed := range int64(200) {
		fsys := files(t, m.CrashClone(seed))
		if string(fsys["/d/a"]) != "one" && string(fsys["/d/b"]) != "one" {
			t.Fatalf("seed %d: the durable file is gone: %q", seed, fsys)
		}
		if string(fsys["/d/y"]) != "why" && string(fsys["/d/z"]) != "why" {
			t.Fatalf("seed %d: the durable file y is gone: %q", seed, fsys)
		}
		if string(fsys["/d/x"]) != "ex" && string(fsys["/d/y"]) != "ex" {
			t.Fatalf("seed %d: the durable file x is gone: %q", seed, fsys)
		}
	}
}

// TestMemSyncBookkeeping overwrites, extends and truncates a file through
// two handles at random, syncing now and then: after a final Sync, every
// crash state holds exactly the current content.
func TestMemSyncBookkeeping(t *testing.T) {
	for hseed := range uint64(100) {
		rng := rand.New(rand.NewPCG(hseed, 5))
		m := vfs.NewMem()
		f, err := m.Create("/f")
		mustOK(t, err)
		mustOK(t, m.SyncDir("/"))
		mustWrite(t, f, randBytes(rng, 100))
		var hs [2]vfs.File
		for i := range hs {
			hs[i], err = m.OpenReadWrite("/f")
			mustOK(t, err)
		}
		for range 1 + rng.IntN(60) {
			h := hs[rng.IntN(2)]
			switch r := rng.IntN(10); {
			case r < 6:
				mustWrite(t, h, randBytes(rng, 1+rng.IntN(50)))
			case r < 8:
				size, _ := h.Size()
				mustOK(t, h.Truncate(rng.Int64N(size+50)))
			default:
				mustOK(t, h.Sync())
			}
		}
		mustOK(t, hs[rng.IntN(2)].Sync())
		want, _ := m.ReadFile("/f")
		for seed := range int64(3) {
			got, err := m.CrashClone(seed).ReadFile("/f")
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("history seed %d, clone seed %d: after Sync a crash state has %d bytes (%v), want the %d synced",
					hseed, seed, len(got), err, len(want))
			}
		}
	}
}

// buildHistory runs a seeded random history of writes, syncs, truncates,
// renames and removes over a few files.
func buildHistory(t *testing.T, seed uint64) *vfs.MemFS {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d/sub"))
	open := map[string]vfs.File{}
	for range 300 {
		name := fmt.Sprintf("/d/%d", rng.IntN(8))
		if rng.IntN(4) == 0 {
			name = fmt.Sprintf("/d/sub/%d", rng.IntN(3))
		}
		f := open[name]
		if f == nil {
			var err error
			if f, err = m.OpenReadWrite(name); err != nil {
				f, err = m.Create(name)
				mustOK(t, err)
			}
			open[name] = f
		}
		switch r := rng.IntN(20); {
		case r < 10:
			mustWrite(t, f, randBytes(rng, 1+rng.IntN(900)))
		case r < 13:
			mustOK(t, f.Sync())
		case r < 14:
			size, _ := f.Size()
			mustOK(t, f.Truncate(rng.Int64N(size+1)))
		case r < 16:
			mustOK(t, m.SyncDir(filepath.Dir(name)))
		case r < 18:
			to := filepath.Join(filepath.Dir(name), fmt.Sprint(rng.IntN(8)))
			mustOK(t, m.Rename(name, to))
			delete(open, name)
			delete(open, to)
		default:
			mustOK(t, m.Remove(name))
			delete(open, name)
		}
	}
	m.Crash()
	return m
}

func TestCrashCloneDeterministic(t *testing.T) {
	for hseed := range uint64(3) {
		m := buildHistory(t, hseed)
		states := map[string]bool{}
		for seed := range int64(20) {
			a, b := files(t, m.CrashClone(seed)), files(t, m.CrashClone(seed))
			if !maps.EqualFunc(a, b, bytes.Equal) {
				t.Fatalf("history %d, seed %d: two clones differ", hseed, seed)
			}
			// A second history built the same way gives the same clone.
			if c := files(t, buildHistory(t, hseed).CrashClone(seed)); !maps.EqualFunc(a, c, bytes.Equal) {
				t.Fatalf("history %d, seed %d: the same history gave a different clone", hseed, seed)
			}
			states[fmt.Sprint(a)] = true
		}
		if len(states) < 10 {
			t.Errorf("history %d: only %d distinct crash states in 20 seeds", hseed, len(states))
		}
	}
}

// TestCrashCloneBaseline: a clone is durable throughout, has no crash point
// and no locks; the original stays crashed.
func TestCrashCloneBaseline(t *testing.T) {
	m := buildHistory(t, 7)
	c := m.CrashClone(42)
	want := files(t, c)
	for seed := range int64(10) {
		if got := files(t, c.CrashClone(seed)); !maps.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("crashing a fresh clone (seed %d) lost something: the clone was not durable", seed)
		}
	}

	m = vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	l, err := m.Lock("/d/LOCK")
	mustOK(t, err)
	defer l.Close()
	c = m.CrashClone(1)
	if !m.Crashed() {
		t.Fatal("CrashClone did not crash the original")
	}
	if _, err := m.Stat("/d"); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("original after CrashClone: %v", err)
	}
	if c.Crashed() || c.Ops() != 0 {
		t.Fatalf("clone: Crashed() = %v, Ops() = %d", c.Crashed(), c.Ops())
	}
	l2, err := c.Lock("/d/LOCK")
	if err != nil {
		t.Fatalf("a lock survived CrashClone: %v", err)
	}
	l2.Close()
	f, err := c.Create("/d/new")
	mustOK(t, err)
	for range 100 {
		mustWrite(t, f, []byte("x"))
	}
	if c.Crashed() {
		t.Fatal("clone has a crash point")
	}
}

// TestMemConcurrentReadWrite: readers racing a writer (and its syncs) see
// whole writes only.
func TestMemConcurrentReadWrite(t *testing.T) {
	const recSize, records = 100, 300
	m := vfs.NewMem()
	mustOK(t, m.MkdirAll("/d"))
	w, err := m.Create("/d/seg")
	mustOK(t, err)
	r, err := m.Open("/d/seg")
	mustOK(t, err)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			buf := make([]byte, recSize*records)
			for {
				select {
				case <-done:
					return
				default:
				}
				n, err := r.ReadAt(buf, 0)
				if err != io.EOF && err != nil {
					errc <- err
					return
				}
				if n%recSize != 0 {
					errc <- fmt.Errorf("read %d bytes: a partial write", n)
					return
				}
				for i := range n {
					if buf[i] != byte(i/recSize) {
						errc <- fmt.Errorf("byte %d = %d, want %d", i, buf[i], byte(i/recSize))
						return
					}
				}
				m.List("/d")
			}
		})
	}
	for i := range records {
		mustWrite(t, w, bytes.Repeat([]byte{byte(i)}, recSize))
		if i%10 == 0 {
			mustOK(t, w.Sync())
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if size, err := r.Size(); err != nil || size != recSize*records {
		t.Fatalf("Size = %d, %v", size, err)
	}
}

func TestMemErrors(t *testing.T) {
	m := vfs.NewMem()
	_, err := m.Open("/missing")
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "/missing" || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing file: %#v", err)
	}
	mustOK(t, m.WriteFile("/f", []byte("x")))
	if err := m.MkdirAll("/f"); err == nil {
		t.Fatal("MkdirAll over a file succeeded")
	}
	if err := m.WriteFile("/nodir/f", nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WriteFile in a missing directory: %v", err)
	}
	if _, err := m.Lock("/nodir/LOCK"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Lock in a missing directory: %v", err)
	}
}

// ExampleMemFS_CrashClone shows the crash model: synced data survives
// every crash, unsynced data may not.
func ExampleMemFS_CrashClone() {
	m := vfs.NewMem()
	m.MkdirAll("/log")
	f, _ := m.Create("/log/000001.seg")
	f.Write([]byte("synced;"))
	f.Sync()
	m.SyncDir("/log")
	f.Write([]byte("unsynced;"))

	for seed := range int64(50) {
		data, _ := m.CrashClone(seed).ReadFile("/log/000001.seg")
		if !bytes.HasPrefix(data, []byte("synced;")) {
			fmt.Println("synced data lost with seed", seed)
		}
	}
	fmt.Println(m.Crashed())
	// Output: true
}
