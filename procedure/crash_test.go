package procedure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/vfs"
)

// crashModel is what the test knows for sure: what was acknowledged.
type crashModel struct {
	mu        sync.Mutex
	submitted map[ID]string // acknowledged roots -> tree name
	steps     map[ID]int    // acknowledged committed steps per procedure
	rootOf    map[ID]ID
	aborted   map[ID]bool // roots whose Abort returned nil
	// bypassed: procedures a Bypass that returned nil reached (the one
	// named, its descendants and ancestors then): none may start a
	// forward step from then on (one running sees its context end). bypassTried: roots of trees a Bypass
	// was tried on (it may be durable even if it returned an error).
	bypassed    map[ID]bool
	bypassTried map[ID]bool
	// What the operator actions did: aborts and bypasses acknowledged (of
	// children: bypassKids), refused or too late.
	abortsAcked, bypassesAcked, bypassKids, actionsNoop int
	events                                              map[string]bool // events of the flows planned -> signalled (durably)
	timedOut                                            int             // flows that timed out (checkFinal)
}

// randomFlow makes a random flow tree for the crash test: steps that
// wait for events (registered in events), sleep, fail with Retryable
// errors, and take table and region locks; children below depth.
func randomFlow(rng *rand.Rand, name string, depth int, events map[string]bool) flow {
	f := flow{Name: name}
	for i := range 1 + rng.IntN(4) {
		var st flowStep
		switch rng.IntN(8) {
		case 0, 1:
			st.Wait = fmt.Sprintf("ev/%s/%d", name, i)
			events[st.Wait] = false
		case 2:
			st.Sleep = time.Duration(1+rng.IntN(5)) * time.Millisecond
		case 3:
			st.Retry = 1 + rng.IntN(2)
		case 4:
			if depth > 0 {
				for k := range 1 + rng.IntN(2) {
					st.Kids = append(st.Kids, randomFlow(rng, fmt.Sprintf("%s.%d", name, k), depth-1, events))
				}
			}
		}
		if rng.IntN(2) == 0 {
			table := fmt.Sprintf("table/t%d", rng.IntN(3))
			switch rng.IntN(4) {
			case 0:
				st.Locks = []Lock{{Resource: table, Mode: Exclusive}}
			case 1:
				st.Locks = []Lock{{Resource: table, Mode: Shared}}
			default:
				st.Locks = []Lock{{Resource: fmt.Sprintf("%s/region/r%d", table, rng.IntN(4)), Mode: Exclusive}}
			}
		}
		f.Steps = append(f.Steps, st)
	}
	return f
}

// stripKidLocks removes the locks of f's descendants.
func (f *flow) stripKidLocks() {
	for i := range f.Steps {
		for j := range f.Steps[i].Kids {
			k := &f.Steps[i].Kids[j]
			for n := range k.Steps {
				k.Steps[n].Locks = nil
			}
			k.stripKidLocks()
		}
	}
}

func (f flow) fxKeys() int {
	n := len(f.Steps) + 1 // and the final state
	for _, st := range f.Steps {
		for _, k := range st.Kids {
			n += k.fxKeys()
		}
	}
	return n
}

// checkLocks checks the lock table against the live procedures: no two
// conflicting owners hold a lock, and every holder is a live procedure
// (running: or one whose tree's completion is being committed).
func checkLocks(t *testing.T, w *world, what string, running bool) {
	t.Helper()
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	if err := w.e.locks.table.check(); err != nil {
		t.Fatalf("%s: lock table: %v", what, err)
	}
	for _, li := range w.e.locks.table.view() {
		for _, h := range li.Holders {
			p := w.e.procs[h.ID]
			if p == nil || (p.t.ts.done && !running) {
				t.Fatalf("%s: %s held by %d, not a live procedure (in memory: %v)", what, li.Resource, h.ID, p != nil)
			}
		}
	}
}

