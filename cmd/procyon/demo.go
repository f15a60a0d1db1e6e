package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tables"
	"github.com/procyon-dev/procyon/procedure"
)

func init() {
	register(command{path: "demo", usage: "[-dir DIR]",
		summary: "run an example control plane, kill it with SIGKILL mid-way, recover it and check every procedure",
		run:     demo})
}

// demoTable is one procedure the demo submits, and how it must end.
type demoTable struct {
	name     string
	regions  int
	refuse   int // region (1-based) whose server refuses it: the tree rolls back
	rollback bool
}

var demoTables = []demoTable{
	{name: "users", regions: 4},
	{name: "orders", regions: 5, refuse: 4, rollback: true},
	{name: "events", regions: 6},
	{name: "metrics", regions: 2},
	{name: "sessions", regions: 3},
}

// Besides the create-table procedures, engine 1 submits a snapshot of
// demoSnapTable, which needs a shared lock on the table that the table's
// create-table holds exclusively (so it waits), and then waits for the
// region servers' flush reports (an event engine 2 signals after the
// crash); and a compaction of demoCompactTable that sleeps until a time
// after the crash (a durable timer engine 2 fires at that time).
const (
	demoSnapTable    = "users"
	demoCompactTable = "metrics"
	demoCompactAfter = 1500 * time.Millisecond
)

// The engine processes speak to the demo in lines on stdout:
//
//	submitted <id> <table> <nonce-dup-id>
//	submitted-op <id> <type> <table> <due-unix-ns>
//	locks <resource> <holders: id:mode,...> <waiters: id:mode,...>
//	signalled <unix-ns> <event>
//	ready
//	commit <unix-ns> <id> <root> <type> <state> <0: done, 1: undone, 2: failed> <step>
//	recovered <live> <microseconds>
//	finished <id> <status> <error...>
//	done

func demo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "[-dir DIR]")
	dir := fs.String("dir", "", "data directory, empty or absent (default: a temporary directory, removed at the end)")
	delay := fs.Duration("step-delay", 30*time.Millisecond, "how long each step takes, so that the crash lands in the middle")
	killAfter := fs.Int("kill-after", 24, "SIGKILL the first engine process after this many step commits")
	child := fs.String("child", "", "internal: run as the demo's engine process: run or recover")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *child != "" {
		return demoChild(ctx, e, *child, *dir, *delay)
	}
	if *killAfter < 1 {
		return fmt.Errorf("-kill-after must be at least 1, got %d", *killAfter)
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
	d := &demoRun{e: e, dir: *dir, start: time.Now(), names: map[procedure.ID]string{}, acked: map[procedure.ID]int{},
		types: map[procedure.ID]string{}}
	return d.run(ctx, *delay, *killAfter)
}

type demoRun struct {
	e       *env
	dir     string
	start   time.Time
	self    string
	mu      sync.Mutex
	names   map[procedure.ID]string // root id -> table
	ids     map[string]procedure.ID
	acked   map[procedure.ID]int // roots: steps acknowledged by engine 1
	commits [2]int
	rbacks  int
	types   map[procedure.ID]string // root id -> type
	snapID  procedure.ID
	compID  procedure.ID
	compDue time.Time
	killAt  time.Time
	signal  time.Time // when engine 2 signalled the flush event
	// contended: the snapshot was seen waiting for its table's lock while
	// the table's create-table held it.
	contended bool
}

func (d *demoRun) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.e.stdout, format, args...)
}

func (d *demoRun) since(ns int64) string {
	return fmt.Sprintf("+%6.3fs", time.Unix(0, ns).Sub(d.start).Seconds())
}

