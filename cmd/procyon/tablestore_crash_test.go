package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/internal/testseed"
	"github.com/procyon-dev/procyon/vfs"
)

// TestTablestoreProcessCrash runs the table store as processes (a master
// and 3 region servers, this test binary acting as the CLI) and SIGKILLs
// them at random moments, 50 times the master and 50 times a region
// server (5 and 5 with -short), restarting each at once or after up to a
// lease. Meanwhile writers put rows (recording the acknowledged ones) and
// an operator creates, snapshots, clones, disables and enables tables
// and splits regions, each with a nonce, retried across master restarts.
// After the last recovery: every procedure started is done (and
// succeeded: nothing in this workload may fail); each region of every
// table is open on exactly one live server, where the master says; and,
// read from disk, every table holds exactly its acknowledged rows (a
// clone its snapshot's), and every snapshot verifies and is its table at
// one point in time, per region, holding every row acknowledged before it
// was submitted.
func TestTablestoreProcessCrash(t *testing.T) {
	seed := testseed.Seed(t)
	masterKills, serverKills := 50, 50
	if testing.Short() {
		masterKills, serverKills = 5, 5
	}
	t.Setenv(barrierExecEnv, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root := t.TempDir()
	c, err := startTSCluster(ctx, tsClusterOptions{Root: root, Servers: 3, Lease: time.Second, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("processes' stderr:\n%s", c.Tails())
		}
	})
	r := &crashRun{t: t, c: c, cl: tablestore.NewClient(c.MasterAddr()), layout: tablestore.Layout{Root: root},
		rng: rand.New(rand.NewPCG(seed, 1)), tables: map[string]*crashTable{}}
	start := time.Now()
	for _, name := range []string{"t1", "t2"} {
		if err := r.create(ctx, name, "", [][]byte{[]byte("b"), []byte("c"), []byte("d")}); err != nil {
			t.Fatal(err)
		}
	}
	// Writers and the operator run until the killer is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for _, tb := range []string{"t1", "t2"} {
		for j := range 2 {
			w := r.addWriter(tb, fmt.Sprintf("%s-w%d", tb, j))
			wg.Add(1)
			go func() { defer wg.Done(); errs <- w.run(ctx, stop) }()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := r.operate(ctx, stop)
		if err != nil {
			cancel() // the writers may wait for a table it left disabled
		}
		errs <- err
	}()
	kerr := crashKill(ctx, c, rand.New(rand.NewPCG(seed, 2)), masterKills, serverKills, t.Logf)
	close(stop)
	// After the last kill the writers and the operator finish what they
	// are doing (a row, an admin operation): the store recovers, or the
	// test reports what it was stuck on.
	settled := make(chan struct{})
	go func() { wg.Wait(); close(settled) }()
	select {
	case <-settled:
	case <-time.After(2 * time.Minute):
		t.Errorf("the workload did not finish within 2 minutes of the last kill; the store:\n%s", r.describe())
		cancel()
		<-settled
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if kerr != nil {
		t.Fatal(kerr)
	}
	t.Logf("%d master and %d region server SIGKILLs in %v; admin operations %v; %d rows acknowledged",
		c.Kills("master"), c.Kills("regionserver"), time.Since(start).Round(time.Millisecond), r.ops(), r.rows())
	if t.Failed() {
		return
	}
	if c.Kills("master") < masterKills || c.Kills("regionserver") < serverKills {
		t.Fatalf("%d master and %d region server kills, want %d and %d", c.Kills("master"), c.Kills("regionserver"), masterKills, serverKills)
	}
	r.checkProcedures(ctx)
	tables := r.checkAssignment(ctx)
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	for _, u := range c.Unexpected() {
		t.Errorf("a process exited that was not killed: %s", u)
	}
	if t.Failed() {
		return
	}
	r.checkSnapshots()
	r.checkTables(tables)
}

// crashKill SIGKILLs the master and region servers, in a seeded random
// order and at seeded random moments, and starts each again: at once, or
// (one time in five) after up to a lease, so that the master has to find
// a region server dead by its lease rather than by its new incarnation;
// and one restart in six is itself SIGKILLed after up to 600 ms, while
// the process may still be recovering (an extra kill).
func crashKill(ctx context.Context, c *tsCluster, rng *rand.Rand, masters, servers int, logf func(string, ...any)) error {
	plan := slices.Repeat([]string{masterName}, masters)
	plan = append(plan, slices.Repeat([]string{"rs"}, servers)...)
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	names := c.ServerNames()
	took := map[bool][]time.Duration{} // restart times, the master's (true) and the servers'
	for i, who := range plan {
		if who == "rs" {
			who = names[rng.IntN(len(names))]
		}
		if err := sleepCtx(ctx, time.Duration(100+rng.IntN(500))*time.Millisecond); err != nil {
			return err
		}
		if _, err := c.Kill(who); err != nil {
			return fmt.Errorf("kill %d (%s): %w", i, who, err)
		}
		if rng.IntN(5) == 0 {
			if err := sleepCtx(ctx, time.Duration(rng.IntN(1000))*time.Millisecond); err != nil {
				return err
			}
		}
		if rng.IntN(6) == 0 {
			if err := crashStartKilled(ctx, c, who, time.Duration(rng.IntN(600))*time.Millisecond); err != nil {
				return fmt.Errorf("restart %d (%s), killed while starting: %w", i, who, err)
			}
		}
		t0 := time.Now()
		if _, err := c.Start(ctx, who); err != nil {
			return fmt.Errorf("restart %d (%s): %w", i, who, err)
		}
		took[who == masterName] = append(took[who == masterName], time.Since(t0))
		if (i+1)%20 == 0 {
			logf("%d kills", i+1)
		}
	}
	for _, m := range []bool{true, false} {
		if d := took[m]; len(d) > 0 {
			slices.Sort(d)
			logf("restarts of the %s until ready: median %v, max %v", map[bool]string{true: "master", false: "region servers"}[m],
				d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
		}
	}
	return nil
}

// crashStartKilled starts process who and SIGKILLs it after delay,
// whether or not it is ready by then.
func crashStartKilled(ctx context.Context, c *tsCluster, who string, delay time.Duration) error {
	started := make(chan error, 1)
	go func() {
		_, err := c.Start(ctx, who)
		started <- err
	}()
	if err := sleepCtx(ctx, delay); err != nil {
		return err
	}
	for c.Proc(who) == nil { // not forked yet
		select {
		case err := <-started:
			if err != nil {
				return err
			}
			started <- nil
		case <-time.After(time.Millisecond):
		}
	}
	if _, err := c.Kill(who); err != nil {
		return err
	}
	<-started // an error: it was killed before it was ready
	return nil
}

// crashRun is the workload of TestTablestoreProcessCrash and its model
// of what the store must hold.
type crashRun struct {
	t      *testing.T
	c      *tsCluster
	cl     *tablestore.Client
	layout tablestore.Layout
	rng    *rand.Rand // the operator's

	mu     sync.Mutex
	tables map[string]*crashTable
	snaps  []*crashSnapshot
	procs  []crashProc
	n      int // names the operator's tables, snapshots and nonces
}

// crashTable is what a table must hold: its writers' acknowledged rows,
// or (a clone) its snapshot's rows, or (created empty) nothing.
type crashTable struct {
	name    string
	writers []*tsWriter
	from    string // the snapshot it is a clone of
}

// crashSnapshot is a snapshot the operator took, and each writer's
// acknowledged rows (of the snapshot's table) when it submitted it.
type crashSnapshot struct {
	name, table string
	id          uint64
	before      []int
}

type crashProc struct {
	id   uint64
	op   string
	what string
}

// ops counts the admin operations started, by operation.
func (r *crashRun) ops() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, p := range r.procs {
		n[p.op]++
	}
	return n
}

func (r *crashRun) addWriter(table, name string) *tsWriter {
	w := &tsWriter{name: name, table: table, cl: r.cl,
		key: func(n int) string { return fmt.Sprintf("%c/%s/%06d", 'a'+n%4, name, n) }}
	r.mu.Lock()
	r.tables[table].writers = append(r.tables[table].writers, w)
	r.mu.Unlock()
	return w
}

func (r *crashRun) rows() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, tb := range r.tables {
		for _, w := range tb.writers {
			n += w.count()
		}
	}
	return n
}

