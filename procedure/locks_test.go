package procedure

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// lockEpoch is the clock's start in lock table tests.
var lockEpoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newLockReq returns a request of owner, whose ancestors are ancestors
// (nearest first), for locks.
func newLockReq(owner ID, ancestors []ID, locks ...Lock) *lockReq {
	return &lockReq{owner: owner, ancestors: ancestors, locks: locks}
}

// lockTest drives a lockTable: each call advances the clock by a second,
// checks the outcome it is told to expect, and the table's invariants.
type lockTest struct {
	t     *testing.T
	table *lockTable
	now   time.Time
}

// newLockTest returns a lockTest of an empty table.
func newLockTest(t *testing.T) *lockTest {
	return &lockTest{t: t, table: newLockTable(), now: lockEpoch}
}

// tick advances the clock and returns the new time.
func (tt *lockTest) tick() time.Time {
	tt.now = tt.now.Add(time.Second)
	return tt.now
}

// check fails the test if the table's invariants do not hold.
func (tt *lockTest) check() {
	tt.t.Helper()
	if err := tt.table.check(); err != nil {
		tt.t.Fatalf("check: %v", err)
	}
}

// grant acquires r, expecting it to be granted and want to be woken.
func (tt *lockTest) grant(r *lockReq, want ...*lockReq) {
	tt.t.Helper()
	granted, woken := tt.table.acquire(r, tt.tick())
	if !granted {
		tt.t.Fatalf("acquire %d %v: waits, want granted", r.owner, r.locks)
	}
	tt.expectWoken("acquire", r, woken, want)
}

// wait acquires r, expecting it to wait.
func (tt *lockTest) wait(r *lockReq) {
	tt.t.Helper()
	if granted, woken := tt.table.acquire(r, tt.tick()); granted || woken != nil {
		tt.t.Fatalf("acquire %d %v: granted %v and woke %v, want it to wait", r.owner, r.locks, granted, lockOwners(woken))
	}
	tt.check()
}

// release releases r, expecting want to be woken.
func (tt *lockTest) release(r *lockReq, want ...*lockReq) {
	tt.t.Helper()
	tt.expectWoken("release", r, tt.table.release(r, tt.tick()), want)
}

// cancel cancels r, expecting want to be woken.
func (tt *lockTest) cancel(r *lockReq, want ...*lockReq) {
	tt.t.Helper()
	tt.expectWoken("cancel", r, tt.table.cancel(r, tt.tick()), want)
}

// expectWoken fails the test unless op on r woke want, now, and the
// table's invariants hold.
func (tt *lockTest) expectWoken(op string, r *lockReq, woken, want []*lockReq) {
	tt.t.Helper()
	if !slices.Equal(woken, want) {
		tt.t.Fatalf("%s %d %v: woke %v, want %v", op, r.owner, r.locks, lockOwners(woken), lockOwners(want))
	}
	for _, w := range woken {
		if w.state != reqHeld || !w.since.Equal(tt.now) {
			tt.t.Fatalf("%s %d %v: woken %d is not held since now", op, r.owner, r.locks, w.owner)
		}
	}
	tt.check()
}

// empty fails the test unless the table is empty.
func (tt *lockTest) empty() {
	tt.t.Helper()
	if n, v := tt.table.len(), tt.table.view(); n != 0 || v != nil {
		tt.t.Fatalf("table not empty: %d nodes, view %v", n, v)
	}
}

// lockOwners returns the owners of rs.
func lockOwners(rs []*lockReq) []ID {
	var ids []ID
	for _, r := range rs {
		ids = append(ids, r.owner)
	}
	return ids
}

// TestLockModeString checks LockMode.String and the Lock constructors.
func TestLockModeString(t *testing.T) {
	for _, tc := range []struct {
		mode LockMode
		want string
	}{
		{Shared, "shared"},
		{Exclusive, "exclusive"},
		{0, "LockMode(0)"},
		{7, "LockMode(7)"},
	} {
		if got := tc.mode.String(); got != tc.want {
			t.Errorf("LockMode(%d).String() = %q, want %q", uint8(tc.mode), got, tc.want)
		}
	}
	if got, want := ExclusiveLock("a/b"), (Lock{"a/b", Exclusive}); got != want {
		t.Errorf("ExclusiveLock = %v, want %v", got, want)
	}
	if got, want := SharedLock("a/b"), (Lock{"a/b", Shared}); got != want {
		t.Errorf("SharedLock = %v, want %v", got, want)
	}
}

