package procedure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/durable"
)

// SignalWrite commits its writes and its signals in one transaction: the
// woken procedure's step sees the writes; a failed fn writes and signals
// nothing.
func TestSignalWrite(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	ctx := context.Background()
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "op/1"}, {}}})
	fw.waitStatus(a, Suspended)

	refused := errors.New("refused")
	err := fw.e.SignalWrite(ctx, func(tx *durable.Tx, signal func(string)) error {
		if err := fw.kv.Put(tx, "outcome/1", "nope"); err != nil {
			return err
		}
		signal("op/1")
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("SignalWrite: %v, want its fn's error", err)
	}
	err = fw.e.SignalWrite(ctx, func(tx *durable.Tx, signal func(string)) error {
		signal("")
		return fw.kv.Put(tx, "outcome/1", "nope")
	})
	if err == nil {
		t.Fatal("SignalWrite accepted an empty event name")
	}
	if _, ok, _ := fw.kv.Get(fw.e.Store().Latest(), "outcome/1"); ok {
		t.Fatal("a failed SignalWrite wrote")
	}
	if ok, _ := fw.e.Signalled("op/1"); ok {
		t.Fatal("a failed SignalWrite signalled")
	}
	if in := fw.info(a); in.Status != Suspended {
		t.Fatalf("a failed SignalWrite woke the procedure: %v", in.Status)
	}

	var seen []string
	var mu sync.Mutex
	fw.sm.w.onExecute = func(_ context.Context, id ID, s int) {
		if id == a && s == 1 {
			v, _, _ := fw.kv.Get(fw.e.Store().Latest(), "outcome/1")
			mu.Lock()
			seen = append(seen, v)
			mu.Unlock()
		}
	}
	err = fw.e.SignalWrite(ctx, func(tx *durable.Tx, signal func(string)) error {
		signal("op/1")
		return fw.kv.Put(tx, "outcome/1", "42")
	})
	if err != nil {
		t.Fatal(err)
	}
	fw.wait(a)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, []string{"42"}) {
		t.Fatalf("the woken step read %q, want the outcome written with the signal", seen)
	}
}

// A step that resets the event that woke it consumes it: it is no longer
// signalled; another procedure the event woke, whose record still said
// suspended, is stored runnable by the same commit, so a crash does not
// put it back to waiting.
func TestEnvResetEvent(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	ctx := context.Background()
	fw.gates.set("flow:b:1")
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "once"}, {Reset: "once"}, {}}})
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{Wait: "once"}, {Gate: true}, {}}})
	fw.waitStatus(a, Suspended)
	fw.waitStatus(b, Suspended)
	if err := fw.e.Signal(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	reach(t, fw.gates, "flow:b:1") // b woken, its record still says suspended
	fw.wait(a)
	if ok, err := fw.e.Signalled("once"); ok || err != nil {
		t.Fatalf("after the step that resets it: signalled %v (%v)", ok, err)
	}
	crashed := fw.fs.CrashClone(1)
	fw.gates.open("flow:b:1")
	fw.close()
	fw.fs = crashed
	fw.open()
	if in := fw.info(b); in.Status == Suspended {
		t.Fatalf("b, woken before the reset, is suspended again after a crash: %+v", in)
	}
	fw.wait(b)

	// Reset then wait on the same event in one step: the wait suspends.
	if err := fw.e.Signal(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	c := fw.submit(fw.flow, flow{Name: "c", Steps: []flowStep{{Reset: "again", Wait: "again"}, {}}})
	fw.waitStatus(c, Suspended)
	if err := fw.e.Signal(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	fw.wait(c)
}

// AfterCommit runs once the step's commit is durable (its writes are in
// the latest durable version by then), once per committed step, and not
// for a step that fails.
func TestEnvAfterCommit(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	var mu sync.Mutex
	var calls []string
	fw.sm.afterCommit = func(id ID, s int) {
		key := fmt.Sprintf("fx/%d/%d/%d", id, id, s)
		_, durable, err := fw.kv.Get(fw.e.Store().Latest(), key)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || !durable {
			t.Errorf("AfterCommit of %d state %d before its write %s was durable (%v)", id, s, key, err)
		}
		calls = append(calls, fmt.Sprintf("%d/%d", id, s))
	}
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{}, {}}})
	fw.wait(a)
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{}, {Fail: true}}})
	fw.wait(b)
	mu.Lock()
	defer mu.Unlock()
	want := []string{fmt.Sprintf("%d/0", a), fmt.Sprintf("%d/1", a), fmt.Sprintf("%d/0", b)}
	if !slices.Equal(calls, want) {
		t.Fatalf("AfterCommit calls %v, want %v (the last state, which writes its key and finishes, is not a flow step; b's failed step has none)", calls, want)
	}
}
