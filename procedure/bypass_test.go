package procedure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bypassScene is a tree in some shape for the bypass tests: build makes
// it on fw and returns the procedure to bypass and the tree's root once
// every part is where the scene wants it; settle lets the rest of the
// tree go on after the bypass (also after a restart); check checks the
// root's result.
type bypassScene struct {
	build  func(t *testing.T, fw *flowWorld) (target, root ID)
	settle func(t *testing.T, fw *flowWorld, target, root ID)
	check  func(t *testing.T, fw *flowWorld, target, root ID, r Result)
	// live: checks right after the bypass, in the process that set the
	// scene up (steps cancelled, Info of the procedures reached).
	live func(t *testing.T, fw *flowWorld, target, root ID)
}

var bypassClockStart = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// treeIDs returns the ids of the live procedures of root's tree.
func treeIDs(t *testing.T, w *world, root ID) []ID {
	t.Helper()
	ins := slices.Collect(w.e.List(Query{}))
	var ids []ID
	for _, in := range ins {
		if in.Root == root {
			ids = append(ids, in.ID)
		}
	}
	return ids
}

// checkNoTrace checks that completed tree root left nothing behind but
// its result: no record of its other procedures (ids), and, in memory, no
// live procedure or tree, lock held or waited for, event waiter, timer,
// Wait registration or queued work.
func checkNoTrace(t *testing.T, w *world, root ID, ids []ID) {
	t.Helper()
	in, err := w.e.Get(root)
	if err != nil || in.Completed.IsZero() {
		t.Fatalf("root %d not completed: %+v %v", root, in, err)
	}
	for k, b := range w.e.procsC.All(w.store.Latest()) {
		if r, err := decodeRecord(b); err == nil && r.root == root && ID(k) != root {
			t.Errorf("record of procedure %d (%v) of completed tree %d left behind", k, r.status, root)
		}
	}
	waitFor(t, "the run queue to drain", func() bool { return w.e.q.len() == 0 })
	mine := map[ID]bool{}
	for _, id := range ids {
		mine[id] = true
	}
	e := w.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.trees[root] != nil {
		t.Errorf("tree %d still in memory", root)
	}
	for _, id := range ids {
		if e.procs[id] != nil {
			t.Errorf("procedure %d still in memory", id)
		}
		if len(e.waiters[id]) > 0 && id != root {
			t.Errorf("procedure %d still has waiters", id)
		}
	}
	for _, li := range e.locks.table.view() {
		for _, h := range append(li.Holders, li.Waiters...) {
			if mine[h.ID] {
				t.Errorf("lock %s still held or waited for by %d", li.Resource, h.ID)
			}
		}
	}
	for _, lw := range e.locks.waits {
		if (lw.p != nil && mine[lw.p.id]) || (lw.t != nil && lw.t.root.id == root) {
			t.Errorf("lock request of tree %d still waiting", root)
		}
	}
	for ev, m := range e.eventWaits.suspended {
		for p := range m {
			if mine[p.id] {
				t.Errorf("procedure %d still waits for event %s", p.id, ev)
			}
		}
	}
	for ev, m := range e.eventWaits.woken {
		for p := range m {
			if mine[p.id] {
				t.Errorf("procedure %d still noted as woken by %s", p.id, ev)
			}
		}
	}
	if n := len(e.timers); n != 0 {
		t.Errorf("%d timers left", n)
	}
}

