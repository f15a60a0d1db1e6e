package procedure_test

import (
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
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/procedure/proctest"
	"github.com/procyon-dev/procyon/vfs"
)

// The semantics of issue 16 this file tests: the shape of a failed
// procedure's error (sentinels and ErrorCodes that survive the store), a
// step's own timeout (Env.SetTimeout), and the rollback of children that
// succeeded (TypeOptions.KeepSucceeded). Each runs through proctest
// (crashes before and after every commit) and, where a clock matters,
// across restarts on a ManualClock.

var errRegionOffline = procedure.NewErrorCode("test.region-offline", "region offline")

// sem is the data of the test type. State 0 writes its key and spawns
// Kids (setting KidsTimeout first); state 1 sets StepTimeout and waits
// for Wait, or sleeps Sleep; state 2 waits for Wait2; state 3 signals
// Signal and fails as Fail says, or is done. Every state writes the key
// sem/<Name>/<state>; Rollback deletes it (state 0 also the keys of
// Compensate), or fails if UndoFails. OnTimeout re-arms the wait Rearm
// times (SetTimeout(StepTimeout) and the same wait), then goes to state 3.
type sem struct {
	Name         string
	Type         string // "" (sem), "plain" (no OnTimeout), "keep" (KeepSucceeded)
	Kids         []sem
	KidsTimeout  time.Duration
	StepTimeout  time.Duration
	Wait, Wait2  string
	Sleep        time.Duration
	Signal       string
	Fail         string // "code": a wrapped errRegionOffline; "remote": an *Error with its code; "plain": no code
	UndoFails    bool
	Compensate   []string
	Rearm        int
	Timeouts     int    // OnTimeout calls
	StepTimedOut []bool // Env.StepTimedOut in each
}

const semStates = 4

// semWorld is one process's view: the store's key-value collection, the
// three types, and what outlives crashes (rollback calls).
type semWorld struct {
	s     *durable.Store
	kv    *durable.Collection[string, string]
	types map[string]*procedure.Type[int, sem]
	calls *semCalls
}

// semCalls counts Rollback calls per procedure name; it outlives the
// process, like an external service. A step of a procedure named in hold
// (key "name/state") closes the first channel and waits for the second.
type semCalls struct {
	mu   sync.Mutex
	m    map[string]int
	hold map[string][2]chan struct{}
}

func (c *semCalls) block(name string, s int) {
	c.mu.Lock()
	h, ok := c.hold[fmt.Sprintf("%s/%d", name, s)]
	c.mu.Unlock()
	if ok {
		close(h[0])
		<-h[1]
	}
}

func (c *semCalls) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[name]++
}

func (c *semCalls) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}

func (c *semCalls) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

type semSM struct{ w *semWorld }

func semKey(name string, s int) string { return fmt.Sprintf("sem/%s/%d", name, s) }

func (sm semSM) Execute(ctx context.Context, env *procedure.Env, s int, d *sem) (procedure.Next, error) {
	sm.w.calls.block(d.Name, s)
	key, name := semKey(d.Name, s), d.Name
	put := func() { env.Write(func(tx *durable.Tx) error { return sm.w.kv.Put(tx, key, name) }) }
	switch s {
	case 0:
		put()
		if len(d.Kids) == 0 {
			return procedure.GoTo(1), nil
		}
		var cs []procedure.Child
		for _, k := range d.Kids {
			cs = append(cs, sm.w.types[k.Type].Child(k))
		}
		if d.KidsTimeout > 0 {
			env.SetTimeout(d.KidsTimeout)
		}
		return procedure.Spawn(1, cs...), nil
	case 1:
		put()
		return sm.wait(env, d), nil
	case 2:
		put()
		if d.Wait2 != "" {
			return procedure.WaitEvent(3, d.Wait2), nil
		}
		return procedure.GoTo(3), nil
	}
	switch d.Fail {
	case "code":
		return procedure.Next{}, fmt.Errorf("region r7 of %s: %w", d.Name, errRegionOffline)
	case "remote":
		// Named after the server, as a remote failure is: the same in
		// every run, while a child's id is not.
		return procedure.Next{}, fmt.Errorf("open: %w", &procedure.Error{Source: "rs7",
			Message: "region r7 of " + d.Name + ": region offline", Code: errRegionOffline.Code()})
	case "plain":
		return procedure.Next{}, errors.New("plain failure of " + d.Name)
	}
	put()
	if d.Signal != "" {
		env.Signal(d.Signal)
	}
	return procedure.Done(), nil
}

