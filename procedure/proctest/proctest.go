// Package proctest tests users' procedure types against crashes and
// failures, on the crash-simulating file system (vfs.NewMem), the way
// HBase's ProcedureTestingUtility does:
//
//   - RecoveryAndDoubleExecution runs a procedure and crashes the process
//     before and after the commit of every one of its steps (forward and
//     rollback), restarting each time from what a power cut leaves on
//     disk; the procedure must still finish with the result and leave the
//     environment it does without crashes. Every step crashed before its
//     commit runs twice.
//   - RollbackAndDoubleExecution makes the k-th step fail, for every k,
//     and checks that the rollback leaves the environment as it was
//     before the procedure ran; then it does it again crashing before and
//     after the commit of every rollback step.
//
// A Harness says how to build the world (collections and procedure types
// on a fresh store and engine, after every restart too), how to submit the
// procedure under test, and how to summarize the environment for
// comparison:
//
//	proctest.RecoveryAndDoubleExecution(t, proctest.Harness[*tables.Catalog]{
//		Setup: func(s *durable.Store, e *procedure.Engine) *tables.Catalog {
//			return tables.Register(s, e, tables.Options{})
//		},
//		Submit: func(ctx context.Context, c *tables.Catalog) (procedure.ID, error) {
//			return c.Create.Submit(ctx, tables.CreateTable{Name: "t", Regions: 3}, procedure.SubmitOptions{})
//		},
//		State: func(c *tables.Catalog) any { return c.Snapshot() },
//	})
//
// The environment is compared with reflect.DeepEqual, so it should not
// hold procedure ids or times: ids of children differ from run to run.
// Procedures that wait for events someone else signals name them in
// Harness.Events: the kit signals them in every process of a scenario.
package proctest

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// Harness describes the procedure under test and its world.
type Harness[W any] struct {
	// Setup registers the test's collections and procedure types on a new
	// store and engine (the store is not open yet) and returns what
	// Submit and State use. It runs again after every restart.
	Setup func(s *durable.Store, e *procedure.Engine) W
	// Submit submits the procedure under test; it runs once per scenario,
	// on its first engine.
	Submit func(ctx context.Context, w W) (procedure.ID, error)
	// State summarizes the environment the procedure changes (its
	// metadata), for comparison with reflect.DeepEqual.
	State func(w W) any
	// Reset, if set, is called before each scenario (the kit runs many,
	// each on a fresh file system) to reset what the test keeps outside
	// the store, such as fake external services.
	Reset func()
	// Check, if set, is called with the result of the run without crashes
	// (the reference).
	Check func(t testing.TB, w W, r procedure.Result)
	// IgnoreData: do not require the result's data to be byte-identical
	// after crashes (for data that holds times or attempt counts).
	IgnoreData bool
	// Events are signalled (Engine.Signal) by the kit in every process of
	// a scenario once a procedure is suspended (or after a few
	// milliseconds), for procedures that wait for events someone else
	// signals (a remote report, an operator).
	Events []string
	// Options are the engine's (the kit adds hooks, after yours). Default
	// Workers 4 and a quiet logger.
	Options procedure.Options
	// StoreOptions are the store's (the kit sets Dir, FS and Logger).
	StoreOptions durable.Options
	// Timeout bounds each run from a start or restart to the end. Default
	// 30 s.
	Timeout time.Duration
	// MaxSteps bounds the steps of one run of the procedure. Default 10000.
	MaxSteps int
}

func (h *Harness[W]) defaults() {
	if h.Timeout <= 0 {
		h.Timeout = 30 * time.Second
	}
	if h.MaxSteps <= 0 {
		h.MaxSteps = 10000
	}
	if h.Options.Workers <= 0 {
		h.Options.Workers = 4
	}
	if h.Options.Logger == nil {
		h.Options.Logger = slog.New(slog.DiscardHandler)
	}
}

// stepKey names a step durably: the procedure and its count of committed
// steps, which a restart does not change.
type stepKey struct {
	id       procedure.ID
	step     int
	rollback bool
}

