package wal

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/vfs"
)

// crashedLog writes n records to a log on a MemFS, crashes it without
// Close, and returns the crash state: the last segment is unsealed and
// ends in preallocated zeros.
func crashedLog(t *testing.T, n int) *vfs.MemFS {
	t.Helper()
	mem := vfs.NewMem()
	w := openT(t, mem, crashDir, Options{SegmentSize: 4 << 10, Preallocate: 1 << 10})
	for i := 1; i <= n; i++ {
		if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	crashed := mem.CrashClone(1)
	w.Close()
	return crashed
}

// TestOpenReportsTailRepairFailure: Open cuts the preallocated zeros (or a
// torn tail) off the last segment; a failed truncate or sync there fails
// Open instead of being ignored.
func TestOpenReportsTailRepairFailure(t *testing.T) {
	for _, kind := range []vfs.OpKind{vfs.OpTruncate, vfs.OpSync} {
		t.Run(kind.String(), func(t *testing.T) {
			mem := crashedLog(t, 10)
			fs := vfs.NewFaulty(mem, vfs.WithPathSuffix(".wal", vfs.FailNth(kind, 1, nil)))
			w, err := Open(crashDir, Options{FS: fs, Logger: quiet()})
			if err == nil {
				w.Close()
				t.Fatalf("Open succeeded although the %s of the tail failed", kind)
			}
			if !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("Open: %v, want the injected %s failure", err, kind)
			}
			// The log opens once the disk works again, with every record.
			w = openT(t, mem, crashDir, Options{})
			defer w.Close()
			if got := readAll(t, w, 1); len(got) != 10 {
				t.Fatalf("%d records after reopening, want 10", len(got))
			}
		})
	}
}