// runBypassScene sets sc up and bypasses its target with a crash at the
// k-th file operation from the bypass on, for k = 1, 2, ... until the
// bypass runs without reaching the crash point; then once more with a
// crash right after the bypass returned. After each crash it restarts
// from what the power cut left, bypasses again unless the bypass is
// durable (which it must be if Bypass returned nil), lets the tree go on
// and checks that it completed as it should and left no trace.
func runBypassScene(t *testing.T, sc bypassScene) {
	ctx := context.Background()
	for k := 1; ; k++ {
		clock := NewManualClock(bypassClockStart)
		fw := newFlowWorld(t, Options{Clock: clock, Workers: 4})
		target, root := sc.build(t, fw)
		ids := treeIDs(t, fw.world, root)
		last := k > 20
		if !last {
			fw.fs.SetCrashAfter(k)
		}
		err := fw.e.Bypass(ctx, target, "ops", "stuck for good")
		fw.fs.SetCrashAfter(0)
		crashed := fw.fs.Crashed()
		what := fmt.Sprintf("crash at op %d of the bypass", k)
		if !crashed {
			if err != nil {
				t.Fatalf("bypass: %v", err)
			}
			what = "a crash after the bypass returned"
			if sc.live != nil {
				sc.live(t, fw, target, root)
			}
			last = true
		} else if err == nil {
			// The bypass committed before the crash point, and a later
			// write (another procedure's step) reached it: that write's
			// failure fails the store and, once its commit returns, the
			// engine, on the committer's goroutine.
			waitFor(t, what+": the engine to fail on the crashed file system", func() bool { return fw.e.Err() != nil })
		}
		acked := err == nil
		fw.close()
		fw.fs = fw.fs.CrashClone(int64(k))
		fw.open()
		in, gerr := fw.e.Get(target)
		durable := errors.Is(gerr, ErrNotFound) || (gerr == nil && in.Bypass != nil)
		t.Logf("%s: acknowledged %v, durable %v", what, acked, durable)
		checkBypassAudited(t, what, fw.e, target, root, durable)
		switch {
		case durable:
			// The target's record is gone with its completed tree, or
			// says bypassed.
		case acked:
			t.Fatalf("%s: acknowledged bypass lost: %+v %v", what, in, gerr)
		default:
			if err := fw.e.Bypass(ctx, target, "ops", "stuck for good"); err != nil {
				t.Fatalf("%s: bypass after the restart: %v", what, err)
			}
			checkBypassAudited(t, what+", bypassed again", fw.e, target, root, true)
		}
		sc.settle(t, fw, target, root)
		r := fw.wait(root)
		sc.check(t, fw, target, root, r)
		checkNoTrace(t, fw.world, root, ids)
		fw.close()
		if t.Failed() {
			t.Fatalf("after %s", what)
		}
		if last {
			return
		}
	}
}

// checkBypassAudited checks that the audit log holds the scene's bypass
// iff it took effect: it commits with the bypass.
func checkBypassAudited(t *testing.T, what string, e *Engine, target, root ID, took bool) {
	t.Helper()
	log := auditLog(e)
	switch {
	case !took && len(log) != 0:
		t.Fatalf("%s: a bypass that did not take effect is audited: %+v", what, log)
	case took && (len(log) != 1 || log[0].Kind != "bypass" || log[0].Target != target || log[0].Root != root ||
		log[0].Who != "ops" || log[0].Why != "stuck for good" || !log[0].At.Equal(bypassClockStart)):
		t.Fatalf("%s: audit log %+v, want the bypass of %d alone", what, log, target)
	}
}

