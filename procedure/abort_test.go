package procedure

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/durable"
)

// external is a world outside the store that steps change (a remote
// server): what it holds survives the engine's crashes.
type external struct {
	mu     sync.Mutex
	set    map[string]bool
	causes []error        // context.Cause seen by the long step, in order
	undone map[string]int // Rollback calls per key
	reach  chan struct{}  // gets a value each time the long step waits
}

func newExternal() *external {
	return &external{set: map[string]bool{}, undone: map[string]int{}, reach: make(chan struct{}, 16)}
}

type longStep struct {
	Name string
	// ReturnErr: the step returns the context's cause as its error once
	// it noticed the abort; else it finishes its state normally.
	ReturnErr bool
}

// registerLong registers "long": state 0 makes its change in the external
// world, then waits for its context to end; state 1 is done. Rollback
// undoes the external change of state 0.
func registerLong(w *world, x *external) *Type[int, longStep] {
	return Register[int, longStep](w.e, "long", StateMachineFuncs[int, longStep]{
		Exec: func(ctx context.Context, env *Env, s int, d *longStep) (Next, error) {
			if s > 0 {
				return Done(), nil
			}
			x.mu.Lock()
			x.set[d.Name] = true
			x.mu.Unlock()
			x.reach <- struct{}{}
			<-ctx.Done()
			cause := context.Cause(ctx)
			x.mu.Lock()
			x.causes = append(x.causes, cause)
			x.mu.Unlock()
			if d.ReturnErr {
				return Next{}, cause
			}
			key := fmt.Sprintf("fx/%d/%d/0", env.Root(), env.ID())
			env.Write(func(tx *durable.Tx) error { return w.kv.Put(tx, key, "long") })
			return GoTo(1), nil
		},
		Undo: func(ctx context.Context, env *Env, s int, d *longStep) error {
			key := fmt.Sprintf("fx/%d/%d/0", env.Root(), env.ID())
			env.Write(func(tx *durable.Tx) error { return w.kv.Delete(tx, key) })
			x.mu.Lock()
			defer x.mu.Unlock()
			delete(x.set, d.Name)
			x.undone[fmt.Sprintf("%s/%d", d.Name, s)]++
			return nil
		},
	}, nil)
}

// TestAbortRunningStep: a step running when its tree is aborted sees its
// context cancelled with cause ErrAborted; what it did is rolled back
// after it returns, whether it returns an error or goes on, and also if
// the engine crashes at any file operation of the abort, or right after
// the abort returned, before the step's own commit.
func TestAbortRunningStep(t *testing.T) {
	for _, returnErr := range []bool{false, true} {
		t.Run(fmt.Sprintf("returnErr=%v", returnErr), func(t *testing.T) { abortRunningStep(t, returnErr) })
	}
}

func abortRunningStep(t *testing.T, returnErr bool) {
	ctx := context.Background()
	for k := 1; ; k++ {
		x := newExternal()
		var long *Type[int, longStep]
		w := &world{t: t, fs: newMemFS(), gates: &gates{}, running: map[ID]bool{}}
		w.extra = func(w *world) { long = registerLong(w, x) }
		w.open()
		id, err := long.Submit(ctx, longStep{Name: "l", ReturnErr: returnErr}, SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		<-x.reach
		last := k > 20
		if !last {
			w.fs.SetCrashAfter(k)
		}
		err = w.e.Abort(ctx, id, "test", "a test aborts it")
		w.fs.SetCrashAfter(0)
		what := fmt.Sprintf("crash at op %d of the abort", k)
		if !w.fs.Crashed() {
			if err != nil {
				t.Fatalf("abort: %v", err)
			}
			what, last = "a crash after the abort returned, before the step's commit", true
		}
		acked := err == nil
		// The power fails now: after the abort, before the step returns.
		crashed := w.fs.CrashClone(int64(k))
		w.close() // the step sees its context end, and its commit fails
		x.mu.Lock()
		if acked && (len(x.causes) != 1 || !errors.Is(x.causes[0], ErrAborted)) {
			t.Errorf("%s: the step's context ended with causes %v, want ErrAborted", what, x.causes)
		}
		x.mu.Unlock()
		w.fs = crashed
		w.open()
		in, err := w.e.Get(id)
		switch {
		case err != nil:
			t.Fatal(err)
		case acked && !in.Aborted:
			t.Fatalf("%s: acknowledged abort lost: %+v", what, in)
		case !in.Aborted:
			checkAbortAudited(t, what, w.e, id, false)
			<-x.reach // the step runs again
			if err := w.e.Abort(ctx, id, "test", "a test aborts it"); err != nil {
				t.Fatalf("%s: abort after the restart: %v", what, err)
			}
		}
		checkAbortAudited(t, what, w.e, id, true)
		r := w.wait(id)
		if r.Status != RolledBack || !errors.Is(r.Err(), ErrRolledBack) || r.Error.Source != "abort" {
			t.Fatalf("%s: %v %v", what, r.Status, r.Err())
		}
		x.mu.Lock()
		if x.set["l"] || x.undone["l/0"] == 0 {
			t.Errorf("%s: the running step's change not rolled back: set %v, rollbacks %v", what, x.set, x.undone)
		}
		x.mu.Unlock()
		if fx := w.fx(id); len(fx) != 0 {
			t.Errorf("%s: metadata left: %v", what, fx)
		}
		w.close()
		if t.Failed() || last {
			return
		}
	}
}

// checkAbortAudited checks that the audit log holds the abort of root id
// iff it took effect: it commits with the abort.
func checkAbortAudited(t *testing.T, what string, e *Engine, id ID, took bool) {
	t.Helper()
	log := auditLog(e)
	switch {
	case !took && len(log) != 0:
		t.Fatalf("%s: an abort that did not take effect is audited: %+v", what, log)
	case took && (len(log) != 1 || log[0].Kind != "abort" || log[0].Target != id || log[0].Root != id ||
		log[0].Who != "test" || log[0].Why != "a test aborts it"):
		t.Fatalf("%s: audit log %+v, want the abort of %d alone", what, log, id)
	}
}

// TestAbortRunningStepCommits: without a crash, the aborted step's
// outcome commits (its writes too, if it returned no error) and is
// rolled back with the tree; the error Wait returns is the abort's.
func TestAbortRunningStepCommits(t *testing.T) {
	x := newExternal()
	var long *Type[int, longStep]
	var mu sync.Mutex
	var log []string
	w := &world{t: t, fs: newMemFS(), gates: &gates{}, running: map[ID]bool{}, opts: Options{Hooks: Hooks{AfterCommit: func(info StepInfo) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, fmt.Sprintf("%d:%d rollback=%v", info.ID, info.State, info.Rollback))
	}}}}
	w.extra = func(w *world) { long = registerLong(w, x) }
	w.open()
	defer w.close()
	id, err := long.Submit(context.Background(), longStep{Name: "l"}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-x.reach
	if err := w.e.Abort(context.Background(), id, "test", "a test aborts it"); err != nil {
		t.Fatal(err)
	}
	r := w.wait(id)
	if r.Status != RolledBack || r.Error.Source != "abort" {
		t.Fatalf("%v %v", r.Status, r.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{fmt.Sprintf("%d:0 rollback=false", id), fmt.Sprintf("%d:0 rollback=true", id)}
	if fmt.Sprint(log) != fmt.Sprint(want) {
		t.Fatalf("commits %v, want %v", log, want)
	}
	if x.undone["l/0"] != 1 || x.set["l"] {
		t.Fatalf("rollbacks %v, set %v", x.undone, x.set)
	}
}
