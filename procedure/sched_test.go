package procedure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/vfs"
)

// flow is the data of the scheduling test type: state i does Steps[i],
// and the procedure is done after the last.
type flow struct {
	Name      string
	Steps     []flowStep
	TimeoutTo int // OnTimeout goes to this state (flow-handler type only)
	Handled   bool
	NotBefore int64 // unix ns: the state after a Sleep must not run before
}

type flowStep struct {
	Wait   string        // then WaitEvent
	Sleep  time.Duration // then Sleep
	Signal string        // Env.Signal
	Reset  string        // Env.ResetEvent
	Fail   bool          // Execute fails
	Retry  int           // return a Retryable error this many times first
	Locks  []Lock        // the state's locks
	Gate   bool          // wait at gate "flow:<name>:<state>"
	Kids   []flow        // spawn these children
}

// flowSM runs flows; attempts counts Execute calls per (id, state).
type flowSM struct {
	w        *world
	self     **Type[int, flow]
	mu       sync.Mutex
	attempts map[string]int
	onLocks  func(id ID, state int) // called when a step runs holding its locks
	// afterCommit, if set, is passed to Env.AfterCommit by every forward
	// step that does not fail.
	afterCommit func(id ID, state int)
	// checkSleep: fail the test if a state after a Sleep runs early.
	checkSleep bool
	// checkRollbackLocks: fail the test if a Rollback runs without the
	// locks of its state; rollbackLocked counts the checks.
	checkRollbackLocks bool
	rollbackLocked     int
}

func (sm *flowSM) Execute(ctx context.Context, env *Env, s int, d *flow) (Next, error) {
	if sm.w.onExecute != nil {
		sm.w.onExecute(ctx, env.ID(), s)
	}
	if s >= len(d.Steps) {
		// The last state: it writes its key too (every executed state has one).
		fx := fmt.Sprintf("fx/%d/%d/%d", env.Root(), env.ID(), s)
		env.Write(func(tx *durable.Tx) error { return sm.w.kv.Put(tx, fx, d.Name) })
		return Done(), nil
	}
	st := d.Steps[s]
	if st.Gate {
		if err := sm.w.gates.wait(ctx, fmt.Sprintf("flow:%s:%d", d.Name, s)); err != nil {
			return Next{}, err
		}
	}
	key := fmt.Sprintf("%d/%d", env.ID(), s)
	sm.mu.Lock()
	sm.attempts[key]++
	n := sm.attempts[key]
	sm.mu.Unlock()
	if sm.checkSleep && time.Now().UnixNano() < d.NotBefore {
		sm.w.t.Errorf("procedure %d state %d ran %v before its sleep ended", env.ID(), s, time.Duration(d.NotBefore-time.Now().UnixNano()))
	}
	if sm.onLocks != nil && len(st.Locks) > 0 {
		sm.onLocks(env.ID(), s)
	}
	if n <= st.Retry {
		return Next{}, Retryable(fmt.Errorf("transient %d", n))
	}
	if st.Fail {
		return Next{}, errors.New("flow failed")
	}
	fx := fmt.Sprintf("fx/%d/%d/%d", env.Root(), env.ID(), s)
	env.Write(func(tx *durable.Tx) error { return sm.w.kv.Put(tx, fx, d.Name) })
	if st.Signal != "" {
		env.Signal(st.Signal)
	}
	if st.Reset != "" {
		env.ResetEvent(st.Reset)
	}
	if f := sm.afterCommit; f != nil {
		id := env.ID()
		env.AfterCommit(func() { f(id, s) })
	}
	switch {
	case len(st.Kids) > 0:
		var cs []Child
		for _, k := range st.Kids {
			cs = append(cs, (*sm.self).Child(k))
		}
		return Spawn(s+1, cs...), nil
	case st.Wait != "":
		return WaitEvent(s+1, st.Wait), nil
	case st.Sleep > 0:
		d.NotBefore = time.Now().Add(st.Sleep).UnixNano()
		return Sleep(s+1, st.Sleep), nil
	}
	return GoTo(s + 1), nil
}