// wait is state 1's wait, with its step timeout.
func (sm semSM) wait(env *procedure.Env, d *sem) procedure.Next {
	if d.StepTimeout > 0 {
		env.SetTimeout(d.StepTimeout)
	}
	switch {
	case d.Wait != "":
		return procedure.WaitEvent(2, d.Wait)
	case d.Sleep > 0:
		return procedure.Sleep(2, d.Sleep)
	}
	return procedure.GoTo(2)
}

func (sm semSM) Rollback(ctx context.Context, env *procedure.Env, s int, d *sem) error {
	sm.w.calls.add(d.Name)
	if d.UndoFails {
		return errors.New("cannot undo " + d.Name)
	}
	keys := []string{semKey(d.Name, s)}
	if s == 0 {
		for _, n := range d.Compensate {
			for st := range semStates {
				keys = append(keys, semKey(n, st))
			}
		}
	}
	env.Write(func(tx *durable.Tx) error {
		for _, k := range keys {
			if err := sm.w.kv.Delete(tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	return nil
}

// semHandler handles timeouts.
type semHandler struct{ semSM }

func (sm semHandler) OnTimeout(ctx context.Context, env *procedure.Env, s int, d *sem) (procedure.Next, error) {
	d.Timeouts++
	d.StepTimedOut = append(d.StepTimedOut, env.StepTimedOut())
	if d.Timeouts <= d.Rearm {
		return sm.wait(env, d), nil
	}
	return procedure.GoTo(3), nil
}

func registerSem(s *durable.Store, e *procedure.Engine, calls *semCalls) *semWorld {
	w := &semWorld{s: s, kv: durable.NewCollection[string, string](s, "kv", nil), types: map[string]*procedure.Type[int, sem]{}, calls: calls}
	w.types[""] = procedure.Register[int, sem](e, "sem", semHandler{semSM{w}}, nil)
	w.types["plain"] = procedure.Register[int, sem](e, "sem-plain", semSM{w}, nil)
	w.types["keep"] = procedure.Register[int, sem](e, "sem-keep", semHandler{semSM{w}}, &procedure.TypeOptions[sem]{KeepSucceeded: true})
	return w
}

// keys returns the keys the procedures wrote.
func (w *semWorld) keys() []string {
	var out []string
	for k := range w.kv.All(w.s.Latest()) {
		out = append(out, k)
	}
	return out
}

// semHarness runs root through proctest. State is the keys left and
// whether the procedures named in rolled had their Rollback called.
func semHarness(root sem, opts procedure.SubmitOptions, check func(t testing.TB, w *semWorld, r procedure.Result), rolled ...string) proctest.Harness[*semWorld] {
	calls := &semCalls{m: map[string]int{}}
	return proctest.Harness[*semWorld]{
		Setup: func(s *durable.Store, e *procedure.Engine) *semWorld { return registerSem(s, e, calls) },
		Reset: calls.reset,
		Submit: func(ctx context.Context, w *semWorld) (procedure.ID, error) {
			return w.types[root.Type].Submit(ctx, root, opts)
		},
		State: func(w *semWorld) any {
			st := map[string]any{"keys": w.keys()}
			for _, n := range rolled {
				st["rolled back "+n] = calls.get(n) > 0
			}
			return st
		},
		Check:   check,
		Options: procedure.Options{Retry: procedure.RetryPolicy{Initial: time.Millisecond, Max: 10 * time.Millisecond}},
	}
}

// checkErr fails t unless err matches exactly the targets in is among
// the engine's sentinels and errRegionOffline.
func checkErr(t testing.TB, what string, err error, is ...error) {
	t.Helper()
	all := []error{procedure.ErrRolledBack, procedure.ErrAborted, procedure.ErrTimeout, procedure.ErrChildFailed,
		procedure.ErrBypassed, errRegionOffline}
	for _, target := range all {
		if want := slices.Contains(is, target); errors.Is(err, target) != want {
			t.Fatalf("%s: errors.Is(%v, %v) = %v, want %v", what, err, target, !want, want)
		}
	}
}

// ---- Errors ----

// A tree rolled back because a child failed with an ErrorCode: Wait on
// the root matches ErrRolledBack, ErrChildFailed and the code, with the
// code and message kept, through a crash before and after every commit.
func TestErrorCodeOfChildSurvivesCrashes(t *testing.T) {
	root := sem{Name: "root", Kids: []sem{{Name: "kid", Fail: "remote"}}}
	proctest.RecoveryAndDoubleExecution(t, semHarness(root, procedure.SubmitOptions{}, func(t testing.TB, w *semWorld, r procedure.Result) {
		err := r.Err()
		checkErr(t, "root", err, procedure.ErrRolledBack, procedure.ErrChildFailed, errRegionOffline)
		var pe *procedure.Error
		if !errors.As(err, &pe) || pe.Code != "test.region-offline" || pe.Source != "rs7" || pe.Message != "region r7 of kid: region offline" {
			t.Fatalf("error %#v", pe)
		}
		if keys := w.keys(); len(keys) != 0 {
			t.Fatalf("not rolled back: %v", keys)
		}
	}))
}

// The root's own failure is not a child's; an error without a code
// matches no ErrorCode.
func TestErrorOfRootSurvivesCrashes(t *testing.T) {
	root := sem{Name: "root", Fail: "plain"}
	proctest.RecoveryAndDoubleExecution(t, semHarness(root, procedure.SubmitOptions{}, func(t testing.TB, w *semWorld, r procedure.Result) {
		checkErr(t, "root", r.Err(), procedure.ErrRolledBack)
	}))
}

// An abort's error matches ErrAborted, through a crash before and after
// every commit (the abort is made on the first process; a crash before it
// is durable submits, with the same nonce, and aborts again).
func TestAbortErrorSurvivesCrashes(t *testing.T) {
	root := sem{Name: "root", Kids: []sem{{Name: "kid", Wait: "never"}}}
	h := semHarness(root, procedure.SubmitOptions{Nonce: "abort-1"}, func(t testing.TB, w *semWorld, r procedure.Result) {
		checkErr(t, "root", r.Err(), procedure.ErrRolledBack, procedure.ErrAborted)
	})
	submit := h.Submit
	var e *procedure.Engine
	setup := h.Setup
	h.Setup = func(s *durable.Store, en *procedure.Engine) *semWorld { e = en; return setup(s, en) }
	h.Submit = func(ctx context.Context, w *semWorld) (procedure.ID, error) {
		id, err := submit(ctx, w)
		if err != nil {
			return 0, err
		}
		if err := e.Abort(ctx, id, "test", "a test aborts it"); err != nil && !errors.Is(err, procedure.ErrFinished) {
			return 0, err
		}
		return id, nil
	}
	proctest.RecoveryAndDoubleExecution(t, h)
}

// semProc is one process on fs for the tests that restart by hand.
type semProc struct {
	t     testing.TB
	fs    *vfs.MemFS
	clock procedure.Clock
	store *durable.Store
	e     *procedure.Engine
	w     *semWorld
	calls *semCalls
	retry procedure.RetryPolicy
}

func newSemProc(t testing.TB, clock procedure.Clock) *semProc {
	p := &semProc{t: t, fs: vfs.NewMem(), clock: clock, calls: &semCalls{m: map[string]int{}}}
	p.open()
	return p
}

func (p *semProc) open() {
	p.t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	p.store = durable.New(durable.Options{Dir: "/data", FS: p.fs, Logger: quiet})
	p.e = procedure.New(p.store, procedure.Options{Clock: p.clock, Logger: quiet, Retry: p.retry})
	p.w = registerSem(p.store, p.e, p.calls)
	if err := p.store.Open(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	if err := p.e.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
}

func (p *semProc) close() {
	p.e.Stop()
	p.store.Close()
}

// crash restarts from what a power cut leaves on the file system now.
func (p *semProc) crash(seed int64) {
	crashed := p.fs.CrashClone(seed)
	p.close()
	p.fs = crashed
	p.open()
}

func (p *semProc) submit(d sem, opts procedure.SubmitOptions) procedure.ID {
	p.t.Helper()
	id, err := p.w.types[d.Type].Submit(context.Background(), d, opts)
	if err != nil {
		p.t.Fatal(err)
	}
	return id
}

func (p *semProc) info(id procedure.ID) procedure.Info {
	p.t.Helper()
	in, err := p.e.Get(id)
	if err != nil {
		p.t.Fatal(err)
	}
	return in
}

// waitInfo waits until cond holds for id's Info.
func (p *semProc) waitInfo(id procedure.ID, what string, cond func(procedure.Info) bool) procedure.Info {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := p.e.WaitFor(ctx, id, cond)
	if err != nil {
		p.t.Fatalf("procedure %d: waiting for %s: %v (%+v)", id, what, err, p.info(id))
	}
	return in
}

func (p *semProc) suspended(id procedure.ID) procedure.Info {
	p.t.Helper()
	return p.waitInfo(id, "suspended", func(in procedure.Info) bool { return in.Status == procedure.Suspended })
}

func (p *semProc) wait(id procedure.ID) (sem, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := p.w.types[""].Result(p.e.Wait(ctx, id))
	if ctx.Err() != nil {
		p.t.Fatalf("wait %d: %v", id, err)
	}
	return d, err
}

// Every outcome keeps its shape after a restart: Wait reads it back from
// the store. An unknown code (no ErrorCode declares it in this program)
// is kept as stored and matches only an ErrorCode with that code.
func TestErrorShapeAfterRestart(t *testing.T) {
	p := newSemProc(t, nil)
	defer func() { p.close() }()
	child := p.submit(sem{Name: "parent", Kids: []sem{{Name: "kid", Fail: "code"}}}, procedure.SubmitOptions{})
	own := p.submit(sem{Name: "own", Fail: "code"}, procedure.SubmitOptions{})
	aborted := p.submit(sem{Name: "aborted", Wait: "never"}, procedure.SubmitOptions{})
	p.suspended(aborted)
	if err := p.e.Abort(context.Background(), aborted, "test", "a test aborts it"); err != nil {
		t.Fatal(err)
	}
	ok := p.submit(sem{Name: "ok"}, procedure.SubmitOptions{})
	cases := []struct {
		id procedure.ID
		is []error
	}{
		{child, []error{procedure.ErrRolledBack, procedure.ErrChildFailed, errRegionOffline}},
		{own, []error{procedure.ErrRolledBack, errRegionOffline}},
		{aborted, []error{procedure.ErrRolledBack, procedure.ErrAborted}},
		{ok, nil},
	}
	for round := range 2 {
		for _, c := range cases {
			_, err := p.wait(c.id)
			checkErr(t, fmt.Sprintf("round %d, procedure %d", round, c.id), err, c.is...)
		}
		p.crash(int64(round))
	}
	_, err := p.wait(child)
	if !errors.Is(err, procedure.NewErrorCode("test.region-offline", "declared elsewhere")) ||
		errors.Is(err, procedure.NewErrorCode("test.other", "region offline")) {
		t.Fatalf("codes match by code only: %v", err)
	}
	var pe *procedure.Error
	if !errors.As(err, &pe) || pe.Code != "test.region-offline" || pe.Message != "region r7 of kid: region offline" {
		t.Fatalf("error kept as %#v", pe)
	}
}

// A bypassed root of a tree that was rolling back matches ErrBypassed
// and ErrRolledBack, also after a crash.
func TestBypassedRollbackError(t *testing.T) {
	p := &semProc{t: t, fs: vfs.NewMem(), calls: &semCalls{m: map[string]int{}},
		retry: procedure.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond}}
	p.open()
	defer func() { p.close() }()
	id := p.submit(sem{Name: "stuck", UndoFails: true, Fail: "code"}, procedure.SubmitOptions{})
	p.waitInfo(id, "rollback retries", func(in procedure.Info) bool { return in.Retries >= 2 })
	if err := p.e.Bypass(context.Background(), id, "ops", "rollback stuck"); err != nil {
		t.Fatal(err)
	}
	_, err := p.wait(id)
	checkErr(t, "bypassed", err, procedure.ErrRolledBack, procedure.ErrBypassed, errRegionOffline)
	p.crash(1)
	_, err = p.wait(id)
	checkErr(t, "bypassed, after a crash", err, procedure.ErrRolledBack, procedure.ErrBypassed, errRegionOffline)
}

func TestNewErrorCodeRefusesBadCodes(t *testing.T) {
	for _, code := range []string{"", "has space", strings.Repeat("x", 129), "semi;colon"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("code %q accepted", code)
				}
			}()
			procedure.NewErrorCode(code, "m")
		}()
	}
	if c := procedure.NewErrorCode("a.b-c_d/e", "m"); c.Code() != "a.b-c_d/e" || c.Error() != "m" {
		t.Fatalf("%q %q", c.Code(), c.Error())
	}
}

// ---- A step's own timeout ----

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// A step's timeout is stored with its commit: across a restart, and
// across a power cut, it fires at the stored time, not counted again
// from the restart; OnTimeout re-arms it, and it fires again.
func TestStepTimeoutAcrossRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		clock := procedure.NewManualClock(t0)
		p := newSemProc(t, clock)
		id := p.submit(sem{Name: "a", Wait: "never", StepTimeout: 10 * time.Minute, Rearm: 1}, procedure.SubmitOptions{})
		if in := p.suspended(id); !in.StepDeadline.Equal(t0.Add(10*time.Minute)) || !in.Deadline.IsZero() {
			t.Fatalf("step deadline %v, deadline %v", in.StepDeadline, in.Deadline)
		}
		clock.Advance(6 * time.Minute)
		if crash {
			p.crash(1)
		} else {
			p.close()
			p.open()
		}
		clock.Advance(4*time.Minute - time.Nanosecond)
		if in := p.info(id); in.Status != procedure.Suspended {
			t.Fatalf("crash %v: fired early: %v at %v", crash, in.Status, clock.Now())
		}
		clock.Advance(time.Nanosecond)
		// OnTimeout re-armed it: 10 minutes from the end of that step.
		in := p.waitInfo(id, "re-armed", func(in procedure.Info) bool {
			return in.Status == procedure.Suspended && in.StepDeadline.Equal(t0.Add(20*time.Minute))
		})
		if in.Steps != 3 {
			t.Fatalf("crash %v: %d steps, want 3 (states 0, 1, OnTimeout)", crash, in.Steps)
		}
		clock.Advance(10 * time.Minute)
		d, err := p.wait(id)
		if err != nil || d.Timeouts != 2 || !slices.Equal(d.StepTimedOut, []bool{true, true}) {
			t.Fatalf("crash %v: %+v %v", crash, d, err)
		}
		p.close()
	}
}