func (d *demoRun) run(ctx context.Context, delay time.Duration, killAfter int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	d.self = self
	d.ids = map[string]procedure.ID{}
	d.printf("procyon demo: an example control plane (tables and their regions) in %s\n", d.dir)
	d.printf("each create-table writes the table, spawns a create-region child per region (assign, then open on\n")
	d.printf("a region server) and enables the table; every step commits its metadata and its state in one WAL record.\n")
	d.printf("create-table holds an exclusive lock on its table; a snapshot of %s needs a shared one, then waits for an\n", demoSnapTable)
	d.printf("event (the servers' flush reports, signalled after the crash); a compaction of %s sleeps past the crash\n\n", demoCompactTable)

	// Engine 1: submit everything, run, and be killed in the middle.
	cmd1, lines1, err := d.startChild(ctx, "run", delay)
	if err != nil {
		return err
	}
	d.printf("engine 1: pid %d\n", cmd1.Process.Pid)
	killed := false
	ready := false
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	var out1 []string
loop:
	for {
		select {
		case line, ok := <-lines1:
			if !ok {
				break loop
			}
			out1 = append(out1, line)
			switch d.handle(0, line) {
			case "ready":
				ready = true
			}
			if ready && !killed && d.commits[0] >= killAfter {
				// A real crash: no deferred function, no flush, no close.
				if err := cmd1.Process.Signal(syscall.SIGKILL); err != nil {
					return fmt.Errorf("kill engine 1: %w", err)
				}
				killed = true
				d.killAt = time.Now()
				d.printf("%s  ** SIGKILL engine 1 (pid %d) after %d step commits **\n", d.since(time.Now().UnixNano()), cmd1.Process.Pid, d.commits[0])
			}
		case <-timeout.C:
			cmd1.Process.Kill()
			return fmt.Errorf("engine 1 made no progress in 60 s:\n%s", strings.Join(out1, "\n"))
		case <-ctx.Done():
			cmd1.Process.Kill()
			return ctx.Err()
		}
	}
	werr := cmd1.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return fmt.Errorf("engine 1 was not killed mid-way (it ended with %v after %d commits); output:\n%s", werr, d.commits[0], strings.Join(out1, "\n"))
	}

	// Engine 2: recover from the data directory and finish everything.
	cmd2, lines2, err := d.startChild(ctx, "recover", delay)
	if err != nil {
		return err
	}
	d.printf("\nengine 2: pid %d, restarting from %s\n", cmd2.Process.Pid, d.dir)
	var out2 []string
	for line := range lines2 {
		out2 = append(out2, line)
		d.handle(1, line)
	}
	if err := cmd2.Wait(); err != nil {
		return fmt.Errorf("engine 2 failed: %v; output:\n%s", err, strings.Join(out2, "\n"))
	}
	return d.verify(ctx)
}

// startChild starts an engine process and returns its stdout lines.
func (d *demoRun) startChild(ctx context.Context, mode string, delay time.Duration) (*exec.Cmd, <-chan string, error) {
	cmd := exec.Command(d.self, "demo", "-child", mode, "-dir", d.dir, "-step-delay", delay.String())
	cmd.Stderr = d.e.stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start engine process: %w", err)
	}
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines, nil
}