func (sm *flowSM) Rollback(ctx context.Context, env *Env, s int, d *flow) error {
	if sm.checkRollbackLocks && s < len(d.Steps) {
		// The rollback of a state holds the locks the state took.
		v := map[string][]ID{}
		for _, li := range sm.w.e.Locks() {
			v[li.Resource] = holderIDs(li.Holders)
		}
		for _, l := range d.Steps[s].Locks {
			if !slices.Contains(v[l.Resource], env.ID()) {
				sm.w.t.Errorf("rollback of %d state %d without its lock %s (holders %v)", env.ID(), s, l.Resource, v[l.Resource])
			}
			sm.mu.Lock()
			sm.rollbackLocked++
			sm.mu.Unlock()
		}
	}
	fx := fmt.Sprintf("fx/%d/%d/%d", env.Root(), env.ID(), s)
	env.Write(func(tx *durable.Tx) error { return sm.w.kv.Delete(tx, fx) })
	return nil
}

func (sm *flowSM) Locks(s int, d *flow) []Lock {
	if s < len(d.Steps) {
		return d.Steps[s].Locks
	}
	return nil
}

func (sm *flowSM) attemptsOf(id ID, s int) int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.attempts[fmt.Sprintf("%d/%d", id, s)]
}

// flowHandler also handles timeouts.
type flowHandler struct{ *flowSM }

func (sm flowHandler) OnTimeout(ctx context.Context, env *Env, s int, d *flow) (Next, error) {
	d.Handled = true
	return GoTo(d.TimeoutTo), nil
}

// flowWorld is a world with the flow types: "flow", "flow-hold" (holds
// its locks until it finishes) and "flow-handler" (handles timeouts).
type flowWorld struct {
	*world
	sm                  *flowSM
	flow, hold, handler *Type[int, flow]
}

func newFlowWorld(t *testing.T, opts Options, typeOpts ...TypeOptions[flow]) *flowWorld {
	fw := &flowWorld{sm: &flowSM{attempts: map[string]int{}}}
	var to TypeOptions[flow]
	if len(typeOpts) > 0 {
		to = typeOpts[0]
	}
	w := &world{t: t, fs: newMemFS(), opts: opts, gates: &gates{}, running: map[ID]bool{}}
	w.extra = func(w *world) {
		fw.sm.w = w
		fw.sm.self = &fw.flow
		fw.flow = Register[int, flow](w.e, "flow", fw.sm, &to)
		ho := to
		ho.HoldLocks = true
		fw.hold = Register[int, flow](w.e, "flow-hold", &holdSM{fw.sm}, &ho)
		fw.handler = Register[int, flow](w.e, "flow-handler", flowHandler{fw.sm}, &to)
	}
	fw.world = w
	w.open()
	return fw
}

// holdSM is flowSM whose children are flow-hold too.
type holdSM struct{ *flowSM }

func (fw *flowWorld) submit(typ *Type[int, flow], d flow, opts ...SubmitOptions) ID {
	fw.t.Helper()
	var o SubmitOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	id, err := typ.Submit(context.Background(), d, o)
	if err != nil {
		fw.t.Fatalf("submit: %v", err)
	}
	return id
}

func (fw *flowWorld) info(id ID) Info {
	fw.t.Helper()
	in, err := fw.e.Get(id)
	if err != nil {
		fw.t.Fatalf("get %d: %v", id, err)
	}
	return in
}

func (fw *flowWorld) waitStatus(id ID, st Status) Info {
	fw.t.Helper()
	var in Info
	waitFor(fw.t, fmt.Sprintf("procedure %d %v", id, st), func() bool {
		in = fw.info(id)
		return in.Status == st
	})
	return in
}

func (fw *flowWorld) finished(id ID) bool {
	in, err := fw.e.Get(id)
	return err == nil && !in.Completed.IsZero()
}

