package tstest_test

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
	"github.com/procyon-dev/procyon/internal/testseed"
	"github.com/procyon-dev/procyon/procedure"
)

// TestSnapshotWhileWriting: a snapshot of an enabled table while one
// writer goes on. Each region's snapshot is a prefix of the region's
// writes, holding every write acknowledged before the snapshot was
// submitted and none started after it completed; a clone of it reads
// back equal to it.
func TestSnapshotWhileWriting(t *testing.T) {
	seed := testseed.Seed(t)
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t3", "b", "c", "d")
	w := startWriter(t, c, "t3", rand.New(rand.NewPCG(seed, seed^0x5eed)))
	w.waitAcked(t, c, 40)
	ackedBefore := w.ackedCount()
	id := submitSnapshot(t, c, "t3", "s3")
	mustProc(t, c, id, "snapshot s3")
	startedBefore := w.startedCount()
	w.waitAcked(t, c, startedBefore+20) // the writer went on past the snapshot
	w.stop(t)
	t.Logf("writes: %d acknowledged before the snapshot was submitted, %d started before it completed, %d in all",
		ackedBefore, startedBefore, len(w.writes))

	regs := regionsOf(t, c, "t3")
	per := checkSnapshot(t, c, "s3", "t3", regs)
	for _, r := range regs {
		checkPrefix(t, r.RegionDesc, per[r.ID], w.writes, ackedBefore, startedBefore)
	}
	clone(t, c, "s3", "t3clone")
	waitServing(t, c, "t3clone")
	checkScan(t, c, "t3clone", union(per))
	checkScan(t, c, "t3", w.final())
}

// write is one put of the writer: write i sets key to value i.
type write struct {
	i   int
	key string
}

// writer puts one row at a time into a table, each with the next version
// as its value, and keeps the order of its writes.
type writer struct {
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
	started atomic.Int64 // writes started (each before its Put)
	acked   atomic.Int64 // writes acknowledged (in order: one writer)
	mu      sync.Mutex
	writes  []write // started, in order
	err     error
}

func startWriter(t *testing.T, c *tstest.Cluster, table string, rng *rand.Rand) *writer {
	w := &writer{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		for i := 0; ; i++ {
			select {
			case <-w.done:
				return
			default:
			}
			key := fmt.Sprintf("%c%02d", 'a'+rng.IntN(5), rng.IntN(25))
			w.mu.Lock()
			w.writes = append(w.writes, write{i: i, key: key})
			w.mu.Unlock()
			w.started.Add(1)
			row := tablestore.Row{Key: []byte(key), Value: []byte(fmt.Sprintf("%08d", i))}
			if err := c.Client.Put(ctxT(t), table, row); err != nil {
				w.mu.Lock()
				w.err = fmt.Errorf("write %d (%s): %w", i, key, err)
				w.mu.Unlock()
				return
			}
			w.acked.Add(1)
		}
	}()
	t.Cleanup(func() { w.stopOnce() })
	return w
}

func (w *writer) stopOnce() {
	w.once.Do(func() { close(w.done) })
	<-w.stopped
}

func (w *writer) ackedCount() int   { return int(w.acked.Load()) }
func (w *writer) startedCount() int { return int(w.started.Load()) }

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) waitAcked(t *testing.T, c *tstest.Cluster, n int) {
	t.Helper()
	c.Eventually(procTimeout, fmt.Sprintf("%d writes acknowledged", n), func() error {
		if err := w.failed(); err != nil {
			t.Fatalf("writer: %v", err)
		}
		if got := w.ackedCount(); got < n {
			return fmt.Errorf("%d acknowledged", got)
		}
		return nil
	})
}

// stop stops the writer; every write it started is then acknowledged.
func (w *writer) stop(t *testing.T) {
	t.Helper()
	w.stopOnce()
	if err := w.failed(); err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// final is the table's content after every write.
func (w *writer) final() rowMap {
	m := rowMap{}
	for _, wr := range w.writes {
		m[wr.key] = fmt.Sprintf("%08d", wr.i)
	}
	return m
}

// checkPrefix checks a region's snapshot rows against the writer's
// history: they are the region's content after its writes up to some
// write c (a prefix), c started before the snapshot completed, and every
// write to the region acknowledged before the snapshot was submitted is
// at or before c.
func checkPrefix(t *testing.T, r tablestore.RegionDesc, got rowMap, writes []write, ackedBefore, startedBefore int) {
	t.Helper()
	last := -1
	for k, v := range got {
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("region %s: key %q has value %q, not a write's", r.ID, k, v)
		}
		last = max(last, i)
	}
	want := rowMap{}
	lastAcked := -1
	for _, wr := range writes {
		if !r.Contains([]byte(wr.key)) {
			continue
		}
		if wr.i <= last {
			want[wr.key] = fmt.Sprintf("%08d", wr.i)
		}
		if wr.i < ackedBefore {
			lastAcked = wr.i
		}
	}
	if d := diff(got, want); d != "" {
		t.Errorf("region %s: snapshot is not the prefix of its writes up to write %d: %s", r.ID, last, d)
	}
	if last >= startedBefore {
		t.Errorf("region %s: snapshot holds write %d, started after the snapshot completed (%d started before)", r.ID, last, startedBefore)
	}
	if lastAcked > last {
		t.Errorf("region %s: snapshot ends at write %d, misses write %d acknowledged before it was submitted", r.ID, last, lastAcked)
	}
}