// handle prints one line of an engine process as part of the timeline and
// returns its kind.
func (d *demoRun) handle(engine int, line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	switch f[0] {
	case "submitted":
		if len(f) >= 4 {
			id, _ := strconv.ParseUint(f[1], 10, 64)
			dup, _ := strconv.ParseUint(f[3], 10, 64)
			d.mu.Lock()
			d.names[procedure.ID(id)] = f[2]
			d.ids[f[2]] = procedure.ID(id)
			d.mu.Unlock()
			t := demoTableNamed(f[2])
			expect := "expected to succeed"
			if t.rollback {
				expect = fmt.Sprintf("region %d's server will refuse it: expected to roll back", t.refuse)
			}
			d.printf("%s  submitted #%-3d create-table %-8s %d regions; %s (a retry with the same nonce got #%d)\n",
				d.since(time.Now().UnixNano()), id, f[2], t.regions, expect, dup)
		}
	case "submitted-op":
		if len(f) >= 5 {
			id, _ := strconv.ParseUint(f[1], 10, 64)
			due, _ := strconv.ParseInt(f[4], 10, 64)
			d.mu.Lock()
			d.names[procedure.ID(id)], d.types[procedure.ID(id)] = f[3], f[2]
			switch f[2] {
			case "snapshot-table":
				d.snapID = procedure.ID(id)
			case "compact-table":
				d.compID, d.compDue = procedure.ID(id), time.Unix(0, due)
			}
			d.mu.Unlock()
			switch f[2] {
			case "snapshot-table":
				d.printf("%s  submitted #%-3d snapshot-table %-6s needs a shared lock on table/%s; then waits for the servers' flush reports (an event)\n",
					d.since(time.Now().UnixNano()), id, f[3], f[3])
			case "compact-table":
				d.printf("%s  submitted #%-3d compact-table %-7s sleeps until %s (a durable timer)\n",
					d.since(time.Now().UnixNano()), id, f[3], d.since(due))
			}
		}
	case "locks":
		if len(f) >= 4 {
			d.mu.Lock()
			create, snap := d.ids[demoSnapTable], d.snapID
			if f[1] == tables.TableLock(demoSnapTable) && snap != 0 && strings.HasPrefix(f[2], fmt.Sprintf("%d:", create)) &&
				strings.Contains(f[3], fmt.Sprintf("%d:", snap)) {
				d.contended = true
			}
			d.mu.Unlock()
			if f[1] != tables.TableLock(demoSnapTable) {
				break // the snapshot's table tells the story
			}
			if f[2] == "-" && f[3] == "-" {
				d.printf("%s  engine %d  lock %s free\n", d.since(time.Now().UnixNano()), engine+1, f[1])
			} else {
				d.printf("%s  engine %d  lock %s held by %s, waiting: %s\n", d.since(time.Now().UnixNano()), engine+1, f[1], f[2], f[3])
			}
		}
	case "signalled":
		if len(f) >= 3 {
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			d.mu.Lock()
			d.signal = time.Unix(0, ns)
			d.mu.Unlock()
			d.printf("%s  engine %d  the region servers report %s: signal %s\n", d.since(ns), engine+1, strings.TrimPrefix(f[2], "flushed/")+" flushed", f[2])
		}
	case "commit":
		if len(f) >= 8 {
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			id, _ := strconv.ParseUint(f[2], 10, 64)
			root, _ := strconv.ParseUint(f[3], 10, 64)
			step, _ := strconv.Atoi(f[7])
			d.mu.Lock()
			d.commits[engine]++
			name := d.names[procedure.ID(root)]
			if engine == 0 && id == root {
				d.acked[procedure.ID(id)] = max(d.acked[procedure.ID(id)], step+1)
			}
			if f[6] == "1" {
				d.rbacks++
			}
			d.mu.Unlock()
			what := "done    "
			switch f[6] {
			case "1":
				what = "undone  "
			case "2":
				what = "FAILED  "
			}
			label := fmt.Sprintf("#%d %s", id, f[4])
			if id != root {
				label = fmt.Sprintf("#%d %s (of #%d %s)", id, f[4], root, name)
			} else {
				label += " " + name
			}
			d.printf("%s  engine %d  %s %-14s %s\n", d.since(ns), engine+1, what, f[5], label)
		}
	case "recovered":
		if len(f) >= 3 {
			us, _ := strconv.Atoi(f[2])
			d.printf("%s  engine 2  recovered %s live procedures in %.1f ms; resuming them\n", d.since(time.Now().UnixNano()), f[1], float64(us)/1000)
		}
	case "finished":
		if len(f) >= 3 {
			id, _ := strconv.ParseUint(f[1], 10, 64)
			d.mu.Lock()
			name, typ := d.names[procedure.ID(id)], d.types[procedure.ID(id)]
			d.mu.Unlock()
			if typ == "" {
				typ = "create-table"
			}
			d.printf("%s  engine %d  #%d %s %s %s %s\n", d.since(time.Now().UnixNano()), engine+1, id, typ, name, strings.ToUpper(f[2]), strings.Join(f[3:], " "))
		}
	}
	return f[0]
}

func demoTableNamed(name string) demoTable {
	for _, t := range demoTables {
		if t.name == name {
			return t
		}
	}
	return demoTable{}
}

// demoStore builds the demo's store, engine and catalog on dir, neither
// open nor started.
func demoStore(dir string, opts procedure.Options, tOpts tables.Options) (*durable.Store, *procedure.Engine, *tables.Catalog) {
	quiet := slog.New(slog.DiscardHandler)
	s := durable.New(durable.Options{Dir: dir, Logger: quiet})
	opts.Logger = quiet
	e := procedure.New(s, opts)
	c := tables.Register(s, e, tOpts)
	return s, e, c
}

