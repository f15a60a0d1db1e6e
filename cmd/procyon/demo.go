package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/vfs"
)

func init() {
	register(command{path: "demo", usage: "[-dir DIR]",
		summary: "run the table store (a master and 3 region servers as processes), snapshot a table while it is written, SIGKILL a region server and the master mid-snapshot, recover, clone the snapshot and check it from disk",
		define:  demo})
}

const (
	demoTable    = "demo"
	demoSnapshot = "demo-snap"
	demoClone    = "demo-clone"
)

func demo(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "", "root directory, empty or absent (default: a temporary directory, removed at the end)")
	regions := fs.Int("regions", 8, "regions of the demo table (2 to 99)")
	rows := fs.Int("rows", 4000, "rows loaded before the snapshot")
	lease := fs.Duration("lease", time.Second, "a region server silent for longer is dead")
	return func(ctx context.Context, e *env, args []string) error {
		switch {
		case *regions < 2 || *regions > 99:
			return usagef("-regions must be 2 to 99, got %d", *regions)
		case *rows < *regions:
			return usagef("-rows must be at least -regions (%d), got %d", *regions, *rows)
		case *lease < 100*time.Millisecond:
			return usagef("-lease must be at least 100ms, got %v", *lease)
		}
		if *dir == "" {
			d, err := os.MkdirTemp("", "procyon-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(d)
			*dir = d
		} else {
			if err := os.MkdirAll(*dir, 0o755); err != nil {
				return err
			}
			if ents, err := os.ReadDir(*dir); err != nil {
				return err
			} else if len(ents) > 0 {
				return fmt.Errorf("%s is not empty; give an empty or new directory", *dir)
			}
		}
		d := &demoRun{e: e, dir: *dir, layout: tablestore.Layout{Root: *dir}, start: time.Now(), regions: *regions, rows: *rows, lease: *lease}
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		err := d.run(ctx)
		if d.c != nil {
			d.c.Close()
			if err != nil && !errors.As(err, new(*exitError)) {
				fmt.Fprint(e.stderr, d.c.Tails())
			}
		}
		return err
	}
}

// demoRun is one run of the demo: the story is in run, the checks in
// check.
type demoRun struct {
	e       *env
	dir     string
	layout  tablestore.Layout
	start   time.Time
	regions int
	rows    int
	lease   time.Duration
	c       *tsCluster
	cl      *tablestore.Client

	outMu    sync.Mutex
	failures []string

	table   tablestore.TableInfo // the demo table, as created
	writers []*tsWriter
	before  []int // each writer's acknowledged rows when the snapshot was submitted
	procs   map[string]uint64
	state   string // the snapshot's last state seen

	// the kills
	victim     string
	victimPID  int
	written    int      // region snapshots on disk when the region server was killed
	pending    []string // the victim's regions not yet snapshotted when it was killed
	masterPID  int
	stateAtKM  string // the snapshot's state when the master was killed
	completeKM bool   // the snapshot's directory was in place when the master was killed
}

func (d *demoRun) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.e.stdout, format, args...)
}