// TestValidateLocks checks which locks validateLocks accepts, and its errors.
func TestValidateLocks(t *testing.T) {
	longest := strings.Repeat("x/", maxResourceLen/2-1) + "xy"
	for _, tc := range []struct {
		name    string
		locks   []Lock
		wantErr string // "" for none
	}{
		{"none", nil, ""},
		{"valid", []Lock{ExclusiveLock("table/t1"), SharedLock("server/s3"), ExclusiveLock("a")}, ""},
		{"longest", []Lock{SharedLock(longest)}, ""},
		{"empty", []Lock{SharedLock("")}, "empty"},
		{"too long", []Lock{SharedLock(longest + "z")}, "1025 bytes long"},
		{"leading slash", []Lock{SharedLock("/table")}, `"/table" has an empty segment`},
		{"trailing slash", []Lock{SharedLock("table/")}, `"table/" has an empty segment`},
		{"double slash", []Lock{SharedLock("table//t1")}, `"table//t1" has an empty segment`},
		{"only slash", []Lock{SharedLock("/")}, `"/" has an empty segment`},
		{"mode zero", []Lock{{"table/t1", 0}}, `"table/t1" has invalid mode 0`},
		{"mode three", []Lock{{"table/t1", 3}}, `"table/t1" has invalid mode 3`},
		{"second bad", []Lock{SharedLock("table/t1"), ExclusiveLock("table/t1/")}, `"table/t1/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateLocks(tc.locks)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validateLocks: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validateLocks: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestLockCompatibility checks which pairs of requests by unrelated owners
// conflict, each acquired first in turn.
func TestLockCompatibility(t *testing.T) {
	X, S := ExclusiveLock, SharedLock
	for _, tc := range []struct {
		name       string
		a, b       []Lock
		compatible bool
	}{
		{"X table vs X region", []Lock{X("table/t1")}, []Lock{X("table/t1/region/r7")}, false},
		{"X table vs S table", []Lock{X("table/t1")}, []Lock{S("table/t1")}, false},
		{"X vs X", []Lock{X("table/t1")}, []Lock{X("table/t1")}, false},
		{"S vs S", []Lock{S("table/t1")}, []Lock{S("table/t1")}, true},
		{"X region vs X other region", []Lock{X("table/t1/region/r7")}, []Lock{X("table/t1/region/r8")}, true},
		{"S table vs X region", []Lock{S("table/t1")}, []Lock{X("table/t1/region/r7")}, true},
		{"X root vs X region", []Lock{X("table")}, []Lock{X("table/t9/region/r1")}, false},
		{"X root vs S root", []Lock{X("table")}, []Lock{S("table")}, false},
		{"X root vs other root", []Lock{X("table")}, []Lock{S("server/s3")}, true},
		{"X parent of region vs X region", []Lock{X("table/t1/region")}, []Lock{X("table/t1/region/r7")}, false},
		{"name prefix is no ancestor", []Lock{X("table/t1")}, []Lock{X("table/t10")}, true},
		{"segment prefix is no ancestor", []Lock{X("a/b")}, []Lock{X("a/bc/d")}, true},
		{"X vs S 2 levels down", []Lock{X("a/b/c/d/e")}, []Lock{S("a/b/c/d/e/f/g")}, false},
		{"X root vs S 6 levels down", []Lock{X("a")}, []Lock{S("a/b/c/d/e/f/g")}, false},
		{"S deep vs S ancestor", []Lock{S("a/b/c/d/e/f/g")}, []Lock{S("a/b/c")}, true},
		{"X deep vs S ancestor", []Lock{X("a/b/c/d/e/f/g")}, []Lock{S("a/b/c")}, true},
		{"X deep vs X sibling deep", []Lock{X("a/b/c/d")}, []Lock{X("a/b/c/e")}, true},
		{"X deep vs X cousin", []Lock{X("a/b/c/d")}, []Lock{X("a/b/x/d")}, true},
		{"X deep vs X ancestor 3 up", []Lock{X("a/b/c/d")}, []Lock{X("a")}, false},
		{"one of several conflicts", []Lock{X("t1/r1"), X("t2")}, []Lock{S("t2/r5")}, false},
		{"several, all compatible", []Lock{X("t1/r1"), S("t2")}, []Lock{S("t2"), X("t1/r2")}, true},
		{"duplicates, strongest wins", []Lock{S("t1"), X("t1"), S("t1")}, []Lock{S("t1/r1")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2][]Lock{{tc.a, tc.b}, {tc.b, tc.a}} {
				tt := newLockTest(t)
				first, second := newLockReq(1, nil, order[0]...), newLockReq(2, nil, order[1]...)
				tt.grant(first)
				if tc.compatible {
					tt.grant(second)
					tt.release(first)
				} else {
					tt.wait(second)
					tt.release(first, second)
				}
				tt.release(second)
				tt.empty()
			}
		})
	}
}

// TestLockDuplicatesMerged checks that a request naming a resource several times
// takes it once, in the strongest mode.
func TestLockDuplicatesMerged(t *testing.T) {
	tt := newLockTest(t)
	r := newLockReq(1, nil, SharedLock("table/t1"), ExclusiveLock("table/t1"), SharedLock("table/t1/region/r1"), SharedLock("table/t1"))
	tt.grant(r)
	if got := tt.table.len(); got != 4 { // table, table/t1, table/t1/region, table/t1/region/r1
		t.Errorf("len() = %d, want 4", got)
	}
	since := tt.now
	want := []LockInfo{
		{Resource: "table/t1", Holders: []LockHolder{{1, Exclusive, since}}},
		{Resource: "table/t1/region/r1", Holders: []LockHolder{{1, Shared, since}}},
	}
	if got := tt.table.view(); !reflect.DeepEqual(got, want) {
		t.Errorf("view() = %v, want %v", got, want)
	}
	other := newLockReq(2, nil, SharedLock("table/t1"))
	tt.wait(other)
	tt.release(r, other)
	tt.release(other)
	tt.empty()
}

// TestLockAllOrNothing checks that a request waiting for some of its locks
// holds none of them.
func TestLockAllOrNothing(t *testing.T) {
	tt := newLockTest(t)
	holder := newLockReq(1, nil, ExclusiveLock("b"))
	tt.grant(holder)
	both := newLockReq(2, nil, ExclusiveLock("a"), ExclusiveLock("b"))
	tt.wait(both)
	if tt.table.holds(2) {
		t.Errorf("holds(2) = true for a waiting request")
	}
	want := []LockInfo{
		{Resource: "a", Waiters: []LockHolder{{2, Exclusive, tt.now}}},
		{Resource: "b", Holders: []LockHolder{{1, Exclusive, holder.since}}, Waiters: []LockHolder{{2, Exclusive, tt.now}}},
	}
	if got := tt.table.view(); !reflect.DeepEqual(got, want) {
		t.Errorf("view() = %v, want %v", got, want)
	}

	// "a" is not held: a request with priority (a child of the holder of
	// "b"), which only holders can block, takes it.
	child := newLockReq(3, []ID{1}, ExclusiveLock("a"))
	tt.grant(child)
	tt.release(child)
	// Others queue behind the waiter (FIFO) and are granted after it.
	other := newLockReq(4, nil, SharedLock("a"))
	tt.wait(other)
	tt.release(holder, both)
	tt.release(both, other)
	tt.release(other)
	tt.empty()
}

// TestLockFIFO checks that waiters queue behind earlier waiters they
// conflict with, and are granted in order.
func TestLockFIFO(t *testing.T) {
	t.Run("exclusive waiter not starved", func(t *testing.T) {
		tt := newLockTest(t)
		s1 := newLockReq(1, nil, SharedLock("table/t1"))
		x := newLockReq(2, nil, ExclusiveLock("table/t1"))
		s2 := newLockReq(3, nil, SharedLock("table/t1"))
		tt.grant(s1)
		tt.wait(x)
		tt.wait(s2) // compatible with the holder, but behind the exclusive waiter
		tt.release(s1, x)
		tt.release(x, s2)
		tt.release(s2)
		tt.empty()
	})
	t.Run("queue on ancestor", func(t *testing.T) {
		tt := newLockTest(t)
		r1 := newLockReq(1, nil, ExclusiveLock("table/t1/region/r1"))
		table := newLockReq(2, nil, ExclusiveLock("table/t1"))
		r2 := newLockReq(3, nil, ExclusiveLock("table/t1/region/r2"))
		elsewhere := newLockReq(4, nil, ExclusiveLock("table/t2/region/r1"))
		tt.grant(r1)
		tt.wait(table)
		tt.wait(r2) // its implied shared lock on table/t1 queues behind the exclusive one
		tt.grant(elsewhere)
		tt.release(elsewhere)
		tt.release(r1, table)
		tt.release(table, r2)
		tt.release(r2)
		tt.empty()
	})
	t.Run("waiter behind a blocked waiter", func(t *testing.T) {
		// b is not blocked by holders, but by a, which waits for m.
		tt := newLockTest(t)
		g := newLockReq(1, nil, ExclusiveLock("m"))
		h := newLockReq(2, nil, SharedLock("n"))
		a := newLockReq(3, nil, ExclusiveLock("n"), ExclusiveLock("m"))
		b := newLockReq(4, nil, ExclusiveLock("n"))
		tt.grant(g)
		tt.grant(h)
		tt.wait(a)
		tt.wait(b)
		tt.release(h)
		tt.release(g, a)
		tt.release(a, b)
		tt.release(b)
		tt.empty()
	})
	t.Run("grants in order", func(t *testing.T) {
		tt := newLockTest(t)
		x := newLockReq(1, nil, ExclusiveLock("t1"))
		s := newLockReq(2, nil, SharedLock("t1"))
		region := newLockReq(3, nil, SharedLock("t1/r1"))
		s2 := newLockReq(4, nil, SharedLock("t1"))
		x2 := newLockReq(5, nil, ExclusiveLock("t1/r2"))
		tt.grant(x)
		tt.wait(s)
		tt.wait(region)
		tt.wait(s2)
		tt.wait(x2)
		tt.release(x, s, region, s2, x2)
		for _, r := range []*lockReq{x2, s2, region, s} {
			tt.release(r)
		}
		tt.empty()
	})
	t.Run("shared waiters behind shared waiter", func(t *testing.T) {
		tt := newLockTest(t)
		x := newLockReq(1, nil, ExclusiveLock("t1/r1"))
		s := newLockReq(2, nil, SharedLock("t1/r1"))
		s2 := newLockReq(3, nil, SharedLock("t1/r1"))
		tt.grant(x)
		tt.wait(s)
		tt.wait(s2)
		tt.release(x, s, s2)
		tt.release(s2)
		tt.release(s)
		tt.empty()
	})
}

// TestLockAncestorExemption checks that locks held by ancestors are no
// conflict, and that their descendants skip the queue.
func TestLockAncestorExemption(t *testing.T) {
	tt := newLockTest(t)
	parent := newLockReq(1, nil, ExclusiveLock("table"))
	tt.grant(parent)
	unrelated := newLockReq(5, nil, ExclusiveLock("table/t1"))
	tt.wait(unrelated)

	// The child skips the queue on "table" and "table/t1": its parent
	// holds locks.
	child := newLockReq(2, []ID{1}, ExclusiveLock("table/t1/region/r7"))
	tt.grant(child)
	// Its own child takes the same lock (and its grandparent's).
	grandchild := newLockReq(3, []ID{2, 1}, ExclusiveLock("table/t1/region/r7"), SharedLock("table"))
	tt.grant(grandchild)
	// A sibling is not exempt from the child's locks; nor is the parent.
	sibling := newLockReq(4, []ID{1}, SharedLock("table/t1/region/r7"))
	tt.wait(sibling)
	parentStep := newLockReq(1, nil, ExclusiveLock("table/t1/region"))
	tt.wait(parentStep)
	for _, id := range []ID{1, 2, 3} {
		if !tt.table.holds(id) {
			t.Errorf("holds(%d) = false", id)
		}
	}
	for _, id := range []ID{4, 5} {
		if tt.table.holds(id) {
			t.Errorf("holds(%d) = true", id)
		}
	}

	tt.release(grandchild)
	tt.release(child, sibling)
	tt.release(sibling, parentStep)
	tt.release(parentStep)
	// A child may take its parent's lock itself.
	child2 := newLockReq(6, []ID{1}, ExclusiveLock("table"))
	tt.grant(child2)
	tt.release(child2)
	tt.release(parent, unrelated)
	tt.release(unrelated)
	tt.empty()
}

// TestLockSameOwner checks that an owner's requests do not conflict with
// one another.
func TestLockSameOwner(t *testing.T) {
	// A procedure holding locks until it finishes takes more for a step:
	// its own locks are no conflict, and it skips the queue.
	tt := newLockTest(t)
	held := newLockReq(1, nil, ExclusiveLock("table/t1"))
	tt.grant(held)
	other := newLockReq(2, nil, ExclusiveLock("table/t1"))
	tt.wait(other)
	step := newLockReq(1, nil, ExclusiveLock("table/t1/region/r1"), SharedLock("table/t1"))
	tt.grant(step)
	tt.release(step)
	if !tt.table.holds(1) {
		t.Errorf("holds(1) = false with a request left")
	}
	tt.release(held, other)
	if tt.table.holds(1) {
		t.Errorf("holds(1) = true with no request left")
	}
	tt.release(other)
	tt.empty()
}

// TestLockPriority checks that a waiter gains priority when its kin starts
// to hold locks, and loses it when they release them.
func TestLockPriority(t *testing.T) {
	t.Run("parent acquires", func(t *testing.T) {
		// The child waits behind a waiter until its parent holds locks.
		tt := newLockTest(t)
		holder := newLockReq(9, nil, SharedLock("a/x"))
		tt.grant(holder)
		x := newLockReq(8, nil, ExclusiveLock("a"))
		tt.wait(x)
		child := newLockReq(2, []ID{1}, SharedLock("a/c"))
		tt.wait(child)
		parent := newLockReq(1, nil, ExclusiveLock("b"))
		tt.grant(parent, child)
		tt.release(child)
		tt.release(parent)
		tt.release(holder, x)
		tt.release(x)
		tt.empty()
	})
	t.Run("grandparent granted after grandchild queued", func(t *testing.T) {
		tt := newLockTest(t)
		holder := newLockReq(9, nil, SharedLock("a/x"))
		tt.grant(holder)
		x := newLockReq(8, nil, ExclusiveLock("a"))
		tt.wait(x)
		grandchild := newLockReq(3, []ID{2, 1}, SharedLock("a/c"))
		tt.wait(grandchild)
		blocker := newLockReq(7, nil, ExclusiveLock("b"))
		tt.grant(blocker)
		grandparent := newLockReq(1, nil, ExclusiveLock("b"))
		tt.wait(grandparent)
		// The grandparent is granted first, then the grandchild, which
		// came earlier but only then gains priority.
		tt.release(blocker, grandparent, grandchild)
		tt.release(grandparent)
		tt.release(grandchild)
		tt.release(holder, x)
		tt.release(x)
		tt.empty()
	})
	t.Run("child queued behind its parent", func(t *testing.T) {
		tt := newLockTest(t)
		holder := newLockReq(9, nil, SharedLock("t1"))
		tt.grant(holder)
		parent := newLockReq(1, nil, ExclusiveLock("t1"))
		tt.wait(parent)
		child := newLockReq(2, []ID{1}, ExclusiveLock("t1/r1"))
		tt.wait(child)
		tt.release(holder, parent, child)
		tt.release(child)
		tt.release(parent)
		tt.empty()
	})
	t.Run("no priority once the parent releases", func(t *testing.T) {
		tt := newLockTest(t)
		holder := newLockReq(9, nil, SharedLock("t1/r9"))
		tt.grant(holder)
		x := newLockReq(8, nil, ExclusiveLock("t1"))
		tt.wait(x)
		parent := newLockReq(1, nil, SharedLock("t2"))
		tt.grant(parent)
		tt.release(parent)
		child := newLockReq(2, []ID{1}, ExclusiveLock("t1/r1"))
		tt.wait(child)
		tt.release(holder, x)
		tt.release(x, child)
		tt.release(child)
		tt.empty()
	})
}

// TestLockCancel checks that cancelling a waiter frees its nodes and grants
// the waiters it blocked.
func TestLockCancel(t *testing.T) {
	tt := newLockTest(t)
	s := newLockReq(1, nil, SharedLock("t1"))
	x := newLockReq(2, nil, ExclusiveLock("t1"))
	s2 := newLockReq(3, nil, SharedLock("t1"))
	deep := newLockReq(4, nil, ExclusiveLock("t1/a/b/c"))
	tt.grant(s)
	tt.wait(x)
	tt.wait(s2)
	tt.wait(deep)
	if got := tt.table.len(); got != 4 {
		t.Errorf("len() = %d, want 4", got)
	}
	tt.cancel(deep) // blocks nobody
	if got := tt.table.len(); got != 1 {
		t.Errorf("len() = %d after cancel, want 1", got)
	}
	tt.cancel(x, s2)
	tt.release(s)
	tt.release(s2)
	tt.empty()

	// A cancelled request may be acquired again.
	tt.grant(x)
	tt.release(x)
	tt.empty()
}

// TestLockRestore checks that restore grants persisted locks, refuses
// conflicting ones and leaves the table unchanged then.
func TestLockRestore(t *testing.T) {
	tt := newLockTest(t)
	restore := func(r *lockReq, wantErr string) {
		t.Helper()
		nodes, view := tt.table.len(), tt.table.view()
		err := tt.table.restore(r, tt.tick())
		tt.check()
		if wantErr == "" {
			if err != nil {
				t.Fatalf("restore %d %v: %v", r.owner, r.locks, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("restore %d %v: %v, want an error containing %q", r.owner, r.locks, err, wantErr)
		}
		if r.state != reqIdle || tt.table.holds(r.owner) || tt.table.len() != nodes || !reflect.DeepEqual(tt.table.view(), view) {
			t.Fatalf("restore %d %v failed but changed the table", r.owner, r.locks)
		}
	}

	parent := newLockReq(1, nil, ExclusiveLock("table/t1"))
	restore(parent, "")
	parentSince := tt.now
	child := newLockReq(2, []ID{1}, ExclusiveLock("table/t1/region/r1"))
	restore(child, "")
	// A child restored first is no conflict for its parent either.
	child2 := newLockReq(4, []ID{3}, ExclusiveLock("table/t2/region/r1"))
	restore(child2, "")
	parent2 := newLockReq(3, nil, ExclusiveLock("table/t2"))
	restore(parent2, "")
	restore(newLockReq(5, nil, SharedLock("table/t1")), `it needs "table/t1" shared, which 1 holds exclusive`)
	restore(newLockReq(6, nil, ExclusiveLock("table")), `it needs "table" exclusive, which`)
	restore(newLockReq(7, []ID{3}, SharedLock("table/t2/region/r1")), `"table/t2/region/r1" shared, which 4 holds exclusive`)
	shared := newLockReq(8, nil, SharedLock("table/t3"))
	restore(shared, "")

	want := []LockInfo{
		{Resource: "table/t1", Holders: []LockHolder{{1, Exclusive, parentSince}}},
		{Resource: "table/t1/region/r1", Holders: []LockHolder{{2, Exclusive, child.since}}},
		{Resource: "table/t2", Holders: []LockHolder{{3, Exclusive, parent2.since}}},
		{Resource: "table/t2/region/r1", Holders: []LockHolder{{4, Exclusive, child2.since}}},
		{Resource: "table/t3", Holders: []LockHolder{{8, Shared, shared.since}}},
	}
	if got := tt.table.view(); !reflect.DeepEqual(got, want) {
		t.Errorf("view() = %v, want %v", got, want)
	}

	waiter := newLockReq(9, nil, ExclusiveLock("table/t3"))
	tt.wait(waiter)
	restore(newLockReq(10, nil, SharedLock("server/s1")), "requests are already waiting")
	tt.release(shared, waiter)
	for _, r := range []*lockReq{waiter, child, parent, parent2, child2} {
		tt.release(r)
	}
	tt.empty()
}

// TestLockView checks the rows, order and times of view.
func TestLockView(t *testing.T) {
	tt := newLockTest(t)
	if v := tt.table.view(); v != nil {
		t.Fatalf("view() of an empty table = %v", v)
	}
	r10 := newLockReq(10, nil, SharedLock("server/s3"), ExclusiveLock("table/t1/region/r7"))
	tt.grant(r10)
	t10 := tt.now
	r2 := newLockReq(2, nil, SharedLock("server/s3"))
	tt.grant(r2)
	t2 := tt.now
	r3 := newLockReq(3, nil, ExclusiveLock("server/s3"))
	tt.wait(r3)
	t3 := tt.now
	r4 := newLockReq(4, nil, SharedLock("server/s3"))
	tt.wait(r4)
	t4 := tt.now
	r5 := newLockReq(5, nil, SharedLock("table/t1"))
	tt.grant(r5)
	t5 := tt.now
	want := []LockInfo{
		{Resource: "server/s3",
			Holders: []LockHolder{{2, Shared, t2}, {10, Shared, t10}},
			Waiters: []LockHolder{{3, Exclusive, t3}, {4, Shared, t4}}},
		// Implied locks are not shown: table/t1 lists 5 but not 10.
		{Resource: "table/t1", Holders: []LockHolder{{5, Shared, t5}}},
		{Resource: "table/t1/region/r7", Holders: []LockHolder{{10, Exclusive, t10}}},
	}
	if got := tt.table.view(); !reflect.DeepEqual(got, want) {
		t.Errorf("view() = %v,\nwant %v", got, want)
	}

	tt.release(r10)
	tt.release(r2, r3)
	t3 = tt.now // granted
	want = []LockInfo{
		{Resource: "server/s3",
			Holders: []LockHolder{{3, Exclusive, t3}},
			Waiters: []LockHolder{{4, Shared, t4}}},
		{Resource: "table/t1", Holders: []LockHolder{{5, Shared, t5}}},
	}
	if got := tt.table.view(); !reflect.DeepEqual(got, want) {
		t.Errorf("view() = %v,\nwant %v", got, want)
	}
	tt.release(r3, r4)
	tt.release(r4)
	tt.release(r5)
	tt.empty()
}

// TestLockNodeCleanup checks that nodes are freed, and not kept beyond
// maxFreeNodes, once their requests are gone.
func TestLockNodeCleanup(t *testing.T) {
	tt := newLockTest(t)
	var reqs []*lockReq
	for i := range 1000 {
		r := newLockReq(ID(i+1), nil, ExclusiveLock(fmt.Sprintf("table/t%d/region/r%d", i%16, i)))
		tt.table.acquire(r, tt.tick())
		reqs = append(reqs, r)
	}
	// A table lock queued behind its regions, and a region lock behind it.
	table := newLockReq(2000, nil, ExclusiveLock("table/t3"))
	tt.wait(table)
	region := newLockReq(2001, nil, ExclusiveLock("table/t3/region/new"))
	tt.wait(region)
	if got, want := tt.table.len(), 1+16+16+1000+1; got != want {
		t.Errorf("len() = %d, want %d", got, want)
	}
	tt.check()
	for _, r := range reqs {
		tt.table.release(r, tt.tick())
	}
	tt.check()
	tt.release(table, region)
	tt.release(region)
	tt.empty()
	if len(tt.table.free) > maxFreeNodes {
		t.Errorf("%d free nodes kept, want at most %d", len(tt.table.free), maxFreeNodes)
	}
}

// TestLockEmptyRequest checks that a request for no locks is granted and
// holds nothing.
func TestLockEmptyRequest(t *testing.T) {
	tt := newLockTest(t)
	x := newLockReq(1, nil, ExclusiveLock("a"))
	tt.grant(x)
	none := newLockReq(2, nil)
	tt.grant(none)
	if tt.table.holds(2) {
		t.Errorf("holds(2) = true for a request of no locks")
	}
	tt.release(none)
	tt.release(x)
	tt.empty()
}

// TestLockMisuse checks that calls on a request in the wrong state panic,
// leaving the table consistent.
func TestLockMisuse(t *testing.T) {
	tt := newLockTest(t)
	held := newLockReq(1, nil, ExclusiveLock("a"))
	tt.grant(held)
	waiting := newLockReq(2, nil, ExclusiveLock("a"))
	tt.wait(waiting)
	idle := newLockReq(3, nil, ExclusiveLock("b"))
	for name, f := range map[string]func(){
		"acquire held":    func() { tt.table.acquire(held, tt.now) },
		"acquire waiting": func() { tt.table.acquire(waiting, tt.now) },
		"restore held":    func() { _ = tt.table.restore(held, tt.now) },
		"release waiting": func() { tt.table.release(waiting, tt.now) },
		"release idle":    func() { tt.table.release(idle, tt.now) },
		"cancel held":     func() { tt.table.cancel(held, tt.now) },
		"cancel idle":     func() { tt.table.cancel(idle, tt.now) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
		tt.check()
	}
}

// refReq is a request as refLocks sees it.
type refReq struct {
	r        *lockReq
	modes    map[string]LockMode // the request's mode at each node it touches
	explicit map[string]bool     // the resources it names
	held     bool
	seq      int
	since    time.Time
}

// newRefReq returns r as refLocks sees it.
func newRefReq(r *lockReq) *refReq {
	q := &refReq{r: r, modes: map[string]LockMode{}, explicit: map[string]bool{}}
	for _, l := range r.locks {
		parts := strings.Split(l.Resource, "/")
		for i := 1; i < len(parts); i++ {
			res := strings.Join(parts[:i], "/")
			q.modes[res] = max(q.modes[res], Shared)
		}
		q.modes[l.Resource] = max(q.modes[l.Resource], l.Mode)
		q.explicit[l.Resource] = true
	}
	return q
}

// kin reports whether owner is q's owner or one of its ancestors.
func (q *refReq) kin(owner ID) bool {
	return owner == q.r.owner || slices.Contains(q.r.ancestors, owner)
}

// conflicts reports whether q and o have conflicting modes at a node.
func (q *refReq) conflicts(o *refReq) bool {
	for res, m := range q.modes {
		if om, ok := o.modes[res]; ok && (m == Exclusive || om == Exclusive) {
			return true
		}
	}
	return false
}

// refLocks is a reference lock table: it recomputes everything from the
// list of requests, the obvious way.
type refLocks struct {
	reqs []*refReq // in the table, by seq
	seq  int
}

// blocked reports whether q, new or waiting, must wait.
func (m *refLocks) blocked(q *refReq) bool {
	priority := false
	for _, o := range m.reqs {
		priority = priority || o.held && len(o.modes) > 0 && q.kin(o.r.owner)
	}
	for _, o := range m.reqs {
		if o == q || !q.conflicts(o) {
			continue
		}
		if o.held && !q.kin(o.r.owner) || !o.held && !priority && o.seq < q.seq {
			return true
		}
	}
	return false
}

// settle grants the earliest waiter that is not blocked, until there is
// none, and returns the requests granted.
func (m *refLocks) settle(now time.Time) []*lockReq {
	var woken []*lockReq
	for {
		i := slices.IndexFunc(m.reqs, func(q *refReq) bool { return !q.held && !m.blocked(q) })
		if i < 0 {
			return woken
		}
		m.reqs[i].held, m.reqs[i].since = true, now
		woken = append(woken, m.reqs[i].r)
	}
}

// acquire is lockTable.acquire.
func (m *refLocks) acquire(q *refReq, now time.Time) (bool, []*lockReq) {
	m.seq++
	q.seq, q.since = m.seq, now
	m.reqs = append(m.reqs, q)
	if m.blocked(q) {
		return false, nil
	}
	q.held = true
	return true, m.settle(now)
}

// remove releases or cancels q.
func (m *refLocks) remove(q *refReq, now time.Time) []*lockReq {
	m.reqs = slices.DeleteFunc(m.reqs, func(o *refReq) bool { return o == q })
	return m.settle(now)
}

// restore is lockTable.restore; it reports whether q was restored.
func (m *refLocks) restore(q *refReq, now time.Time) bool {
	for _, o := range m.reqs {
		if !o.held || q.kin(o.r.owner) || o.kin(q.r.owner) || !q.conflicts(o) {
			continue
		}
		return false
	}
	if slices.ContainsFunc(m.reqs, func(o *refReq) bool { return !o.held }) {
		return false
	}
	m.seq++
	q.seq, q.since, q.held = m.seq, now, true
	m.reqs = append(m.reqs, q)
	return true
}

// holds is lockTable.holds.
func (m *refLocks) holds(owner ID) bool {
	return slices.ContainsFunc(m.reqs, func(q *refReq) bool { return q.held && q.r.owner == owner })
}

// nodes returns the number of nodes touched by requests.
func (m *refLocks) nodes() int {
	nodes := map[string]bool{}
	for _, q := range m.reqs {
		for res := range q.modes {
			nodes[res] = true
		}
	}
	return len(nodes)
}

// view is lockTable.view.
func (m *refLocks) view() []LockInfo {
	rows := map[string]*LockInfo{}
	for _, q := range m.reqs { // by seq: waiters in FIFO order
		for res := range q.explicit {
			if rows[res] == nil {
				rows[res] = &LockInfo{Resource: res}
			}
			h := LockHolder{ID: q.r.owner, Mode: q.modes[res], Since: q.since}
			if q.held {
				rows[res].Holders = append(rows[res].Holders, h)
			} else {
				rows[res].Waiters = append(rows[res].Waiters, h)
			}
		}
	}
	var infos []LockInfo
	for _, res := range slices.Sorted(maps.Keys(rows)) {
		slices.SortStableFunc(rows[res].Holders, func(a, b LockHolder) int { return cmp.Compare(a.ID, b.ID) })
		infos = append(infos, *rows[res])
	}
	return infos
}

// TestLockModel runs random requests, releases and cancels through a lock
// table and a reference (refLocks), and compares them after every call.
func TestLockModel(t *testing.T) {
	const (
		numOwners = 20
		ops       = 20000
	)
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	parents := map[ID]ID{9: 1, 10: 1, 11: 2, 12: 3, 13: 3, 14: 4, 15: 9, 16: 9, 17: 11, 18: 12, 19: 15, 20: 17}
	ancestors := func(owner ID) []ID {
		var as []ID
		for p := parents[owner]; p != 0; p = parents[p] {
			as = append(as, p)
		}
		return as
	}
	resources := []string{"a", "a/b", "a/b/c", "a/b/e", "a/d", "ab", "ab/x", "b", "b/x/y", "c"}
	newReqs := func() (*lockReq, *refReq) {
		owner := ID(1 + rng.IntN(numOwners))
		var locks []Lock
		for range 1 + rng.IntN(3) {
			mode := Shared
			if rng.IntN(5) < 2 {
				mode = Exclusive
			}
			locks = append(locks, Lock{resources[rng.IntN(len(resources))], mode})
		}
		r := newLockReq(owner, ancestors(owner), locks...)
		return r, newRefReq(r)
	}

	lt, ref := newLockTable(), &refLocks{}
	now := lockEpoch
	acquireWakes, outOfOrder := 0, 0 // woken by a kin's acquire; woken out of sequence order
	compare := func(op string, q *refReq, woken, refWoken []*lockReq) {
		t.Helper()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("%s %d %v at %v: %s", op, q.r.owner, q.r.locks, now.Sub(lockEpoch), fmt.Sprintf(format, args...))
		}
		if err := lt.check(); err != nil {
			fail("check: %v", err)
		}
		if !slices.Equal(woken, refWoken) {
			fail("woke %v, want %v", lockOwners(woken), lockOwners(refWoken))
		}
		if op == "acquire" && woken != nil {
			acquireWakes++
		}
		if !slices.IsSortedFunc(woken, func(a, b *lockReq) int { return cmp.Compare(a.seq, b.seq) }) {
			outOfOrder++
		}
		for _, o := range ref.reqs {
			want := reqWaiting
			if o.held {
				want = reqHeld
			}
			if o.r.state != want {
				fail("request of %d %v in state %d, want %d", o.r.owner, o.r.locks, o.r.state, want)
			}
		}
		for id := range ID(numOwners) {
			if lt.holds(id+1) != ref.holds(id+1) {
				fail("holds(%d) = %v", id+1, lt.holds(id+1))
			}
		}
		if got, want := lt.len(), ref.nodes(); got != want {
			fail("len() = %d, want %d", got, want)
		}
		if got, want := lt.view(), ref.view(); !reflect.DeepEqual(got, want) {
			fail("view() = %v,\nwant %v", got, want)
		}
	}

	for range 8 {
		now = now.Add(time.Second)
		r, q := newReqs()
		err := lt.restore(r, now)
		if ok := ref.restore(q, now); ok != (err == nil) {
			t.Fatalf("restore %d %v: %v, reference says ok=%v", r.owner, r.locks, err, ok)
		}
		compare("restore", q, nil, nil)
	}
	live := func(owner ID) int {
		return len(slices.DeleteFunc(slices.Clone(ref.reqs), func(q *refReq) bool { return q.r.owner != owner }))
	}
	pick := func(held bool) *refReq {
		var qs []*refReq
		for _, q := range ref.reqs {
			if q.held == held {
				qs = append(qs, q)
			}
		}
		if len(qs) == 0 {
			return nil
		}
		return qs[rng.IntN(len(qs))]
	}
	grants, waits := 0, 0
	for range ops {
		now = now.Add(time.Second)
		switch p := rng.IntN(100); {
		case p < 45:
			r, q := newReqs()
			if live(r.owner) >= 2 {
				continue
			}
			granted, woken := lt.acquire(r, now)
			refGranted, refWoken := ref.acquire(q, now)
			if granted != refGranted {
				t.Fatalf("acquire %d %v: granted %v, want %v", r.owner, r.locks, granted, refGranted)
			}
			if granted {
				grants++
			} else {
				waits++
			}
			compare("acquire", q, woken, refWoken)
		case p < 80:
			if q := pick(true); q != nil {
				compare("release", q, lt.release(q.r, now), ref.remove(q, now))
			}
		default:
			if q := pick(false); q != nil {
				compare("cancel", q, lt.cancel(q.r, now), ref.remove(q, now))
			}
		}
	}
	t.Logf("%d acquires granted at once (%d waking others), %d waited; %d wake-ups out of sequence order",
		grants, acquireWakes, waits, outOfOrder)
	for len(ref.reqs) > 0 {
		now = now.Add(time.Second)
		q := pick(true)
		compare("release", q, lt.release(q.r, now), ref.remove(q, now))
	}
	if n := lt.len(); n != 0 {
		t.Fatalf("len() = %d after everything was released", n)
	}
}

// BenchmarkLockUncontended acquires and releases one region lock at a
// time, on distinct regions of 16 tables.
func BenchmarkLockUncontended(b *testing.B) {
	lt := newLockTable()
	reqs := make([]*lockReq, 1024)
	for i := range reqs {
		reqs[i] = newLockReq(ID(i+1), nil, ExclusiveLock(fmt.Sprintf("table/t%d/region/r%d", i%16, i)))
	}
	now := lockEpoch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		i++
		if granted, _ := lt.acquire(r, now); !granted {
			b.Fatal("not granted")
		}
		lt.release(r, now)
	}
}

// BenchmarkLockContended keeps 16 requests in the table, on 16 regions of
// 4 tables and one table lock in 8: each iteration acquires a request and
// releases (or cancels) the oldest.
func BenchmarkLockContended(b *testing.B) {
	const window = 16
	lt := newLockTable()
	reqs := make([]*lockReq, 64)
	for i := range reqs {
		lock := ExclusiveLock(fmt.Sprintf("table/t%d/region/r%d", i%4, i%16))
		if i%8 == 0 {
			lock = ExclusiveLock(fmt.Sprintf("table/t%d", i%4))
		}
		reqs[i] = newLockReq(ID(i+1), nil, lock)
	}
	now := lockEpoch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		lt.acquire(reqs[i%len(reqs)], now)
		if i >= window {
			old := reqs[(i-window)%len(reqs)]
			if old.state == reqHeld {
				lt.release(old, now)
			} else {
				lt.cancel(old, now)
			}
		}
		i++
	}
}