// randomScript makes a random tree: up to depth levels of children, a
// failure with probability pFail somewhere, polls.
func randomScript(rng *rand.Rand, name string, depth int, pFail float64) script {
	s := newScript(name, 1+rng.IntN(4))
	if rng.Float64() < 0.25 {
		s.PollAt, s.Polls = rng.IntN(s.States), 1+rng.IntN(2)
	}
	if depth > 0 && rng.IntN(2) == 0 {
		s.SpawnAt = rng.IntN(s.States)
		for i := range 1 + rng.IntN(3) {
			s.Children = append(s.Children, randomScript(rng, fmt.Sprintf("%s.%d", name, i), depth-1, 0))
		}
	}
	if rng.Float64() < pFail {
		// Fail somewhere in the tree.
		target := &s
		for len(target.Children) > 0 && rng.IntN(2) == 0 {
			target = &target.Children[rng.IntN(len(target.Children))]
		}
		target.FailAt = rng.IntN(target.States)
	}
	return s
}

func (s script) fxKeys() int {
	if s.flowKeys > 0 {
		return s.flowKeys
	}
	n := s.States
	if s.SpawnAt >= 0 {
		n = max(n, s.SpawnAt+2) // the spawning state goes on to SpawnAt+1
	}
	for _, c := range s.Children {
		n += c.fxKeys()
	}
	return n
}

func (s script) fails() bool {
	if s.FailAt >= 0 {
		return true
	}
	for _, c := range s.Children {
		if c.fails() {
			return true
		}
	}
	return false
}

