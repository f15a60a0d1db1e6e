package wal

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// countingInjector wraps an injector and counts the operations it saw by
// kind, to prove that nothing is retried after a failure.
type countingInjector struct {
	inner vfs.Injector
	mu    chan struct{}
	after map[vfs.OpKind]int // ops seen after the first injected error
	fired bool
}

func newCounting(inner vfs.Injector) *countingInjector {
	c := &countingInjector{inner: inner, mu: make(chan struct{}, 1), after: map[vfs.OpKind]int{}}
	return c
}

func (c *countingInjector) MaybeError(op vfs.Op) error {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	if c.fired {
		c.after[op.Kind]++
	}
	err := c.inner.MaybeError(op)
	if err != nil {
		c.fired = true
	}
	return err
}

func (c *countingInjector) seenAfter(k vfs.OpKind) int {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	return c.after[k]
}

func TestFailureSemantics(t *testing.T) {
	cases := []struct {
		name  string
		inj   vfs.Injector
		cause error // what errors.Is must also find
	}{
		{"fsync fails", vfs.FailNth(vfs.OpSync, 5, nil), vfs.ErrInjected},
		{"write fails", vfs.FailNth(vfs.OpWrite, 6, nil), vfs.ErrInjected},
		{"disk full", vfs.FailNth(vfs.OpWrite, 6, vfs.ErrNoSpace), syscall.ENOSPC},
		{"short write", vfs.ShortWriteNth(6), io.ErrShortWrite},
		{"segment create fails on roll", vfs.FailNth(vfs.OpCreate, 2, nil), vfs.ErrInjected},
		{"directory sync fails on roll", vfs.FailNth(vfs.OpSyncDir, 3, nil), vfs.ErrInjected},
		{"disk full while preallocating", vfs.FailNth(vfs.OpPreallocate, 4, vfs.ErrNoSpace), syscall.ENOSPC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			inj := newCounting(tc.inj)
			fs := vfs.NewFaulty(mem, inj)
			w, err := Open(crashDir, Options{FS: fs, SegmentSize: 300, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			r, err := w.NewReader(1)
			if err != nil {
				t.Fatal(err)
			}
			var acked []uint64
			var failedAt int
			for i := 1; i <= 50; i++ {
				seq, err := w.Append(Entry{Data: payload(i)})
				if err != nil {
					if !errors.Is(err, ErrFailed) || !errors.Is(err, tc.cause) {
						t.Fatalf("append %d: %v, want ErrFailed wrapping %v", i, err, tc.cause)
					}
					failedAt = i
					break
				}
				acked = append(acked, seq)
			}
			if failedAt == 0 {
				t.Fatal("the injected fault never surfaced")
			}
			// Every later operation fails the same way, and nothing touches
			// the files again: no retried fsync, no write.
			if _, err := w.Append(Entry{Data: []byte("later")}); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v", err)
			}
			if _, err := w.AppendAsync(Entry{Data: []byte("later")}); !errors.Is(err, ErrFailed) {
				t.Fatalf("async append after failure: %v", err)
			}
			if err := w.Sync(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Sync after failure: %v", err)
			}
			if err := w.Roll(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Roll after failure: %v", err)
			}
			if !errors.Is(w.Err(), ErrFailed) {
				t.Fatalf("Err() = %v", w.Err())
			}
			// The reader sees exactly the acknowledged records.
			n := 0
			for {
				rec, err := r.Next()
				if err != nil {
					break
				}
				if rec.Seq > acked[len(acked)-1] {
					t.Fatalf("reader returned seq %d, beyond the last acknowledged %d", rec.Seq, acked[len(acked)-1])
				}
				n++
			}
			if n != len(acked) {
				t.Fatalf("reader returned %d records, %d were acknowledged", n, len(acked))
			}
			if err := w.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close: %v, want ErrFailed", err)
			}
			if k := inj.seenAfter(vfs.OpSync); k != 0 {
				t.Fatalf("%d fsyncs after the failure: a failed fsync must not be retried", k)
			}
			if k := inj.seenAfter(vfs.OpWrite); k != 0 {
				t.Fatalf("%d writes after the failure", k)
			}
			// Reopening recovers every acknowledged record.
			w, err = Open(crashDir, Options{FS: mem, Logger: quiet()})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer w.Close()
			got := readAll(t, w, 1)
			if len(got) < len(acked) {
				t.Fatalf("after reopen %d records, %d acknowledged", len(got), len(acked))
			}
			for i, s := range acked {
				if got[i].Seq != s || string(got[i].Data) != string(payload(i+1)) {
					t.Fatalf("record %d differs after reopen", s)
				}
			}
		})
	}
}

// TestFailureFailsPendingWaiters: non-waiting appends caught in or behind a
// failed batch get the error on Wait and are never reported durable.
func TestFailureFailsPendingWaiters(t *testing.T) {
	mem := vfs.NewMem()
	fs := vfs.NewFaulty(mem, vfs.FailFrom(vfs.OpSync, 3, nil))
	w, err := Open(crashDir, Options{FS: fs, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*Pending
	for i := range 200 {
		p, err := w.AppendAsync(Entry{Data: payload(i)})
		if err != nil {
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("AppendAsync: %v", err)
			}
			break
		}
		ps = append(ps, p)
		if i%20 == 19 {
			w.Sync() // forces more batches; fails once the fault fires
		}
	}
	failed := 0
	for _, p := range ps {
		err := p.Wait(context.Background())
		if err != nil {
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("Wait: %v", err)
			}
			if p.Durable() {
				t.Fatal("a failed record reports durable")
			}
			failed++
		} else if p.Seq() > w.DurableSeq() {
			t.Fatalf("seq %d acknowledged beyond durable %d", p.Seq(), w.DurableSeq())
		}
	}
	if failed == 0 {
		t.Fatal("no waiter saw the failure")
	}
	if err := w.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close: %v", err)
	}
}