// everyStatusScene: a root whose children are in every status: running a
// step, waiting for a lock, suspended on an event, sleeping, waiting for
// its own child (which runs a step), waiting to retry a step, succeeded. Another tree holds the
// lock. The root itself has a timeout.
func everyStatusScene(t *testing.T, fw *flowWorld) (target, root ID) {
	for _, g := range []string{"flow:blocker:1", "flow:run:0", "flow:grand:0"} {
		fw.gates.set(g)
	}
	fw.submit(fw.hold, flow{Name: "blocker", Steps: []flowStep{{Locks: []Lock{ExclusiveLock("table/t9")}}, {Gate: true}}})
	reach(t, fw.gates, "flow:blocker:1")
	root = fw.submit(fw.flow, flow{Name: "root", Steps: []flowStep{{Kids: []flow{
		{Name: "run", Steps: []flowStep{{Gate: true}}},
		{Name: "lock", Steps: []flowStep{{Locks: []Lock{ExclusiveLock("table/t9")}}}},
		{Name: "event", Steps: []flowStep{{Wait: "never"}}},
		{Name: "sleep", Steps: []flowStep{{Sleep: time.Hour}}},
		{Name: "parent", Steps: []flowStep{{Kids: []flow{{Name: "grand", Steps: []flowStep{{Gate: true}}}}}}},
		{Name: "done"},
		{Name: "retry", Steps: []flowStep{{Retry: 1 << 20}}},
	}}, {}}}, SubmitOptions{Timeout: time.Hour})
	reach(t, fw.gates, "flow:run:0")
	reach(t, fw.gates, "flow:grand:0")
	run, lock, event, sleep, parent, done, retry := root+1, root+2, root+3, root+4, root+5, root+6, root+7
	waitFor(t, "the children's statuses", func() bool {
		return fw.info(lock).WaitingForLocks && fw.info(event).Status == Suspended && fw.info(sleep).Status == Suspended &&
			fw.info(parent).Status == Waiting && fw.info(done).Status == Succeeded && fw.info(run).Running &&
			fw.info(retry).Retries > 0 && !fw.info(retry).Running
	})
	return root, root
}

// TestBypassRootWithChildrenInEveryStatus: bypassing a root covers its
// unfinished children whatever they are doing and completes the tree,
// leaving nothing behind, also across a crash in the middle of it.
func TestBypassRootWithChildrenInEveryStatus(t *testing.T) {
	runBypassScene(t, bypassScene{
		build:  everyStatusScene,
		settle: func(t *testing.T, fw *flowWorld, target, root ID) {},
		check: func(t *testing.T, fw *flowWorld, target, root ID, r Result) {
			if b := r.Bypass; r.Status != Succeeded || !errors.Is(r.Err(), ErrBypassed) || b == nil || b.Role != BypassDirect ||
				b.Target != root || b.Who != "ops" {
				t.Errorf("result %v (%v) bypass %+v", r.Status, r.Err(), r.Bypass)
			}
		},
		live: func(t *testing.T, fw *flowWorld, target, root ID) {
			// The steps running got their contexts cancelled by the bypass.
			for _, g := range []string{"flow:run:0", "flow:grand:0"} {
				waitFor(t, "the step at "+g+" to end", func() bool { return fw.gates.cause(g) != nil })
				if err := fw.gates.cause(g); !errors.Is(err, ErrBypassed) {
					t.Errorf("step at %s: context cause %v, want ErrBypassed", g, err)
				}
			}
		},
	})
}

// TestBypassRootWhileRollingBack: bypassing the root of a tree that rolls
// back (its rollback step stuck) completes it as rolled back; Wait's
// error matches ErrRolledBack and ErrBypassed.
func TestBypassRootWhileRollingBack(t *testing.T) {
	runBypassScene(t, bypassScene{
		build: func(t *testing.T, fw *flowWorld) (target, root ID) {
			fw.gates.set("rollback:kid:1")
			s := newScript("rb", 3)
			s.SpawnAt = 0
			kid := newScript("kid", 3)
			kid.FailAt = 1
			sib := newScript("sib", 1)
			s.Children = []script{kid, sib}
			root = fw.world.submit(s)
			reach(t, fw.gates, "rollback:kid:1")
			return root, root
		},
		settle: func(t *testing.T, fw *flowWorld, target, root ID) { fw.gates.open("rollback:kid:1") },
		check: func(t *testing.T, fw *flowWorld, target, root ID, r Result) {
			err := r.Err()
			var pe *Error
			if r.Status != RolledBack || !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrBypassed) || !errors.As(err, &pe) ||
				!errors.Is(pe, ErrRolledBack) || r.Bypass == nil {
				t.Errorf("result %v: %v, bypass %+v", r.Status, err, r.Bypass)
			}
		},
	})
}