// admin runs one admin operation to its end, across master restarts:
// submitted with a nonce, waited for; it must succeed.
func (r *crashRun) admin(ctx context.Context, op string, args any) (uint64, error) {
	r.mu.Lock()
	r.n++
	nonce := fmt.Sprintf("crash/%s/%d", op, r.n)
	r.mu.Unlock()
	id, err := tsAdmin(ctx, r.cl, op, args, nonce)
	if err != nil {
		return 0, fmt.Errorf("%s %+v: %w", op, args, err)
	}
	r.mu.Lock()
	r.procs = append(r.procs, crashProc{id: id, op: op, what: fmt.Sprintf("%s %+v", op, args)})
	r.mu.Unlock()
	st, err := tsWait(ctx, r.cl, id)
	if err != nil {
		return id, fmt.Errorf("%s #%d %+v: %w", op, id, args, err)
	}
	if st.Error != "" {
		return id, fmt.Errorf("%s #%d %+v failed: %s", op, id, args, st.Error)
	}
	return id, nil
}

func (r *crashRun) create(ctx context.Context, name, from string, splits [][]byte) error {
	r.mu.Lock()
	r.tables[name] = &crashTable{name: name, from: from}
	r.mu.Unlock()
	_, err := r.admin(ctx, "create-table", master.CreateTable{Name: name, Splits: splits, FromSnapshot: from})
	return err
}

