package procedure

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// histState names its states, to see Info.History use the names.
type histState int

func (s histState) String() string { return fmt.Sprintf("h%d", int(s)) }

// histData: state 1 runs again (Again) Polls times.
type histData struct{ Polls int }

// stepper lets a test run a "hist" procedure's steps one at a time: each
// Execute sends its state on at and waits for next (or for its context).
type stepper struct {
	at   chan histState
	next chan struct{}
}

func newStepper() *stepper { return &stepper{at: make(chan histState), next: make(chan struct{})} }

// registerHist registers "hist": states 0..3, state 1 polled; Rollback
// waits at the gate "rollback:hist:<state>" if set.
func registerHist(w *world, st *stepper) *Type[histState, histData] {
	return Register[histState, histData](w.e, "hist", StateMachineFuncs[histState, histData]{
		Exec: func(ctx context.Context, env *Env, s histState, d *histData) (Next, error) {
			select {
			case st.at <- s:
			case <-ctx.Done():
				return Next{}, context.Cause(ctx)
			}
			select {
			case <-st.next:
			case <-ctx.Done():
				return Next{}, context.Cause(ctx)
			}
			switch {
			case s == 1 && d.Polls > 0:
				d.Polls--
				return Again(), nil
			case s == 3:
				return Done(), nil
			}
			return GoTo(s + 1), nil
		},
		Undo: func(ctx context.Context, env *Env, s histState, d *histData) error {
			return w.gates.wait(ctx, fmt.Sprintf("rollback:hist:%d", s))
		},
	}, nil)
}

// step lets the step at state want run, its commit at the clock's time
// one second later.
func (st *stepper) step(t *testing.T, clock *ManualClock, want histState) {
	t.Helper()
	st.reach(t, want)
	clock.Advance(time.Second)
	st.next <- struct{}{}
}