// verifyHook calls the function it holds when a snapshot-table step at
// verify-snapshot starts (before it spawns the verify children).
type verifyHook struct{ f atomic.Pointer[func()] }

func (h *verifyHook) set(f func()) { h.f.Store(&f) }
func (h *verifyHook) clear()       { h.f.Store(nil) }

func (h *verifyHook) hooks() procedure.Hooks {
	return procedure.Hooks{StepStart: func(si procedure.StepInfo) {
		if si.Type != "snapshot-table" || si.State != snapStateVerify || si.Rollback {
			return
		}
		if f := h.f.Load(); f != nil {
			(*f)()
		}
	}}
}

// TestSnapshotManifestAfterMasterRestart (seed 003: "We do not serialize
// snapshotManifest here? Then how do we restore it when recovery?"): the
// master restarts while the region snapshots wait for their outcomes, and
// again while the verify children wait (after consolidate); the
// completed MANIFEST lists every region with its region manifest's
// values, and the snapshot's rows are the table's.
func TestSnapshotManifestAfterMasterRestart(t *testing.T) {
	var hook verifyHook
	c := tstest.New(t, tstest.Options{Hooks: hook.hooks()})
	createTable(t, c, "t4a", "b", "c", "d")
	want := rowsFor("abcde", 50, "v")
	putRows(t, c, "t4a", want)
	regs := regionsOf(t, c, "t4a")

	c.DropReports(true)
	id := submitSnapshot(t, c, "t4a", "s4a")
	waitState(t, c, id, "snapshot-offline-regions")
	waitRegionSnapshots(t, c, "s4a", regs)
	c.RestartMaster()

	hook.set(func() { c.DropReports(true) })
	c.DropReports(false)
	waitState(t, c, id, "complete-snapshot")
	work := workDir(t, c, "s4a")
	before := readManifest(t, work)
	c.RestartMaster()
	hook.clear()
	c.DropReports(false)

	mustProc(t, c, id, "snapshot s4a across two master restarts")
	per := checkSnapshot(t, c, "s4a", "t4a", regs)
	if d := diff(union(per), want); d != "" {
		t.Errorf("snapshot s4a rows: %s", d)
	}
	after := readManifest(t, tablestore.Layout{Root: c.Root}.SnapshotDir("s4a"))
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("MANIFEST changed after consolidate:\n%+v\n%+v", before, after)
	}
}