// A procedure suspended on an event holds no worker, stays suspended
// across a restart, and is woken by a signal; waiting on a signalled event
// does not suspend; ResetEvent makes later waits suspend again.
func TestEventWaitAndSignal(t *testing.T) {
	fw := newFlowWorld(t, Options{Workers: 1})
	defer fw.close()
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "ready"}, {}}})
	in := fw.waitStatus(a, Suspended)
	if in.Event != "ready" || in.State != 1 {
		t.Fatalf("suspended on %q at %d", in.Event, in.State)
	}
	// The only worker is free: another procedure runs meanwhile.
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{}, {}}})
	fw.wait(b)
	if s := fw.e.Stats(); s.Suspended != 1 {
		t.Fatalf("Stats.Suspended %d", s.Suspended)
	}
	fw.restart()
	if in := fw.info(a); in.Status != Suspended || in.Event != "ready" {
		t.Fatalf("after restart: %v on %q", in.Status, in.Event)
	}
	if ok, _ := fw.e.Signalled("ready"); ok {
		t.Fatal("signalled before Signal")
	}
	if err := fw.e.Signal(context.Background(), "ready"); err != nil {
		t.Fatal(err)
	}
	if r := fw.wait(a); r.Err() != nil {
		t.Fatal(r.Err())
	}
	// Signalled stays signalled: a wait on it does not suspend.
	c := fw.submit(fw.flow, flow{Name: "c", Steps: []flowStep{{Wait: "ready"}, {}}})
	fw.wait(c)
	if err := fw.e.ResetEvent(context.Background(), "ready"); err != nil {
		t.Fatal(err)
	}
	d := fw.submit(fw.flow, flow{Name: "d", Steps: []flowStep{{Wait: "ready"}, {}}})
	fw.waitStatus(d, Suspended)
	// A step signals it: d wakes once that step is durable.
	fw.wait(fw.submit(fw.flow, flow{Name: "e", Steps: []flowStep{{Signal: "ready"}}}))
	fw.wait(d)
	if err := fw.e.Signal(context.Background(), ""); err == nil {
		t.Fatal("empty event name accepted")
	}
}

// A signal that comes while the step that decides to wait is running is
// not lost: whether the event is signalled is decided in the step's
// commit.
func TestEventSignalDuringStep(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	fw.gates.set("flow:a:0")
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "go", Gate: true}, {}}})
	reach(t, fw.gates, "flow:a:0")
	if err := fw.e.Signal(context.Background(), "go"); err != nil {
		t.Fatal(err)
	}
	fw.gates.open("flow:a:0")
	fw.wait(a)
}

// A woken procedure whose event is reset before it committed a step is
// not put back to waiting by a crash.
func TestEventResetAfterWake(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	fw.gates.set("flow:a:1")
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "go"}, {Gate: true}, {}}})
	fw.waitStatus(a, Suspended)
	if err := fw.e.Signal(context.Background(), "go"); err != nil {
		t.Fatal(err)
	}
	reach(t, fw.gates, "flow:a:1") // woken, its next step running: its record still says suspended
	if err := fw.e.ResetEvent(context.Background(), "go"); err != nil {
		t.Fatal(err)
	}
	crashed := fw.fs.CrashClone(1) // what is durable now
	fw.gates.open("flow:a:1")
	fw.close()
	fw.fs = crashed
	fw.open()
	if in := fw.info(a); in.Status == Suspended {
		t.Fatalf("woken procedure suspended again after a crash: %+v", in)
	}
	fw.wait(a)
}

// A Sleep survives a restart and wakes at the stored wall-clock time,
// never before it.
func TestSleepAcrossRestart(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fw := newFlowWorld(t, Options{Clock: clock})
	defer fw.close()
	start := clock.Now()
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Sleep: time.Hour}, {}}})
	in := fw.waitStatus(a, Suspended)
	if !in.WakeAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("WakeAt %v, want %v", in.WakeAt, start.Add(time.Hour))
	}
	clock.Advance(30 * time.Minute)
	fw.restart()
	clock.Advance(29*time.Minute + 59*time.Second)
	if in := fw.info(a); in.Status != Suspended {
		t.Fatalf("woke early: %v at %v", in.Status, clock.Now())
	}
	clock.Advance(time.Second)
	fw.wait(a)
	// A sleep whose time passed while the engine was down wakes on start.
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{Sleep: time.Minute}, {}}})
	fw.waitStatus(b, Suspended)
	fw.close()
	clock.Advance(2 * time.Minute)
	fw.open()
	fw.wait(b)
}