// The step's timeout and the procedure's are independent: whichever
// passes first fires, and OnTimeout tells them apart. The next committed
// step clears a step timeout it does not set again.
func TestStepTimeoutAndProcedureTimeout(t *testing.T) {
	clock := procedure.NewManualClock(t0)
	p := newSemProc(t, clock)
	defer func() { p.close() }()
	a := p.submit(sem{Name: "a", Wait: "never", StepTimeout: 10 * time.Minute, Rearm: 1}, procedure.SubmitOptions{Timeout: 15 * time.Minute})
	p.suspended(a)
	clock.Advance(10 * time.Minute) // the step's
	p.waitInfo(a, "re-armed", func(in procedure.Info) bool {
		return in.Status == procedure.Suspended && in.StepDeadline.Equal(t0.Add(20*time.Minute))
	})
	clock.Advance(5 * time.Minute) // the procedure's, first
	d, err := p.wait(a)
	if err != nil || !slices.Equal(d.StepTimedOut, []bool{true, false}) {
		t.Fatalf("%+v %v", d, err)
	}

	// Woken by its event before the step timeout: the next step clears it.
	b := p.submit(sem{Name: "b", Wait: "ev-b", Wait2: "ev-b2", StepTimeout: time.Minute}, procedure.SubmitOptions{})
	p.suspended(b)
	if err := p.e.Signal(context.Background(), "ev-b"); err != nil {
		t.Fatal(err)
	}
	p.waitInfo(b, "waiting for ev-b2", func(in procedure.Info) bool {
		return in.Status == procedure.Suspended && in.Event == "ev-b2" && in.StepDeadline.IsZero()
	})
	clock.Advance(time.Hour)
	if in := p.info(b); in.Status != procedure.Suspended {
		t.Fatalf("a cleared step timeout fired: %+v", in)
	}
	if err := p.e.Signal(context.Background(), "ev-b2"); err != nil {
		t.Fatal(err)
	}
	if d, err := p.wait(b); err != nil || d.Timeouts != 0 {
		t.Fatalf("%+v %v", d, err)
	}

	// It bounds a sleep too: OnTimeout runs in its place.
	c := p.submit(sem{Name: "c", Sleep: time.Hour, StepTimeout: time.Minute}, procedure.SubmitOptions{})
	p.suspended(c)
	clock.Advance(time.Minute)
	if d, err := p.wait(c); err != nil || d.Timeouts != 1 {
		t.Fatalf("%+v %v", d, err)
	}
}

