package procedure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// The executed-state list and the data are persisted with every step, and
// a restart resumes where the last commit left off.
func TestStateListPersisted(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	w.gates.set("exec:a:2")
	id := w.submit(newScript("a", 4))
	reach(t, w.gates, "exec:a:2")
	in, err := w.e.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(in.Executed, []int64{0, 1}) || in.State != 2 || in.Status != Runnable || in.Steps != 2 || !in.Running {
		t.Fatalf("before restart: %+v", in)
	}
	w.restart()
	in, _ = w.e.Get(id)
	if !slices.Equal(in.Executed, []int64{0, 1}) || in.State != 2 || in.Steps != 2 {
		t.Fatalf("after restart: %+v", in)
	}
	reach(t, w.gates, "exec:a:2") // the same state runs again
	w.gates.open("exec:a:2")
	r := w.wait(id)
	if r.Status != Succeeded || r.Err() != nil {
		t.Fatalf("result %+v", r)
	}
	d, err := w.script.Result(w.e.Wait(context.Background(), id))
	if err != nil || d.Note != "a after 3" {
		t.Fatalf("result data %+v, %v", d, err)
	}
	if got := w.fx(id); len(got) != 4 {
		t.Fatalf("fx %v", got)
	}
	in, _ = w.e.Get(id)
	if in.Status != Succeeded || in.Completed.IsZero() || in.Submitter != "test" {
		t.Fatalf("finished info %+v", in)
	}
}

// forwardEntries returns, from committed forward steps in commit order,
// the rollback stack they made: a state run again without children in
// between is one entry.
func forwardEntries(evs []event) []event {
	var out []event
	last := map[ID]int{} // index in out of each procedure's last entry
	for _, ev := range evs {
		if ev.rollback {
			continue
		}
		if i, ok := last[ev.id]; ok && out[i].state == ev.state {
			continue
		}
		last[ev.id] = len(out)
		out = append(out, event{ev.id, ev.state, true})
	}
	return out
}

// withFailure inserts the commit of a failed step (which wrote nothing)
// after the last forward commit.
func withFailure(evs []event, id ID, state int64) []event {
	i := slices.IndexFunc(evs, func(ev event) bool { return ev.rollback })
	if i < 0 {
		i = len(evs)
	}
	return slices.Insert(slices.Clone(evs), i, event{id, state, false})
}

func rollbacks(evs []event) []event {
	var out []event
	for _, ev := range evs {
		if ev.rollback {
			out = append(out, ev)
		}
	}
	return out
}

func reversed(evs []event) []event {
	out := slices.Clone(evs)
	slices.Reverse(out)
	return out
}

// A failure rolls back every executed state of the tree, children's
// included, in exactly the reverse order of execution, the failed state
// included; the environment is as it was; Wait reports the error.
func TestRollbackOrder(t *testing.T) {
	w := newWorld(t, Options{Workers: 4})
	defer w.close()
	root := newScript("root", 5)
	root.SpawnAt = 1
	root.FailAt = 3
	root.PollAt = 2
	root.Polls = 2
	for i := range 3 {
		c := newScript(fmt.Sprintf("c%d", i), 3)
		if i == 1 {
			c.SpawnAt = 0
			c.Children = []script{newScript("gc", 2)}
		}
		root.Children = append(root.Children, c)
	}
	id := w.submit(root)
	r := w.wait(id)
	err := r.Err()
	if r.Status != RolledBack || !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "scripted failure in root at 3") {
		t.Fatalf("result %+v, err %v", r, err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Source != fmt.Sprintf("script#%d", id) {
		t.Fatalf("error %#v", err)
	}
	// The failed state is rolled back too; its commit was the last
	// forward one (and wrote nothing).
	evs := withFailure(w.commitLog(), id, 3)
	want := reversed(forwardEntries(evs))
	if got := rollbacks(evs); !slices.Equal(got, want) {
		t.Fatalf("rollback order\n got %v\nwant %v\n(all %v)", got, want, evs)
	}
	if fx := w.fx(id); len(fx) != 0 {
		t.Fatalf("environment not restored: %v", fx)
	}
	if _, err := w.script.Result(w.e.Wait(context.Background(), id)); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("typed wait: %v", err)
	}
	st := w.e.Stats().Types["script"]
	if st.RolledBack != 1 || st.Failed != 1 || st.RollbackSteps != int64(len(want)) {
		t.Fatalf("stats %+v", st)
	}
}

