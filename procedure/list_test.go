package procedure

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// What an ixPlan's last state does.
const (
	planDone  = iota // succeeds
	planFail         // fails: its tree rolls back
	planEvent        // waits for Event, then succeeds
	planSleep        // sleeps Sleep, then succeeds
	planSpawn        // spawns Kids, then succeeds
	planRetry        // fails retryably Fails times, then succeeds
)

// ixPlan is the data of the listing tests' type: Steps states, then what
// End says.
type ixPlan struct {
	Steps int
	End   int
	Event string
	Sleep time.Duration
	Fails int
	Kids  []ixPlan
	// Block: the state after End's waits until ixSM.gate is closed.
	Block bool
	// RollbackFails: its Rollback fails this many times (then the tree's
	// rollback waits for its retry's timer).
	RollbackFails int
}

// ixSM runs ixPlans; attempts counts the failures by procedure.
type ixSM struct {
	self     **Type[int, ixPlan]
	gate     chan struct{}
	mu       sync.Mutex
	attempts map[ID]int
}

// attempt counts a failure of what key names and returns how many there
// were.
func (sm *ixSM) attempt(id ID) int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.attempts[id]++
	return sm.attempts[id]
}

func (sm *ixSM) Execute(ctx context.Context, env *Env, s int, d *ixPlan) (Next, error) {
	switch {
	case s < d.Steps:
		return GoTo(s + 1), nil
	case s > d.Steps && d.Block:
		select {
		case <-sm.gate:
		case <-ctx.Done():
			return Next{}, ctx.Err()
		}
		return Done(), nil
	case s > d.Steps:
		return Done(), nil
	}
	switch d.End {
	case planFail:
		return Next{}, fmt.Errorf("boom in %d", env.ID())
	case planEvent:
		return WaitEvent(s+1, d.Event), nil
	case planSleep:
		return Sleep(s+1, d.Sleep), nil
	case planSpawn:
		var kids []Child
		for _, k := range d.Kids {
			kids = append(kids, (*sm.self).Child(k))
		}
		return Spawn(s+1, kids...), nil
	case planRetry:
		if n := sm.attempt(env.ID()); n <= d.Fails {
			return Next{}, Retryable(fmt.Errorf("flaky %d", n))
		}
	}
	return Done(), nil
}

func (sm *ixSM) Rollback(ctx context.Context, env *Env, s int, d *ixPlan) error {
	if d.RollbackFails > 0 {
		if n := sm.attempt(-env.ID()); n <= d.RollbackFails {
			return fmt.Errorf("undo failed %d", n)
		}
	}
	return nil
}

func randomPlan(r *rand.Rand, depth int) ixPlan {
	p := ixPlan{Steps: r.IntN(3), RollbackFails: max(0, r.IntN(5)-2)}
	ends := []int{planDone, planDone, planFail, planEvent, planSleep, planRetry}
	if depth < 2 {
		ends = append(ends, planSpawn, planSpawn)
	}
	switch p.End = ends[r.IntN(len(ends))]; p.End {
	case planEvent:
		p.Event = fmt.Sprintf("ev%d", r.IntN(4))
	case planSleep:
		p.Sleep = time.Duration(1+r.IntN(30)) * time.Minute
	case planRetry:
		p.Fails = 1 + r.IntN(2)
	case planSpawn:
		for range 1 + r.IntN(3) {
			p.Kids = append(p.Kids, randomPlan(r, depth+1))
		}
	}
	return p
}

// restartable returns p without the retries a restart runs again at once
// (their counts are not stored).
func restartable(p ixPlan) ixPlan {
	if p.End == planRetry {
		p.End = planDone
	}
	p.RollbackFails = 0
	p.Kids = slices.Clone(p.Kids)
	for i := range p.Kids {
		p.Kids[i] = restartable(p.Kids[i])
	}
	return p
}