// TestSplitAndSnapshotWaitForEachOther (seed 003: "what if a merge or a
// split is already on going when we want to start snapshot here?"): a
// split submitted during a snapshot waits for it (the table lock), and a
// snapshot submitted during a split waits for it; all finish, and each
// snapshot holds the regions of its side of the split.
func TestSplitAndSnapshotWaitForEachOther(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t4b", "b", "c", "d")
	want := rowsFor("abcde", 60, "v")
	putRows(t, c, "t4b", want)
	before := regionsOf(t, c, "t4b")

	// A split during a snapshot.
	c.DropReports(true)
	snap := submitSnapshot(t, c, "t4b", "s4b-1")
	waitState(t, c, snap, "snapshot-offline-regions")
	split, err := c.Master().SplitRegion(ctxT(t), master.SplitRegion{Table: "t4b", Region: before[0].ID, Key: []byte("a030")}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForLocks(t, c, split)
	c.DropReports(false)
	mustProc(t, c, snap, "snapshot s4b-1")
	mustProc(t, c, split, "split during a snapshot")
	per := checkSnapshot(t, c, "s4b-1", "t4b", before)
	if d := diff(union(per), want); d != "" {
		t.Errorf("snapshot s4b-1 rows: %s", d)
	}
	mid := regionsOf(t, c, "t4b")
	if len(mid) != 5 {
		t.Fatalf("after the split: %d regions, want 5", len(mid))
	}
	waitServing(t, c, "t4b")
	checkScan(t, c, "t4b", want)

	// A snapshot during a split.
	c.DropReports(true)
	split, err = c.Master().SplitRegion(ctxT(t), master.SplitRegion{Table: "t4b", Region: mid[3].ID, Key: []byte("c031")}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c, split, "write-daughters") // its close-region child waits
	snap = submitSnapshot(t, c, "t4b", "s4b-2")
	waitForLocks(t, c, snap)
	c.DropReports(false)
	mustProc(t, c, split, "split")
	mustProc(t, c, snap, "snapshot s4b-2 during a split")
	after := regionsOf(t, c, "t4b")
	if len(after) != 6 {
		t.Fatalf("after the second split: %d regions, want 6", len(after))
	}
	per = checkSnapshot(t, c, "s4b-2", "t4b", after)
	if d := diff(union(per), want); d != "" {
		t.Errorf("snapshot s4b-2 rows: %s", d)
	}
	waitServing(t, c, "t4b")
	checkScan(t, c, "t4b", want)
}

// waitForLocks waits until procedure id waits for its locks, having run
// no step.
func waitForLocks(t *testing.T, c *tstest.Cluster, id procedure.ID) {
	t.Helper()
	c.Eventually(procTimeout, fmt.Sprintf("procedure %d waiting for its locks", id), func() error {
		in, err := info(c, id)
		if err != nil {
			return err
		}
		if len(in.Executed) > 0 || !in.Completed.IsZero() {
			t.Fatalf("procedure %d (%s) ran (%v, %s) while the other held the table", id, in.Type, in.Executed, in.Status)
		}
		if !in.WaitingForLocks {
			return fmt.Errorf("%s at %s", in.Status, in.StateName)
		}
		return nil
	})
}

// TestSnapshotDisabledTable (seed 003: "What if the table is disabled?"):
// the master snapshots the offline regions itself; no server opens them;
// the snapshot and a clone of it hold the table's rows.
func TestSnapshotDisabledTable(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t4c", "b", "c", "d")
	want := rowsFor("abcde", 50, "v")
	putRows(t, c, "t4c", want)
	disable(t, c, "t4c")
	regs := regionsOf(t, c, "t4c")

	mustProc(t, c, submitSnapshot(t, c, "t4c", "s4c"), "snapshot of a disabled table")
	if s := servingMap(c); len(s) != 0 {
		t.Errorf("a disabled table's snapshot opened regions on servers: %v", s)
	}
	per := checkSnapshot(t, c, "s4c", "t4c", regs)
	if d := diff(union(per), want); d != "" {
		t.Errorf("snapshot s4c rows: %s", d)
	}
	clone(t, c, "s4c", "t4c-clone")
	waitServing(t, c, "t4c-clone")
	checkScan(t, c, "t4c-clone", want)
	enable(t, c, "t4c")
	checkScan(t, c, "t4c", want)
}

// TestSnapshotRegionServerDies (seed 003): a region server dies while the
// snapshot's region snapshots wait; those of its regions are retried on
// the servers that hold them after reassignment, and the snapshot
// completes with every row.
func TestSnapshotRegionServerDies(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t4d", "b", "c", "d", "e")
	want := rowsFor("abcdef", 60, "v")
	putRows(t, c, "t4d", want)
	regs := regionsOf(t, c, "t4d")
	victim := busiestServer(t, c, "t4d")

	c.DropReports(true)
	id := submitSnapshot(t, c, "t4d", "s4d")
	waitState(t, c, id, "snapshot-offline-regions")
	waitRegionSnapshots(t, c, "s4d", regs)
	c.Kill(victim)
	waitDead(t, c, victim)
	c.DropReports(false)

	mustProc(t, c, id, "snapshot s4d")
	for _, r := range regs {
		if r.Server == victim && !c.Log.Contains("region snapshot failed; retrying", "region="+r.ID, "server="+victim) {
			t.Errorf("region %s: its snapshot on %s was not retried", r.ID, victim)
		}
	}
	per := checkSnapshot(t, c, "s4d", "t4d", regs)
	if d := diff(union(per), want); d != "" {
		t.Errorf("snapshot s4d rows: %s", d)
	}
	waitServing(t, c, "t4d")
	checkScan(t, c, "t4d", want)
}

// waitDead waits until the master declared server dead.
func waitDead(t *testing.T, c *tstest.Cluster, server string) {
	t.Helper()
	c.Eventually(procTimeout, server+" declared dead", func() error {
		for _, s := range c.LiveServers() {
			if s == server {
				return errors.New("still live")
			}
		}
		return nil
	})
}

// TestSnapshotVerifierDies (seed 003): a server dies while it verifies
// its share of the region snapshots; another live server verifies the
// share and the snapshot completes.
func TestSnapshotVerifierDies(t *testing.T) {
	var hook verifyHook
	c := tstest.New(t, tstest.Options{Hooks: hook.hooks()})
	createTable(t, c, "t4e", "b", "c", "d", "e")
	want := rowsFor("abcdef", 60, "v")
	putRows(t, c, "t4e", want)
	regs := regionsOf(t, c, "t4e")

	hook.set(func() { c.DropReports(true) })
	id := submitSnapshot(t, c, "t4e", "s4e")
	in := waitState(t, c, id, "complete-snapshot")
	var verifiers []procedure.ID
	for _, child := range in.Children {
		if ci, err := info(c, child); err == nil && ci.Type == "verify-snapshot" {
			verifiers = append(verifiers, child)
		}
	}
	if len(verifiers) != 3 {
		t.Fatalf("%d verify children, want one per server (3)", len(verifiers))
	}
	for _, v := range verifiers {
		waitState(t, c, v, "check")
	}
	const victim = "rs1"
	c.Kill(victim)
	waitDead(t, c, victim)
	hook.clear()
	c.DropReports(false)

	mustProc(t, c, id, "snapshot s4e")
	if !c.Log.Contains("verifier died; another server verifies its share", "server="+victim) {
		t.Errorf("the share of %s was not verified again", victim)
	}
	per := checkSnapshot(t, c, "s4e", "t4e", regs)
	if d := diff(union(per), want); d != "" {
		t.Errorf("snapshot s4e rows: %s", d)
	}
}

// TestSnapshotCorruptRegionSnapshot (seed 003): a region snapshot damaged
// in the working directory before verify fails the snapshot with an
// error naming the file; the rollback removes the working directory and
// the snapshot's record.
func TestSnapshotCorruptRegionSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name string
		pick func(names []string) string // the file of the first region snapshot to damage
	}{
		{"row-file", func(names []string) string {
			for _, n := range names {
				if strings.HasSuffix(n, ".rows") {
					return n
				}
			}
			return ""
		}},
		{"manifest", func([]string) string { return "MANIFEST" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hook verifyHook
			c := tstest.New(t, tstest.Options{Hooks: hook.hooks()})
			createTable(t, c, "t4f", "b", "c")
			putRows(t, c, "t4f", rowsFor("abc", 30, "v"))
			regs := regionsOf(t, c, "t4f")
			l := tablestore.Layout{Root: c.Root}
			var damaged atomic.Pointer[string]
			hook.set(func() {
				rec, err := c.Master().Snapshot("s4f")
				if err != nil {
					t.Errorf("snapshot s4f: %v", err)
					return
				}
				rdir := tablestore.RegionSnapshotDir(l.SnapshotWorkDir("s4f", rec.Proc), regs[0].ID)
				ents, err := os.ReadDir(rdir)
				if err != nil {
					t.Errorf("region snapshot %s: %v", rdir, err)
					return
				}
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				path := filepath.Join(rdir, tc.pick(names))
				if err := flipByte(path); err != nil {
					t.Errorf("damage %s: %v", path, err)
					return
				}
				damaged.Store(&path)
			})

			err := waitProc(t, c, submitSnapshot(t, c, "t4f", "s4f"))
			path := damaged.Load()
			if path == nil {
				t.Fatalf("the hook damaged nothing; snapshot: %v", err)
			}
			if err == nil || !strings.Contains(err.Error(), *path) {
				t.Fatalf("snapshot with %s damaged: error %v, want one naming the file", *path, err)
			}
			t.Logf("the snapshot failed with: %v", err)
			for _, dir := range []string{l.SnapshotTmpDir("s4f"), l.SnapshotDir("s4f")} {
				if _, err := os.Stat(dir); !errors.Is(err, iofs.ErrNotExist) {
					t.Errorf("after the rollback: %s: %v", dir, err)
				}
			}
			if _, err := c.Master().Snapshot("s4f"); !errors.Is(err, master.ErrNoSnapshot) {
				t.Errorf("after the rollback: snapshot record: %v, want ErrNoSnapshot", err)
			}
		})
	}
}