// A timeout fails the procedure and rolls its tree back, also when it
// passes while the engine is down; with OnTimeout, the procedure decides.
func TestTimeout(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fw := newFlowWorld(t, Options{Clock: clock})
	defer fw.close()
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{Wait: "never"}, {}}}, SubmitOptions{Timeout: 10 * time.Minute})
	in := fw.waitStatus(a, Suspended)
	if !in.Deadline.Equal(clock.Now().Add(10 * time.Minute)) {
		t.Fatalf("deadline %v", in.Deadline)
	}
	if len(fw.fx(a)) != 1 { // state 0 only
		t.Fatalf("fx %v", fw.fx(a))
	}
	clock.Advance(5 * time.Minute)
	fw.restart()
	clock.Advance(5*time.Minute - time.Nanosecond)
	if fw.finished(a) {
		t.Fatal("timed out early")
	}
	clock.Advance(time.Nanosecond)
	r := fw.wait(a)
	if r.Status != RolledBack || !errors.Is(r.Err(), ErrTimeout) || !errors.Is(r.Err(), ErrRolledBack) {
		t.Fatalf("result %v %v", r.Status, r.Err())
	}
	if fx := fw.fx(a); len(fx) != 0 {
		t.Fatalf("timed-out procedure's writes kept: %v", fx)
	}
	if s := fw.e.Stats().Types["flow"]; s.TimedOut != 1 {
		t.Fatalf("TimedOut %d", s.TimedOut)
	}

	// Passed while down: fires on start.
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{Wait: "never"}, {}}}, SubmitOptions{Timeout: time.Minute})
	fw.waitStatus(b, Suspended)
	fw.close()
	clock.Advance(time.Hour)
	fw.open()
	if r := fw.wait(b); !errors.Is(r.Err(), ErrTimeout) {
		t.Fatalf("result %v", r.Err())
	}

	// Handled: OnTimeout runs as the next step and the procedure goes on.
	c := fw.submit(fw.handler, flow{Name: "c", Steps: []flowStep{{Wait: "never"}, {}, {}}, TimeoutTo: 2},
		SubmitOptions{Timeout: time.Minute})
	fw.waitStatus(c, Suspended)
	clock.Advance(time.Minute)
	r = fw.wait(c)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	d, err := fw.flow.Result(fw.e.Wait(context.Background(), c))
	if err != nil || !d.Handled {
		t.Fatalf("handled %v %v", d.Handled, err)
	}

	// The timeout passes while a step runs, and the step then suspends:
	// OnTimeout still runs.
	fw.gates.set("flow:e:0")
	e := fw.submit(fw.handler, flow{Name: "e", Steps: []flowStep{{Gate: true, Wait: "never"}, {}, {}}, TimeoutTo: 2},
		SubmitOptions{Timeout: time.Minute})
	reach(t, fw.gates, "flow:e:0")
	clock.Advance(time.Minute)
	fw.gates.open("flow:e:0")
	if d, err := fw.flow.Result(fw.e.Wait(context.Background(), e)); err != nil || !d.Handled {
		t.Fatalf("timeout during a step: handled %v, %v", d.Handled, err)
	}

	// A parent waiting for its children times out too.
	p := fw.submit(fw.flow, flow{Name: "p", Steps: []flowStep{{Kids: []flow{{Name: "k", Steps: []flowStep{{Wait: "never"}}}}}, {}}},
		SubmitOptions{Timeout: time.Minute})
	waitFor(t, "child suspended", func() bool { return fw.e.Stats().Suspended == 1 })
	clock.Advance(time.Minute)
	if r := fw.wait(p); !errors.Is(r.Err(), ErrTimeout) {
		t.Fatalf("parent: %v", r.Err())
	}
	if fx := fw.fx(p); len(fx) != 0 {
		t.Fatalf("tree not rolled back: %v", fx)
	}
}