// verify opens the data directory the engines left and checks that every
// procedure ended as it had to, the metadata agrees, and nothing
// acknowledged was lost.
func (d *demoRun) verify(ctx context.Context) error {
	// Only the store is opened: the engine is there to read results, not
	// to run anything.
	s, e, c := demoStore(d.dir, procedure.Options{}, tables.Options{})
	if err := s.Open(ctx); err != nil {
		return fmt.Errorf("open %s to check it: %w", d.dir, err)
	}
	defer s.Close()
	snap := c.Snapshot()
	var failures []string
	check := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		d.printf("  %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	d.printf("\nchecks, from the data directory after both engines exited:\n")
	for _, t := range demoTables {
		id, ok := d.ids[t.name]
		if !ok {
			check(false, "%s: never submitted", t.name)
			continue
		}
		in, err := e.Get(id)
		if err != nil {
			check(false, "%s (#%d): %v", t.name, id, err)
			continue
		}
		tb, hasTable := snap.Tables[t.name]
		regions := 0
		open := 0
		for _, r := range snap.Regions {
			if r.Table == t.name {
				regions++
				if r.State == "open" {
					open++
				}
			}
		}
		if t.rollback {
			check(in.Status == procedure.RolledBack && in.Err != nil && !hasTable && regions == 0,
				"%-8s #%-3d rolled back (%v); no table, no region left", t.name, id, in.Err)
		} else {
			check(in.Status == procedure.Succeeded && hasTable && tb.State == "enabled" && open == t.regions && regions == t.regions,
				"%-8s #%-3d succeeded; table enabled with %d/%d regions open", t.name, id, open, t.regions)
		}
		check(in.Steps >= d.acked[id], "%-8s #%-3d has %d steps committed; engine 1 acknowledged %d before the kill: none lost", t.name, id, in.Steps, d.acked[id])
	}
	// The scheduling parts: lock contention, an event across the crash, a
	// timer across the crash.
	if in, err := e.Get(d.snapID); err != nil {
		check(false, "snapshot-table #%d: %v", d.snapID, err)
	} else {
		m, ok, _ := c.Snapshots.Get(e.Store().Latest(), "demo/"+demoSnapTable)
		check(in.Status == procedure.Succeeded && ok && m.Regions == demoTableNamed(demoSnapTable).regions,
			"snapshot #%-3d of %s succeeded; manifest lists its %d regions", d.snapID, demoSnapTable, m.Regions)
		check(d.contended, "snapshot #%d waited for table/%s while create-table #%d held it exclusively (exclusive vs shared)", d.snapID, demoSnapTable, d.ids[demoSnapTable])
		check(!d.signal.IsZero() && !in.Completed.Before(d.signal) && d.signal.After(d.killAt),
			"snapshot #%d waited for event %s until engine 2 signalled it at %s, after the crash; finished at %s",
			d.snapID, tables.FlushedEvent(demoSnapTable), d.since(d.signal.UnixNano()), d.since(in.Completed.UnixNano()))
	}
	if in, err := e.Get(d.compID); err != nil {
		check(false, "compact-table #%d: %v", d.compID, err)
	} else {
		rec, ok, _ := c.Compactions.Get(e.Store().Latest(), demoCompactTable)
		check(in.Status == procedure.Succeeded && ok && !rec.Ran.Before(rec.Due) && rec.Due.Equal(d.compDue) && d.compDue.After(d.killAt),
			"compaction #%-3d of %s slept across the crash: due %s (after the kill at %s), ran at %s, not before",
			d.compID, demoCompactTable, d.since(rec.Due.UnixNano()), d.since(d.killAt.UnixNano()), d.since(rec.Ran.UnixNano()))
	}
	list, err := e.List()
	live := 0
	for _, in := range list {
		if in.Completed.IsZero() {
			live++
		}
	}
	check(err == nil && live == 0, "no procedure left unfinished (%d records, %d unfinished)", len(list), live)
	vErr := snap.Verify(true)
	check(vErr == nil, "catalog consistent: every table enabled with all its regions open, no orphan region (%v)", errOr(vErr, "none"))
	check(d.commits[0] > 0 && d.commits[1] > 0, "the crash landed mid-way: %d step commits before it, %d after", d.commits[0], d.commits[1])
	if len(failures) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d checks failed: %s", len(failures), strings.Join(failures, "; "))}
	}
	d.printf("\ndemo passed: %d create-table procedures, a snapshot and a compaction survived a SIGKILL; %d step commits in all, %d of them rollback steps\n",
		len(demoTables), d.commits[0]+d.commits[1], d.rbacks)
	return nil
}

// demoWatchLocks prints the lock table's rows as they change.
func demoWatchLocks(ctx context.Context, eng *procedure.Engine, emit func(string, ...any)) {
	last := map[string]string{}
	for sleepCtx(ctx, 5*time.Millisecond) == nil {
		seen := map[string]bool{}
		for _, li := range eng.Locks() {
			if !strings.HasPrefix(li.Resource, "table/") || strings.Contains(li.Resource, "/region/") {
				continue // the tables' rows tell the story
			}
			row := demoHolders(li.Holders) + " " + demoHolders(li.Waiters)
			seen[li.Resource] = true
			if last[li.Resource] != row {
				last[li.Resource] = row
				emit("locks %s %s", li.Resource, row)
			}
		}
		for r := range last {
			if !seen[r] {
				delete(last, r)
				emit("locks %s - -", r)
			}
		}
	}
}

