package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/vfs"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openT(t *testing.T, fs vfs.FS, dir string, o Options) *WAL {
	t.Helper()
	o.FS = fs
	if o.Logger == nil {
		o.Logger = quiet()
	}
	w, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return w
}

func rec(i int) []byte {
	return fmt.Appendf(nil, "record-%06d-%s", i, bytes.Repeat([]byte{byte(i)}, i%97))
}

// readAll reads every durable record from seq from.
func readAll(t *testing.T, w *WAL, from uint64) []Record {
	t.Helper()
	r, err := w.NewReader(from)
	if err != nil {
		t.Fatalf("NewReader(%d): %v", from, err)
	}
	defer r.Close()
	var out []Record
	for {
		rc, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, Record{Seq: rc.Seq, Stream: rc.Stream, Data: bytes.Clone(rc.Data)})
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, vfs.OS, dir, Options{SegmentSize: 4 << 10})
	for i := 1; i <= 500; i++ {
		seq, err := w.Append(Entry{Data: rec(i)})
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) {
			t.Fatalf("Append %d returned seq %d", i, seq)
		}
	}
	if got := w.Stats().Segments; got < 5 {
		t.Fatalf("expected the 4 KiB segment size to roll several times, have %d segments", got)
	}
	check := func(w *WAL, n int) {
		t.Helper()
		got := readAll(t, w, 1)
		if len(got) != n {
			t.Fatalf("read %d records, want %d", len(got), n)
		}
		for i, r := range got {
			if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, rec(i+1)) {
				t.Fatalf("record %d: seq %d data %q", i+1, r.Seq, r.Data)
			}
		}
		// Reading from the middle starts exactly there.
		mid := readAll(t, w, 250)
		if len(mid) != n-249 || mid[0].Seq != 250 {
			t.Fatalf("reading from 250: %d records, first %d", len(mid), mid[0].Seq)
		}
	}
	check(w, 500)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openT(t, vfs.OS, dir, Options{SegmentSize: 4 << 10})
	check(w, 500)
	seq, err := w.Append(Entry{Data: rec(501)})
	if err != nil || seq != 501 {
		t.Fatalf("append after reopen: seq %d err %v", seq, err)
	}
	check(w, 501)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAppendsShareSyncs(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, vfs.OS, dir, Options{SegmentSize: 256 << 10})
	const writers, each = 32, 100
	var wg sync.WaitGroup
	seqs := make([][]uint64, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				seq, err := w.Append(Entry{Data: fmt.Appendf(nil, "w%d-%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				seqs[g] = append(seqs[g], seq)
			}
		}()
	}
	wg.Wait()
	st := w.Stats()
	if st.Appends != writers*each {
		t.Fatalf("appends = %d", st.Appends)
	}
	if st.Syncs >= st.Appends {
		t.Fatalf("%d syncs for %d concurrent appends: group commit did not group", st.Syncs, st.Appends)
	}
	// Every record is there once, with the seq its writer was given, and
	// each writer's records are in its own order.
	all := readAll(t, w, 1)
	if len(all) != writers*each {
		t.Fatalf("read %d", len(all))
	}
	bySeq := map[uint64]string{}
	for _, r := range all {
		bySeq[r.Seq] = string(r.Data)
	}
	for g := range writers {
		for i, s := range seqs[g] {
			if want := fmt.Sprintf("w%d-%d", g, i); bySeq[s] != want {
				t.Fatalf("seq %d holds %q, want %q", s, bySeq[s], want)
			}
			if i > 0 && s <= seqs[g][i-1] {
				t.Fatalf("writer %d: seqs not increasing", g)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAsyncAppendAndBatch(t *testing.T) {
	w := openT(t, vfs.OS, t.TempDir(), Options{})
	defer w.Close()
	var last *Pending
	for i := range 1000 {
		p, err := w.AppendAsync(Entry{Data: rec(i)})
		if err != nil {
			t.Fatal(err)
		}
		last = p
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if !last.Durable() || w.DurableSeq() < last.Seq() {
		t.Fatalf("after Sync: durable=%v durableSeq=%d last=%d", last.Durable(), w.DurableSeq(), last.Seq())
	}
	p, err := w.AppendAsync(Entry{Data: []byte("a")}, Entry{Stream: 7, Data: []byte("b")}, Entry{Data: []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Seq() != 1001 || p.LastSeq() != 1003 {
		t.Fatalf("batch seqs %d..%d", p.Seq(), p.LastSeq())
	}
	first, err := w.Append(Entry{Data: []byte("d")}, Entry{Data: []byte("e")})
	if err != nil || first != 1004 {
		t.Fatalf("Append batch: %d %v", first, err)
	}
	got := readAll(t, w, 1001)
	want := []string{"a", "b", "c", "d", "e"}
	if len(got) != len(want) {
		t.Fatalf("got %d records", len(got))
	}
	for i := range want {
		if string(got[i].Data) != want[i] {
			t.Fatalf("record %d = %q", i, got[i].Data)
		}
	}
	if got[1].Stream != 7 {
		t.Fatalf("stream = %d", got[1].Stream)
	}
	if _, err := w.Append(); err == nil {
		t.Fatal("empty batch accepted")
	}
}

func TestRecordTooLarge(t *testing.T) {
	w := openT(t, vfs.OS, t.TempDir(), Options{MaxRecordSize: 100})
	defer w.Close()
	if _, err := w.Append(Entry{Data: make([]byte, 101)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	// A batch with one record too large is refused whole: nothing of it
	// is written and no sequence number is used.
	if _, err := w.AppendAsync(Entry{Data: []byte("ok")}, Entry{Data: make([]byte, 101)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("batch: err = %v, want ErrTooLarge", err)
	}
	if seq, err := w.Append(Entry{Data: make([]byte, 100)}); err != nil || seq != 1 {
		t.Fatalf("Append = %d, %v; want 1", seq, err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, vfs.OS, dir, Options{})
	_, err := Open(dir, Options{Logger: quiet()})
	if !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	w.Close()
	w = openT(t, vfs.OS, dir, Options{})
	w.Close()
}

func TestClosedLog(t *testing.T) {
	w := openT(t, vfs.OS, t.TempDir(), Options{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(Entry{Data: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

func TestTailingReader(t *testing.T) {
	w := openT(t, vfs.OS, t.TempDir(), Options{SegmentSize: 2 << 10})
	r, err := w.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const n = 300
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := 1; i <= n; i++ {
			rc, err := r.Follow(ctx)
			if err != nil {
				done <- err
				return
			}
			if rc.Seq != uint64(i) || !bytes.Equal(rc.Data, rec(i)) {
				done <- fmt.Errorf("record %d: seq %d", i, rc.Seq)
				return
			}
			if rc.Seq > w.DurableSeq() {
				done <- fmt.Errorf("reader returned %d before it was durable (%d)", rc.Seq, w.DurableSeq())
				return
			}
			if i%50 == 0 {
				// Delete what the reader has finished with.
				if err := w.TruncateFront(rc.Seq); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for i := 1; i <= n; i++ {
		if i%2 == 0 {
			if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := w.AppendAsync(Entry{Data: rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.FirstSeq() == 1 {
		t.Fatal("TruncateFront deleted nothing")
	}
	// A reader blocked on an empty tail returns when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Follow(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow on cancelled ctx: %v", err)
	}
	w.Close()
}

func TestTruncateFrontAndStreams(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, vfs.OS, dir, Options{SegmentSize: 1 << 10})
	// Stream 1 writes early, stream 2 throughout.
	for i := 1; i <= 200; i++ {
		stream := uint32(2)
		if i <= 20 {
			stream = 1
		}
		if _, err := w.Append(Entry{Stream: stream, Data: rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	segs := w.Stats().Segments
	// Stream 2 flushed everything, stream 1 nothing: the segments stream 1
	// wrote to, and everything after them, stay.
	if err := w.MarkFlushed(2, 200); err != nil {
		t.Fatal(err)
	}
	if w.FirstSeq() != 1 {
		t.Fatalf("first seq %d: deleted a segment stream 1 still needs", w.FirstSeq())
	}
	if err := w.MarkFlushed(1, 20); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().Segments; got != 1 {
		t.Fatalf("after both streams flushed: %d segments (had %d), want only the active one", got, segs)
	}
	first := w.FirstSeq()
	if _, err := w.NewReader(first - 1); !errors.Is(err, ErrTruncated) {
		t.Fatalf("reader before the start: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openT(t, vfs.OS, dir, Options{SegmentSize: 1 << 10})
	defer w.Close()
	got := readAll(t, w, first)
	if len(got) == 0 || got[len(got)-1].Seq != 200 || got[0].Seq != first {
		t.Fatalf("after reopen: %d records", len(got))
	}
	// TruncateFront after Roll deletes everything before the new segment.
	if err := w.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateFront(201); err != nil {
		t.Fatal(err)
	}
	if w.FirstSeq() != 201 {
		t.Fatalf("first seq %d after Roll+TruncateFront(201)", w.FirstSeq())
	}
	if seq, err := w.Append(Entry{Data: []byte("next")}); err != nil || seq != 201 {
		t.Fatalf("append: %d %v", seq, err)
	}
}

// TestRollEmptySegment: rolling a segment that holds no records is a no-op
// (it once made a second segment with the same name, clobbering the first).
func TestRollEmptySegment(t *testing.T) {
	dir := t.TempDir()
	w := openT(t, vfs.OS, dir, Options{})
	for range 3 {
		if err := w.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Append(Entry{Data: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := w.Roll(); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().Segments; got != 2 {
		t.Fatalf("%d segments, want 2", got)
	}
	if _, err := w.Append(Entry{Data: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateFront(2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openT(t, vfs.OS, dir, Options{})
	defer w.Close()
	got := readAll(t, w, w.FirstSeq())
	if len(got) != 1 || string(got[0].Data) != "two" || got[0].Seq != 2 {
		t.Fatalf("after reopen: %+v", got)
	}
}

// TestPreallocation: the active segment carries zeros ahead of its records
// (so that a sync has no file size to commit); a clean Close drops them; a
// crash leaves them, and Open takes them for what they are (no torn-tail
// warning), drops them, and appends go on after the last record.
func TestPreallocation(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll(crashDir); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := Options{FS: mem, Logger: logger, Preallocate: 4096}
	w, err := Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if _, err := w.Append(Entry{Data: payload(i)}); err != nil {
			t.Fatal(err)
		}
	}
	seg := filepath.Join(crashDir, segmentName(1))
	recordsEnd := w.activeSize
	if size, _ := mem.Stat(seg); size <= recordsEnd || size > recordsEnd+4096 {
		t.Fatalf("active segment is %d bytes, records end at %d: want zeros ahead, at most 4096 bytes", size, recordsEnd)
	}

	// A crash now leaves the zeros on disk.
	mem.Crash()
	crashed := mem.CrashClone(1)
	w.Close()
	opts.FS = crashed
	w, err = Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "torn") || !strings.Contains(logs.String(), "preallocated zeros") {
		t.Fatalf("recovery log:\n%s", logs.String())
	}
	if w.activeSize != recordsEnd {
		t.Fatalf("after recovery the records end at %d, want %d", w.activeSize, recordsEnd)
	}
	for i := 11; i <= 20; i++ {
		if _, err := w.Append(Entry{Data: payload(i)}); err != nil {
			t.Fatal(err)
		}
	}
	end := w.activeSize
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Close sealed the segment: its records, then the trailer, no zeros;
	// and the next segment holds only its header.
	if size, _ := crashed.Stat(seg); size != end+frameHeaderSize+trailerPayloadSize {
		t.Fatalf("after Close the segment is %d bytes, its records end at %d", size, end)
	}
	if size, err := crashed.Stat(filepath.Join(crashDir, segmentName(21))); err != nil || size != headerSize {
		t.Fatalf("after Close the next segment is %d bytes (%v), want a header only", size, err)
	}
	w, err = Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := w.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		rec, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if id, ok := payloadID(rec.Data); !ok || id != i {
			t.Fatalf("record %d holds %d", i, id)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after 20 records: %v, want io.EOF", err)
	}
}