// A step timeout bounds the wait, not the step after it: one that passes
// while the next step runs does not fire, and that step's commit clears
// it.
func TestStepTimeoutPassingDuringNextStep(t *testing.T) {
	clock := procedure.NewManualClock(t0)
	p := newSemProc(t, clock)
	defer func() { p.close() }()
	reached, release := make(chan struct{}), make(chan struct{})
	p.calls.hold = map[string][2]chan struct{}{"r/2": {reached, release}}
	id := p.submit(sem{Name: "r", Type: "plain", Wait: "ev", Wait2: "ev2", StepTimeout: time.Minute}, procedure.SubmitOptions{})
	p.suspended(id)
	if err := p.e.Signal(context.Background(), "ev"); err != nil {
		t.Fatal(err)
	}
	<-reached
	clock.Advance(2 * time.Minute) // passes while state 2 runs
	close(release)
	p.waitInfo(id, "waiting for ev2", func(in procedure.Info) bool {
		return in.Status == procedure.Suspended && in.Event == "ev2" && in.StepDeadline.IsZero()
	})
	if err := p.e.Signal(context.Background(), "ev2"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.wait(id); err != nil {
		t.Fatal(err)
	}
}

// Without OnTimeout, or while it waits for its children, a procedure
// whose step timeout passes fails and its tree rolls back (ErrTimeout;
// ErrChildFailed too on the root if a child's passed).
func TestStepTimeoutFails(t *testing.T) {
	clock := procedure.NewManualClock(t0)
	p := newSemProc(t, clock)
	defer func() { p.close() }()
	plain := p.submit(sem{Name: "plain", Type: "plain", Wait: "never", StepTimeout: time.Minute}, procedure.SubmitOptions{})
	child := p.submit(sem{Name: "parent", Kids: []sem{{Name: "kid", Type: "plain", Wait: "never", StepTimeout: 2 * time.Minute}}}, procedure.SubmitOptions{})
	waiting := p.submit(sem{Name: "waiting", KidsTimeout: 3 * time.Minute, Kids: []sem{{Name: "kid2", Wait: "never"}}}, procedure.SubmitOptions{})
	p.suspended(plain)
	for _, parent := range []procedure.ID{child, waiting} {
		in := p.waitInfo(parent, "its child", func(in procedure.Info) bool { return len(in.Children) == 1 })
		p.suspended(in.Children[0])
	}
	in := p.info(waiting)
	if in.Status != procedure.Waiting || !in.StepDeadline.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("step deadline of a parent %v", in.StepDeadline)
	}
	for _, c := range []struct {
		id procedure.ID
		is []error
	}{
		{plain, []error{procedure.ErrRolledBack, procedure.ErrTimeout}},
		{child, []error{procedure.ErrRolledBack, procedure.ErrTimeout, procedure.ErrChildFailed}},
		{waiting, []error{procedure.ErrRolledBack, procedure.ErrTimeout}},
	} {
		clock.Advance(time.Minute)
		_, err := p.wait(c.id)
		checkErr(t, fmt.Sprintf("procedure %d", c.id), err, c.is...)
	}
	if keys := p.w.keys(); len(keys) != 0 {
		t.Fatalf("not rolled back: %v", keys)
	}
}