// A Retryable error retries the step with backoff, writing nothing to
// the store per attempt, visibly; once the attempts are used up, the
// step fails and the tree rolls back.
func TestRetryableBackoff(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	fw := newFlowWorld(t, Options{Clock: clock}, TypeOptions[flow]{Retry: RetryPolicy{Initial: time.Second, Max: 4 * time.Second, Jitter: -1, Attempts: 4}})
	defer fw.close()
	a := fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{}, {Retry: 3}, {}}})
	waitFor(t, "first attempt", func() bool { return fw.sm.attemptsOf(a, 1) == 1 })
	waitFor(t, "parked", func() bool { return clock.Pending() > 0 })
	commits := fw.store.Stats().Commits
	in := fw.info(a)
	if in.Retries != 1 || in.LastError != "transient 1" {
		t.Fatalf("retries %d %q", in.Retries, in.LastError)
	}
	for i, d := range []time.Duration{time.Second, 2 * time.Second} {
		clock.Advance(d - time.Millisecond)
		if n := fw.sm.attemptsOf(a, 1); n != i+1 {
			t.Fatalf("attempt %d ran before its backoff (%d attempts)", i+2, n)
		}
		clock.Advance(time.Millisecond)
		waitFor(t, "next attempt", func() bool { return fw.sm.attemptsOf(a, 1) == i+2 })
		waitFor(t, "parked", func() bool { return clock.Pending() > 0 })
	}
	if c := fw.store.Stats().Commits; c != commits {
		t.Fatalf("%d store commits during retries", c-commits)
	}
	clock.Advance(4 * time.Second)
	if r := fw.wait(a); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if s := fw.e.Stats().Types["flow"]; s.Retries != 3 {
		t.Fatalf("Retries %d", s.Retries)
	}
	// More failures than attempts: the step fails for good.
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{}, {Retry: 100}}})
	for range 4 {
		waitFor(t, "parked", func() bool { return clock.Pending() > 0 || fw.finished(b) })
		if n, ok := clock.Next(); ok {
			clock.Set(n)
		}
	}
	r := fw.wait(b)
	if r.Status != RolledBack || fw.sm.attemptsOf(b, 1) != 5 {
		t.Fatalf("status %v after %d attempts", r.Status, fw.sm.attemptsOf(b, 1))
	}
}

// With one worker, procedures suspended on events and sleeping hold no
// worker: the procedure that signals them still runs.
func TestNoAllWorkersBusyDeadlock(t *testing.T) {
	fw := newFlowWorld(t, Options{Workers: 1})
	defer fw.close()
	var ids []ID
	for i := range 20 {
		ids = append(ids, fw.submit(fw.flow, flow{Name: fmt.Sprint("w", i), Steps: []flowStep{{Wait: "go"}, {Sleep: time.Millisecond}, {}}}))
	}
	waitFor(t, "all suspended", func() bool { return fw.e.Stats().Suspended == 20 })
	fw.wait(fw.submit(fw.flow, flow{Name: "s", Steps: []flowStep{{Signal: "go"}}}))
	for _, id := range ids {
		fw.wait(id)
	}
}

func (fw *flowWorld) lockView() map[string]LockInfo {
	out := map[string]LockInfo{}
	for _, li := range fw.e.Locks() {
		out[li.Resource] = li
	}
	return out
}

// waitLocksFree waits until the lock table is empty and checks it: Wait
// returns once a result is durable, and the engine lets go of the
// finished procedures' locks a moment later.
func (fw *flowWorld) waitLocksFree() {
	fw.t.Helper()
	waitFor(fw.t, "every lock let go", func() bool {
		fw.e.mu.Lock()
		defer fw.e.mu.Unlock()
		return fw.e.locks.table.len() == 0
	})
	fw.e.mu.Lock()
	err := fw.e.locks.table.check()
	fw.e.mu.Unlock()
	if err != nil {
		fw.t.Fatalf("lock table: %v", err)
	}
}

