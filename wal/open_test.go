package wal

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

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
		if _, err := w.Append(rec(i)); err != nil {
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
	for name, err := range map[string]error{
		"Append":        func() error { _, err := w.Append([]byte("x")); return err }(),
		"AppendAsync":   func() error { _, err := w.AppendAsync([]byte("x")); return err }(),
		"AppendBatch":   func() error { _, err := w.AppendBatch([]Entry{{Data: []byte("x")}}); return err }(),
		"Roll":          w.Roll(),
		"TruncateFront": w.TruncateFront(5),
		"MarkFlushed":   w.MarkFlushed(0, 5),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only log: %v, want ErrReadOnly", name, err)
		}
	}
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
	if _, err := live.Append([]byte("later")); err != nil {
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
	mem := vfs.NewMem()
	w := openT(t, mem, crashDir, Options{})
	for i := 1; i <= 5; i++ {
		if _, err := w.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{segmentName(1), segmentName(6), lockName}
	for range 3 {
		if names, _ := mem.List(crashDir); !slices.Equal(names, want) {
			t.Fatalf("files %v, want %v", names, want)
		}
		rep, err := Verify(mem, crashDir, CheckOptions{})
		if err != nil || rep.Verdict() != Clean || !rep.Segments[0].Sealed || rep.Segments[1].Records != 0 || rep.Records != 5 {
			t.Fatalf("after Close: %v %+v", err, rep)
		}
		w = openT(t, mem, crashDir, Options{})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