// TestBypassChildBypassesAncestors: bypassing a child marks its ancestors
// bypassed: they run no further state (their timeouts no longer fire) and
// finish once their other children did; siblings finish their work. Info
// shows who was bypassed, by whom, why and how.
func TestBypassChildBypassesAncestors(t *testing.T) {
	// root -> mid -> (stuck, sib); root -> other. Bypass stuck.
	runBypassScene(t, bypassScene{
		build: func(t *testing.T, fw *flowWorld) (target, root ID) {
			fw.gates.set("flow:stuck:0")
			fw.gates.set("flow:sib:0")
			root = fw.submit(fw.flow, flow{Name: "root", Steps: []flowStep{{Kids: []flow{
				{Name: "mid", Steps: []flowStep{{Kids: []flow{
					{Name: "stuck", Steps: []flowStep{{Gate: true}, {}}},
					{Name: "sib", Steps: []flowStep{{Gate: true}, {}}},
				}}, {}}},
				{Name: "other", Steps: []flowStep{{}, {}}},
			}}, {}, {}}}, SubmitOptions{Timeout: time.Hour})
			reach(t, fw.gates, "flow:stuck:0")
			reach(t, fw.gates, "flow:sib:0")
			return root + 3, root // root+1 mid, root+2 other, root+3 stuck, root+4 sib
		},
		live: func(t *testing.T, fw *flowWorld, stuck, root ID) {
			mid, sib := root+1, root+4
			for id, want := range map[ID]BypassRole{root: BypassAncestor, mid: BypassAncestor, stuck: BypassDirect} {
				in := fw.info(id)
				if b := in.Bypass; b == nil || b.Role != want || b.Target != stuck || b.Who != "ops" || b.Why != "stuck for good" {
					t.Errorf("procedure %d: bypass %+v, want role %v of %d", id, in.Bypass, want, stuck)
				}
			}
			if in := fw.info(sib); in.Bypass != nil || !in.Running {
				t.Errorf("sibling: %+v", in)
			}
			if in := fw.info(root); in.Status != Waiting || !in.Deadline.IsZero() {
				t.Errorf("root: %+v", in)
			}
			waitFor(t, "the stuck step to end", func() bool { return fw.gates.cause("flow:stuck:0") != nil })
			if err := fw.gates.cause("flow:stuck:0"); !errors.Is(err, ErrBypassed) {
				t.Errorf("stuck step: context cause %v", err)
			}
		},
		settle: func(t *testing.T, fw *flowWorld, stuck, root ID) {
			// The root's deadline passes: it is bypassed, so nothing fails.
			fw.opts.Clock.(*ManualClock).Advance(2 * time.Hour)
			fw.gates.open("flow:sib:0")
		},
		check: func(t *testing.T, fw *flowWorld, stuck, root ID, r Result) {
			if b := r.Bypass; r.Status != Succeeded || !errors.Is(r.Err(), ErrBypassed) || b == nil || b.Role != BypassAncestor || b.Target != stuck {
				t.Errorf("result %v (%v) bypass %+v", r.Status, r.Err(), r.Bypass)
			}
			// Executed: root 0, mid 0, other 0 and 1 (its last), sib 0 and
			// 1; not root 1 and 2, mid 1, stuck anything.
			mid, other, sib := root+1, root+2, root+4
			var want []string
			for _, k := range [][2]ID{{root, 0}, {mid, 0}, {other, 0}, {other, 1}, {other, 2}, {sib, 0}, {sib, 1}, {sib, 2}} {
				want = append(want, fmt.Sprintf("fx/%d/%d/%d", root, k[0], k[1]))
			}
			slices.Sort(want)
			if got := fw.fx(root); !slices.Equal(got, want) {
				t.Errorf("metadata %v, want %v", got, want)
			}
		},
	})
}

