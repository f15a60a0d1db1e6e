package tstest_test

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
	"github.com/procyon-dev/procyon/procedure"
)

// TestTableLifecycle: create (several regions) -> every region open on
// exactly one live server; put/get/scan through the client; disable -> no
// region open; enable -> open again, rows intact; delete -> records and
// directories gone.
func TestTableLifecycle(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t1", "b", "c", "d")
	regs := regionsOf(t, c, "t1")
	if len(regs) != 4 {
		t.Fatalf("t1 has %d regions, want 4", len(regs))
	}
	if err := checkServing(c, "t1"); err != nil {
		t.Fatalf("after create: %v", err)
	}

	want := rowsFor("abcde", 60, "v1")
	putRows(t, c, "t1", want)
	v, ok, err := c.Client.Get(ctxT(t), "t1", []byte("c002"))
	if err != nil || !ok || string(v) != want["c002"] {
		t.Fatalf("get c002 = %q, %v, %v; want %q", v, ok, err, want["c002"])
	}
	if _, ok, err := c.Client.Get(ctxT(t), "t1", []byte("zz")); err != nil || ok {
		t.Fatalf("get of a missing key: found %v, %v", ok, err)
	}
	checkScan(t, c, "t1", want)

	disable(t, c, "t1")
	for _, r := range regionsOf(t, c, "t1") {
		if r.State != master.RegionOffline || r.Server != "" {
			t.Errorf("disabled: region %s is %s on %q", r.ID, r.State, r.Server)
		}
	}
	if s := servingMap(c); len(s) != 0 {
		t.Errorf("disabled: regions still served: %v", s)
	}

	enable(t, c, "t1")
	if err := checkServing(c, "t1"); err != nil {
		t.Fatalf("after enable: %v", err)
	}
	checkScan(t, c, "t1", want)

	disable(t, c, "t1")
	id, err := c.Master().DeleteTable(ctxT(t), master.DeleteTable{Name: "t1"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustProc(t, c, id, "delete t1")
	if _, _, err := c.Master().Table("t1"); !errors.Is(err, master.ErrNoTable) {
		t.Errorf("deleted table: Table = %v, want ErrNoTable", err)
	}
	l := tablestore.Layout{Root: c.Root}
	for _, r := range regs {
		if _, ok, err := c.Master().Region(r.ID); ok || err != nil {
			t.Errorf("deleted table: region %s record still there (%v)", r.ID, err)
		}
		if _, err := os.Stat(l.RegionDir(r.ID)); !errors.Is(err, iofs.ErrNotExist) {
			t.Errorf("deleted table: region directory %s: %v", r.ID, err)
		}
	}
}

// TestServerCrash: a killed region server's regions reopen elsewhere with
// every row acknowledged before the kill; no region is served twice or
// not at all.
func TestServerCrash(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t2", "b", "c", "d", "e", "f")
	want := rowsFor("abcdefg", 140, "v")
	putRows(t, c, "t2", want)

	victim := busiestServer(t, c, "t2")
	var moved []string
	for _, r := range regionsOf(t, c, "t2") {
		if r.Server == victim {
			moved = append(moved, r.ID)
		}
	}
	c.Kill(victim)
	c.Eventually(procTimeout, "regions of "+victim+" reassigned", func() error {
		if err := checkServing(c, "t2"); err != nil {
			return err
		}
		for _, r := range regionsOf(t, c, "t2") {
			if r.Server == victim {
				return errors.New("region " + r.ID + " still on " + victim)
			}
		}
		return nil
	})
	if !c.Log.Contains("region server died; reassigning its regions", "server="+victim) {
		t.Errorf("no server-crash procedure ran for %s", victim)
	}
	t.Logf("killed %s; its regions %v reopened elsewhere", victim, moved)
	checkScan(t, c, "t2", want)
	for k, v := range want {
		got, ok, err := c.Client.Get(ctxT(t), "t2", []byte(k))
		if err != nil || !ok || string(got) != v {
			t.Fatalf("get %q = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
}

// busiestServer returns the server that holds most of table's regions.
func busiestServer(t *testing.T, c *tstest.Cluster, table string) string {
	t.Helper()
	n := map[string]int{}
	best := ""
	for _, r := range regionsOf(t, c, table) {
		n[r.Server]++
		if best == "" || n[r.Server] > n[best] || n[r.Server] == n[best] && r.Server < best {
			best = r.Server
		}
	}
	return best
}

// TestMasterRestartDuringAssign: the master stops while the assign
// children of a create wait for their open-region outcomes; a new master
// finishes the create, and no region is assigned twice.
func TestMasterRestartDuringAssign(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	c.DropReports(true)
	id, err := c.Master().CreateTable(ctxT(t), master.CreateTable{Name: "t5", Splits: splits("b", "c", "d", "e", "f")}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Eventually(procTimeout, "the servers opened every region", func() error {
		if n := len(servingMap(c)); n != 6 {
			return errors.New("not yet")
		}
		return nil
	})
	for _, r := range regionsOf(t, c, "t5") {
		if r.State != master.RegionOpening {
			t.Fatalf("before the restart: region %s is %s, want opening (its outcome dropped)", r.ID, r.State)
		}
	}
	c.RestartMaster()
	c.DropReports(false)
	mustProc(t, c, id, "create t5 after a master restart")
	if err := checkServing(c, "t5"); err != nil {
		t.Fatal(err)
	}
	want := rowsFor("abcdefg", 70, "r")
	putRows(t, c, "t5", want)
	checkScan(t, c, "t5", want)
}

// TestMasterRestartDuringDisable: a new master's steps that need the
// region servers' liveness must not run on the empty liveness table the
// dispatcher has before its Start loaded it. The unassign children of a
// disable are held (their first step fails and is retried) while the
// master stops; the new master's dispatcher takes its epoch only once an
// unassign step has run. Each must still close its region on the server
// (not take the server for dead and only record the region offline).
func TestMasterRestartDuringDisable(t *testing.T) {
	var hold atomic.Bool
	ep := &gatedEpocher{}
	hooks := procedure.Hooks{
		FailStep: func(si procedure.StepInfo) error {
			if si.Type == "unassign-region" && !si.Rollback && hold.Load() {
				return errors.New("test: unassign held")
			}
			return nil
		},
		StepEnd: func(si procedure.StepInfo) {
			if si.Type == "unassign-region" {
				ep.open()
			}
		},
	}
	c := tstest.New(t, tstest.Options{Hooks: hooks, Master: func(o *master.Options) { o.Remote.Epoch = ep }})
	createTable(t, c, "t6", "b", "c")
	want := rowsFor("abc", 30, "v")
	putRows(t, c, "t6", want)

	hold.Store(true)
	id, err := c.Master().DisableTable(ctxT(t), master.DisableTable{Name: "t6"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := waitState(t, c, id, "done")
	for _, child := range in.Children {
		c.Eventually(procTimeout, "unassign held", func() error {
			ci, err := info(c, child)
			if err != nil || ci.Retries == 0 {
				return fmt.Errorf("unassign %d: %v", child, err)
			}
			return nil
		})
	}
	c.StopMaster()
	hold.Store(false)
	ep.close()
	c.StartMaster()
	mustProc(t, c, id, "disable t6 across a master restart")
	for _, r := range regionsOf(t, c, "t6") {
		if r.State != master.RegionOffline {
			t.Errorf("region %s is %s", r.ID, r.State)
		}
	}
	if s := servingMap(c); len(s) != 0 {
		t.Fatalf("t6 disabled, but its regions are still served: %v", s)
	}
	enable(t, c, "t6")
	waitServing(t, c, "t6")
	checkScan(t, c, "t6", want)
}

// gatedEpocher is a master epoch counter (remote.Epocher) that, once
// closed, gives no epoch until opened: a master's dispatcher then waits
// in its Start.
type gatedEpocher struct {
	n    atomic.Uint64
	mu   sync.Mutex
	gate chan struct{}
}

func (e *gatedEpocher) NextEpoch(ctx context.Context) (uint64, error) {
	e.mu.Lock()
	g := e.gate
	e.mu.Unlock()
	if g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(procTimeout):
			return 0, errors.New("test: the epoch gate was never opened")
		}
	}
	return e.n.Add(1), nil
}

func (e *gatedEpocher) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gate = make(chan struct{})
}

func (e *gatedEpocher) open() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gate != nil {
		close(e.gate)
		e.gate = nil
	}
}

// TestServerRestartsUnderItsName: a region server killed and started
// again at once (same name, new incarnation) gets regions of a new table
// before the crash procedure of its dead incarnation looks for that
// incarnation's regions (held by a hook). The crash procedure must take
// only the dead incarnation's regions: those the new incarnation opened
// stay where they are, and nothing is opened twice or reassigned.
func TestServerRestartsUnderItsName(t *testing.T) {
	var hold atomic.Bool
	hooks := procedure.Hooks{FailStep: func(si procedure.StepInfo) error {
		if si.Type == "server-crash" && !si.Rollback && hold.Load() {
			return errors.New("test: server crash held")
		}
		return nil
	}}
	c := tstest.New(t, tstest.Options{Hooks: hooks})
	createTable(t, c, "t7", "b", "c")
	want := rowsFor("abc", 30, "v")
	putRows(t, c, "t7", want)
	victim := busiestServer(t, c, "t7")
	var old []string
	for _, r := range regionsOf(t, c, "t7") {
		if r.Server == victim {
			old = append(old, r.ID)
		}
	}

	hold.Store(true)
	c.Kill(victim)
	c.StartServer(victim)
	crash := waitCrashHeld(t, c, victim)
	createTable(t, c, "t7b", "b", "c", "d", "e", "f")
	var mine []string
	for _, r := range regionsOf(t, c, "t7b") {
		if r.Server == victim {
			mine = append(mine, r.ID)
		}
	}
	if len(mine) == 0 {
		t.Fatalf("precondition: no region of t7b went to the new incarnation of %s", victim)
	}
	hold.Store(false)
	mustProc(t, c, crash, "server crash of "+victim)

	for _, r := range regionsOf(t, c, "t7b") {
		if slices.Contains(mine, r.ID) && (r.Server != victim || r.State != master.RegionOpen) {
			t.Errorf("region %s of the new incarnation was moved: %s on %s", r.ID, r.State, r.Server)
		}
	}
	if c.Log.Contains("open region failed") {
		t.Errorf("an assignment failed (a region opened twice?)")
	}
	// The step logs what it found, at each attempt: the last one counts.
	last := c.Log.Last("region server died; reassigning its regions", "server="+victim)
	if !strings.Contains(last, fmt.Sprintf(" regions=%d", len(old))) {
		t.Errorf("the crash procedure did not take exactly the %d regions of the dead incarnation: %s", len(old), last)
	}
	waitServing(t, c, "t7")
	waitServing(t, c, "t7b")
	checkScan(t, c, "t7", want)
}

// waitCrashHeld waits for the server-crash procedure of server to be
// started and failing (held by the test's hook), and returns it.
func waitCrashHeld(t *testing.T, c *tstest.Cluster, server string) procedure.ID {
	t.Helper()
	var id procedure.ID
	c.Eventually(procTimeout, "server crash of "+server+" held", func() error {
		ins := slices.Collect(c.Master().Engine().List(procedure.Query{}))
		for _, in := range ins {
			if in.Type == "server-crash" && in.Completed.IsZero() && in.Retries > 0 {
				id = in.ID
				return nil
			}
		}
		return errors.New("not yet")
	})
	return id
}

// TestDisableWhileServerDies: a table is disabled right after one of its
// servers was killed, before the master noticed: the close sent to the
// dead server fails once its lease expires, the region is recorded
// offline, and the server-crash procedure leaves it offline. Enabled
// again, the table has every row.
func TestDisableWhileServerDies(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t11", "b", "c", "d")
	want := rowsFor("abcd", 40, "v")
	putRows(t, c, "t11", want)
	victim := busiestServer(t, c, "t11")
	c.Kill(victim)
	disable(t, c, "t11")
	waitDead(t, c, victim)
	c.Eventually(procTimeout, "server crash of "+victim+" done", func() error {
		ins := slices.Collect(c.Master().Engine().List(procedure.Query{}))
		for _, in := range ins {
			if in.Type == "server-crash" && in.Completed.IsZero() {
				return errors.New("running")
			} else if in.Type == "server-crash" {
				return nil
			}
		}
		return errors.New("not started")
	})
	for _, r := range regionsOf(t, c, "t11") {
		if r.State != master.RegionOffline {
			t.Errorf("disabled: region %s is %s on %s", r.ID, r.State, r.Server)
		}
	}
	if s := servingMap(c); len(s) != 0 {
		t.Errorf("disabled: regions served: %v", s)
	}
	enable(t, c, "t11")
	waitServing(t, c, "t11")
	checkScan(t, c, "t11", want)
}

// TestDeadServerClosesItsRegions: a server cut off from the master is
// declared dead while it lives, with regions open; the table is disabled
// meanwhile (the closes fail with the death and the regions are recorded
// offline, still open on the server). Once it reaches the master again as
// a new incarnation, the server must close the regions of its dead
// incarnation: otherwise their LOCKs stay held, and the snapshot of the
// disabled table, which opens them from the master, waits for ever.
func TestDeadServerClosesItsRegions(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t19", "b", "c")
	want := rowsFor("abc", 30, "v")
	putRows(t, c, "t19", want)
	victim := busiestServer(t, c, "t19")

	// The disable takes the table's lock before the server is declared
	// dead: afterwards, the crash procedure's assignments of its regions
	// would hold their locks, failing on the LOCKs the server holds,
	// until it is back.
	c.Partition(victim, true)
	id, err := c.Master().DisableTable(ctxT(t), master.DisableTable{Name: "t19"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitDead(t, c, victim)
	mustProc(t, c, id, "disable t19")
	c.Partition(victim, false)
	c.Eventually(procTimeout, victim+" live again", func() error {
		if !slices.Contains(c.LiveServers(), victim) {
			return errors.New("not live")
		}
		return nil
	})
	c.Eventually(procTimeout, "the dead incarnation's regions closed", func() error {
		if s := servingMap(c); len(s) != 0 {
			return fmt.Errorf("served: %v", s)
		}
		return nil
	})
	regs := regionsOf(t, c, "t19")
	mustProc(t, c, submitSnapshot(t, c, "t19", "s19"), "snapshot of the disabled table")
	if d := diff(union(checkSnapshot(t, c, "s19", "t19", regs)), want); d != "" {
		t.Errorf("snapshot rows: %s", d)
	}
	enable(t, c, "t19")
	waitServing(t, c, "t19")
	checkScan(t, c, "t19", want)
}

// The regions of a new table spread evenly over the servers although
// their assignments run together and none sees the others' records yet:
// with the servers unevenly loaded first (a 2-region table), the least
// loaded one must not take them all.
func TestAssignmentsSpread(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t0", "m")
	createTable(t, c, "t1", "b", "c", "d", "e", "f", "g", "h", "i")
	n := map[string]int{}
	for _, table := range []string{"t0", "t1"} {
		for _, r := range regionsOf(t, c, table) {
			n[r.Server]++
		}
	}
	lo, hi := 100, 0
	for _, s := range []string{"rs1", "rs2", "rs3"} {
		lo, hi = min(lo, n[s]), max(hi, n[s])
	}
	if hi-lo > 1 {
		t.Fatalf("11 regions on 3 servers: %v, want 3 or 4 each", n)
	}
}