// checkDurable checks the state a restart finds, before the engine runs:
// every acknowledged submission and step is there; a step's metadata
// (fx keys) and its procedure's executed states agree exactly, in both
// directions; finished trees have all their metadata (succeeded) or none
// (rolled back), and no procedure records left.
func checkDurable(t *testing.T, w *world, m *crashModel, what string) {
	t.Helper()
	recs := map[ID]*record{}
	data := map[ID]script{}
	v := w.store.Latest()
	for k, b := range w.e.procsC.All(v) {
		r, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("%s: record %d: %v", what, k, err)
		}
		var d script
		if strings.HasPrefix(r.typ, "flow") {
			var f flow
			if err := json.Unmarshal(r.data, &f); err != nil {
				t.Fatalf("%s: data of %d: %v", what, k, err)
			}
			d = script{Name: f.Name, FailAt: -1, SpawnAt: -1, PollAt: -1, flowKeys: f.fxKeys()}
		} else if err := json.Unmarshal(r.data, &d); err != nil {
			t.Fatalf("%s: data of %d: %v", what, k, err)
		}
		recs[ID(k)], data[ID(k)] = r, d
	}
	fx := map[ID]map[int64]bool{} // procedure -> states with metadata
	fxRoot := map[ID]int{}
	for k := range w.kv.All(v) {
		var root, id ID
		var s int64
		if _, err := fmt.Sscanf(k, "fx/%d/%d/%d", &root, &id, &s); err != nil {
			t.Fatalf("%s: key %q", what, k)
		}
		if fx[id] == nil {
			fx[id] = map[int64]bool{}
		}
		fx[id][s] = true
		fxRoot[root]++
		if r := recs[root]; r == nil || r.completed == 0 {
			// A live tree: the procedure must hold the state.
			if recs[id] == nil {
				t.Fatalf("%s: metadata %s of procedure %d, which has no record", what, k, id)
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.submitted {
		if recs[id] == nil {
			t.Fatalf("%s: acknowledged submission %d lost", what, id)
		}
	}
	for id, n := range m.steps {
		r := recs[id]
		if r == nil {
			if root := recs[m.rootOf[id]]; root == nil || root.completed == 0 {
				t.Fatalf("%s: procedure %d (root %d) gone, its tree not finished", what, id, m.rootOf[id])
			}
			continue
		}
		if int(r.steps) < n {
			t.Fatalf("%s: procedure %d has %d steps, %d acknowledged", what, id, r.steps, n)
		}
	}
	for id, r := range recs {
		d := data[id]
		if r.completed != 0 {
			if r.parent != 0 {
				t.Fatalf("%s: completed child %d", what, id)
			}
			switch {
			case r.status == Succeeded && r.bypass == nil:
				if got, want := fxRoot[id], d.fxKeys(); got != want {
					var keys []string
					for k, val := range w.kv.All(v) {
						if strings.HasPrefix(k, fmt.Sprintf("fx/%d/", id)) {
							keys = append(keys, k+"="+val)
						}
					}
					t.Fatalf("%s: succeeded tree %d (%s) has %d metadata keys, want %d: %v\nplan %+v", what, id, d.Name, got, want, keys, d)
				}
			case r.status == RolledBack && !m.bypassTried[id]:
				if fxRoot[id] != 0 {
					t.Fatalf("%s: rolled-back tree %d (%s) left %d metadata keys", what, id, d.Name, fxRoot[id])
				}
			}
			continue
		}
		if root := recs[r.root]; root == nil || root.completed != 0 {
			t.Fatalf("%s: procedure %d of finished or missing root %d left behind", what, id, r.root)
		}
		want := map[int64]bool{}
		for _, e := range r.entries {
			want[e.state] = true
		}
		if r.status == Failed {
			delete(want, int64(d.FailAt)) // the failed step wrote nothing
		}
		got := fx[id]
		// An abort stacks the states of the steps running (their commits
		// may be lost); a bypass skips the rollback of the states of the
		// procedure bypassed and its descendants.
		extraEntries := recs[r.root].aborted
		extraFx := r.bypass != nil && r.bypass.Role != BypassAncestor
		for s := range want {
			if !got[s] && !extraEntries {
				t.Fatalf("%s: procedure %d (%s): executed state %d without its metadata (have %v)", what, id, d.Name, s, got)
			}
		}
		for s := range got {
			if !want[s] && !extraFx {
				t.Fatalf("%s: procedure %d (%s, %v): metadata for states %v, executed states %v", what, id, d.Name, r.status, got, r.entries)
			}
		}
	}
}

// TestRandomCrash runs many concurrent procedure trees, with failures and
// aborts, on the crash-simulating FS, crashing at random file operations
// and restarting from a crash state each time; after every restart it
// checks the durable state (checkDurable), and at the end that every
// tree finished as it had to. The world's hooks check that no procedure
// runs on two workers at once.
//
// In detail: random procedures of the trees are aborted and bypassed at
// random moments. After every restart it checks that no acknowledged step
// was lost, that every procedure's executed states and its metadata
// agree (exactly, but for the states an abort stacked and the rollbacks a
// bypass skipped), that finished trees left all their metadata
// (succeeded) or none (rolled back, unless bypassed) and no record, and
// that no procedure a bypass reached started a step after Bypass
// returned. Its trees also wait for events (signalled later, across
// crashes), sleep, retry, time out, and take table and region locks,
// exclusive and shared, some held across steps: after every restart and
// stop it checks that no two conflicting owners hold a lock and that
// every holder is a live procedure, every step after a sleep checks that
// it did not wake early, and no tree times out before its deadline.
func TestRandomCrash(t *testing.T) {
	seed := testSeed(t)
	rounds := 8
	if testing.Short() {
		rounds = 1
	}
	for round := range rounds {
		runCrashRound(t, seed+uint64(round), round)
		if t.Failed() {
			return
		}
	}
}

// crashTrees is how many trees a round submits.
const crashTrees = 60

func runCrashRound(t *testing.T, seed uint64, round int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := &crashModel{submitted: map[ID]string{}, steps: map[ID]int{}, rootOf: map[ID]ID{}, aborted: map[ID]bool{}, events: map[string]bool{},
		bypassed: map[ID]bool{}, bypassTried: map[ID]bool{}}
	fs := vfs.NewMem()
	plans := map[string]script{}
	flows := map[string]flow{}
	timeouts := map[string]time.Duration{} // flows submitted with a timeout
	ponrs := map[string]bool{}
	next := 0
	crashes := 0
	var lockReqs, lockWaits, retries int64 // what the flows exercised
	ctx := context.Background()
	for inc := 0; ; inc++ {
		w := &world{t: t, fs: fs, gates: &gates{}, running: map[ID]bool{}, noStart: true,
			dopts: durable.Options{SegmentSize: 4 << 10, SnapshotBytes: 8 << 10, SnapshotSyncBytes: 1 << 10},
			opts: Options{Workers: 1 + rng.IntN(6), Retry: RetryPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond},
				Hooks: Hooks{AfterCommit: func(info StepInfo) {
					m.mu.Lock()
					m.steps[info.ID] = max(m.steps[info.ID], info.Step+1)
					m.rootOf[info.ID] = info.Root
					m.mu.Unlock()
				}}}}
		// A step that runs after a bypass reaching its procedure was
		// acknowledged must have been taken before: its context is
		// cancelled with ErrBypassed (and its outcome discarded).
		w.onExecute = func(ctx context.Context, id ID, state int) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.bypassed[id] && !errors.Is(context.Cause(ctx), ErrBypassed) {
				t.Errorf("procedure %d started state %d after its bypass was acknowledged", id, state)
			}
		}
		fsm := &flowSM{attempts: map[string]int{}}
		var flowT, holdT *Type[int, flow]
		w.extra = func(w *world) {
			fsm.w, fsm.self = w, &flowT
			fsm.checkSleep = true
			flowT = Register[int, flow](w.e, "flow", fsm, nil)
			holdT = Register[int, flow](w.e, "flow-hold", &holdSM{fsm}, &TypeOptions[flow]{HoldLocks: true})
		}
		w.open()
		what := fmt.Sprintf("round %d (seed %d), restart %d", round, seed, inc)
		checkDurable(t, w, m, what)
		if t.Failed() {
			return
		}
		final := inc >= 40
		if !final {
			fs.SetCrashAfter(1 + rng.IntN(100))
		}
		if err := w.e.Start(ctx); err != nil {
			if !fs.Crashed() {
				t.Fatalf("%s: start: %v", what, err)
			}
		} else {
			checkLocks(t, w, what+" (after start)", true)
			// Submit a few trees, and abort some while they run.
			var wg sync.WaitGroup
			goSubmit := func(name string, submit func() (ID, error)) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id, err := submit()
					if err == nil {
						m.mu.Lock()
						m.submitted[id] = name
						m.mu.Unlock()
					} else if w.e.Err() == nil {
						t.Errorf("%s: submit: %v", what, err)
					}
				}()
			}
			for range 1 + rng.IntN(6) {
				if next >= crashTrees {
					break
				}
				name := fmt.Sprintf("t%d", next)
				next++
				if rng.IntN(3) == 0 {
					m.mu.Lock()
					f := randomFlow(rng, name, 1, m.events)
					m.mu.Unlock()
					flows[name] = f
					typ := flowT
					if rng.IntN(3) == 0 {
						// A holding root's children take no locks of
						// their own: two holding trees whose children
						// want each other's locks would deadlock (as
						// they would in HBase).
						typ = holdT
						f.stripKidLocks()
						flows[name] = f
					}
					var opts SubmitOptions
					if rng.IntN(4) == 0 {
						// A deadline: the flow succeeds before it or times
						// out and rolls back, never before it.
						opts.Timeout = time.Duration(5+rng.IntN(60)) * time.Millisecond
						timeouts[name] = opts.Timeout
					}
					goSubmit(name, func() (ID, error) { return typ.Submit(ctx, f, opts) })
					continue
				}
				var s script
				typ := w.script
				if rng.IntN(6) == 0 {
					s = newScript(name, 5)
					if rng.IntN(2) == 0 {
						s.FailAt = rng.IntN(3) // before the point of no return (states >= 3)
					}
					typ, ponrs[name] = w.ponr, true
				} else {
					s = randomScript(rng, name, 2, 0.3)
				}
				plans[name] = s
				goSubmit(name, func() (ID, error) { return typ.Submit(ctx, s, SubmitOptions{}) })
			}
			wg.Wait()
			// Abort and bypass random procedures of random trees at
			// random moments while they run.
			for range rng.IntN(3) {
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				operatorAction(t, w, m, rng, what)
			}
			actions := rng.IntN(5)
			// Run until everything finished or the FS crashed; signal the
			// flows' events a little later.
			deadline := time.Now().Add(30 * time.Second)
			signalAt := time.Now().Add(time.Duration(rng.IntN(5)) * time.Millisecond)
			for w.e.Err() == nil {
				if actions > 0 && rng.IntN(2) == 0 {
					actions--
					operatorAction(t, w, m, rng, what)
				}
				if time.Now().After(signalAt) {
					signalEvents(w, m)
					signalAt = deadline
				}
				if allFinished(w, m) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: procedures did not finish: %v\n%s", what, w.e.Stats(), dumpTrees(w.e))
				}
				time.Sleep(time.Millisecond)
			}
		}
		if st := w.e.Stats(); st.LockWait.Count > 0 {
			lockReqs += st.LockWait.Count
			lockWaits += st.LockWait.Count - st.LockWait.Buckets[0]
			retries += st.Types["flow"].Retries + st.Types["flow-hold"].Retries
		}
		engineFailed := w.e.Err() != nil
		w.close() // may reach the crash point too
		crashed := fs.Crashed() || engineFailed
		if !crashed {
			checkLocks(t, w, what+" (after stop)", false) // no commit in flight: every lock of a finished tree is let go
		}
		if t.Failed() {
			return
		}
		if !crashed && next >= crashTrees {
			fs.SetCrashAfter(0)
			checkFinal(t, w, fs, m, plans, flows, timeouts, what)
			t.Logf("round %d: %d trees, %d crashes, %d restarts; %d lock requests, %d waited; %d retries; %d of %d deadlines passed; "+
				"%d aborts and %d bypasses (%d of children) acknowledged, %d too late or refused",
				round, len(m.submitted), crashes, inc, lockReqs, lockWaits, retries, m.timedOut, len(timeouts),
				m.abortsAcked, m.bypassesAcked, m.bypassKids, m.actionsNoop)
			return
		}
		if crashed {
			crashes++
			fs = fs.CrashClone(int64(seed)*1000 + int64(inc))
		} else {
			fs.SetCrashAfter(0)
		}
	}
}