// Yield puts the procedure at the back of the queue and persists nothing.
func TestYield(t *testing.T) {
	var yields atomic.Int32
	var order []string
	var mu = make(chan struct{}, 1)
	w := &world{t: t, opts: Options{Workers: 1}, gates: &gates{}, running: map[ID]bool{}}
	w.fs = newMemFS()
	var yt *Type[int, script]
	w.extra = func(w *world) {
		yt = Register[int, script](w.e, "yielder", StateMachineFuncs[int, script]{
			Exec: func(ctx context.Context, env *Env, s int, d *script) (Next, error) {
				mu <- struct{}{}
				order = append(order, fmt.Sprintf("%s:%d", d.Name, s))
				<-mu
				if d.Name == "y" && s == 0 && yields.Add(1) == 1 {
					d.Note = "changed by a yielded step"
					return Yield(), nil
				}
				if d.Note == "changed by a yielded step" {
					return Next{}, errors.New("yielded data was kept")
				}
				if s+1 >= d.States {
					return Done(), nil
				}
				return GoTo(s + 1), nil
			},
		}, nil)
	}
	w.open()
	defer w.close()
	w.gates.set("exec:block:0")
	blocker := w.submit(newScript("block", 1))
	reach(t, w.gates, "exec:block:0")
	y, _ := yt.Submit(context.Background(), newScript("y", 2), SubmitOptions{})
	z, _ := yt.Submit(context.Background(), newScript("z", 1), SubmitOptions{})
	w.gates.open("exec:block:0")
	for _, id := range []ID{blocker, y, z} {
		if r := w.wait(id); r.Err() != nil {
			t.Fatalf("%d: %v", id, r.Err())
		}
	}
	want := []string{"y:0", "z:0", "y:0", "y:1"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	in, _ := w.e.Get(y)
	if in.Steps != 2 {
		t.Fatalf("steps %d: a yield must not commit", in.Steps)
	}
}

// A parent waits for all its children, also across a restart that finds
// some finished and some not.
func TestChildrenCounting(t *testing.T) {
	w := newWorld(t, Options{Workers: 8})
	defer w.close()
	root := newScript("root", 3)
	root.SpawnAt = 0
	for i := range 5 {
		root.Children = append(root.Children, newScript(fmt.Sprintf("c%d", i), 2))
	}
	w.gates.set("exec:c3:1")
	w.gates.set("exec:c4:1")
	id := w.submit(root)
	reach(t, w.gates, "exec:c3:1")
	reach(t, w.gates, "exec:c4:1")
	waitFor(t, "three children done", func() bool {
		in, _ := w.e.Get(id)
		done := 0
		for _, c := range in.Children {
			if ci, _ := w.e.Get(c); ci.Status == Succeeded {
				done++
			}
		}
		return done == 3
	})
	in, _ := w.e.Get(id)
	if in.Status != Waiting || len(in.Children) != 5 || in.State != 1 {
		t.Fatalf("root while children run: %+v", in)
	}
	w.restart()
	in, _ = w.e.Get(id)
	if in.Status != Waiting || len(in.Children) != 5 {
		t.Fatalf("root after restart: %+v", in)
	}
	reach(t, w.gates, "exec:c3:1")
	w.gates.open("exec:c3:1")
	waitFor(t, "four children done", func() bool {
		in, _ := w.e.Get(id)
		done := 0
		for _, c := range in.Children {
			if ci, _ := w.e.Get(c); ci.Status == Succeeded {
				done++
			}
		}
		return done == 4
	})
	if in, _ := w.e.Get(id); in.Status != Waiting {
		t.Fatalf("root resumed with a child running: %+v", in)
	}
	w.gates.open("exec:c4:1")
	if r := w.wait(id); r.Err() != nil {
		t.Fatal(r.Err())
	}
	evs := w.eventsSince(0)
	rootResumed := slices.Index(evs, event{id, 1, false})
	for _, ev := range evs[rootResumed:] {
		if ev.id != id {
			t.Fatalf("child step %v committed after the root resumed: %v", ev, evs)
		}
	}
	if got := len(w.fx(id)); got != 3+5*2 {
		t.Fatalf("%d fx keys", got)
	}
	if _, err := w.e.Get(id + 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("child record kept after the root finished: %v", err)
	}
}

// The rollback stack is rebuilt from the procedures' records after a
// restart, also in the middle of a rollback, and the order stays exact.
func TestRollbackStackRebuiltAfterLoad(t *testing.T) {
	w := newWorld(t, Options{Workers: 4})
	defer w.close()
	root := newScript("root", 4)
	root.SpawnAt = 1
	for i := range 3 {
		c := newScript(fmt.Sprintf("c%d", i), 3)
		if i == 2 {
			c.FailAt = 2
		}
		root.Children = append(root.Children, c)
	}
	w.gates.set("rollback:c0:1")
	w.gates.set("exec:c2:2")
	id := w.submit(root)
	// Fail c2 once its siblings are done, so that its failure is the last
	// forward commit.
	reach(t, w.gates, "exec:c2:2")
	waitFor(t, "siblings done", func() bool {
		a, _ := w.e.Get(id + 1)
		b, _ := w.e.Get(id + 2)
		return a.Status == Succeeded && b.Status == Succeeded
	})
	w.gates.open("exec:c2:2")
	reach(t, w.gates, "rollback:c0:1")
	in, _ := w.e.Get(id)
	if !in.RollingBack {
		t.Fatalf("root %+v", in)
	}
	w.restart() // in the middle of the rollback
	in, _ = w.e.Get(id)
	if !in.RollingBack || in.Quarantined != "" {
		t.Fatalf("after restart: %+v", in)
	}
	reach(t, w.gates, "rollback:c0:1")
	w.gates.open("rollback:c0:1")
	r := w.wait(id)
	if r.Status != RolledBack || !strings.Contains(r.Error.Message, "in c2 at 2") {
		t.Fatalf("result %+v", r)
	}
	evs := withFailure(w.commitLog(), id+3, 2)
	if got, want := rollbacks(evs), reversed(forwardEntries(evs)); !slices.Equal(got, want) {
		t.Fatalf("rollback order\n got %v\nwant %v", got, want)
	}
	if fx := w.fx(id); len(fx) != 0 {
		t.Fatalf("fx left: %v", fx)
	}
}

// A tree whose rollback stack has a gap, a duplicate or an index past its
// end is quarantined and reported on load; other trees load and run.
func TestCorruptStackQuarantined(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(r *record)
		want   string
	}{
		{"gap", func(r *record) { r.entries = r.entries[1:] }, "gap"},
		{"duplicate", func(r *record) { r.entries[len(r.entries)-1].idx = r.entries[0].idx }, "held by procedures"},
		{"beyond", func(r *record) { r.entries[len(r.entries)-1].idx += 100 }, "of a stack of"},
		{"order", func(r *record) {
			n := len(r.entries)
			r.entries[n-1].idx, r.entries[n-2].idx = r.entries[n-2].idx, r.entries[n-1].idx
		}, "out of order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, Options{Workers: 2})
			defer w.close()
			root := newScript("bad", 3)
			root.SpawnAt = 0
			root.Children = []script{newScript("kid", 3)}
			w.gates.set("exec:bad:1")
			bad := w.submit(root)
			reach(t, w.gates, "exec:bad:1")
			w.gates.set("exec:good:1")
			good := w.submit(newScript("good", 3))
			reach(t, w.gates, "exec:good:1")
			w.close()
			// Damage the child's record by hand.
			w.noStart = true
			w.open()
			kid := bad + 1
			err := w.store.Write(context.Background(), func(tx *durable.Tx) error {
				b, _, _ := w.e.procsC.Get(tx, uint64(kid))
				r, err := decodeRecord(b)
				if err != nil {
					return err
				}
				tc.damage(r)
				return w.e.procsC.Put(tx, uint64(kid), appendRecord(nil, r))
			})
			if err != nil {
				t.Fatal(err)
			}
			w.noStart = false
			w.store.Close()
			w.open()
			w.gates.open("exec:good:1")
			w.gates.open("exec:bad:1")
			if r := w.wait(good); r.Err() != nil {
				t.Fatal(r.Err())
			}
			in, _ := w.e.Get(bad)
			if !strings.Contains(in.Quarantined, tc.want) {
				t.Fatalf("bad tree: %+v", in)
			}
			if err := w.e.Abort(context.Background(), bad, "test", "a test aborts it"); !errors.Is(err, ErrQuarantined) {
				t.Fatalf("abort of a quarantined tree: %v", err)
			}
			if s := w.e.Stats(); s.Quarantined != 1 {
				t.Fatalf("stats %+v", s)
			}
			// An administrator can bypass its root to clear it.
			if err := w.e.Bypass(context.Background(), bad, "ops", "corrupt stack"); err != nil {
				t.Fatal(err)
			}
			if r := w.wait(bad); !errors.Is(r.Err(), ErrBypassed) {
				t.Fatalf("bypassed: %+v", r)
			}
		})
	}
}