func holderIDs(hs []LockHolder) []ID {
	var out []ID
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

// Exclusive against shared on one table: a procedure holding the table
// across a suspension keeps the others out, waiting without a worker;
// after a restart its lock is held again before anything runs; when it
// finishes, the waiters get in; nothing is left in the table.
func TestLockContention(t *testing.T) {
	fw := newFlowWorld(t, Options{Workers: 1})
	defer fw.close()
	x := ExclusiveLock("table/t1")
	a := fw.submit(fw.hold, flow{Name: "a", Steps: []flowStep{{Locks: []Lock{x}, Wait: "a"}, {}}})
	fw.waitStatus(a, Suspended)
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{{Locks: []Lock{SharedLock("table/t1")}}, {}}})
	c := fw.submit(fw.flow, flow{Name: "c", Steps: []flowStep{{Locks: []Lock{ExclusiveLock("table/t1/region/r1")}}, {}}})
	waitFor(t, "b and c waiting for locks", func() bool { return fw.info(b).WaitingForLocks && fw.info(c).WaitingForLocks })
	// The one worker is free: an unrelated table's procedure runs.
	fw.wait(fw.submit(fw.flow, flow{Name: "d", Steps: []flowStep{{Locks: []Lock{ExclusiveLock("table/t2/region/r1")}}, {}}}))
	v := fw.lockView()
	if got := holderIDs(v["table/t1"].Holders); !slices.Equal(got, []ID{a}) {
		t.Fatalf("table/t1 holders %v, want [%d]", got, a)
	}
	if got := holderIDs(v["table/t1"].Waiters); !slices.Equal(got, []ID{b}) {
		t.Fatalf("table/t1 waiters %v, want [%d]", got, b)
	}
	if got := holderIDs(v["table/t1/region/r1"].Waiters); !slices.Equal(got, []ID{c}) {
		t.Fatalf("region waiters %v", got)
	}
	if in := fw.info(a); !slices.Equal(in.Locks, []Lock{x}) {
		t.Fatalf("a's locks %v", in.Locks)
	}
	if s := fw.e.Stats(); s.LockWaiting != 2 {
		t.Fatalf("LockWaiting %d", s.LockWaiting)
	}

	fw.close()
	fw.noStart = true
	fw.open()
	if v := fw.e.Locks(); len(v) != 0 {
		t.Fatalf("locks before Start: %v", v)
	}
	if err := fw.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fw.noStart = false
	if got := holderIDs(fw.lockView()["table/t1"].Holders); !slices.Equal(got, []ID{a}) {
		t.Fatalf("after restart: table/t1 holders %v, want [%d]", got, a)
	}
	waitFor(t, "b and c waiting again", func() bool { return fw.info(b).WaitingForLocks && fw.info(c).WaitingForLocks })
	if err := fw.e.Signal(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []ID{a, b, c} {
		if r := fw.wait(id); r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	fw.waitLocksFree()
}

// Waiters are served in order: a shared request behind a waiting
// exclusive one waits too, though it is compatible with the holder.
func TestLockWaitersInOrder(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	var mu sync.Mutex
	var order []ID
	fw.sm.onLocks = func(id ID, state int) {
		mu.Lock()
		order = append(order, id)
		mu.Unlock()
	}
	s := SharedLock("table/t1")
	h := fw.submit(fw.hold, flow{Name: "h", Steps: []flowStep{{Locks: []Lock{s}, Wait: "h"}, {}}})
	fw.waitStatus(h, Suspended)
	x := fw.submit(fw.flow, flow{Name: "x", Steps: []flowStep{{Locks: []Lock{ExclusiveLock("table/t1")}}, {}}})
	waitFor(t, "x waiting", func() bool { return fw.info(x).WaitingForLocks })
	r := fw.submit(fw.flow, flow{Name: "r", Steps: []flowStep{{Locks: []Lock{s}}, {}}})
	waitFor(t, "r waiting", func() bool { return fw.info(r).WaitingForLocks })
	if err := fw.e.Signal(context.Background(), "h"); err != nil {
		t.Fatal(err)
	}
	fw.wait(x)
	fw.wait(r)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []ID{h, x, r}) {
		t.Fatalf("steps ran holding their locks in order %v, want [%d %d %d]", order, h, x, r)
	}
}