// A step timeout handled by OnTimeout, re-armed, and one that fails a
// parent waiting for its children, through a crash before and after every commit (on the system
// clock: the timeouts are short).
func TestStepTimeoutSurvivesCrashes(t *testing.T) {
	handled := sem{Name: "root", Wait: "never", StepTimeout: time.Millisecond, Rearm: 2}
	proctest.RecoveryAndDoubleExecution(t, semHarness(handled, procedure.SubmitOptions{}, func(t testing.TB, w *semWorld, r procedure.Result) {
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
	}))
	// (A child's timeout names the child's id, which differs from run to
	// run: proctest would see different errors. TestStepTimeoutFails
	// covers it.)
	failed := sem{Name: "root", KidsTimeout: time.Millisecond, Kids: []sem{{Name: "kid", Wait: "never"}}}
	proctest.RecoveryAndDoubleExecution(t, semHarness(failed, procedure.SubmitOptions{}, func(t testing.TB, w *semWorld, r procedure.Result) {
		checkErr(t, "root", r.Err(), procedure.ErrRolledBack, procedure.ErrTimeout)
	}))
}

// ---- Rollback of children that succeeded ----

// keepTree is a root whose child "a" (of type typ, its Rollback always
// failing if undoFails) succeeds, signalling "a-done", after which its
// sibling "b" fails: the tree rolls back after "a" succeeded. The root's
// Rollback of its spawning state compensates for "a" if compensate.
func keepTree(typ string, undoFails, compensate bool) sem {
	root := sem{Name: "root", Kids: []sem{
		{Name: "a", Type: typ, UndoFails: undoFails, Signal: "a-done"},
		{Name: "b", Wait: "a-done", Fail: "remote"},
	}}
	if compensate {
		root.Compensate = []string{"a"}
	}
	return root
}