// TestBypassWhileRollbackRetries: bypassing the root of a tree whose
// rollback step keeps failing completes it and leaves no retry timer
// behind.
func TestBypassWhileRollbackRetries(t *testing.T) {
	clock := NewManualClock(bypassClockStart)
	w := &world{t: t, fs: newMemFS(), gates: &gates{}, running: map[ID]bool{}, opts: Options{Clock: clock}}
	var bad *Type[int, script]
	w.extra = func(w *world) {
		bad = Register[int, script](w.e, "bad-rollback", StateMachineFuncs[int, script]{
			Exec: failAtState1,
			Undo: func(ctx context.Context, env *Env, s int, d *script) error { return errors.New("cannot undo") },
		}, nil)
	}
	w.open()
	defer w.close()
	id, err := bad.Submit(context.Background(), newScript("x", 3), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a rollback retry to be scheduled", func() bool {
		in, _ := w.e.Get(id)
		return in.Retries >= 1 && clock.Pending() > 0
	})
	if err := w.e.Bypass(context.Background(), id, "ops", "rollback stuck"); err != nil {
		t.Fatal(err)
	}
	if r := w.wait(id); r.Status != RolledBack || !errors.Is(r.Err(), ErrBypassed) {
		t.Fatalf("%v %v", r.Status, r.Err())
	}
	checkNoTrace(t, w, id, []ID{id})
	if n := clock.Pending(); n != 0 {
		t.Fatalf("%d timers pending on the clock", n)
	}
}

// TestBypassInfoRoles: Info shows, for every procedure a bypass reached,
// who, why, which procedure was bypassed and how it reached this one,
// also after a restart; procedures it did not reach show none.
func TestBypassInfoRoles(t *testing.T) {
	fw := newFlowWorld(t, Options{Workers: 4})
	defer fw.close()
	for _, g := range []string{"flow:a:0", "flow:b:0", "flow:other:0"} {
		fw.gates.set(g)
	}
	root := fw.submit(fw.flow, flow{Name: "root", Steps: []flowStep{{Kids: []flow{
		{Name: "mid", Steps: []flowStep{{Kids: []flow{
			{Name: "a", Steps: []flowStep{{Gate: true}}},
			{Name: "b", Steps: []flowStep{{Gate: true}}},
		}}}},
		{Name: "other", Steps: []flowStep{{Gate: true}}},
	}}, {}}})
	mid, other, a, b := root+1, root+2, root+3, root+4
	for _, g := range []string{"flow:a:0", "flow:b:0", "flow:other:0"} {
		reach(t, fw.gates, g)
	}
	if err := fw.e.Bypass(context.Background(), mid, "ann", "region server gone"); err != nil {
		t.Fatal(err)
	}
	want := map[ID]struct {
		status Status
		role   BypassRole
	}{root: {Waiting, BypassAncestor}, mid: {Succeeded, BypassDirect}, a: {Succeeded, BypassDescendant}, b: {Succeeded, BypassDescendant}}
	check := func(when string) {
		for id, w := range want {
			in := fw.info(id)
			if bp := in.Bypass; in.Status != w.status || bp == nil || bp.Role != w.role || bp.Target != mid ||
				bp.Who != "ann" || bp.Why != "region server gone" || bp.At == 0 {
				t.Errorf("%s: procedure %d: %v, bypass %+v; want %v, role %v of %d", when, id, in.Status, in.Bypass, w.status, w.role, mid)
			}
		}
		if in := fw.info(other); in.Bypass != nil {
			t.Errorf("%s: sibling of the bypassed one: bypass %+v", when, in.Bypass)
		}
	}
	check("after the bypass")
	fw.restart()
	check("after a restart")
	fw.gates.open("flow:other:0")
	r := fw.wait(root)
	if r.Status != Succeeded || !errors.Is(r.Err(), ErrBypassed) || r.Bypass == nil || r.Bypass.Role != BypassAncestor || r.Bypass.Target != mid {
		t.Fatalf("root: %v %v %+v", r.Status, r.Err(), r.Bypass)
	}
	if fx := fw.fx(root); slices.Contains(fx, fmt.Sprintf("fx/%d/%d/1", root, root)) {
		t.Fatalf("the root ran its state after its children: %v", fx)
	}
}