func demoHolders(hs []procedure.LockHolder) string {
	if len(hs) == 0 {
		return "-"
	}
	var parts []string
	for _, h := range hs {
		parts = append(parts, fmt.Sprintf("%d:%s", h.ID, h.Mode))
	}
	return strings.Join(parts, ",")
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// demoChild is an engine process of the demo.
func demoChild(ctx context.Context, e *env, mode, dir string, delay time.Duration) error {
	if dir == "" {
		return errors.New("demo -child needs -dir")
	}
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(e.stdout, format+"\n", args...)
		if f, ok := e.stdout.(*os.File); ok {
			f.Sync()
		}
	}
	stateName := func(typ string, s int64) string {
		switch typ {
		case "create-region":
			return tables.RegionState(s).String()
		case "snapshot-table":
			return tables.SnapState(s).String()
		case "compact-table":
			return tables.CompactState(s).String()
		}
		return tables.CreateState(s).String()
	}
	opts := procedure.Options{Workers: 8, Hooks: procedure.Hooks{AfterCommit: func(info procedure.StepInfo) {
		rb := 0
		if info.Rollback {
			rb = 1
		}
		if info.Err != nil {
			rb = 2
		}
		emit("commit %d %d %d %s %s %d %d", time.Now().UnixNano(), info.ID, info.Root, info.Type, stateName(info.Type, info.State), rb, info.Step)
	}}}
	_, eng, c := demoStore(dir, opts, tables.Options{StepDelay: delay})
	if err := eng.Start(ctx); err != nil { // opens the store too
		return err
	}
	defer eng.Stop() // and closes it
	switch mode {
	case "run":
		ids := map[string]procedure.ID{}
		for _, t := range demoTables {
			req := tables.CreateTable{Name: t.name, Regions: t.regions, RefuseRegion: t.refuse}
			nonce := "demo/" + t.name
			id, err := c.Create.Submit(ctx, req, procedure.SubmitOptions{Nonce: nonce, Submitter: "demo"})
			if err != nil {
				return err
			}
			// A client retrying the same request gets the same procedure.
			dup, err := c.Create.Submit(ctx, req, procedure.SubmitOptions{Nonce: nonce, Submitter: "demo"})
			if err != nil {
				return err
			}
			emit("submitted %d %s %d", id, t.name, dup)
			ids[t.name] = id
		}
		// The snapshot comes once the table's create-table holds its lock.
		for i := 0; i < 10_000; i++ {
			if in, err := eng.Get(ids[demoSnapTable]); err != nil || len(in.Locks) > 0 {
				break
			}
			if sleepCtx(ctx, time.Millisecond) != nil {
				return ctx.Err()
			}
		}
		snap, err := c.Snap.Submit(ctx, tables.SnapshotTable{Table: demoSnapTable, Name: "demo/" + demoSnapTable},
			procedure.SubmitOptions{Nonce: "demo/snapshot", Submitter: "demo"})
		if err != nil {
			return err
		}
		emit("submitted-op %d snapshot-table %s 0", snap, demoSnapTable)
		due := time.Now().Add(demoCompactAfter)
		comp, err := c.Compact.Submit(ctx, tables.CompactTable{Table: demoCompactTable, Due: due},
			procedure.SubmitOptions{Nonce: "demo/compact", Submitter: "demo"})
		if err != nil {
			return err
		}
		emit("submitted-op %d compact-table %s %d", comp, demoCompactTable, due.UnixNano())
		go demoWatchLocks(ctx, eng, emit)
		emit("ready")
		// Run until killed.
		<-ctx.Done()
		return ctx.Err()
	case "recover":
		st := eng.Stats()
		emit("recovered %d %d", st.Recovered, st.RecoverTime.Microseconds())
		go demoWatchLocks(ctx, eng, emit)
		go func() {
			// Later, the region servers report the table flushed.
			if sleepCtx(ctx, 300*time.Millisecond) != nil {
				return
			}
			ev := tables.FlushedEvent(demoSnapTable)
			if err := eng.Signal(ctx, ev); err == nil {
				emit("signalled %d %s", time.Now().UnixNano(), ev)
			}
		}()
		list, err := eng.List()
		if err != nil {
			return err
		}
		var roots []procedure.ID
		for _, in := range list {
			if in.Parent == 0 {
				roots = append(roots, in.ID)
			}
		}
		sort.Slice(roots, func(i, j int) bool { return roots[i] < roots[j] })
		var wg sync.WaitGroup
		errs := make(chan error, len(roots))
		for _, id := range roots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				r, err := eng.Wait(wctx, id)
				if err != nil {
					errs <- err
					return
				}
				msg := ""
				if err := r.Err(); err != nil {
					msg = "(" + err.Error() + ")"
				}
				emit("finished %d %s %s", id, r.Status, msg)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			return err
		}
		emit("done")
		return nil
	}
	return fmt.Errorf("unknown -child mode %q", mode)
}