// operatorAction aborts or bypasses a random live procedure of a random
// tree and notes what was acknowledged.
func operatorAction(t *testing.T, w *world, m *crashModel, rng *rand.Rand, what string) {
	ins := slices.Collect(w.e.List(Query{}))
	byID := map[ID]Info{}
	var roots, kids []Info // live ones
	for _, in := range ins {
		byID[in.ID] = in
		switch {
		case !in.Completed.IsZero() || in.Status == Succeeded:
		case in.Parent == 0:
			roots = append(roots, in)
		default:
			kids = append(kids, in)
		}
	}
	live := roots
	if len(kids) > 0 && (len(roots) == 0 || rng.IntN(3) > 0) {
		live = kids
	}
	if len(live) == 0 {
		return
	}
	in := live[rng.IntN(len(live))]
	ctx := context.Background()
	if rng.IntN(2) == 0 {
		err := w.e.Abort(ctx, in.ID, "test", "a test aborts it")
		switch {
		case err == nil:
			m.mu.Lock()
			m.aborted[in.Root] = true
			m.abortsAcked++
			m.mu.Unlock()
		case errors.Is(err, ErrAbortRefused), errors.Is(err, ErrFinished), errors.Is(err, ErrNotFound), w.e.Err() != nil:
			m.mu.Lock()
			m.actionsNoop++
			m.mu.Unlock()
		default:
			t.Errorf("%s: abort %d: %v", what, in.ID, err)
		}
		return
	}
	// What the bypass reaches: the procedure, its ancestors, and its
	// descendants (as listed; ones spawned since are not checked).
	reach := []ID{in.ID}
	for p := in.Parent; p != 0; p = byID[p].Parent {
		reach = append(reach, p)
	}
	for _, q := range ins {
		for a := q.Parent; a != 0; a = byID[a].Parent {
			if a == in.ID {
				reach = append(reach, q.ID)
				break
			}
		}
	}
	m.mu.Lock()
	m.bypassTried[in.Root] = true
	m.mu.Unlock()
	err := w.e.Bypass(ctx, in.ID, "crash-test", "random bypass")
	switch {
	case err == nil:
		m.mu.Lock()
		for _, id := range reach {
			m.bypassed[id] = true
		}
		m.bypassesAcked++
		if in.Parent != 0 {
			m.bypassKids++
		}
		m.mu.Unlock()
	case errors.Is(err, ErrFinished), errors.Is(err, ErrNotFound), w.e.Err() != nil:
		m.mu.Lock()
		m.actionsNoop++
		m.mu.Unlock()
	default:
		t.Errorf("%s: bypass %d: %v", what, in.ID, err)
	}
}