// A KeepSucceeded child that succeeded is not rolled back when its tree
// rolls back, even if its Rollback could never succeed: its parent
// compensates. Through a crash before and after every commit.
func TestKeepSucceededChildNotRolledBack(t *testing.T) {
	h := semHarness(keepTree("keep", true, true), procedure.SubmitOptions{}, func(t testing.TB, w *semWorld, r procedure.Result) {
		checkErr(t, "root", r.Err(), procedure.ErrRolledBack, procedure.ErrChildFailed, errRegionOffline)
		if keys := w.keys(); len(keys) != 0 {
			t.Fatalf("not rolled back: %v", keys)
		}
		if n := w.calls.get("a"); n != 0 {
			t.Fatalf("the kept child's Rollback ran %d times", n)
		}
	}, "a", "b", "root")
	proctest.RecoveryAndDoubleExecution(t, h)
}

// By default a child that succeeded is rolled back with its tree, state by
// state, through a crash before and after every commit.
func TestSucceededChildRolledBackWithTree(t *testing.T) {
	h := semHarness(keepTree("", false, false), procedure.SubmitOptions{}, func(t testing.TB, w *semWorld, r procedure.Result) {
		checkErr(t, "root", r.Err(), procedure.ErrRolledBack, procedure.ErrChildFailed, errRegionOffline)
		if keys := w.keys(); len(keys) != 0 {
			t.Fatalf("not rolled back: %v", keys)
		}
		if n := w.calls.get("a"); n != semStates {
			t.Fatalf("the child's Rollback ran %d times, want %d", n, semStates)
		}
	}, "a", "b", "root")
	proctest.RecoveryAndDoubleExecution(t, h)
}

