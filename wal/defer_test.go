package wal

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// readN reads records from..to from w and checks them against rec.
func readN(t *testing.T, w *WAL, from, to uint64) {
	t.Helper()
	r, err := w.NewReader(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for seq := from; seq <= to; seq++ {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		if got.Seq != seq || !bytes.Equal(got.Data, rec(int(seq))) {
			t.Fatalf("record %d: got seq %d %q", seq, got.Seq, got.Data)
		}
	}
}

// TestDeferWrites: with Options.DeferWrites, Open holds the lock and reads
// the log but changes nothing on disk (no tail cut, no *.tmp removed, no
// segment created, and the LOCK file it created removed again by Close);
// OpenForWrites makes the changes a read-write Open makes, and the log
// then takes writes.
func TestDeferWrites(t *testing.T) {
	t.Run("torn tail and unfinished creation", func(t *testing.T) {
		mem := crashedLog(t, 10)
		last := filepath.Join(crashDir, segmentName(1))
		var end int
		editFile(t, mem, last, func(b []byte) []byte {
			end = headerSize
			for i := 1; i <= 10; i++ {
				end += frameHeaderSize + len(rec(i))
			}
			copy(b[end:], []byte{9, 9, 9, 9, 9, 9})
			return b
		})
		tmp := filepath.Join(crashDir, segmentName(11)+tmpSuffix)
		if err := mem.WriteFile(tmp, encodeHeader(11)[:7]); err != nil {
			t.Fatal(err)
		}
		if err := mem.Remove(filepath.Join(crashDir, lockName)); err != nil {
			t.Fatal(err)
		}
		before := memState(t, mem, crashDir)

		w := openT(t, mem, crashDir, Options{DeferWrites: true})
		if w.FirstSeq() != 1 || w.LastSeq() != 10 {
			t.Fatalf("deferred: seq %d..%d, want 1..10", w.FirstSeq(), w.LastSeq())
		}
		readN(t, w, 1, 10)
		if _, err := Open(crashDir, Options{FS: mem, Logger: quiet()}); err == nil {
			t.Fatal("a second Open succeeded while a deferred one holds the lock")
		}
		refusesWrites(t, w, "before OpenForWrites")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sameState(t, "a deferred Open closed before OpenForWrites", before, memState(t, mem, crashDir))

		w = openT(t, mem, crashDir, Options{DeferWrites: true})
		if err := w.OpenForWrites(); err != nil {
			t.Fatal(err)
		}
		if err := w.OpenForWrites(); err == nil {
			t.Fatal("a second OpenForWrites succeeded")
		}
		if names, _ := mem.List(crashDir); slices.Contains(names, filepath.Base(tmp)) {
			t.Fatalf("OpenForWrites left %s", tmp)
		}
		if data, _ := mem.ReadFile(last); len(data) != end {
			t.Fatalf("after OpenForWrites %s has %d bytes, want the torn tail cut at %d", last, len(data), end)
		}
		if seq, err := w.Append(Entry{Data: rec(11)}); err != nil || seq != 11 {
			t.Fatalf("Append after OpenForWrites: %d, %v", seq, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		w = openT(t, mem, crashDir, Options{})
		defer w.Close()
		readN(t, w, 1, 11)
	})
	t.Run("sealed last segment", func(t *testing.T) {
		// A crash inside Close, after the trailer and before the next
		// segment: the last segment is sealed.
		mem := crashedLog(t, 0)
		w := openT(t, mem, crashDir, Options{})
		for i := 1; i <= 5; i++ {
			if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := mem.Remove(filepath.Join(crashDir, segmentName(6))); err != nil {
			t.Fatal(err)
		}
		before := memState(t, mem, crashDir)
		w = openT(t, mem, crashDir, Options{DeferWrites: true})
		readN(t, w, 1, 5)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sameState(t, "a deferred Open of a sealed log", before, memState(t, mem, crashDir))

		w = openT(t, mem, crashDir, Options{DeferWrites: true})
		if err := w.OpenForWrites(); err != nil {
			t.Fatal(err)
		}
		if seq, err := w.Append(Entry{Data: rec(6)}); err != nil || seq != 6 {
			t.Fatalf("Append after OpenForWrites: %d, %v", seq, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if names, _ := mem.List(crashDir); !slices.Contains(names, segmentName(6)) {
			t.Fatalf("no segment %s after OpenForWrites: %v", segmentName(6), names)
		}
	})
	t.Run("not a log", func(t *testing.T) {
		mem := crashedLog(t, 1)
		for _, dir := range []string{"/missing", "/empty", "/lockonly"} {
			if dir != "/missing" {
				mem.MkdirAll(dir)
			}
			if dir == "/lockonly" {
				mem.WriteFile(filepath.Join(dir, lockName), nil)
			}
			var before map[string]string
			if dir != "/missing" {
				before = memState(t, mem, dir)
			}
			if w, err := Open(dir, Options{FS: mem, Logger: quiet(), DeferWrites: true}); !errors.Is(err, ErrNotLog) {
				if err == nil {
					w.Close()
				}
				t.Fatalf("deferred Open of %s: %v, want ErrNotLog", dir, err)
			}
			if dir == "/missing" {
				if _, err := mem.Stat(dir); err == nil {
					t.Fatalf("a refused deferred Open created %s", dir)
				}
				continue
			}
			sameState(t, "a refused deferred Open", before, memState(t, mem, dir))
		}
	})
}