// skewClock is a ManualClock whose Now can be moved back (by skew), as a
// wall clock can.
type skewClock struct {
	*ManualClock
	skew atomic.Int64
}

func (c *skewClock) Now() time.Time { return c.ManualClock.Now().Add(time.Duration(c.skew.Load())) }

// listWorld is a world with the ixPlan type on a skewClock.
type listWorld struct {
	*world
	clock *skewClock
	ix    *Type[int, ixPlan]
	sm    *ixSM
}

func newListWorld(t *testing.T) *listWorld {
	lw := &listWorld{clock: &skewClock{ManualClock: NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
		sm: &ixSM{attempts: map[ID]int{}, gate: make(chan struct{})}}
	lw.sm.self = &lw.ix
	w := &world{t: t, fs: newMemFS(), gates: &gates{}, running: map[ID]bool{},
		opts: Options{Clock: lw.clock, Workers: 4, ResultTTL: 30 * time.Minute, AckedResultTTL: 5 * time.Minute, SweepInterval: -1}}
	w.extra = func(w *world) { lw.ix = Register[int, ixPlan](w.e, "ix", lw.sm, nil) }
	w.open()
	lw.world = w
	return lw
}

// quiet waits until nothing runs or is about to: no step, rollback or
// commit under way, nothing queued, no timer firing; what is left waits
// for an event, the clock or a retry's timer.
func (lw *listWorld) quiet() {
	lw.t.Helper()
	var why string
	deadline := time.Now().Add(20 * time.Second)
	for why = lw.busy(); why != ""; why = lw.busy() {
		if time.Now().After(deadline) {
			lw.t.Fatalf("the engine is not quiet: %s", why)
		}
		time.Sleep(time.Millisecond)
	}
}

// busy says what runs or is about to ("": nothing).
func (lw *listWorld) busy() string {
	e := lw.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := e.q.len(); n > 0 {
		return fmt.Sprintf("%d queued", n)
	}
	if p, n := lw.clock.Pending(), len(e.timers); p != n {
		return fmt.Sprintf("%d timers pending on the clock, %d in the engine", p, n)
	}
	for _, t := range e.trees {
		if t.running > 0 || (t.rbQueued && t.rbTimer == nil) {
			return fmt.Sprintf("tree %d running %d, rollback queued %v", t.root.id, t.running, t.rbQueued)
		}
	}
	for _, p := range e.procs {
		// (A procedure bypassed while it waited for a retry stays marked
		// queued, and never runs.)
		if p.running || !p.committed || (p.queued && p.rd().retryTimer == nil && e.canRunLocked(p)) {
			return fmt.Sprintf("procedure %d running %v committed %v queued %v", p.id, p.running, p.committed, p.queued)
		}
	}
	return ""
}

// naiveList is what List must return: every record, newest first, as Get
// returns it, filtered by q.
func naiveList(e *Engine, q Query) []Info {
	var out []Info
	for k := range e.procsC.All(e.store.Latest()) {
		if q.Before != 0 && ID(k) >= q.Before {
			break
		}
		if in, err := e.Get(ID(k)); err == nil && q.matches(&in) {
			out = append(out, in)
		}
	}
	slices.Reverse(out)
	return out
}

func ids(ins []Info) []ID {
	out := make([]ID, len(ins))
	for i, in := range ins {
		out[i] = in.ID
	}
	return out
}

// pages lists q in pages of size, each from the last id of the previous
// one.
func pages(e *Engine, q Query, size int) []Info {
	var all []Info
	for {
		var page []Info
		for in := range e.List(q) {
			page = append(page, in)
			if len(page) == size {
				break
			}
		}
		all = append(all, page...)
		if len(page) < size {
			return all
		}
		q.Before = page[len(page)-1].ID
	}
}

// randomQuery makes a query from known ids, types and a time range.
func randomQuery(r *rand.Rand, known []ID, t0, t1 time.Time) Query {
	var q Query
	pick := func() ID {
		if len(known) == 0 || r.IntN(8) == 0 {
			return ID(1 + r.IntN(1000))
		}
		return known[r.IntN(len(known))]
	}
	if t1.Before(t0) {
		t0, t1 = t1, t0
	}
	span := t1.Sub(t0) + 2*time.Minute
	at := func() time.Time { return t0.Add(-time.Minute + time.Duration(r.Int64N(int64(span)))) }
	if r.IntN(2) == 0 {
		for range 1 + r.IntN(3) {
			q.Status = append(q.Status, Status(r.IntN(8)))
		}
	}
	if r.IntN(3) == 0 {
		q.Type = []string{"ix", "ix", "script", "nope"}[r.IntN(4)]
	}
	if r.IntN(5) == 0 {
		q.Root = pick()
	}
	if r.IntN(5) == 0 {
		q.Parent = pick()
	}
	if r.IntN(5) == 0 {
		q.Error = []string{"boom", "BOOM IN", "flaky", "aborted", "rolled back", "in 1", "zz", "undo", "passed"}[r.IntN(9)]
	}
	if r.IntN(4) == 0 {
		q.Since = at()
	}
	if r.IntN(4) == 0 {
		q.Until = at()
	}
	if r.IntN(3) == 0 {
		q.Before = pick() + ID(r.IntN(3))
	}
	return q
}

// checkIndex checks the index against the store: each status set holds
// the ids Get reports with that status, each type set those of the type.
func (lw *listWorld) checkIndex() {
	lw.t.Helper()
	byStatus, byType := map[Status][]uint64{}, map[string][]uint64{}
	live, oldest := map[Status]int{}, time.Time{} // what Stats must say: every record but the kept results
	for _, in := range naiveList(lw.e, Query{}) {
		if in.Parent != 0 || in.Completed.IsZero() {
			live[in.Status]++
			oldest = in.Created // naiveList is newest first: the last one is the smallest id
		}
		byStatus[in.Status] = append(byStatus[in.Status], uint64(in.ID))
		if in.Type != "" {
			byType[in.Type] = append(byType[in.Type], uint64(in.ID))
		}
	}
	if st := lw.e.Stats(); !maps.Equal(st.ByStatus, live) || !st.Oldest.Equal(oldest) {
		lw.t.Fatalf("Stats: by status %v, oldest %v; the records say %v, %v", st.ByStatus, st.Oldest, live, oldest)
	}
	e := lw.e
	e.mu.Lock()
	defer e.mu.Unlock()
	set := func(s *idSet) []uint64 {
		var out []uint64
		s.Descend(math.MaxUint64, func(id uint64) bool { out = append(out, id); return true })
		return out
	}
	for st, s := range e.ix.byStatus {
		if got, want := set(s), byStatus[Status(st)]; !slices.Equal(got, want) {
			lw.t.Fatalf("index of status %v:\n got %v\nwant %v", Status(st), got, want)
		}
	}
	if len(e.ix.byType) != len(byType) {
		lw.t.Fatalf("index has %d types, the store %d", len(e.ix.byType), len(byType))
	}
	for typ, s := range e.ix.byType {
		if got, want := set(s), byType[typ]; !slices.Equal(got, want) {
			lw.t.Fatalf("index of type %q:\n got %v\nwant %v", typ, got, want)
		}
	}
}

// checkList compares List with the naive filter for n random queries, in
// one pass and in random pages.
func (lw *listWorld) checkList(r *rand.Rand, n int, t0 time.Time) {
	lw.t.Helper()
	lw.checkIndex()
	all := naiveList(lw.e, Query{})
	known := ids(all)
	t1 := lw.clock.Now()
	for i := range n {
		q := randomQuery(r, known, t0, t1)
		if i == 0 {
			q = Query{}
		}
		want := naiveList(lw.e, q)
		got := slices.Collect(lw.e.List(q))
		if !reflect.DeepEqual(got, want) {
			lw.t.Fatalf("List(%+v):\n got %v\nwant %v", q, ids(got), ids(want))
		}
		size := 1 + r.IntN(7)
		if paged := pages(lw.e, q, size); !slices.Equal(ids(paged), ids(want)) {
			lw.t.Fatalf("List(%+v) in pages of %d:\n got %v\nwant %v", q, size, ids(paged), ids(want))
		}
	}
}

// List returns what filtering every record Get returns gives, for random
// queries at many points of a workload that succeeds, fails and rolls
// back, waits for events and times, retries, spawns children, is
// bypassed and aborted, has its results acknowledged and swept, sees its
// clock go back, and restarts.
func TestListMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 1))
	lw := newListWorld(t)
	defer func() { lw.close() }()
	ctx := context.Background()
	t0 := lw.clock.Now()
	const rounds = 14
	for round := range rounds {
		for range 4 + r.IntN(8) {
			var opts SubmitOptions
			if r.IntN(6) == 0 {
				opts.Timeout = time.Duration(1+r.IntN(20)) * time.Minute
			}
			if _, err := lw.ix.Submit(ctx, randomPlan(r, 0), opts); err != nil {
				t.Fatal(err)
			}
			switch r.IntN(12) {
			case 0, 1, 2, 3:
				lw.clock.Advance(time.Duration(r.IntN(90)) * time.Second)
			case 4:
				lw.clock.skew.Add(-int64(time.Duration(r.IntN(300)) * time.Second)) // the clock goes back
			}
		}
		lw.quiet()
		lw.act(ctx, r, round)
		lw.quiet()
		lw.checkList(r, 40, t0)
	}
}