// plan decides, from hooks, where a scenario fails and crashes. It lives
// across the restarts of one scenario.
type plan struct {
	mu sync.Mutex
	// crash: crash before and after the commits of these kinds of steps.
	crashForward, crashRollback bool
	crashed                     map[stepKey]int // 1: crashed before its commit, 2: and after
	// failAt: make the failAt-th forward step fail (0: none).
	failAt  int
	forward map[stepKey]bool // forward steps seen
	failed  bool
	running map[procedure.ID]bool
	steps   int
	errs    []string
	fs      *vfs.MemFS
}

func newPlan() *plan {
	return &plan{crashed: map[stepKey]int{}, forward: map[stepKey]bool{}, running: map[procedure.ID]bool{}}
}

func (p *plan) errorf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

func (p *plan) hooks(user procedure.Hooks) procedure.Hooks {
	key := func(info procedure.StepInfo) stepKey { return stepKey{info.ID, info.Step, info.Rollback} }
	wants := func(info procedure.StepInfo) bool {
		return (info.Rollback && p.crashRollback) || (!info.Rollback && p.crashForward)
	}
	return procedure.Hooks{
		StepStart: func(info procedure.StepInfo) {
			p.mu.Lock()
			twice := p.running[info.ID]
			p.running[info.ID] = true
			p.steps++
			p.mu.Unlock()
			if twice {
				p.errorf("procedure %d started on two workers at once", info.ID)
			}
			if user.StepStart != nil {
				user.StepStart(info)
			}
		},
		StepEnd: func(info procedure.StepInfo) {
			p.mu.Lock()
			delete(p.running, info.ID)
			p.mu.Unlock()
			if user.StepEnd != nil {
				user.StepEnd(info)
			}
		},
		FailStep: func(info procedure.StepInfo) error {
			if user.FailStep != nil {
				if err := user.FailStep(info); err != nil {
					return err
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.failAt == 0 || p.failed {
				return nil
			}
			k := key(info)
			p.forward[k] = true
			if len(p.forward) == p.failAt {
				p.failed = true
				return fmt.Errorf("proctest: injected failure at step %d (procedure %d %s state %d)", p.failAt, info.ID, info.Type, info.State)
			}
			return nil
		},
		BeforeCommit: func(info procedure.StepInfo) {
			if user.BeforeCommit != nil {
				user.BeforeCommit(info)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if k := key(info); wants(info) && p.crashed[k] == 0 {
				p.crashed[k] = 1
				p.fs.Crash()
			}
		},
		AfterCommit: func(info procedure.StepInfo) {
			if user.AfterCommit != nil {
				user.AfterCommit(info)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if k := key(info); wants(info) && p.crashed[k] == 1 {
				p.crashed[k] = 2
				p.fs.Crash()
			}
		},
	}
}

// instance is one process: a store and an engine on a file system.
type instance[W any] struct {
	fs        *vfs.MemFS
	store     *durable.Store
	e         *procedure.Engine
	w         W
	signalled chan struct{} // closed once Harness.Events were signalled (or could not be)
}

func start[W any](t testing.TB, h *Harness[W], fs *vfs.MemFS, p *plan) (*instance[W], error) {
	t.Helper()
	sopts := h.StoreOptions
	sopts.Dir, sopts.FS, sopts.Logger = "/data", fs, slog.New(slog.DiscardHandler)
	in := &instance[W]{fs: fs, store: durable.New(sopts)}
	opts := h.Options
	p.mu.Lock()
	p.fs = fs
	clear(p.running) // a new process
	p.mu.Unlock()
	opts.Hooks = p.hooks(h.Options.Hooks)
	in.e = procedure.New(in.store, opts)
	in.w = h.Setup(in.store, in.e)
	if err := in.store.Open(context.Background()); err != nil {
		return nil, fmt.Errorf("proctest: open store: %w", err)
	}
	if err := in.e.Start(context.Background()); err != nil {
		in.store.Close()
		return nil, fmt.Errorf("proctest: start engine: %w", err)
	}
	if len(h.Events) > 0 {
		in.signalled = make(chan struct{})
		go in.signal(h.Events)
	}
	return in, nil
}

// signal signals events once a procedure is suspended, or after a few
// milliseconds. An error (the process crashed, or stopped) ends it.
func (in *instance[W]) signal(events []string) {
	defer close(in.signalled)
	for i := 0; i < 20 && in.e.Stats().Suspended == 0 && in.e.Err() == nil; i++ {
		time.Sleep(time.Millisecond)
	}
	for _, ev := range events {
		if in.e.Signal(context.Background(), ev) != nil {
			return
		}
	}
}

func (in *instance[W]) stop() {
	if in.signalled != nil {
		<-in.signalled
	}
	in.e.Stop()
	in.store.Close()
}

// outcome is how one scenario ended.
type outcome struct {
	res      procedure.Result
	state    any
	initial  any
	restarts int
	crashes  int
	steps    int
}

// run runs one scenario: submit on a fresh file system, then wait,
// restarting from a crash state whenever the plan crashed the process,
// until the procedure finished in a process that did not crash.
func run[W any](t testing.TB, h *Harness[W], p *plan, what string, check func(w W, r procedure.Result)) outcome {
	t.Helper()
	var out outcome
	if h.Reset != nil {
		h.Reset()
	}
	fs := vfs.NewMem()
	in, err := start(t, h, fs, p)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	out.initial = h.State(in.w)
	ctx := context.Background()
	id, err := h.Submit(ctx, in.w)
	for err != nil {
		if !fs.Crashed() {
			in.stop()
			t.Fatalf("%s: submit: %v", what, err)
		}
		// A crash before the submission was durable: submit again.
		in.stop()
		fs = fs.CrashClone(int64(out.restarts))
		out.restarts++
		if in, err = start(t, h, fs, p); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		id, err = h.Submit(ctx, in.w)
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, h.Timeout)
		res, err := in.e.Wait(wctx, id)
		cancel()
		if !fs.Crashed() {
			if err != nil {
				info, _ := in.e.Get(id)
				in.stop()
				t.Fatalf("%s: wait for procedure %d: %v\n%+v\nstats %+v", what, id, err, info, in.e.Stats())
			}
			out.res = res
			out.state = h.State(in.w)
			if check != nil {
				check(in.w, res)
			}
			in.stop()
			break
		}
		in.stop()
		out.crashes++
		if out.restarts++; out.restarts > 4*h.MaxSteps+10 {
			t.Fatalf("%s: more than %d restarts", what, out.restarts)
		}
		fs = fs.CrashClone(int64(out.restarts))
		if in, err = start(t, h, fs, p); err != nil {
			t.Fatalf("%s: restart %d: %v", what, out.restarts, err)
		}
	}
	p.mu.Lock()
	out.steps = p.steps
	errs := p.errs
	p.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%s: %s", what, strings.Join(errs, "; "))
	}
	return out
}

// reference runs the procedure once without crashes or failures.
func reference[W any](t testing.TB, h *Harness[W]) (outcome, int) {
	t.Helper()
	p := newPlan()
	var mu sync.Mutex
	forward := map[stepKey]bool{}
	user := h.Options.Hooks.AfterCommit
	hh := *h
	hh.Options.Hooks.AfterCommit = func(info procedure.StepInfo) {
		if !info.Rollback {
			mu.Lock()
			forward[stepKey{info.ID, info.Step, false}] = true
			mu.Unlock()
		}
		if user != nil {
			user(info)
		}
	}
	var check func(W, procedure.Result)
	if h.Check != nil {
		check = func(w W, r procedure.Result) { h.Check(t, w, r) }
	}
	out := run(t, &hh, p, "reference run", check)
	return out, len(forward)
}

func sameResult(ignoreData bool, a, b procedure.Result) bool {
	if a.Status != b.Status || a.Type != b.Type || a.Version != b.Version {
		return false
	}
	if (a.Error == nil) != (b.Error == nil) || (a.Error != nil && *a.Error != *b.Error) {
		return false
	}
	return ignoreData || string(a.Data) == string(b.Data)
}

// RecoveryAndDoubleExecution runs the procedure once without crashes (the
// reference), then again crashing before and after the commit of every
// step, forward and rollback: each crash is a power cut of the simulated
// file system, and each restart a new store and engine on what it left.
// The procedure must finish with the reference's outcome (status, error,
// data) and environment (State).
func RecoveryAndDoubleExecution[W any](t testing.TB, h Harness[W]) {
	t.Helper()
	h.defaults()
	ref, _ := reference(t, &h)
	p := newPlan()
	p.crashForward, p.crashRollback = true, true
	out := run(t, &h, p, "crash before and after every step", nil)
	if !sameResult(h.IgnoreData, out.res, ref.res) {
		t.Fatalf("with crashes the procedure ended %+v (%v), without %+v (%v)", out.res, out.res.Err(), ref.res, ref.res.Err())
	}
	if !reflect.DeepEqual(out.state, ref.state) {
		t.Fatalf("with crashes the environment is\n%+v\nwithout\n%+v", out.state, ref.state)
	}
	t.Logf("recovery: a crash before and after each of %d step commits, in %d restarts; %d steps run in all, %d without crashes",
		len(p.crashed), out.crashes, out.steps, ref.steps)
}

// RollbackAndDoubleExecution runs the procedure once to count its forward
// steps n, then for every k in 1..n runs it making the k-th forward step
// fail (after its Execute returned: the step's work may be half done, and
// Rollback must undo it), twice: once without crashes, and once crashing
// before and after the commit of every rollback step. Each time, the
// procedure must end rolled back with the injected error and the
// environment (State) must be what it was before the submission. A step
// past the point of no return is retried instead of rolled back: then the
// procedure must end as the reference did.
func RollbackAndDoubleExecution[W any](t testing.TB, h Harness[W]) {
	t.Helper()
	h.defaults()
	ref, n := reference(t, &h)
	if n == 0 {
		t.Fatal("proctest: the procedure committed no forward step")
	}
	rolledBack, retried, crashes := 0, 0, 0
	for k := 1; k <= n; k++ {
		for _, crash := range []bool{false, true} {
			p := newPlan()
			p.failAt, p.crashRollback = k, crash
			what := fmt.Sprintf("failure at step %d of %d", k, n)
			if crash {
				what += ", crashing around every rollback step"
			}
			out := run(t, &h, p, what, nil)
			crashes += out.crashes
			switch out.res.Status {
			case procedure.RolledBack:
				if err := out.res.Err(); !strings.Contains(err.Error(), "proctest: injected failure") {
					t.Fatalf("%s: rolled back with %v, not the injected failure", what, err)
				}
				if !reflect.DeepEqual(out.state, out.initial) {
					t.Fatalf("%s: after the rollback the environment is\n%+v\nbefore it was\n%+v", what, out.state, out.initial)
				}
				rolledBack++
			case procedure.Succeeded:
				// Past the point of no return, the failure was retried.
				if !sameResult(h.IgnoreData, out.res, ref.res) || !reflect.DeepEqual(out.state, ref.state) {
					t.Fatalf("%s: succeeded (the step was past the point of no return) but differently: %+v\n%+v\nreference %+v\n%+v",
						what, out.res, out.state, ref.res, ref.state)
				}
				retried++
			default:
				t.Fatalf("%s: ended %v", what, out.res.Status)
			}
		}
	}
	if rolledBack == 0 {
		t.Fatal("proctest: no injected failure rolled the procedure back")
	}
	t.Logf("rollback: %d forward steps; %d runs rolled back, %d retried past the point of no return; %d crashes during rollbacks",
		n, rolledBack, retried, crashes)
}