// Children inherit their parent's locks: they take locks under (and on)
// what the parent holds while an unrelated procedure waits.
func TestLockChildrenInherit(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	kid := func(name string, l Lock) flow {
		return flow{Name: name, Steps: []flowStep{{Locks: []Lock{l}}, {}}}
	}
	p := fw.submit(fw.hold, flow{Name: "p", Steps: []flowStep{
		{Locks: []Lock{ExclusiveLock("table/t1")}, Wait: "p"},
		{Kids: []flow{kid("k1", ExclusiveLock("table/t1/region/r1")), kid("k2", ExclusiveLock("table/t1"))}},
		{Wait: "p2"},
		{},
	}})
	fw.waitStatus(p, Suspended)
	o := fw.submit(fw.flow, flow{Name: "o", Steps: []flowStep{{Locks: []Lock{SharedLock("table/t1")}}, {}}})
	waitFor(t, "o waiting", func() bool { return fw.info(o).WaitingForLocks })
	if err := fw.e.Signal(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	// The children run (the parent then suspends again, still holding).
	waitFor(t, "children done", func() bool { in := fw.info(p); return in.Status == Suspended && in.Event == "p2" })
	if in := fw.info(o); !in.WaitingForLocks {
		t.Fatalf("o got in while the parent holds the table: %+v", in)
	}
	if err := fw.e.Signal(context.Background(), "p2"); err != nil {
		t.Fatal(err)
	}
	fw.wait(p)
	fw.wait(o)
}

// A rolled-back procedure lets go of exactly what it held; its Rollback
// steps take the locks their states took.
func TestLockRollbackReleases(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	fw.sm.checkRollbackLocks = true
	a := fw.submit(fw.hold, flow{Name: "a", Steps: []flowStep{
		{Locks: []Lock{ExclusiveLock("table/t1")}, Wait: "a"}, {}, {Fail: true}}})
	b := fw.submit(fw.flow, flow{Name: "b", Steps: []flowStep{
		{Locks: []Lock{ExclusiveLock("table/t2/region/r1")}}, {Fail: true}}})
	fw.waitStatus(a, Suspended)
	w := fw.submit(fw.flow, flow{Name: "w", Steps: []flowStep{{Locks: []Lock{ExclusiveLock("table/t1/region/r9")}}, {}}})
	waitFor(t, "w waiting", func() bool { return fw.info(w).WaitingForLocks })
	if err := fw.e.Signal(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if r := fw.wait(a); r.Status != RolledBack {
		t.Fatalf("a: %v", r.Status)
	}
	if r := fw.wait(b); r.Status != RolledBack {
		t.Fatalf("b: %v", r.Status)
	}
	fw.wait(w)
	if fx := append(fw.fx(a), fw.fx(b)...); len(fx) != 0 {
		t.Fatalf("not rolled back: %v", fx)
	}
	fw.waitLocksFree()
	if s := fw.e.Stats(); s.LockWaiting != 0 {
		t.Fatalf("LockWaiting %d", s.LockWaiting)
	}
	fw.sm.mu.Lock()
	defer fw.sm.mu.Unlock()
	if fw.sm.rollbackLocked != 2 { // a's state 0 (held all along), b's state 0 (taken again)
		t.Fatalf("%d rollbacks checked for their locks, want 2", fw.sm.rollbackLocked)
	}
}

// A timeout that passes once the tree is past its point of no return is
// only logged: the tree cannot roll back, and the procedure goes on.
func TestTimeoutPastPointOfNoReturn(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	w := newWorld(t, Options{Clock: clock})
	defer w.close()
	w.gates.set("exec:p:4")
	id, err := w.ponr.Submit(context.Background(), newScript("p", 5), SubmitOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	reach(t, w.gates, "exec:p:4") // states >= 3 are past the point of no return
	clock.Advance(time.Hour)
	w.gates.open("exec:p:4")
	if r := w.wait(id); r.Status != Succeeded {
		t.Fatalf("%v %v", r.Status, r.Err())
	}
}

// Retry delays double from Initial up to Max, each within ±Jitter.
func TestRetryPolicyDelay(t *testing.T) {
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}.withDefaults(RetryPolicy{})
	for n, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		base *= time.Millisecond
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		var seen []time.Duration
		for range 200 {
			d := p.delay(n + 1)
			if d < lo || d > hi {
				t.Fatalf("retry %d: delay %v outside [%v, %v]", n+1, d, lo, hi)
			}
			seen = append(seen, d)
		}
		if slices.Min(seen) == slices.Max(seen) {
			t.Fatalf("retry %d: no jitter", n+1)
		}
	}
	exact := RetryPolicy{Initial: time.Second, Jitter: -1}.withDefaults(RetryPolicy{Max: 10 * time.Second, Jitter: 0.2})
	if d := exact.delay(3); d != 4*time.Second {
		t.Fatalf("no jitter: %v", d)
	}
	if !IsRetryable(fmt.Errorf("wrapped: %w", Retryable(errors.New("x")))) || IsRetryable(errors.New("x")) || Retryable(nil) != nil {
		t.Fatal("Retryable/IsRetryable")
	}
}

// ManualClock runs due calls in deadline order when moved, and never a
// stopped one.
func TestManualClock(t *testing.T) {
	c := NewManualClock(time.Unix(1000, 0))
	var got []int
	c.AfterFunc(3*time.Second, func() { got = append(got, 3) })
	c.AfterFunc(time.Second, func() { got = append(got, 1) })
	stopped := c.AfterFunc(2*time.Second, func() { got = append(got, 2) })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop")
	}
	c.Advance(999 * time.Millisecond)
	if len(got) != 0 || c.Pending() != 2 {
		t.Fatalf("early: %v, %d pending", got, c.Pending())
	}
	if at, ok := c.Next(); !ok || !at.Equal(time.Unix(1001, 0)) {
		t.Fatalf("Next %v %v", at, ok)
	}
	c.Advance(5 * time.Second)
	if !slices.Equal(got, []int{1, 3}) || c.Pending() != 0 {
		t.Fatalf("fired %v, %d pending", got, c.Pending())
	}
	c.Set(time.Unix(0, 0)) // never backwards
	if !c.Now().Equal(time.Unix(1005, 999_000_000)) {
		t.Fatalf("now %v", c.Now())
	}
}