// operate runs admin operations one after another until stop: snapshots
// of any table, clones of snapshots, a disable and an enable of a table,
// splits of regions, and creates.
func (r *crashRun) operate(ctx context.Context, stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		var err error
		switch p := r.rng.IntN(100); {
		case p < 35:
			err = r.snapshot(ctx)
		case p < 50:
			err = r.clone(ctx)
		case p < 70:
			err = r.disableEnable(ctx)
		case p < 92:
			err = r.split(ctx)
		default:
			err = r.createEmpty(ctx)
		}
		if err != nil {
			return err
		}
	}
}

// pickTable returns a random table's name.
func (r *crashRun) pickTable() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.tables))
	for n := range r.tables {
		names = append(names, n)
	}
	slices.Sort(names)
	return names[r.rng.IntN(len(names))]
}

func (r *crashRun) snapshot(ctx context.Context) error {
	table := r.pickTable()
	r.mu.Lock()
	tb := r.tables[table]
	s := &crashSnapshot{name: fmt.Sprintf("s%d", r.n+1), table: table}
	for _, w := range tb.writers {
		s.before = append(s.before, w.count())
	}
	r.mu.Unlock()
	id, err := r.admin(ctx, "snapshot-table", master.SnapshotTable{Table: table, Name: s.name})
	if err != nil {
		return err
	}
	s.id = id
	r.mu.Lock()
	r.snaps = append(r.snaps, s)
	r.mu.Unlock()
	return nil
}

// clone clones a random snapshot not cloned yet (at most 4 clones).
func (r *crashRun) clone(ctx context.Context) error {
	r.mu.Lock()
	var cand []string
	cloned := map[string]bool{}
	for _, tb := range r.tables {
		cloned[tb.from] = true
	}
	for _, s := range r.snaps {
		if !cloned[s.name] {
			cand = append(cand, s.name)
		}
	}
	full := len(cloned) > 4
	r.mu.Unlock()
	if len(cand) == 0 || full {
		return nil
	}
	from := cand[r.rng.IntN(len(cand))]
	return r.create(ctx, "c-"+from, from, nil)
}