// flipByte inverts the byte in the middle of the file at path.
func flipByte(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("empty file")
	}
	b[len(b)/2] ^= 0xff
	return os.WriteFile(path, b, 0o644)
}

// TestSnapshotWithKillAndMasterRestart is the demo's story in one
// process: a writer goes on while a snapshot is taken; a region server is
// killed while the region snapshots wait, and the master is restarted
// before the snapshot completes. The snapshot completes with the prefix
// property per region, a clone of it reads back equal, and every write is
// in the table.
func TestSnapshotWithKillAndMasterRestart(t *testing.T) {
	seed := testseed.Seed(t)
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t8", "b", "c", "d")
	regs := regionsOf(t, c, "t8")
	w := startWriter(t, c, "t8", rand.New(rand.NewPCG(seed, seed^0xdead)))
	w.waitAcked(t, c, 30)
	victim := busiestServer(t, c, "t8")

	c.DropReports(true)
	ackedBefore := w.ackedCount()
	id := submitSnapshot(t, c, "t8", "s8")
	waitState(t, c, id, "snapshot-offline-regions")
	waitRegionSnapshots(t, c, "s8", regs)
	c.Kill(victim)
	waitDead(t, c, victim)
	c.RestartMaster()
	c.DropReports(false)
	mustProc(t, c, id, "snapshot s8")
	startedBefore := w.startedCount()
	w.waitAcked(t, c, startedBefore+20)
	w.stop(t)
	t.Logf("killed %s; writes: %d acknowledged before the snapshot was submitted, %d started before it completed, %d in all",
		victim, ackedBefore, startedBefore, len(w.writes))

	per := checkSnapshot(t, c, "s8", "t8", regs)
	for _, r := range regs {
		checkPrefix(t, r.RegionDesc, per[r.ID], w.writes, ackedBefore, startedBefore)
	}
	waitServing(t, c, "t8")
	checkScan(t, c, "t8", w.final())
	clone(t, c, "s8", "t8clone")
	waitServing(t, c, "t8clone")
	checkScan(t, c, "t8clone", union(per))
}