// Bad Locks (an invalid resource, a panic) fail the step with a clear
// error; the tree rolls back.
func TestBadLocksFailStep(t *testing.T) {
	fw := newFlowWorld(t, Options{})
	defer fw.close()
	id := fw.submit(fw.flow, flow{Name: "bad", Steps: []flowStep{{}, {Locks: []Lock{ExclusiveLock("table//t1")}}}})
	r := fw.wait(id)
	if r.Status != RolledBack || r.Error == nil || !strings.Contains(r.Error.Message, "table//t1") {
		t.Fatalf("%v %v", r.Status, r.Error)
	}
}

// A timeout fails a procedure while one of its steps runs; that step's
// commit comes after the failure's, with a later status. The failure
// survives a crash all the same: the tree rolls back after the restart.
func TestTimeoutDuringStepSurvivesCrash(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	var fw *flowWorld
	var mu sync.Mutex
	var crashed *vfs.MemFS
	var target ID
	fw = newFlowWorld(t, Options{Clock: clock, Hooks: Hooks{AfterCommit: func(info StepInfo) {
		mu.Lock()
		defer mu.Unlock()
		if info.ID == target && info.State == 1 && !info.Rollback && crashed == nil {
			crashed = fw.fs.CrashClone(1) // the power fails right after the step's commit
		}
	}}})
	defer fw.close()
	fw.gates.set("flow:a:1")
	mu.Lock()
	// State 1 ends suspended: its commit stores status suspended over the
	// failure's failed.
	target = fw.submit(fw.flow, flow{Name: "a", Steps: []flowStep{{}, {Gate: true, Wait: "never"}, {}}}, SubmitOptions{Timeout: time.Minute})
	mu.Unlock()
	reach(t, fw.gates, "flow:a:1")
	clock.Advance(time.Minute) // the timeout's failure commits while state 1 runs
	fw.gates.open("flow:a:1")
	waitFor(t, "the crash point", func() bool { mu.Lock(); defer mu.Unlock(); return crashed != nil })
	fw.close()
	fw.fs = crashed
	fw.open()
	r := fw.wait(target)
	if r.Status != RolledBack || !errors.Is(r.Err(), ErrTimeout) {
		t.Fatalf("after the crash: %v %v", r.Status, r.Err())
	}
	if fx := fw.fx(target); len(fx) != 0 {
		t.Fatalf("not rolled back: %v", fx)
	}
}