func (r *crashRun) createEmpty(ctx context.Context) error {
	r.mu.Lock()
	n := len(r.tables)
	name := fmt.Sprintf("n%d", r.n+1)
	r.mu.Unlock()
	if n >= 10 {
		return nil
	}
	return r.create(ctx, name, "", [][]byte{[]byte("m")})
}

func (r *crashRun) disableEnable(ctx context.Context) error {
	table := r.pickTable()
	if _, err := r.admin(ctx, "disable-table", master.DisableTable{Name: table}); err != nil {
		return err
	}
	_, err := r.admin(ctx, "enable-table", master.EnableTable{Name: table})
	return err
}

// split splits a random region of a written table (at most 8 regions) at
// the median of its acknowledged keys.
func (r *crashRun) split(ctx context.Context) error {
	table := r.pickTable()
	r.mu.Lock()
	tb := r.tables[table]
	r.mu.Unlock()
	if len(tb.writers) == 0 {
		return nil
	}
	var info tablestore.TableInfo
	err := tsRetry(ctx, 5*time.Second, func(ctx context.Context) error {
		var err error
		info, err = r.cl.Table(ctx, table)
		return err
	})
	if err != nil || len(info.Regions) >= 8 {
		return err
	}
	reg := info.Regions[r.rng.IntN(len(info.Regions))]
	var keys []string
	for _, w := range tb.writers {
		for _, a := range w.acks() {
			if reg.Contains([]byte(a.Key)) && a.Key > string(reg.Start) {
				keys = append(keys, a.Key)
			}
		}
	}
	if len(keys) < 2 {
		return nil
	}
	sort.Strings(keys)
	_, err = r.admin(ctx, "split-region", master.SplitRegion{Table: table, Region: reg.ID, Key: []byte(keys[len(keys)/2])})
	return err
}

// checkProcedures checks that every procedure the operator started is
// done and succeeded.
func (r *crashRun) checkProcedures(ctx context.Context) {
	for _, p := range r.procs {
		var st tablestore.ProcedureStatus
		err := tsRetry(ctx, 5*time.Second, func(ctx context.Context) error {
			var err error
			st, err = tsProcStatus(ctx, r.c.MasterAddr(), p.id)
			return err
		})
		if err != nil || !st.Done || st.Error != "" {
			r.t.Errorf("procedure #%d (%s): %+v %v", p.id, p.what, st, err)
		}
	}
}

// checkAssignment waits (up to a minute: server-crash procedures may
// still be reassigning) until each region of every table is open on
// exactly one live server, where the master says, and no server serves
// any other region; it returns the tables as the master has them.
func (r *crashRun) checkAssignment(ctx context.Context) []tablestore.TableInfo {
	deadline := time.Now().Add(time.Minute)
	for {
		var tables []tablestore.TableInfo
		var err error
		for _, name := range slices.Sorted(maps.Keys(r.tables)) {
			var t tablestore.TableInfo
			t, err = r.cl.Table(ctx, name)
			if err == nil && !allOpen(t) {
				err = fmt.Errorf("table %s: regions not all open: %+v", name, t.Regions)
			}
			if err != nil {
				break
			}
			tables = append(tables, t)
		}
		if err == nil {
			err = tsCheckAssignment(ctx, r.c, tables)
		}
		if err == nil {
			return tables
		}
		if time.Now().After(deadline) || sleepCtx(ctx, 100*time.Millisecond) != nil {
			r.t.Errorf("after the last recovery: %v", err)
			return nil
		}
	}
}