// event prints a timeline line.
func (d *demoRun) event(format string, args ...any) {
	d.printf("%+8.3fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demoRun) run(ctx context.Context) error {
	d.printf("procyon demo: a table store on loopback, in %s\n", d.dir)
	d.printf("a master (procedures, catalog, dispatcher) and 3 region servers, each an OS process; a table of %d regions\n", d.regions)
	d.printf("is loaded and snapshotted while writers go on; a region server and then the master are SIGKILLed in the\n")
	d.printf("middle of the snapshot and restarted; the snapshot completes and is cloned, and both are checked from disk\n\n")
	c, err := startTSCluster(ctx, tsClusterOptions{Root: d.dir, Servers: 3, Lease: d.lease, LogDir: filepath.Join(d.dir, "logs")})
	if err != nil {
		return err
	}
	d.c, d.cl = c, tablestore.NewClient(c.MasterAddr())
	d.procs = map[string]uint64{}
	m := c.Proc(masterName)
	d.event("master pid %d serves on %s (epoch %d)", m.cmd.Process.Pid, m.ready.Addr, m.ready.Epoch)
	for _, name := range c.ServerNames() {
		p := c.Proc(name)
		d.event("region server %s pid %d serves on %s", name, p.cmd.Process.Pid, p.ready.Addr)
	}
	if err := d.createAndLoad(ctx); err != nil {
		return err
	}
	stop := make(chan struct{})
	werrs := make(chan error, len(d.writers))
	for _, w := range d.writers {
		go func() { werrs <- w.run(ctx, stop) }()
	}
	err = d.snapshotThroughKills(ctx)
	close(stop)
	for range d.writers {
		err = errors.Join(err, <-werrs)
	}
	if err != nil {
		return err
	}
	total := 0
	for i, w := range d.writers {
		total += w.count() - d.before[i]
	}
	d.event("writers stopped: %d rows acknowledged after the snapshot was submitted", total)
	if err := d.clone(ctx); err != nil {
		return err
	}
	return d.check(ctx)
}

// createAndLoad creates the demo table and loads it, one writer per
// region.
func (d *demoRun) createAndLoad(ctx context.Context) error {
	splits := make([][]byte, d.regions-1)
	for i := range splits {
		splits[i] = fmt.Appendf(nil, "r%02d", i+1)
	}
	id, err := tsAdmin(ctx, d.cl, "create-table", master.CreateTable{Name: demoTable, Splits: splits}, "demo/create")
	if err != nil {
		return err
	}
	d.procs["create-table "+demoTable] = id
	if err := d.waitOK(ctx, id, "create-table "+demoTable); err != nil {
		return err
	}
	t, err := d.cl.Table(ctx, demoTable)
	if err != nil {
		return err
	}
	d.table = t
	d.event("create-table #%d: table %s enabled, %d regions over %s", id, demoTable, len(t.Regions), demoServers(t))
	d.writers = make([]*tsWriter, d.regions)
	errs := make(chan error, d.regions)
	for i := range d.writers {
		w := &tsWriter{name: fmt.Sprintf("w%02d", i), table: demoTable, cl: d.cl, key: func(n int) string { return fmt.Sprintf("r%02d/%06d", i, n) }}
		d.writers[i] = w
		go func() { errs <- w.write(ctx, d.rows/d.regions, 100) }()
	}
	for range d.writers {
		if err := <-errs; err != nil {
			return err
		}
	}
	d.event("loaded %d rows (one writer per region, batches of 100); the writers go on, one row at a time", d.rows/d.regions*d.regions)
	return nil
}

// demoServers says how many regions each server holds.
func demoServers(t tablestore.TableInfo) string {
	n := map[string]int{}
	for _, r := range t.Regions {
		n[r.Server]++
	}
	var parts []string
	for s, k := range n {
		parts = append(parts, fmt.Sprintf("%s: %d", s, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// waitOK waits for procedure id and fails unless it succeeded.
func (d *demoRun) waitOK(ctx context.Context, id uint64, what string) error {
	st, err := tsWait(ctx, d.cl, id)
	if err != nil {
		return fmt.Errorf("%s #%d: %w", what, id, err)
	}
	if st.Error != "" {
		return fmt.Errorf("%s #%d failed: %s", what, id, st.Error)
	}
	return nil
}

// snapshotThroughKills submits the snapshot, SIGKILLs a region server in
// its middle and the master later, restarts both and waits for the
// snapshot to finish.
func (d *demoRun) snapshotThroughKills(ctx context.Context) error {
	d.before = make([]int, len(d.writers))
	acked := 0
	for i, w := range d.writers {
		d.before[i] = w.count()
		acked += d.before[i]
	}
	id, err := tsAdmin(ctx, d.cl, "snapshot-table", master.SnapshotTable{Table: demoTable, Name: demoSnapshot}, "demo/snapshot")
	if err != nil {
		return err
	}
	d.procs["snapshot-table "+demoSnapshot] = id
	d.event("snapshot-table #%d: snapshot %s of %s submitted (%d rows acknowledged before it)", id, demoSnapshot, demoTable, acked)
	if err := d.killServerMidSnapshot(ctx, id); err != nil {
		return err
	}
	// Later, before the snapshot can complete (the victim's lease has not
	// run out, so its regions are still waited for), the master.
	d.watch(ctx, id, time.Now().Add(d.lease/3))
	km, err := d.c.Kill(masterName)
	if err != nil {
		return err
	}
	d.masterPID = km.cmd.Process.Pid
	d.stateAtKM = d.state
	_, serr := os.Stat(d.layout.SnapshotDir(demoSnapshot))
	d.completeKM = serr == nil
	d.event("** SIGKILL master (pid %d); the snapshot is in state %s **", d.masterPID, d.stateAtKM)
	m, err := d.c.Start(ctx, masterName)
	if err != nil {
		return err
	}
	d.event("master restarted: pid %d, epoch %d", m.cmd.Process.Pid, m.ready.Epoch)
	rs, err := d.c.Start(ctx, d.victim)
	if err != nil {
		return err
	}
	d.event("region server %s restarted: pid %d on %s (a new incarnation: the old one is dead, its regions are reassigned)", d.victim, rs.cmd.Process.Pid, rs.ready.Addr)
	for {
		st := d.watch(ctx, id, time.Now().Add(10*time.Millisecond))
		if st.Done {
			if st.Error != "" {
				return &exitError{code: 1, err: fmt.Errorf("snapshot-table #%d failed: %s", id, st.Error)}
			}
			d.event("snapshot-table #%d succeeded", id)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("snapshot-table #%d did not finish: %w", id, ctx.Err())
		}
	}
}

// watch polls the snapshot's status until deadline, printing each state
// it goes through, and returns the last status read.
func (d *demoRun) watch(ctx context.Context, id uint64, deadline time.Time) tablestore.ProcedureStatus {
	var last tablestore.ProcedureStatus
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := tsProcStatus(pctx, d.c.MasterAddr(), id)
		cancel()
		if err == nil {
			last = st
			if st.Done {
				last.State = "done"
				if st.Error != "" {
					last.State = "failed"
				}
			}
			if last.State != d.state {
				d.state = last.State
				note := ""
				if d.state == "snapshot-offline-regions" {
					note = " (it waits here for its snapshot-region children, one per region)"
				}
				d.event("snapshot-table #%d: %s%s", id, d.state, note)
			}
			if st.Done {
				return last
			}
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 2*time.Millisecond) != nil {
			return last
		}
	}
}

// killServerMidSnapshot waits until the snapshot snapshots regions, then
// SIGKILLs the region server with the most regions not yet snapshotted:
// as soon as one region snapshot is on disk (or, if none is, a second
// after the region snapshots were asked for).
func (d *demoRun) killServerMidSnapshot(ctx context.Context, id uint64) error {
	work := d.layout.SnapshotWorkDir(demoSnapshot, id)
	var online time.Time
	for {
		st := d.watch(ctx, id, time.Now())
		if st.Done {
			return &exitError{code: 1, err: fmt.Errorf("snapshot-table #%d finished (%s) before a region server could be killed in its middle", id, st.State)}
		}
		// The snapshot-region children run while their parent waits in the
		// state after the one that spawned them.
		if (st.State == "snapshot-online-regions" || st.State == "snapshot-offline-regions") && online.IsZero() {
			online = time.Now()
		}
		written, missing := d.regionSnapshots(work)
		victim := ""
		for s, rs := range missing {
			if victim == "" || len(rs) > len(missing[victim]) || len(rs) == len(missing[victim]) && s < victim {
				victim = s
			}
		}
		if victim == "" {
			return &exitError{code: 1, err: fmt.Errorf("every region was snapshotted before a region server could be killed")}
		}
		if written > 0 || !online.IsZero() && time.Since(online) > time.Second {
			p, err := d.c.Kill(victim)
			if err != nil {
				return err
			}
			d.victim, d.victimPID = victim, p.cmd.Process.Pid
			// What the victim had done is what is on disk now that it is dead.
			d.written, missing = d.regionSnapshots(work)
			d.pending = missing[victim]
			d.event("** SIGKILL region server %s (pid %d) in the middle of the snapshot: %d of %d region snapshots written; %d of its regions not yet snapshotted **",
				victim, d.victimPID, d.written, len(d.table.Regions), len(d.pending))
			return nil
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}

// regionSnapshots counts the region snapshots written in the working
// directory and returns, per server, the regions it holds that are not
// snapshotted yet.
func (d *demoRun) regionSnapshots(work string) (int, map[string][]string) {
	written := 0
	missing := map[string][]string{}
	for _, r := range d.table.Regions {
		if _, err := region.ReadManifest(vfs.OS, tablestore.RegionSnapshotDir(work, r.ID)); err == nil {
			written++
		} else {
			missing[r.Server] = append(missing[r.Server], r.ID)
		}
	}
	return written, missing
}

// clone clones the snapshot into a new table.
func (d *demoRun) clone(ctx context.Context) error {
	id, err := tsAdmin(ctx, d.cl, "create-table", master.CreateTable{Name: demoClone, FromSnapshot: demoSnapshot}, "demo/clone")
	if err != nil {
		return err
	}
	d.procs["create-table "+demoClone+" (clone)"] = id
	if err := d.waitOK(ctx, id, "clone"); err != nil {
		return err
	}
	t, err := d.cl.Table(ctx, demoClone)
	if err != nil {
		return err
	}
	d.event("create-table #%d: %s cloned from snapshot %s, %d regions over %s", id, demoClone, demoSnapshot, len(t.Regions), demoServers(t))
	return nil
}

// check runs every check, printing each, and fails unless all hold.
func (d *demoRun) check(ctx context.Context) error {
	d.printf("\nchecks:\n")
	d.checkKills()
	d.checkProcedures(ctx)
	tables := d.checkAssignment(ctx)
	d.event("stopping every process (SIGTERM), to read the regions from disk")
	err := d.c.Stop()
	d.expect(err == nil, "every process stopped cleanly (%v)", errOr(err, "exit 0"))
	un := d.c.Unexpected()
	d.expect(len(un) == 0, "no process exited that was not killed or stopped (%d did)", len(un))
	for _, u := range un {
		d.printf("%s\n", u)
	}
	if len(tables) == 2 {
		d.checkSnapshot(tables[0])
		d.checkClone(tables[1])
		d.checkTable(tables[0])
	}
	if len(d.failures) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d checks failed: %s", len(d.failures), strings.Join(d.failures, "; "))}
	}
	rows := 0
	for _, w := range d.writers {
		rows += w.count()
	}
	d.printf("\ndemo passed: a snapshot of %d regions survived a region server and a master SIGKILL in its middle; %d rows written, every acknowledged one kept; in %.1fs\n",
		d.regions, rows, time.Since(d.start).Seconds())
	return nil
}

// expect prints one check and records it if it failed.
func (d *demoRun) expect(ok bool, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.failures = append(d.failures, msg)
	}
	d.printf("  %s %s\n", mark, msg)
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

func (d *demoRun) checkKills() {
	d.expect(d.victim != "" && len(d.pending) > 0 && d.c.Kills("regionserver") == 1,
		"region server %s (pid %d) was SIGKILLed in the middle of the snapshot: %d of %d region snapshots written, %d of its regions pending",
		d.victim, d.victimPID, d.written, len(d.table.Regions), len(d.pending))
	d.expect(d.masterPID != 0 && d.stateAtKM != "done" && d.stateAtKM != "failed" && !d.completeKM && d.c.Kills("master") == 1,
		"the master (pid %d) was SIGKILLed later, before the snapshot completed (in state %s)", d.masterPID, d.stateAtKM)
}

// checkProcedures checks that every procedure the demo started is done
// and succeeded.
func (d *demoRun) checkProcedures(ctx context.Context) {
	var names []string
	for n := range d.procs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		id := d.procs[n]
		var st tablestore.ProcedureStatus
		err := tsRetry(ctx, 5*time.Second, func(ctx context.Context) error {
			var err error
			st, err = tsProcStatus(ctx, d.c.MasterAddr(), id)
			return err
		})
		d.expect(err == nil && st.Done && st.Error == "", "%s #%d is done and succeeded (%s %s%s)", n, id, st.Status, st.State, errOr(err, ""))
	}
}

// checkAssignment checks, once every region is open, that each is open on
// exactly one live server; it returns the table and the clone as the
// master has them.
func (d *demoRun) checkAssignment(ctx context.Context) []tablestore.TableInfo {
	var tables []tablestore.TableInfo
	for _, name := range []string{demoTable, demoClone} {
		var t tablestore.TableInfo
		err := tsRetry(ctx, 5*time.Second, func(ctx context.Context) error {
			var err error
			t, err = d.cl.Table(ctx, name)
			if err == nil && !allOpen(t) {
				err = fmt.Errorf("table %s: regions not all open", name)
			}
			return err
		})
		if err != nil {
			d.expect(false, "table %s: %v", name, err)
			return nil
		}
		tables = append(tables, t)
	}
	err := tsCheckAssignment(ctx, d.c, tables)
	d.expect(err == nil, "each region of %s and %s is open on exactly one live server, where the master says (%s)", demoTable, demoClone, errOr(err, "asked each server"))
	return tables
}

func allOpen(t tablestore.TableInfo) bool {
	for _, r := range t.Regions {
		if r.Addr == "" {
			return false
		}
	}
	return len(t.Regions) > 0
}

// checkSnapshot checks each region of the snapshot from disk: its
// manifest verifies, and its rows are the region's state at one point in
// time that includes every row acknowledged before the snapshot was
// submitted.
func (d *demoRun) checkSnapshot(t tablestore.TableInfo) {
	descs, dirs, err := tsReadSnapshot(d.layout, demoSnapshot)
	if err != nil {
		d.expect(false, "snapshot %s: %v", demoSnapshot, err)
		return
	}
	d.expect(len(descs) == len(t.Regions), "snapshot %s lists the %d regions of %s (%d)", demoSnapshot, len(t.Regions), demoTable, len(descs))
	hs := make([]tsHistory, len(d.writers))
	for i, w := range d.writers {
		hs[i] = tsHistory{writer: w.name, acked: w.acks(), before: d.before[i]}
	}
	for i, desc := range descs {
		man, err := region.VerifyManifest(vfs.OS, dirs[i])
		if err != nil {
			d.expect(false, "region %s: snapshot does not verify: %v", desc.ID, err)
			continue
		}
		rows, err := tsSnapshotRows(dirs[i])
		var n tsRegionCount
		if err == nil {
			n, err = tsCheckSnapshotRegion(rows, desc, hs)
		}
		d.expect(err == nil, "region %s: snapshot verifies (%d files) and holds its first %d of %d acknowledged rows, all %d acknowledged before the snapshot (%s)",
			desc.ID, len(man.Files), n.held, n.acked, n.before, errOr(err, "a point in time"))
	}
}

// checkClone checks from disk that the clone's rows are the snapshot's.
func (d *demoRun) checkClone(t tablestore.TableInfo) {
	_, dirs, err := tsReadSnapshot(d.layout, demoSnapshot)
	want := map[string]string{}
	for _, dir := range dirs {
		if err != nil {
			break
		}
		var rows map[string]string
		rows, err = tsSnapshotRows(dir)
		for k, v := range rows {
			want[k] = v
		}
	}
	var got map[string]string
	if err == nil {
		got, err = tsDiskRows(d.regionDirs(t)...)
	}
	if err == nil {
		err = tsEqualRows(got, want)
	}
	d.expect(err == nil, "clone %s, read back from disk, equals %s at the snapshot point: %d rows (%s)", demoClone, demoTable, len(got), errOr(err, "equal"))
}

// checkTable checks from disk that the table holds every acknowledged row.
func (d *demoRun) checkTable(t tablestore.TableInfo) {
	got, err := tsDiskRows(d.regionDirs(t)...)
	want := map[string]string{}
	for _, w := range d.writers {
		for _, a := range w.acks() {
			want[a.Key] = a.Value
		}
	}
	if err == nil {
		err = tsEqualRows(got, want)
	}
	d.expect(err == nil, "table %s, read back from disk, holds every acknowledged row and no other: %d rows (%s)", demoTable, len(want), errOr(err, "equal"))
}

func (d *demoRun) regionDirs(t tablestore.TableInfo) []string {
	dirs := make([]string, len(t.Regions))
	for i, r := range t.Regions {
		dirs[i] = d.layout.RegionDir(r.ID)
	}
	return dirs
}