// act does one random thing to the workload.
func (lw *listWorld) act(ctx context.Context, r *rand.Rand, round int) {
	t := lw.t
	e := lw.e
	all := naiveList(e, Query{})
	some := func(keep func(Info) bool) (ID, bool) {
		var c []ID
		for _, in := range all {
			if keep(in) {
				c = append(c, in.ID)
			}
		}
		if len(c) == 0 {
			return 0, false
		}
		return c[r.IntN(len(c))], true
	}
	finished := func(in Info) bool { return !in.Completed.IsZero() } // a root whose tree completed
	switch a := r.IntN(9); {
	case round == 6 || round == 11:
		lw.restart()
	case a == 0:
		if err := e.Signal(ctx, fmt.Sprintf("ev%d", r.IntN(4))); err != nil {
			t.Fatal(err)
		}
	case a == 1:
		if err := e.ResetEvent(ctx, fmt.Sprintf("ev%d", r.IntN(4))); err != nil {
			t.Fatal(err)
		}
	case a == 2:
		lw.clock.Advance(time.Duration(r.IntN(40)) * time.Minute)
		if _, err := e.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	case a == 3:
		lw.clock.skew.Add(-int64(time.Duration(1+r.IntN(30)) * time.Minute)) // the clock goes back
	case a == 4:
		if id, ok := some(func(in Info) bool { return in.Parent == 0 && !finished(in) }); ok {
			if err := e.Abort(ctx, id, "tester", "testing"); err != nil && !errors.Is(err, ErrFinished) {
				t.Fatal(err)
			}
		}
	case a == 5:
		if id, ok := some(func(in Info) bool { return in.Status != Succeeded && in.Status != RolledBack }); ok {
			if err := e.Bypass(ctx, id, "tester", "stuck"); err != nil && !errors.Is(err, ErrFinished) {
				t.Fatal(err)
			}
		}
	case a == 6:
		if id, ok := some(finished); ok {
			if err := e.Ack(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	default:
		lw.clock.Advance(time.Duration(r.IntN(10)) * time.Minute)
	}
}

// A restart rebuilds the index from the store: every query answers the
// same before and after, and as the naive filter does.
func TestListRestartRebuildsIndex(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 2))
	lw := newListWorld(t)
	defer func() { lw.close() }()
	ctx := context.Background()
	t0 := lw.clock.Now()
	for range 40 {
		p := restartable(randomPlan(r, 0))
		if _, err := lw.ix.Submit(ctx, p, SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		lw.clock.Advance(time.Duration(r.IntN(90)) * time.Second)
	}
	lw.quiet()
	if err := lw.e.Signal(ctx, "ev1"); err != nil {
		t.Fatal(err)
	}
	lw.quiet()
	known := ids(naiveList(lw.e, Query{}))
	t1 := lw.clock.Now()
	qs := []Query{{}, {Status: []Status{Suspended}}, {Status: []Status{Waiting, Runnable}}, {Status: []Status{RolledBack}}, {Type: "ix"}}
	for range 60 {
		qs = append(qs, randomQuery(r, known, t0, t1))
	}
	before := make([][]ID, len(qs))
	for i, q := range qs {
		before[i] = ids(slices.Collect(lw.e.List(q)))
		if want := ids(naiveList(lw.e, q)); !slices.Equal(before[i], want) {
			t.Fatalf("List(%+v):\n got %v\nwant %v", q, before[i], want)
		}
	}
	lw.restart()
	lw.quiet()
	lw.checkIndex()
	for i, q := range qs {
		got := ids(slices.Collect(lw.e.List(q)))
		if !slices.Equal(got, before[i]) {
			t.Fatalf("List(%+v) after the restart:\n got %v\nwant %v (before it)", q, got, before[i])
		}
		if want := ids(naiveList(lw.e, q)); !slices.Equal(got, want) {
			t.Fatalf("List(%+v) after the restart:\n got %v\nwant %v", q, got, want)
		}
	}
	if n := len(before[1]); n == 0 {
		t.Fatal("no suspended procedure: the test tests nothing")
	}
}

// Paging with Before while procedures are submitted, run and finish: no
// id is yielded twice or out of order, and every procedure that matched
// when the paging started and still matches when it ends is seen.
func TestListPagingWhileSubmitting(t *testing.T) {
	seed := testSeed(t)
	lw := newListWorld(t)
	defer func() { lw.close() }()
	ctx := context.Background()
	for range 150 {
		if _, err := lw.ix.Submit(ctx, ixPlan{}, SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lw.quiet()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(10+g)))
			for n := 0; n < 150 && !stop.Load(); n++ {
				if _, err := lw.ix.Submit(ctx, randomPlan(r, 1), SubmitOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	err := pageWhileChanging(lw.e, rand.New(rand.NewPCG(seed, 3)))
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
}

// pageWhileChanging pages through queries whose matches only come and go
// (a procedure's type never changes) and checks what it sees.
func pageWhileChanging(e *Engine, r *rand.Rand) error {
	for i := range 8 {
		q := []Query{{}, {Type: "ix"}}[i%2]
		start := naiveList(e, q)
		paged := pages(e, q, 1+r.IntN(40))
		end := naiveList(e, q)
		seen := map[ID]bool{}
		for j, in := range paged {
			if seen[in.ID] || (j > 0 && in.ID >= paged[j-1].ID) {
				return fmt.Errorf("List(%+v): %d repeated or out of order in %v", q, in.ID, ids(paged))
			}
			seen[in.ID] = true
		}
		still := map[ID]bool{}
		for _, in := range end {
			still[in.ID] = true
		}
		for _, in := range start {
			if still[in.ID] && !seen[in.ID] {
				return fmt.Errorf("List(%+v): %d matched before and after the paging and was not seen", q, in.ID)
			}
		}
	}
	return nil
}

// Records whose parent or root is not their tree's (loaded quarantined),
// and one that does not decode, are listed as Get reports them.
func TestListOddRecords(t *testing.T) {
	lw := newListWorld(t)
	defer func() { lw.close() }()
	ctx := context.Background()
	id, err := lw.ix.Submit(ctx, ixPlan{End: planEvent, Event: "never"}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lw.quiet()
	lw.close()
	lw.noStart = true
	lw.open()
	put := func(k ID, r record) {
		err := lw.store.Write(ctx, func(tx *durable.Tx) error {
			return lw.e.procsC.Put(tx, uint64(k), appendRecord(nil, &r))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	data, _ := lw.ix.info.encode(&ixPlan{})
	base := record{status: Runnable, typ: "ix", version: 1, created: 1, updated: 1, data: data}
	r1 := base // a root naming another root
	r1.root = 500
	put(id+1, r1)
	r2 := base // a child of a procedure that is not there, in id's tree
	r2.parent, r2.root = 600, id
	put(id+2, r2)
	r3 := base // a child of id in a tree whose root is missing
	r3.parent, r3.root = id, 700
	put(id+3, r3)
	if err := lw.store.Write(ctx, func(tx *durable.Tx) error { return lw.e.procsC.Put(tx, uint64(id+4), []byte{1, 9}) }); err != nil {
		t.Fatal(err)
	}
	lw.store.Close()
	lw.noStart = false
	lw.open()
	for _, q := range []Query{{}, {Root: 500}, {Root: id}, {Root: 700}, {Parent: 600}, {Parent: id}, {Status: []Status{0}},
		{Status: []Status{Runnable}}, {Type: "ix"}, {Root: id + 1}, {Parent: id + 1}} {
		got, want := slices.Collect(lw.e.List(q)), naiveList(lw.e, q)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("List(%+v):\n got %v\nwant %v", q, ids(got), ids(want))
		}
		if len(want) == 0 && q.Root != id+1 && q.Parent != id+1 {
			t.Fatalf("List(%+v) is empty: the test tests nothing", q)
		}
	}
}

// Before Start there is no index: List scans the store.
func TestListBeforeStart(t *testing.T) {
	lw := newListWorld(t)
	ctx := context.Background()
	for _, p := range []ixPlan{{}, {End: planFail}, {End: planEvent, Event: "x"}} {
		if _, err := lw.ix.Submit(ctx, p, SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lw.quiet()
	lw.close()
	lw.noStart = true
	lw.open()
	defer lw.store.Close()
	for _, q := range []Query{{}, {Status: []Status{RolledBack}}, {Type: "ix", Before: 3}} {
		got, want := slices.Collect(lw.e.List(q)), naiveList(lw.e, q)
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("List(%+v):\n got %v\nwant %v", q, ids(got), ids(want))
		}
	}
}

// Statuses that change without a commit of the procedure's own, or
// between its commits, are listed as Get reports them: a procedure woken
// by its event and running its next step is runnable (its record still
// says suspended), and one failed by its timeout while its tree's
// rollback waits to retry is failed.
func TestListWokenAndTimedOut(t *testing.T) {
	lw := newListWorld(t)
	defer func() { lw.close() }()
	ctx := context.Background()
	woken, err := lw.ix.Submit(ctx, ixPlan{End: planEvent, Event: "go", Block: true}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	timedOut, err := lw.ix.Submit(ctx, ixPlan{Steps: 1, End: planEvent, Event: "never", RollbackFails: 2}, SubmitOptions{Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	lw.quiet()
	lw.clock.Advance(6 * time.Minute)
	lw.quiet()
	if err := lw.e.Signal(ctx, "go"); err != nil {
		t.Fatal(err)
	}
	if _, err := lw.e.WaitFor(ctx, woken, func(in Info) bool { return in.Running }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		st Status
		id ID
	}{{Runnable, woken}, {Failed, timedOut}} {
		q := Query{Status: []Status{c.st}}
		got, want := slices.Collect(lw.e.List(q)), naiveList(lw.e, q)
		if !reflect.DeepEqual(got, want) || !slices.Equal(ids(got), []ID{c.id}) {
			t.Fatalf("List(%v): got %v, want %v = [%d]", c.st, ids(got), ids(want), c.id)
		}
	}
	lw.checkIndex()
	close(lw.sm.gate)
}