// expected returns the rows table must hold: its writers' acknowledged
// rows, or its snapshot's (read from disk).
func (r *crashRun) expected(tb *crashTable) (map[string]string, error) {
	rows := map[string]string{}
	for _, w := range tb.writers {
		for _, a := range w.acks() {
			rows[a.Key] = a.Value
		}
	}
	if tb.from == "" {
		return rows, nil
	}
	_, dirs, err := tsReadSnapshot(r.layout, tb.from)
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		srows, err := tsSnapshotRows(dir)
		if err != nil {
			return nil, err
		}
		for k, v := range srows {
			rows[k] = v
		}
	}
	return rows, nil
}

// checkTables checks from disk that each table holds exactly what it
// must.
func (r *crashRun) checkTables(tables []tablestore.TableInfo) {
	for _, t := range tables {
		dirs := make([]string, len(t.Regions))
		for i, reg := range t.Regions {
			dirs[i] = r.layout.RegionDir(reg.ID)
		}
		got, err := tsDiskRows(dirs...)
		if err != nil {
			r.t.Errorf("table %s: %v", t.Name, err)
			continue
		}
		want, err := r.expected(r.tables[t.Name])
		if err == nil {
			err = tsEqualRows(got, want)
		}
		if err != nil {
			r.t.Errorf("table %s (%d regions): %v", t.Name, len(t.Regions), err)
		}
	}
}

// checkSnapshots checks from disk that every snapshot verifies and holds,
// per region, its table at one point in time with every row acknowledged
// before the snapshot was submitted (a clone's or an empty table's
// snapshot: exactly its rows).
func (r *crashRun) checkSnapshots() {
	for _, s := range r.snaps {
		tb := r.tables[s.table]
		descs, dirs, err := tsReadSnapshot(r.layout, s.name)
		if err != nil {
			r.t.Errorf("snapshot %s: %v", s.name, err)
			continue
		}
		hs := make([]tsHistory, len(tb.writers))
		for i, w := range tb.writers {
			hs[i] = tsHistory{writer: w.name, acked: w.acks(), before: s.before[i]}
		}
		all := map[string]string{}
		for i, desc := range descs {
			if _, err := region.VerifyManifest(vfs.OS, dirs[i]); err != nil {
				r.t.Errorf("snapshot %s: region %s: %v", s.name, desc.ID, err)
				continue
			}
			rows, err := tsSnapshotRows(dirs[i])
			if err == nil && len(hs) > 0 {
				_, err = tsCheckSnapshotRegion(rows, desc, hs)
			}
			if err != nil {
				r.t.Errorf("snapshot %s (#%d) of %s: region %s: %v", s.name, s.id, s.table, desc.ID, err)
			}
			for k, v := range rows {
				all[k] = v
			}
		}
		if len(hs) == 0 {
			want, err := r.expected(tb)
			if err == nil {
				err = tsEqualRows(all, want)
			}
			if err != nil {
				r.t.Errorf("snapshot %s (#%d) of %s: %v", s.name, s.id, s.table, err)
			}
		}
	}
}

// describe says what the master says of the tables, the servers and the
// procedures the operator started, for a failure report.
func (r *crashRun) describe() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	var servers any
	err := tsGet(ctx, r.c.MasterAddr(), "/ts/v1/servers", &servers)
	fmt.Fprintf(&b, "servers: %v %v\n", servers, errOr(err, ""))
	r.mu.Lock()
	names := slices.Sorted(maps.Keys(r.tables))
	procs := slices.Clone(r.procs)
	r.mu.Unlock()
	for _, name := range names {
		var t tablestore.TableInfo
		err := tsGet(ctx, r.c.MasterAddr(), "/ts/v1/tables/"+name, &t)
		fmt.Fprintf(&b, "table %s: %+v %v\n", name, t, errOr(err, ""))
	}
	for _, p := range procs {
		st, err := tsProcStatus(ctx, r.c.MasterAddr(), p.id)
		if err != nil || !st.Done {
			fmt.Fprintf(&b, "procedure #%d %s: %+v %v\n", p.id, p.what, st, errOr(err, ""))
		}
	}
	return b.String()
}