// reach waits for a step at state want to start.
func (st *stepper) reach(t *testing.T, want histState) {
	t.Helper()
	select {
	case s := <-st.at:
		if s != want {
			t.Fatalf("step at state %v, want %v", s, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no step at state %v", want)
	}
}

var histClockStart = time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)

func checkHistory(t *testing.T, what string, e *Engine, id ID, want ...HistoryStep) {
	t.Helper()
	in, err := e.Get(id)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	ok := len(in.History) == len(want)
	for i := 0; ok && i < len(want); i++ {
		g := in.History[i]
		ok = g.State == want[i].State && g.Name == want[i].Name && g.At.Equal(want[i].At) && g.RolledBack.Equal(want[i].RolledBack)
	}
	if !ok {
		t.Fatalf("%s: history %+v, want %+v", what, in.History, want)
	}
}

// undone returns h rolled back secs seconds after histClockStart.
func undone(h HistoryStep, secs int) HistoryStep {
	h.RolledBack = histClockStart.Add(time.Duration(secs) * time.Second)
	return h
}

func histStep(s histState, secs int) HistoryStep {
	h := HistoryStep{State: int64(s), Name: s.String()}
	if secs > 0 {
		h.At = histClockStart.Add(time.Duration(secs) * time.Second)
	}
	return h
}

// histWorld is a world with the "hist" type, on a manual clock.
type histWorld struct {
	*world
	clock *ManualClock
	st    *stepper
	hist  *Type[histState, histData] // registered again by each open
}

func newHistWorld(t *testing.T) *histWorld {
	h := &histWorld{clock: NewManualClock(histClockStart), st: newStepper()}
	h.world = &world{t: t, fs: newMemFS(), gates: &gates{}, running: map[ID]bool{}, opts: Options{Clock: h.clock}}
	h.extra = func(w *world) { h.hist = registerHist(w, h.st) }
	h.open()
	t.Cleanup(h.close)
	return h
}

// TestHistory: Info.History is the executed states, in order, each with
// its name and the time its step committed (a state run again: its last
// step's); a restart keeps it; a rolled-back state stays, with the time
// its rollback committed; a result keeps it.
func TestHistory(t *testing.T) {
	h := newHistWorld(t)
	w, clock, st := h.world, h.clock, h.st
	id, err := h.hist.Submit(context.Background(), histData{Polls: 2}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, "submitted", w.e, id)
	st.step(t, clock, 0) // commits at 1 s
	st.step(t, clock, 1) // polls at 2 s and 3 s, goes on at 4 s
	st.step(t, clock, 1)
	st.step(t, clock, 1)
	st.step(t, clock, 2) // 5 s
	st.reach(t, 3)
	want := []HistoryStep{histStep(0, 1), histStep(1, 4), histStep(2, 5)}
	checkHistory(t, "at state 3", w.e, id, want...)

	w.restart() // the step at state 3 is dropped, and runs again
	st.reach(t, 3)
	checkHistory(t, "after a restart", w.e, id, want...)

	// An abort rolls back state 3 (stacked by the abort at its time, 65
	// s), 2, and stops at the rollback of 1.
	w.gates.set("rollback:hist:1")
	clock.Advance(time.Minute)
	if err := w.e.Abort(context.Background(), id, "ann", "test"); err != nil {
		t.Fatal(err)
	}
	reach(t, w.gates, "rollback:hist:1")
	s3 := histStep(3, 65)
	checkHistory(t, "rolling back state 1", w.e, id, want[0], want[1], undone(want[2], 65), undone(s3, 65))
	clock.Advance(time.Second)
	w.gates.open("rollback:hist:1")
	if r := w.wait(id); !errors.Is(r.Err(), ErrAborted) {
		t.Fatalf("aborted: %v", r.Err())
	}
	rolledBack := []HistoryStep{undone(want[0], 66), undone(want[1], 66), undone(want[2], 65), undone(s3, 65)}
	checkHistory(t, "rolled back", w.e, id, rolledBack...)
	w.restart()
	checkHistory(t, "rolled back, after a restart", w.e, id, rolledBack...)

	// A succeeded procedure's result keeps its timeline, across a
	// restart; Ack rewrites the result and keeps it too.
	ok, err := h.hist.Submit(context.Background(), histData{}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now().Sub(histClockStart) / time.Second
	for s := histState(0); s <= 3; s++ {
		st.step(t, clock, s)
	}
	if r := w.wait(ok); r.Err() != nil {
		t.Fatal(r.Err())
	}
	at := func(s histState) HistoryStep { return histStep(s, int(start)+int(s)+1) }
	done := []HistoryStep{at(0), at(1), at(2), at(3)}
	checkHistory(t, "succeeded", w.e, ok, done...)
	w.restart()
	checkHistory(t, "succeeded, after a restart", w.e, ok, done...)
	if err := w.e.Ack(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	checkHistory(t, "acknowledged", w.e, ok, done...)
}

// TestHistoryOldRecord: a record stored before entries had times (the
// format without the entry-times section) loads with zero times; the
// states executed after it have theirs.
func TestHistoryOldRecord(t *testing.T) {
	h := newHistWorld(t)
	w, clock, st := h.world, h.clock, h.st
	id, err := h.hist.Submit(context.Background(), histData{}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.step(t, clock, 0)
	st.step(t, clock, 1)
	st.reach(t, 2)
	checkHistory(t, "at state 2", w.e, id, histStep(0, 1), histStep(1, 2))
	w.close()

	// Store the record as the program wrote it before entries had times.
	w.noStart = true
	w.open()
	err = w.store.Write(context.Background(), func(tx *durable.Tx) error {
		b, _, _ := w.e.procsC.Get(tx, uint64(id))
		r, err := decodeRecord(b)
		if err != nil {
			return err
		}
		for i := range r.entries {
			r.entries[i].at = 0
		}
		old := appendRecord(nil, r)
		if old[0] != recordV1 {
			return fmt.Errorf("record without times is version %d", old[0])
		}
		return w.e.procsC.Put(tx, uint64(id), old)
	})
	if err != nil {
		t.Fatal(err)
	}
	w.noStart = false
	w.store.Close()
	w.open()
	st.reach(t, 2)
	checkHistory(t, "old record", w.e, id, histStep(0, 0), histStep(1, 0))
	clock.Advance(time.Minute)
	st.next <- struct{}{}
	st.reach(t, 3)
	checkHistory(t, "a step after it", w.e, id, histStep(0, 0), histStep(1, 0), HistoryStep{State: 2, Name: "h2", At: histClockStart.Add(2*time.Second + time.Minute)})
	st.next <- struct{}{}
	if r := w.wait(id); r.Err() != nil {
		t.Fatal(r.Err())
	}
}