// Abort is accepted before the point of no return and rolls the tree
// back; past it, it is refused.
func TestAbort(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	w.gates.set("exec:early:2")
	early, err := w.ponr.Submit(context.Background(), newScript("early", 5), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reach(t, w.gates, "exec:early:2")
	if in, err := w.e.Get(early); err != nil || in.NoReturn != "" {
		t.Fatalf("Info.NoReturn before the point of no return: %q, %v", in.NoReturn, err)
	}
	if err := w.e.Abort(context.Background(), early, "test", "a test aborts it"); err != nil {
		t.Fatalf("abort before the point of no return: %v", err)
	}
	if err := w.e.Abort(context.Background(), early, "test", "a test aborts it"); err != nil {
		t.Fatalf("second abort: %v", err)
	}
	w.gates.open("exec:early:2")
	r := w.wait(early)
	if r.Status != RolledBack || r.Error.Source != "abort" {
		t.Fatalf("aborted: %+v", r)
	}
	if fx := w.fx(early); len(fx) != 0 {
		t.Fatalf("fx %v", fx)
	}
	if err := w.e.Abort(context.Background(), early, "test", "a test aborts it"); !errors.Is(err, ErrFinished) {
		t.Fatalf("abort of a finished one: %v", err)
	}
	if err := w.e.Abort(context.Background(), 12345, "test", "a test aborts it"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("abort of an unknown one: %v", err)
	}

	// ponr: states >= 3 are past the point of no return. At state 3
	// (next to run), abort is refused.
	w.gates.set("exec:late:3")
	late, _ := w.ponr.Submit(context.Background(), newScript("late", 5), SubmitOptions{})
	reach(t, w.gates, "exec:late:3")
	if err := w.e.Abort(context.Background(), late, "test", "a test aborts it"); !errors.Is(err, ErrAbortRefused) || !strings.Contains(err.Error(), "(ponr) is at state 3") {
		t.Fatalf("abort past the point of no return: %v", err)
	}
	if in, err := w.e.Get(late); err != nil || !strings.Contains(in.NoReturn, "(ponr) is at state 3") {
		t.Fatalf("Info.NoReturn past the point of no return: %q, %v", in.NoReturn, err)
	}
	w.restart() // the refusal is derived from the records
	if in, err := w.e.Get(late); err != nil || !strings.Contains(in.NoReturn, "(ponr) is at state 3") {
		t.Fatalf("Info.NoReturn after restart: %q, %v", in.NoReturn, err)
	}
	if err := w.e.Abort(context.Background(), late, "test", "a test aborts it"); !errors.Is(err, ErrAbortRefused) {
		t.Fatalf("abort past the point of no return after restart: %v", err)
	}
	w.gates.open("exec:late:3")
	if r := w.wait(late); r.Err() != nil {
		t.Fatal(r.Err())
	}
}

// A step failing past the point of no return is retried, not rolled
// back; the retries are visible.
func TestFailurePastPointOfNoReturnRetries(t *testing.T) {
	var fail atomic.Int32
	fail.Store(3)
	w := newWorld(t, Options{Retry: RetryPolicy{Initial: time.Millisecond}, Hooks: Hooks{FailStep: func(info StepInfo) error {
		if info.Type == "ponr" && info.State == 4 && fail.Add(-1) >= 0 {
			return errors.New("transient")
		}
		return nil
	}}})
	defer w.close()
	id, _ := w.ponr.Submit(context.Background(), newScript("p", 6), SubmitOptions{})
	r := w.wait(id)
	if r.Err() != nil {
		t.Fatalf("%+v", r)
	}
	if len(w.fx(id)) != 6 {
		t.Fatal("fx")
	}
}

// Bypass finishes a stuck child without running it; its parent, bypassed
// as its ancestor, runs no further state and finishes once its other
// child did; who and why are kept.
func TestBypass(t *testing.T) {
	w := newWorld(t, Options{Workers: 2})
	defer w.close()
	root := newScript("root", 3)
	root.SpawnAt = 0
	root.Children = []script{newScript("stuck", 3), newScript("fine", 2)}
	w.gates.set("exec:stuck:1")
	id := w.submit(root)
	reach(t, w.gates, "exec:stuck:1")
	stuck, fine := id+1, id+2
	if err := w.e.Bypass(context.Background(), stuck, "ann", "server gone"); err != nil {
		t.Fatal(err)
	}
	r := w.wait(id)
	if b := r.Bypass; !errors.Is(r.Err(), ErrBypassed) || r.Status != Succeeded || b == nil || b.Target != stuck ||
		b.Role != BypassAncestor || b.Who != "ann" || b.Why != "server gone" {
		t.Fatalf("root of a bypassed child: %v %v %+v", r.Status, r.Err(), r.Bypass)
	}
	// The root ran no state after its children; the sibling finished its work.
	want := []string{fmt.Sprintf("fx/%d/%d/0", id, fine), fmt.Sprintf("fx/%d/%d/1", id, fine),
		fmt.Sprintf("fx/%d/%d/0", id, id), fmt.Sprintf("fx/%d/%d/0", id, stuck)}
	slices.Sort(want)
	if got := w.fx(id); !slices.Equal(got, want) {
		t.Fatalf("metadata %v, want %v", got, want)
	}
	w.gates.open("exec:stuck:1")
	if err := w.e.Bypass(context.Background(), id, "ann", "again"); !errors.Is(err, ErrFinished) {
		t.Fatalf("bypass of a finished one: %v", err)
	}
	// A bypassed root.
	w.gates.set("exec:solo:1")
	solo := w.submit(newScript("solo", 3))
	reach(t, w.gates, "exec:solo:1")
	if err := w.e.Bypass(context.Background(), solo, "bob", "unblock"); err != nil {
		t.Fatal(err)
	}
	if st := w.e.Stats().Types["script"]; st.Bypassed != 2 {
		t.Fatalf("stats %+v", st)
	}
	w.restart()
	in, err := w.e.Get(solo)
	if err != nil || in.Bypass == nil || in.Bypass.Who != "bob" || in.Bypass.Why != "unblock" || in.Status != Succeeded {
		t.Fatalf("bypassed root after restart: %+v %v", in, err)
	}
	if _, err := w.script.Result(w.e.Wait(context.Background(), solo)); !errors.Is(err, ErrBypassed) {
		t.Fatalf("wait on bypassed: %v", err)
	}
}

// A rollback step that keeps failing is retried, visibly, until it works
// or is bypassed.
func TestRollbackRetryAndBypass(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	w := &world{t: t, opts: Options{Retry: RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond}}, gates: &gates{}, running: map[ID]bool{}}
	w.fs = newMemFS()
	var bad *Type[int, script]
	w.extra = func(w *world) {
		bad = Register[int, script](w.e, "bad-rollback", StateMachineFuncs[int, script]{
			Exec: failAtState1,
			Undo: func(ctx context.Context, env *Env, s int, d *script) error {
				if failing.Load() && s == 0 {
					return errors.New("cannot undo")
				}
				return nil
			},
		}, nil)
	}
	w.open()
	defer w.close()
	id, _ := bad.Submit(context.Background(), newScript("x", 3), SubmitOptions{})
	waitFor(t, "rollback retries", func() bool {
		in, _ := w.e.Get(id)
		return in.Retries >= 3 && strings.Contains(in.LastError, "cannot undo")
	})
	if err := w.e.Bypass(context.Background(), id, "ops", "rollback stuck"); err != nil {
		t.Fatal(err)
	}
	r := w.wait(id)
	if r.Status != RolledBack || r.Bypass == nil {
		t.Fatalf("%+v", r)
	}
}