// TestTakenStepDoesNotRunAfterOperator: a step a worker has taken but not
// started when its procedure is bypassed, or its tree aborted, does not
// call Execute.
func TestTakenStepDoesNotRunAfterOperator(t *testing.T) {
	for _, op := range []string{"bypass", "abort"} {
		t.Run(op, func(t *testing.T) {
			reached, release := make(chan struct{}), make(chan struct{})
			var targetID atomic.Uint64
			var once sync.Once
			fw := newFlowWorld(t, Options{Hooks: Hooks{StepStart: func(info StepInfo) {
				if uint64(info.ID) == targetID.Load() && info.State == 1 && !info.Rollback {
					once.Do(func() { close(reached); <-release })
				}
			}}})
			defer fw.close()
			fw.gates.set("flow:p:0")
			target := fw.submit(fw.flow, flow{Name: "p", Steps: []flowStep{{Gate: true}, {}}})
			targetID.Store(uint64(target))
			fw.gates.open("flow:p:0")
			<-reached
			var err error
			if op == "bypass" {
				err = fw.e.Bypass(context.Background(), target, "ops", "stuck")
			} else {
				err = fw.e.Abort(context.Background(), target, "test", "a test aborts it")
			}
			if err != nil {
				t.Fatal(err)
			}
			close(release)
			r := fw.wait(target)
			if n := fw.sm.attemptsOf(target, 1); n != 0 {
				t.Fatalf("state 1 executed %d times after the %s", n, op)
			}
			if (op == "bypass") != errors.Is(r.Err(), ErrBypassed) || (op == "abort") != (r.Status == RolledBack) {
				t.Fatalf("%s: %v %v", op, r.Status, r.Err())
			}
		})
	}
}

// TestBypassRootDuringSpawnCommit: a root bypassed while the commit of
// its step that spawned children is being let go (durable, not yet
// processed) completes its tree, and the children that commit made arm
// no timer afterwards.
func TestBypassRootDuringSpawnCommit(t *testing.T) {
	clock := NewManualClock(bypassClockStart)
	var rootID atomic.Uint64
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fw := newFlowWorld(t, Options{Clock: clock, Hooks: Hooks{AfterCommit: func(info StepInfo) {
		if uint64(info.ID) == rootID.Load() && info.State == 0 && !info.Rollback {
			once.Do(func() { close(reached); <-release })
		}
	}}}, TypeOptions[flow]{Timeout: time.Hour})
	defer fw.close()
	fw.gates.set("flow:root:0")
	root := fw.submit(fw.flow, flow{Name: "root", Steps: []flowStep{{Gate: true, Kids: []flow{{Name: "kid"}}}, {}}})
	rootID.Store(uint64(root))
	ids := []ID{root, root + 1}
	fw.gates.open("flow:root:0")
	<-reached // the spawn is durable; the completer is held in the hook
	fw.e.mu.Lock()
	rp := fw.e.procs[root]
	fw.e.mu.Unlock()
	if err := fw.e.Bypass(context.Background(), root, "ops", "stuck"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if r := fw.wait(root); !errors.Is(r.Err(), ErrBypassed) {
		t.Fatalf("%v %v", r.Status, r.Err())
	}
	waitFor(t, "the spawn's commit to be let go", func() bool {
		fw.e.mu.Lock()
		defer fw.e.mu.Unlock()
		return !rp.running // let go under the same lock as the rest of its commit
	})
	checkNoTrace(t, fw.world, root, ids)
}