// TestSnapshotAbortForgetsItsOperations: a snapshot aborted while its
// region snapshot operations could not be delivered rolls back; the
// operations are forgotten, not delivered later to write region
// snapshots into a working directory the rollback removed.
//
// The master resends a failed request after 10 s here, so that the test
// aborts while every operation waits in its node's queue: the
// dispatcher's Cancel removes an operation from the queue, but one in a
// request at that moment is put back and resent if the request fails
// (remote's sender.retry does not know of the cancellation).
func TestSnapshotAbortForgetsItsOperations(t *testing.T) {
	c := tstest.New(t, tstest.Options{Master: func(o *master.Options) {
		o.Remote.Retry = procedure.RetryPolicy{Initial: 10 * time.Second, Max: 10 * time.Second}
	}})
	createTable(t, c, "t9", "b", "c")
	putRows(t, c, "t9", rowsFor("abc", 30, "v"))
	for _, s := range c.Servers() {
		c.DropOps(s.Name, true)
	}
	id := submitSnapshot(t, c, "t9", "s9")
	waitState(t, c, id, "snapshot-offline-regions")
	c.Eventually(procTimeout, "every region snapshot operation queued for a resend", func() error {
		queued := 0
		for _, st := range c.Master().Dispatcher().Stats() {
			if st.InFlight > 0 {
				return fmt.Errorf("%s: %d in flight", st.Node, st.InFlight)
			}
			queued += st.Queued
		}
		if queued != 3 {
			return fmt.Errorf("%d queued", queued)
		}
		return nil
	})
	if err := c.Master().Engine().Abort(ctxT(t), id, "test", "a test aborts it"); err != nil {
		t.Fatal(err)
	}
	if err := waitProc(t, c, id); !errors.Is(err, procedure.ErrAborted) {
		t.Fatalf("aborted snapshot: %v, want ErrAborted", err)
	}
	work := tablestore.Layout{Root: c.Root}.SnapshotTmpDir("s9")
	if _, err := os.Stat(work); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("after the rollback: working directory: %v", err)
	}
	for _, s := range c.Servers() {
		c.DropOps(s.Name, false)
	}
	c.Eventually(procTimeout, "no operation queued or in flight", func() error {
		for _, st := range c.Master().Dispatcher().Stats() {
			if st.Queued+st.InFlight > 0 {
				return fmt.Errorf("%s: %d queued, %d in flight", st.Node, st.Queued, st.InFlight)
			}
		}
		return nil
	})
	if _, err := os.Stat(work); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("a region snapshot of the aborted snapshot was written after its rollback: %v", err)
	}
	if _, err := c.Master().Snapshot("s9"); !errors.Is(err, master.ErrNoSnapshot) {
		t.Errorf("after the rollback: snapshot record: %v, want ErrNoSnapshot", err)
	}
}
