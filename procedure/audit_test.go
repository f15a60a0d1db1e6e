package procedure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

var auditClockStart = time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)

// auditLog returns the engine's audit log, newest first.
func auditLog(e *Engine) []Action { return slices.Collect(e.Audit(0)) }

func seqsOf(as []Action) []uint64 {
	var s []uint64
	for _, a := range as {
		s = append(s, a.Seq)
	}
	return s
}

// sameAction compares two actions, their times as instants.
func sameAction(a, b Action) bool {
	at := a.At.Equal(b.At)
	a.At, b.At = time.Time{}, time.Time{}
	return at && a == b
}

func checkAudit(t *testing.T, what string, got []Action, want ...Action) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: audit log %+v, want %+v", what, got, want)
	}
	for i := range got {
		if !sameAction(got[i], want[i]) {
			t.Fatalf("%s: audit entry %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// TestAudit: an abort and a bypass are in the audit log with who, why,
// the procedure given, its root and the clock's time, newest first, also
// after a restart, where the sequence goes on; what is refused, does
// nothing or is bad input is not, and bad input changes nothing.
func TestAudit(t *testing.T) {
	ctx := context.Background()
	clock := NewManualClock(auditClockStart)
	w := newWorld(t, Options{Clock: clock, Workers: 4})
	defer w.close()
	for _, g := range []string{"exec:a:1", "exec:kid:1", "exec:sib:1", "exec:late:3"} {
		w.gates.set(g)
	}
	a := w.submit(newScript("a", 3))
	root := newScript("r", 2)
	root.SpawnAt = 0
	root.Children = []script{newScript("kid", 3), newScript("sib", 3)}
	r := w.submit(root)
	late, err := w.ponr.Submit(ctx, newScript("late", 5), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"exec:a:1", "exec:kid:1", "exec:sib:1", "exec:late:3"} {
		reach(t, w.gates, g)
	}
	in, err := w.e.Get(r)
	if err != nil || len(in.Children) != 2 {
		t.Fatalf("root %d: %+v %v", r, in, err)
	}
	kid := in.Children[0]

	// Bad input: every step waits at a gate, so nothing else commits.
	seq := w.store.Seq()
	for _, in := range [][2]string{{"", "why"}, {"who", ""}, {"", ""}} {
		if err := w.e.Abort(ctx, a, in[0], in[1]); err == nil || !strings.Contains(err.Error(), "who and why") {
			t.Fatalf("Abort(%q, %q): %v", in[0], in[1], err)
		}
		if err := w.e.Bypass(ctx, kid, in[0], in[1]); err == nil || !strings.Contains(err.Error(), "who and why") {
			t.Fatalf("Bypass(%q, %q): %v", in[0], in[1], err)
		}
	}
	if s := w.store.Seq(); s != seq {
		t.Fatalf("bad input committed: store at %d, was %d", s, seq)
	}
	if in, _ := w.e.Get(a); in.Aborted || in.RollingBack {
		t.Fatalf("bad input aborted: %+v", in)
	}
	checkAudit(t, "after bad input", auditLog(w.e))

	// Refused: past the point of no return, unknown.
	if err := w.e.Abort(ctx, late, "ann", "drain"); !errors.Is(err, ErrAbortRefused) {
		t.Fatalf("abort past the point of no return: %v", err)
	}
	if err := w.e.Abort(ctx, 12345, "ann", "drain"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("abort of an unknown one: %v", err)
	}
	if err := w.e.Bypass(ctx, 12345, "ann", "drain"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bypass of an unknown one: %v", err)
	}
	checkAudit(t, "after refusals", auditLog(w.e))

	clock.Advance(time.Minute)
	if err := w.e.Abort(ctx, a, "ann", "drain the region"); err != nil {
		t.Fatal(err)
	}
	abortA := Action{Seq: 1, Kind: "abort", Target: a, Root: a, Who: "ann", Why: "drain the region", At: auditClockStart.Add(time.Minute)}
	clock.Advance(time.Minute)
	if err := w.e.Bypass(ctx, kid, "bob", "server gone"); err != nil {
		t.Fatal(err)
	}
	bypassKid := Action{Seq: 2, Kind: "bypass", Target: kid, Root: r, Who: "bob", Why: "server gone", At: auditClockStart.Add(2 * time.Minute)}
	checkAudit(t, "abort and bypass", auditLog(w.e), bypassKid, abortA)

	// Doing nothing: aborting a tree rolling back (or rolled back by now),
	// bypassing a procedure bypassed already.
	if err := w.e.Abort(ctx, a, "ann", "again"); err != nil && !errors.Is(err, ErrFinished) {
		t.Fatalf("second abort: %v", err)
	}
	if err := w.e.Bypass(ctx, kid, "bob", "again"); err != nil {
		t.Fatalf("second bypass: %v", err)
	}
	checkAudit(t, "after no-ops", auditLog(w.e), bypassKid, abortA)

	// Pages: before a sequence number.
	checkAudit(t, "before 2", slices.Collect(w.e.Audit(2)), abortA)
	checkAudit(t, "before 1", slices.Collect(w.e.Audit(1)))
	checkAudit(t, "before 100", slices.Collect(w.e.Audit(100)), bypassKid, abortA)

	w.gates.open("exec:sib:1")
	if res := w.wait(r); !errors.Is(res.Err(), ErrBypassed) {
		t.Fatalf("bypassed tree: %v", res.Err())
	}
	if res := w.wait(a); !errors.Is(res.Err(), ErrAborted) {
		t.Fatalf("aborted tree: %v", res.Err())
	}

	// A restart keeps the log, and the sequence goes on.
	w.restart()
	checkAudit(t, "after a restart", auditLog(w.e), bypassKid, abortA)
	clock.Advance(time.Minute)
	if err := w.e.Bypass(ctx, late, "cy", "unblock"); err != nil {
		t.Fatal(err)
	}
	bypassLate := Action{Seq: 3, Kind: "bypass", Target: late, Root: late, Who: "cy", Why: "unblock", At: auditClockStart.Add(3 * time.Minute)}
	checkAudit(t, "after a restart and a bypass", auditLog(w.e), bypassLate, bypassKid, abortA)
}

// TestAuditKeep: the log keeps the newest Options.AuditKeep entries, the
// sequence going on across restarts, also when AuditKeep changes.
func TestAuditKeep(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, Options{AuditKeep: 3})
	defer w.close()
	bypass := func() {
		t.Helper()
		w.gates.set("exec:s:0")
		id := w.submit(newScript("s", 2))
		reach(t, w.gates, "exec:s:0")
		if err := w.e.Bypass(ctx, id, "ops", fmt.Sprintf("bypass %d", id)); err != nil {
			t.Fatal(err)
		}
		w.gates.open("exec:s:0")
	}
	check := func(what string, want ...uint64) {
		t.Helper()
		got := auditLog(w.e)
		if !slices.Equal(seqsOf(got), want) {
			t.Fatalf("%s: log %v, want %v", what, seqsOf(got), want)
		}
		if n := w.e.audit.Len(w.store.Latest()); n != len(want) {
			t.Fatalf("%s: %d entries stored, want %d", what, n, len(want))
		}
	}
	for range 5 {
		bypass()
	}
	check("5 bypasses, keeping 3", 5, 4, 3)
	w.restart()
	bypass()
	check("after a restart", 6, 5, 4)
	w.opts.AuditKeep = 1
	w.restart()
	bypass()
	check("keeping 1", 7)
	w.opts.AuditKeep = 0 // the default
	w.restart()
	bypass()
	bypass()
	check("keeping the default", 9, 8, 7)
}

// syncBuffer is a bytes.Buffer for a logger used from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditPagesAndDamage: Audit reads a long log in pages, newest first
// and from any point, and skips an entry that does not decode, logging
// its key; appending trims the oldest beyond AuditKeep in the same
// transaction.
func TestAuditPagesAndDamage(t *testing.T) {
	var logs syncBuffer
	w := newWorld(t, Options{AuditKeep: 200, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer w.close()
	e := w.e
	err := w.store.Write(context.Background(), func(tx *durable.Tx) error {
		for i := range 250 {
			a := Action{Kind: "abort", Target: ID(i), Root: ID(i), Who: "w", Why: fmt.Sprint(i), At: auditClockStart.Add(time.Duration(i))}
			if err := e.appendAudit(tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, before := range []uint64{0, 251, 250, 180, 52, 51, 1} {
		hi := uint64(251) // the log holds 51..250
		if before != 0 && before < hi {
			hi = before
		}
		var want []uint64
		for s := hi; s > 51; s-- {
			want = append(want, s-1)
		}
		got := slices.Collect(e.Audit(before))
		if !slices.Equal(seqsOf(got), want) {
			t.Fatalf("Audit(%d): %v, want %v", before, seqsOf(got), want)
		}
		for _, a := range got {
			if a.Why != fmt.Sprint(a.Seq-1) || a.Target != ID(a.Seq-1) || !a.At.Equal(auditClockStart.Add(time.Duration(a.Seq-1))) {
				t.Fatalf("Audit(%d): entry %+v", before, a)
			}
		}
	}
	// Breaking out of the loop across a page (an iterator that yields
	// after the loop ended panics).
	n := 0
	for range e.Audit(0) {
		if n++; n == 70 {
			break
		}
	}
	if n != 70 {
		t.Fatalf("%d entries before break", n)
	}
	// A damaged entry is skipped and logged, naming its key.
	err = w.store.Write(context.Background(), func(tx *durable.Tx) error { return e.audit.Put(tx, 100, []byte{auditV1, 9}) })
	if err != nil {
		t.Fatal(err)
	}
	got := seqsOf(slices.Collect(e.Audit(102)))
	if want := []uint64{101, 99, 98}; len(got) < 3 || !slices.Equal(got[:3], want) {
		t.Fatalf("log around a damaged entry: %v, want %v first", got, want)
	}
	if l := logs.String(); !strings.Contains(l, "audit entry 100") || !strings.Contains(l, "procedure.audit") {
		t.Fatalf("damaged entry not logged: %s", l)
	}
}

func TestActionRoundTrip(t *testing.T) {
	for _, a := range sampleActions() {
		b, err := appendAction(nil, &a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeAction(a.Seq, b)
		if err != nil || !sameAction(got, a) {
			t.Fatalf("got %+v %v, want %+v", got, err, a)
		}
		for n := range len(b) {
			if _, err := decodeAction(a.Seq, b[:n]); !errors.Is(err, errRecord) || !strings.Contains(err.Error(), fmt.Sprintf("audit entry %d", a.Seq)) {
				t.Fatalf("prefix %d: %v", n, err)
			}
		}
		if _, err := decodeAction(a.Seq, append(b, 0)); !errors.Is(err, errRecord) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	b, _ := appendAction(nil, &Action{Kind: "abort"})
	for _, bad := range [][]byte{{2, b[1]}, {b[0], 3}} {
		if _, err := decodeAction(1, append(bad, b[2:]...)); !errors.Is(err, errRecord) {
			t.Fatalf("% x accepted: %v", bad, err)
		}
	}
	if _, err := appendAction(nil, &Action{Kind: "delete"}); err == nil {
		t.Fatal("an unknown kind encoded")
	}
}

func sampleActions() []Action {
	return []Action{
		{Seq: 1, Kind: "abort", Target: 7, Root: 7, Who: "ann", Why: "drain", At: auditClockStart},
		{Seq: 1 << 40, Kind: "bypass", Target: 1 << 50, Root: 3, Who: "", Why: strings.Repeat("x", 300), At: time.Unix(0, -5)},
	}
}

// FuzzDecodeAction: decoding an audit entry from disk never panics, and
// what decodes re-encodes to something that decodes to the same entry.
func FuzzDecodeAction(f *testing.F) {
	for _, a := range sampleActions() {
		b, _ := appendAction(nil, &a)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAction(1, b)
		if err != nil {
			return
		}
		b2, err := appendAction(nil, &a)
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		a2, err := decodeAction(1, b2)
		if err != nil || !sameAction(a, a2) {
			t.Fatalf("re-encoded entry decodes to %+v, %v; want %+v", a2, err, a)
		}
	})
}