// A submission with a nonce is idempotent, concurrently and across a
// restart.
func TestNonce(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	ids := make([]ID, 8)
	errs := make(chan error, len(ids))
	for i := range ids {
		go func() {
			id, err := w.script.Submit(context.Background(), newScript("n", 2), SubmitOptions{Nonce: "client-1/req-7"})
			ids[i] = id
			errs <- err
		}()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids %v", ids)
		}
	}
	w.wait(ids[0])
	w.restart()
	id, err := w.script.Submit(context.Background(), newScript("n", 2), SubmitOptions{Nonce: "client-1/req-7"})
	if err != nil || id != ids[0] {
		t.Fatalf("after restart: %d %v, want %d", id, err, ids[0])
	}
	if st := w.e.Stats().Types["script"]; st.Submitted != 0 {
		t.Fatalf("a duplicate submit counted: %+v", st)
	}
	other, _ := w.script.Submit(context.Background(), newScript("n", 2), SubmitOptions{Nonce: "client-1/req-8"})
	if other == id {
		t.Fatal("another nonce got the same id")
	}
}

// Results are kept until acknowledged plus AckedResultTTL, or finished
// plus ResultTTL, then swept with their nonces.
func TestResultsTTL(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	advance := clock.Advance
	w := newWorld(t, Options{Clock: clock, SweepInterval: -1, SweepBatch: 2})
	defer w.close()
	var acked, unacked []ID
	for i := range 3 {
		a, _ := w.script.Submit(context.Background(), newScript("a", 1), SubmitOptions{Nonce: fmt.Sprint("a", i)})
		u, _ := w.script.Submit(context.Background(), newScript("u", 1), SubmitOptions{Nonce: fmt.Sprint("u", i)})
		acked, unacked = append(acked, a), append(unacked, u)
		w.wait(a)
		w.wait(u)
	}
	if err := w.e.Ack(context.Background(), 999); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	advance(time.Minute)
	for _, id := range acked {
		if err := w.e.Ack(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	w.restart() // acks are durable
	advance(4*time.Minute + 59*time.Second)
	if n, err := w.e.Sweep(context.Background()); n != 0 || err != nil {
		t.Fatalf("swept %d %v too early", n, err)
	}
	advance(time.Second) // ack + 5 min
	if n, err := w.e.Sweep(context.Background()); n != 3 || err != nil {
		t.Fatalf("swept %d, %v; want the 3 acknowledged", n, err)
	}
	for _, id := range acked {
		if _, err := w.e.Get(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("acked %d kept: %v", id, err)
		}
	}
	for _, id := range unacked {
		if _, err := w.e.Get(id); err != nil {
			t.Fatalf("unacked %d gone: %v", id, err)
		}
	}
	// The nonce went with the result: the same nonce starts a new one.
	if id, _ := w.script.Submit(context.Background(), newScript("a", 1), SubmitOptions{Nonce: "a0"}); id == acked[0] {
		t.Fatal("nonce kept after its result was deleted")
	}
	advance(8*time.Minute + 59*time.Second) // 14:59 after finishing
	if n, _ := w.e.Sweep(context.Background()); n != 0 {
		t.Fatalf("swept %d before the TTL", n)
	}
	advance(time.Second)
	if n, _ := w.e.Sweep(context.Background()); n != 3 {
		t.Fatalf("swept %d, want the 3 unacknowledged", n)
	}
	if id, _ := w.script.Submit(context.Background(), newScript("u", 1), SubmitOptions{Nonce: "u1"}); id == unacked[1] {
		t.Fatal("nonce kept")
	}
}

// A step blocked far too long does not starve the queue: a temporary
// worker runs the rest, and goes away when idle.
func TestStuckWorkers(t *testing.T) {
	w := newWorld(t, Options{Workers: 1, StuckAfter: 20 * time.Millisecond, MaxExtraWorkers: 2})
	defer w.close()
	w.gates.set("exec:slow:0")
	slow := w.submit(newScript("slow", 1))
	reach(t, w.gates, "exec:slow:0")
	var others []ID
	for range 5 {
		others = append(others, w.submit(newScript("quick", 2)))
	}
	for _, id := range others {
		if r := w.wait(id); r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	s := w.e.Stats()
	if s.ExtraStarted < 1 || s.Stuck < 1 {
		t.Fatalf("stats %+v", s)
	}
	w.gates.open("exec:slow:0")
	w.wait(slow)
	waitFor(t, "temporary workers to exit", func() bool { return w.e.Stats().ExtraWorkers == 0 })
}

// A recorded write that fails, and a panicking step, fail the step and
// roll the tree back.
func TestStepFailures(t *testing.T) {
	w := &world{t: t, opts: Options{}, gates: &gates{}, running: map[ID]bool{}}
	w.fs = newMemFS()
	var ft *Type[int, script]
	w.extra = func(w *world) {
		ft = Register[int, script](w.e, "faulty", StateMachineFuncs[int, script]{
			Exec: func(ctx context.Context, env *Env, s int, d *script) (Next, error) {
				key := fxKey(env, s)
				env.Write(func(tx *durable.Tx) error { return w.kv.Put(tx, key, "x") })
				switch {
				case d.Name == "write" && s == 1:
					env.Write(func(tx *durable.Tx) error { return errors.New("constraint violated") })
				case d.Name == "panic" && s == 1:
					panic("oops")
				case d.Name == "wpanic" && s == 1:
					env.Write(func(tx *durable.Tx) error { panic("write oops") })
				}
				if s == 2 {
					return Done(), nil
				}
				return GoTo(s + 1), nil
			},
			Undo: func(ctx context.Context, env *Env, s int, d *script) error {
				key := fxKey(env, s)
				env.Write(func(tx *durable.Tx) error { return w.kv.Delete(tx, key) })
				return nil
			},
		}, nil)
	}
	w.open()
	defer w.close()
	for name, want := range map[string]string{"write": "constraint violated", "panic": "panic in faulty state 1: oops", "wpanic": "write oops"} {
		id, _ := ft.Submit(context.Background(), newScript(name, 3), SubmitOptions{})
		r := w.wait(id)
		if r.Status != RolledBack || !strings.Contains(r.Error.Message, want) {
			t.Fatalf("%s: %+v", name, r.Error)
		}
		if fx := w.fx(id); len(fx) != 0 {
			t.Fatalf("%s: fx %v", name, fx)
		}
	}
}

// The sequential helper: one run, children, rollback.
func TestSequential(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	id, err := w.seq.Submit(context.Background(), seqData{Key: "k", Val: "v", Kids: 3}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.seq.Result(w.e.Wait(context.Background(), id))
	if err != nil || d.Key != "k" {
		t.Fatal(d, err)
	}
	n := 0
	for k := range w.kv.From(w.store.Latest(), "k") {
		if !strings.HasPrefix(k, "k") {
			break
		}
		n++
	}
	if n != 4 {
		t.Fatalf("%d keys", n)
	}
	if _, err := w.script.Result(w.e.Wait(context.Background(), id)); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("Wait with the wrong type: %v", err)
	}
}

// Stats count per type.
func TestStats(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	id := w.submit(newScript("s", 3))
	w.wait(id)
	f := newScript("f", 3)
	f.FailAt = 2
	w.wait(w.submit(f))
	st := w.e.Stats().Types["script"]
	if st.Submitted != 2 || st.Succeeded != 1 || st.Failed != 1 || st.RolledBack != 1 || st.Steps != 6 || st.RollbackSteps != 3 {
		t.Fatalf("%+v", st)
	}
	if st.StepLatency.Count != 9 || st.StepLatency.Quantile(0.5) <= 0 {
		t.Fatalf("latency %+v", st.StepLatency)
	}
}

// Stats count the live procedures by status and give the oldest one's
// creation time; both are empty once nothing is live.
func TestStatsActive(t *testing.T) {
	w := newWorld(t, Options{Workers: 2})
	defer w.close()
	w.gates.set("exec:a:1")
	w.gates.set("exec:b:1")
	a := w.submit(newScript("a", 2))
	reach(t, w.gates, "exec:a:1")
	b := w.submit(newScript("b", 2))
	reach(t, w.gates, "exec:b:1")
	ia, err := w.e.Get(a)
	if err != nil {
		t.Fatal(err)
	}
	st := w.e.Stats()
	if st.ByStatus[Runnable] != 2 || len(st.ByStatus) != 1 || !st.Oldest.Equal(ia.Created) {
		t.Fatalf("by status %v, oldest %v, want 2 runnable and %v", st.ByStatus, st.Oldest, ia.Created)
	}
	w.gates.open("exec:a:1")
	w.gates.open("exec:b:1")
	w.wait(a)
	w.wait(b)
	if st := w.e.Stats(); len(st.ByStatus) != 0 || !st.Oldest.IsZero() {
		t.Fatalf("after both finished: by status %v, oldest %v", st.ByStatus, st.Oldest)
	}
}

// A procedure that spawns children and continues at a state past the
// point of no return reaches that point only once its children succeeded:
// until then a failing child rolls the tree back and Abort is accepted.
func TestSpawnBeforePointOfNoReturn(t *testing.T) {
	w := newWorld(t, Options{Workers: 2})
	defer w.close()
	for _, abort := range []bool{false, true} {
		name := fmt.Sprint("p", abort)
		root := newScript(name, 5)
		root.SpawnAt = 2 // continues at 3, past the point of no return for the ponr type
		kid := newScript(name+"kid", 2)
		if !abort {
			kid.FailAt = 1
		}
		root.Children = []script{kid}
		w.gates.set("exec:" + name + "kid:1")
		id, err := w.ponr.Submit(context.Background(), root, SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		reach(t, w.gates, "exec:"+name+"kid:1")
		if abort {
			if err := w.e.Abort(context.Background(), id, "test", "a test aborts it"); err != nil {
				t.Fatalf("abort while the children run: %v", err)
			}
		}
		w.gates.open("exec:" + name + "kid:1")
		if r := w.wait(id); r.Status != RolledBack {
			t.Fatalf("abort=%v: %+v", abort, r)
		}
		if fx := w.fx(id); len(fx) != 0 {
			t.Fatalf("fx %v", fx)
		}
	}
}

// Finished: false for a live procedure, true once its root finished
// (its result kept) and for an id the store does not hold.
func TestFinished(t *testing.T) {
	w := newWorld(t, Options{})
	defer w.close()
	w.gates.set("exec:live:0")
	live := w.submit(newScript("live", 2))
	reach(t, w.gates, "exec:live:0")
	if w.e.Finished(live) {
		t.Fatal("a running procedure reported finished")
	}
	w.gates.open("exec:live:0")
	w.wait(live)
	if !w.e.Finished(live) {
		t.Fatal("a succeeded procedure reported not finished")
	}
	f := newScript("f", 3)
	f.FailAt = 1
	failed := w.submit(f)
	w.wait(failed)
	if !w.e.Finished(failed) || !w.e.Finished(1<<40) {
		t.Fatal("a rolled-back procedure or an unknown id reported not finished")
	}
}