// By default, a succeeded child whose Rollback always fails keeps its
// tree rolling back, retrying visibly, across a power cut too, until an
// operator bypasses it; with KeepSucceeded the same child does not hold
// the tree up.
func TestSucceededChildRollbackAlwaysFails(t *testing.T) {
	p := &semProc{t: t, fs: vfs.NewMem(), calls: &semCalls{m: map[string]int{}},
		retry: procedure.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond}}
	p.open()
	defer func() { p.close() }()
	kept := p.submit(keepTree("keep", true, true), procedure.SubmitOptions{})
	if _, err := p.wait(kept); !errors.Is(err, procedure.ErrRolledBack) {
		t.Fatalf("kept: %v", err)
	}
	if n := p.calls.get("a"); n != 0 {
		t.Fatalf("kept child's Rollback ran %d times", n)
	}
	if err := p.e.ResetEvent(context.Background(), "a-done"); err != nil {
		t.Fatal(err)
	}

	stuck := p.submit(keepTree("", true, false), procedure.SubmitOptions{})
	retrying := func(in procedure.Info) bool {
		return in.RollingBack && in.Retries >= 2 && strings.Contains(in.LastError, "cannot undo a")
	}
	p.waitInfo(stuck, "rollback retries", retrying)
	p.crash(1)
	p.waitInfo(stuck, "rollback retries after a crash", retrying)
	var a procedure.ID
	in := p.info(stuck)
	for _, c := range in.Children {
		if ci := p.info(c); ci.Status == procedure.Succeeded {
			a = c
		}
	}
	if a == 0 {
		t.Fatalf("no succeeded child among %v", in.Children)
	}
	if err := p.e.Bypass(context.Background(), a, "ops", "its rollback cannot succeed"); err != nil {
		t.Fatal(err)
	}
	_, err := p.wait(stuck)
	checkErr(t, "stuck", err, procedure.ErrRolledBack, procedure.ErrChildFailed, errRegionOffline)
	if keys := p.w.keys(); !slices.Equal(keys, []string{"sem/a/0", "sem/a/1", "sem/a/2", "sem/a/3"}) {
		t.Fatalf("keys left %v (the bypassed child's only)", keys)
	}
}