// signalEvents signals every event of the flows planned that is not
// signalled yet (durably: a failed Signal is tried again later).
func signalEvents(w *world, m *crashModel) {
	m.mu.Lock()
	var todo []string
	for ev, done := range m.events {
		if !done {
			todo = append(todo, ev)
		}
	}
	m.mu.Unlock()
	for _, ev := range todo {
		if err := w.e.Signal(context.Background(), ev); err != nil {
			return
		}
		m.mu.Lock()
		m.events[ev] = true
		m.mu.Unlock()
	}
}

func allFinished(w *world, m *crashModel) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.submitted {
		in, err := w.e.Get(id)
		if err != nil || in.Completed.IsZero() {
			return false
		}
	}
	return true
}

// checkFinal checks, after a last clean restart, that every tree finished
// as it had to.
func checkFinal(t *testing.T, w0 *world, fs *vfs.MemFS, m *crashModel, plans map[string]script, flows map[string]flow,
	timeouts map[string]time.Duration, what string) {
	w := &world{t: t, fs: fs, gates: &gates{}, running: map[ID]bool{}}
	fsm := &flowSM{attempts: map[string]int{}}
	var flowT *Type[int, flow]
	w.extra = func(w *world) {
		fsm.w, fsm.self = w, &flowT
		flowT = Register[int, flow](w.e, "flow", fsm, nil)
		Register[int, flow](w.e, "flow-hold", &holdSM{fsm}, &TypeOptions[flow]{HoldLocks: true})
	}
	w.open()
	defer w.close()
	checkLocks(t, w, what+" (final)", true)
	checkDurable(t, w, m, what+" (final)")
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, name := range m.submitted {
		in, err := w.e.Get(id)
		if err != nil {
			t.Fatalf("%s: %d (%s): %v", what, id, name, err)
		}
		plan, isScript := plans[name]
		if !isScript {
			if _, ok := flows[name]; !ok {
				t.Fatalf("%s: %d: no plan for %s", what, id, name)
			}
			plan = newScript(name, 1) // flows do not fail: succeeded unless aborted or timed out
			if d := timeouts[name]; d > 0 && in.Status == RolledBack && in.Err != nil && in.Err.Source == timeoutSource {
				if in.Completed.Before(in.Created.Add(d)) {
					t.Fatalf("%s: %d (%s) timed out at %v, before its deadline %v", what, id, name, in.Completed, in.Created.Add(d))
				}
				m.timedOut++
				continue
			}
		}
		switch {
		case in.Completed.IsZero():
			t.Fatalf("%s: %d (%s) not finished: %+v", what, id, name, in)
		case m.bypassTried[id] && !m.aborted[id] && in.Status == Succeeded:
			if plan.fails() && in.Bypass == nil {
				t.Fatalf("%s: %d (%s) should have rolled back or been bypassed: %+v", what, id, name, in)
			}
		case plan.fails() || m.aborted[id]:
			if in.Status != RolledBack {
				t.Fatalf("%s: %d (%s) should have rolled back: %+v", what, id, name, in)
			}
		case in.Status == RolledBack:
			if in.Err == nil || in.Err.Source != "abort" {
				t.Fatalf("%s: %d (%s) rolled back without a failure or an abort: %+v", what, id, name, in)
			}
		case in.Status != Succeeded:
			t.Fatalf("%s: %d (%s): %+v", what, id, name, in)
		}
		if in.Status == RolledBack && !strings.Contains(in.Err.Error(), "scripted") && in.Err.Source != "abort" {
			t.Fatalf("%s: %d (%s): error %v", what, id, name, in.Err)
		}
	}
}

// dumpTrees describes the live trees, for a test that hangs.
func dumpTrees(e *Engine) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for id, t := range e.trees {
		fmt.Fprintf(&b, "tree %d: running %d rbQueued %v failed %v done %v pastPONR %v quarantine %q rbLocks %v\n",
			id, t.running, t.rbQueued, t.ts.failed, t.ts.done, t.ts.pastPONR, t.quarantine, t.rbLocks != nil)
		for _, p := range t.procs {
			fmt.Fprintf(&b, "  proc %d (%s) parent %d: %v next %d pending %d wait %+v timeout %d queued %v running %v committed %v lockWaiting %v stepLocks %v holdLocks %v timeoutDue %v retryTimer %v sleepTimer %v entries %v\n",
				p.id, p.typeName, p.parent, p.ps.status, p.ps.next, p.ps.pending, p.ps.wait(), p.ps.timeout(), p.queued, p.running, p.committed,
				p.lockWaiting, p.rd().stepLocks != nil, p.rd().holdLocks != nil, p.timeoutDue, p.rd().retryTimer != nil, p.rd().sleepTimer != nil, p.ps.entries)
		}
	}
	return b.String()
}