// TestReadOnly: a read-only Open reads what is durable, writes nothing
// (no directory, LOCK or segment; no tail cut), refuses every write, and
// refuses what is not a log.
func TestReadOnly(t *testing.T) {
	mem := crashedLog(t, 10)
	// A torn tail after the records: not read, not cut.
	last := filepath.Join(crashDir, segmentName(1))
	editFile(t, mem, last, func(b []byte) []byte {
		end := headerSize
		for i := 1; i <= 10; i++ {
			end += frameHeaderSize + len(rec(i))
		}
		copy(b[end:], []byte{9, 9, 9, 9, 9, 9})
		return b
	})
	if err := mem.Remove(filepath.Join(crashDir, lockName)); err != nil {
		t.Fatal(err)
	}
	before := memState(t, mem, crashDir)
	w, err := Open(crashDir, Options{FS: mem, ReadOnly: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, w, 1); len(got) != 10 || w.LastSeq() != 10 || w.FirstSeq() != 1 {
		t.Fatalf("read-only: %d records, seq %d..%d", len(got), w.FirstSeq(), w.LastSeq())
	}
	refusesWrites(t, w, "on a read-only log")
	if err := w.Sync(); err != nil {
		t.Errorf("Sync with nothing appended: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sameState(t, "a read-only Open", before, memState(t, mem, crashDir))

	// Beside a live writer: it sees what was durable when it opened.
	live := openT(t, mem, crashDir, Options{})
	defer live.Close()
	ro, err := Open(crashDir, Options{FS: mem, ReadOnly: true, Logger: quiet()})
	if err != nil {
		t.Fatalf("read-only Open beside a writer: %v", err)
	}
	if _, err := live.Append(Entry{Data: []byte("later")}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, ro, 1); len(got) != 10 {
		t.Fatalf("read-only beside a writer: %d records, want the 10 durable at its Open", len(got))
	}
	ro.Close()

	// Not a log: missing, a file, a directory without segments and LOCK.
	if err := mem.MkdirAll("/empty"); err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteFile("/file", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/missing", "/file", "/empty"} {
		for _, opts := range []Options{{ReadOnly: true}, {MustExist: true}} {
			opts.FS, opts.Logger = mem, quiet()
			if w, err := Open(dir, opts); !errors.Is(err, ErrNotLog) {
				if err == nil {
					w.Close()
				}
				t.Errorf("Open(%s, read-only %v): %v, want ErrNotLog", dir, opts.ReadOnly, err)
			}
		}
	}
	if _, err := mem.Stat("/missing"); err == nil {
		t.Error("a refused Open created /missing")
	}
	if names, _ := mem.List("/empty"); len(names) != 0 {
		t.Errorf("a refused Open wrote %v into /empty", names)
	}
}

// TestOpenRemovesUnfinishedCreate: a *.tmp left by a crash inside segment
// creation is removed by a read-write Open, and only then.
func TestOpenRemovesUnfinishedCreate(t *testing.T) {
	mem := crashedLog(t, 3)
	tmp := filepath.Join(crashDir, segmentName(4)+tmpSuffix)
	if err := mem.WriteFile(tmp, encodeHeader(4)[:10]); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(mem, crashDir, CheckOptions{}); err != nil || rep.Verdict() != Clean {
		t.Fatalf("Verify with a leftover %s: %v %+v", tmp, err, rep)
	}
	w := openT(t, mem, crashDir, Options{})
	defer w.Close()
	if names, _ := mem.List(crashDir); slices.Contains(names, filepath.Base(tmp)) {
		t.Fatalf("Open left %s: %v", tmp, names)
	}
	if got := readAll(t, w, 1); len(got) != 3 {
		t.Fatalf("%d records, want 3", len(got))
	}
}

// TestCloseSeals: Close seals a segment holding records and starts an
// empty one; opening and closing an idle log adds no file.
func TestCloseSeals(t *testing.T) {
	mem := closedLog(t, 5)
	want := []string{segmentName(1), segmentName(6), lockName}
	for range 3 {
		if names, _ := mem.List(crashDir); !slices.Equal(names, want) {
			t.Fatalf("files %v, want %v", names, want)
		}
		rep, err := Verify(mem, crashDir, CheckOptions{})
		if err != nil || rep.Verdict() != Clean || !rep.Segments[0].Sealed || rep.Segments[1].Records != 0 || rep.Records != 5 {
			t.Fatalf("after Close: %v %+v", err, rep)
		}
		w := openT(t, mem, crashDir, Options{})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBlameOnOS: on the real file system too, a directory or a garbage
// file under a later segment's name is reported as itself, at offset 0,
// and the good segments before it are all listed.
func TestBlameOnOS(t *testing.T) {
	for _, kind := range []string{"directory", "garbage"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			w := openT(t, vfs.OS, dir, Options{SegmentSize: 300})
			for i := 1; i <= 20; i++ {
				if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			good, err := Verify(vfs.OS, dir, CheckOptions{})
			if err != nil || good.Verdict() != Clean {
				t.Fatalf("%v %+v", err, good)
			}
			stray := segmentName(1000)
			path := filepath.Join(dir, stray)
			if kind == "directory" {
				err = vfs.OS.MkdirAll(path)
			} else {
				err = writeOSFile(path, []byte("this is not a segment, but it is long enough to hold a header"))
			}
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(vfs.OS, dir, CheckOptions{})
			var ce *CorruptionError
			if err != nil || !errors.As(rep.Corruption, &ce) || ce.Segment != stray || ce.Offset != 0 {
				t.Fatalf("Verify: %v, %v; want corruption of %s at offset 0", err, rep.Corruption, stray)
			}
			if len(rep.Segments) != len(good.Segments)+1 {
				t.Fatalf("Verify lists %d files, want the %d good segments and %s", len(rep.Segments), len(good.Segments), stray)
			}
			for i, s := range good.Segments {
				if rep.Segments[i].Name != s.Name || rep.Segments[i].Damage != nil {
					t.Fatalf("segment %s: %+v", s.Name, rep.Segments[i])
				}
			}
			if _, err := Open(dir, Options{Logger: quiet()}); !errors.As(err, &ce) || ce.Segment != stray {
				t.Fatalf("Open: %v, want corruption of %s", err, stray)
			}
			// Nothing needs its records, so repair removes it.
			plan, err := PlanRepair(vfs.OS, dir, CheckOptions{})
			if err != nil || plan.Records() != 0 || plan.Cut == nil || plan.Cut.Segment != stray {
				t.Fatalf("PlanRepair: %v\n%v", err, plan)
			}
			if err := Repair(vfs.OS, dir, plan); err != nil {
				t.Fatal(err)
			}
			w = openT(t, vfs.OS, dir, Options{})
			defer w.Close()
			if got := readAll(t, w, 1); len(got) != 20 {
				t.Fatalf("%d records after repair, want 20", len(got))
			}
		})
	}
}

func writeOSFile(path string, data []byte) error {
	f, err := vfs.OS.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestRefusedOpenLeavesNoLock: an Open refused for damage leaves the
// directory as it found it, without the LOCK file it had to create.
func TestRefusedOpenLeavesNoLock(t *testing.T) {
	mem := crashedLog(t, 10)
	editFile(t, mem, filepath.Join(crashDir, segmentName(1)), func(b []byte) []byte { b[headerSize+30] ^= 1; return b })
	if err := mem.Remove(filepath.Join(crashDir, lockName)); err != nil {
		t.Fatal(err)
	}
	before := memState(t, mem, crashDir)
	if _, err := Open(crashDir, Options{FS: mem, Logger: quiet()}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	sameState(t, "a refused Open", before, memState(t, mem, crashDir))
}

// refusesWrites checks that every call that would change the log fails
// with ErrReadOnly.
func refusesWrites(t *testing.T, w *WAL, when string) {
	t.Helper()
	for name, err := range map[string]error{
		"Append":        func() error { _, err := w.Append(Entry{Data: []byte("x")}); return err }(),
		"Append batch":  func() error { _, err := w.Append(Entry{Data: []byte("x")}, Entry{Data: []byte("y")}); return err }(),
		"AppendAsync":   func() error { _, err := w.AppendAsync(Entry{Data: []byte("x")}); return err }(),
		"Roll":          w.Roll(),
		"TruncateFront": w.TruncateFront(5),
		"MarkFlushed":   w.MarkFlushed(0, 5),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s %s: %v, want ErrReadOnly", name, when, err)
		}
	}
}

// closedLog writes n records to a log on a MemFS and closes it.
func closedLog(t *testing.T, n int) *vfs.MemFS {
	t.Helper()
	mem := vfs.NewMem()
	w := openT(t, mem, crashDir, Options{})
	for i := 1; i <= n; i++ {
		if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return mem
}

// TestReadOnlySealedLast: a read-only reader of a log whose last segment is
// sealed (a crash inside Close, after the seal and before the next
// segment's create; a read-only Open creates no segment) stops at its end.
// Next used to reopen that segment for ever.
func TestReadOnlySealedLast(t *testing.T) {
	mem := closedLog(t, 5)
	next := filepath.Join(crashDir, segmentName(6)) // the empty segment Close created
	if err := mem.Remove(next); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(crashDir, Options{FS: mem, ReadOnly: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	done := make(chan []Record, 1)
	go func() { done <- readAll(t, ro, 1) }()
	select {
	case got := <-done:
		if len(got) != 5 {
			t.Fatalf("read %d records, want 5", len(got))
		}
	case <-time.After(time.Minute):
		t.Fatal("Next does not return at the end of a sealed last segment")
	}
}
