package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/metrics"
	"github.com/procyon-dev/procyon/procedure"
)

func init() {
	register(command{path: "bench procedures", usage: "[flags]",
		summary: "benchmark the procedure engine: procedures/s with durable step commits, or recovery of live procedures",
		define:  benchProcedures})
}

type procBenchResult struct {
	Mode        string  `json:"mode"` // "run" or "recover"
	Locks       string  `json:"locks,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	Steps       int     `json:"steps"`
	Workers     int     `json:"workers"`
	DurationSec float64 `json:"duration_sec,omitempty"`
	Procedures  int64   `json:"procedures,omitempty"`
	ProcsPerSec float64 `json:"procedures_per_sec,omitempty"`
	StepsPerSec float64 `json:"steps_per_sec,omitempty"`
	CommitsPerS float64 `json:"commits_per_sec,omitempty"` // store transactions
	P50ms       float64 `json:"p50_ms,omitempty"`
	P99ms       float64 `json:"p99_ms,omitempty"`
	// How long lock requests waited to be granted (0 for those granted at
	// once), from the engine's histogram: power-of-two buckets, so an
	// upper bound within 2x.
	LockWaitP99ms float64 `json:"lock_wait_p99_ms"`
	LockWaits     int64   `json:"lock_requests,omitempty"`
	// CPU (user+system, the whole process) per procedure: unlike the rate,
	// hardly moved by the disk's pace.
	CPUus float64 `json:"cpu_us_per_procedure,omitempty"`
	// The disk's pace in the same run and directory: a one-record
	// pwrite+fdatasync loop for a second before the run. Throughput here
	// is bound by fsync latency, which drifts on shared virtual disks;
	// procedures per raw fsync compares runs across that drift.
	RawFsyncsPerSec  float64 `json:"raw_fsyncs_per_sec,omitempty"`
	ProcsPerRawFsync float64 `json:"procedures_per_raw_fsync,omitempty"`
	Live             int     `json:"live,omitempty"`
	BuildSec         float64 `json:"build_sec,omitempty"`
	StoreOpenMs      float64 `json:"store_open_ms,omitempty"`
	LoadMs           float64 `json:"load_ms,omitempty"`
	RecoverMs        float64 `json:"recover_ms,omitempty"`
	BytesPerLP       float64 `json:"bytes_per_live_procedure,omitempty"`
	RecordBytes      float64 `json:"record_bytes_per_procedure,omitempty"`
	EngineBytes      float64 `json:"engine_bytes_per_live_procedure,omitempty"`
	// With -scrape: how many times /metrics was read during the run, and
	// how long a read took (request to the body's end).
	Scrapes     int     `json:"scrapes,omitempty"`
	ScrapeP50ms float64 `json:"scrape_p50_ms,omitempty"`
	ScrapeMaxms float64 `json:"scrape_max_ms,omitempty"`
}

// benchData is a bench procedure's data: which metadata slot it writes,
// and which lock it takes (-locks). It has a binary codec (procedure data
// codecs are pluggable).
type benchData struct {
	Slot  uint32
	Seq   uint64
	Lock  uint8 // benchNoLock, benchRegion, benchTable
	Table uint8
}

// The bench procedures' locks: none, an exclusive region lock under a
// table (table/tN/region/rSLOT, which implies a shared lock on the
// table), or an exclusive lock on a whole table.
const (
	benchNoLock uint8 = iota
	benchRegion
	benchTable
)

var benchCodec = durable.CodecFunc(
	func(d benchData) ([]byte, error) {
		b := binary.AppendUvarint(nil, uint64(d.Slot))
		b = binary.AppendUvarint(b, d.Seq)
		return append(b, d.Lock, d.Table), nil
	},
	func(b []byte) (benchData, error) {
		s, n := binary.Uvarint(b)
		if n <= 0 {
			return benchData{}, errors.New("bad bench data")
		}
		q, m := binary.Uvarint(b[n:])
		if m <= 0 || n+m+2 != len(b) {
			return benchData{}, errors.New("bad bench data")
		}
		return benchData{Slot: uint32(s), Seq: q, Lock: b[n+m], Table: b[n+m+1]}, nil
	})

// benchSM is the bench type: -steps states, each writing one small
// metadata key (slot*steps+state); it holds its lock (if any) from its
// first step to its end, as HBase's region procedures do.
type benchSM struct {
	w     *benchWorld
	steps int
	block bool
}

func (sm *benchSM) Execute(ctx context.Context, env *procedure.Env, s int, d *benchData) (procedure.Next, error) {
	if sm.block {
		<-ctx.Done() // recovery bench: stay live
		return procedure.Next{}, ctx.Err()
	}
	key := uint64(d.Slot)*uint64(sm.steps) + uint64(s)
	val := binary.LittleEndian.AppendUint64(nil, d.Seq)
	env.Write(func(tx *durable.Tx) error { return sm.w.meta.Put(tx, key, val) })
	if s+1 >= sm.steps {
		return procedure.Done(), nil
	}
	return procedure.GoTo(s + 1), nil
}

func (sm *benchSM) Rollback(ctx context.Context, env *procedure.Env, s int, d *benchData) error {
	return nil
}

func (sm *benchSM) Locks(s int, d *benchData) []procedure.Lock {
	switch d.Lock {
	case benchRegion:
		return []procedure.Lock{procedure.ExclusiveLock("table/t" + strconv.Itoa(int(d.Table)) + "/region/r" + strconv.Itoa(int(d.Slot)))}
	case benchTable:
		return []procedure.Lock{procedure.ExclusiveLock("table/t" + strconv.Itoa(int(d.Table)))}
	}
	return nil
}

// benchWorld is a store and an engine with the bench type: -steps states,
// each writing one small metadata key (slot*steps+state).
type benchWorld struct {
	s    *durable.Store
	e    *procedure.Engine
	meta *durable.Collection[uint64, []byte]
	typ  *procedure.Type[int, benchData]
}

// newProcBench builds the bench's store and engine on dir, neither open.
func newProcBench(dir string, steps, workers, committers int, block bool) *benchWorld {
	quiet := slog.New(slog.DiscardHandler)
	w := &benchWorld{s: durable.New(durable.Options{Dir: dir, Logger: quiet})}
	w.e = procedure.New(w.s, procedure.Options{Workers: workers, Committers: committers, Logger: quiet, SweepInterval: time.Second, ResultTTL: time.Second})
	w.meta = durable.NewCollection[uint64, []byte](w.s, "bench.meta", durable.Bytes())
	w.typ = procedure.Register[int, benchData](w.e, "bench", &benchSM{w: w, steps: steps, block: block},
		&procedure.TypeOptions[benchData]{Codec: benchCodec, HoldLocks: true})
	return w
}

// close stops the engine and closes the store, which the bench opened
// itself (to snapshot it after the engine stopped, or to time its
// recovery apart from the engine's load).
func (w *benchWorld) close() {
	w.e.Stop()
	w.s.Close()
}

func benchProcedures(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "procyon-bench", "parent directory for the benchmark's data (a fresh subdirectory is made and removed)")
	concurrency := fs.Int("concurrency", 256, "procedures in flight: each client submits one, waits for its result, and submits the next")
	steps := fs.Int("steps", 3, "steps per procedure; each writes one small metadata key in its commit")
	duration := fs.Duration("duration", 3*time.Second, "how long clients submit")
	workers := fs.Int("workers", 8, "engine workers (they run steps; commits wait for the disk without holding one)")
	committers := fs.Int("committers", 0, "engine committers (0: the engine's default)")
	recoverMode := fs.Bool("recover", false, "measure recovery instead: build -live live procedures, then time a restart")
	live := fs.Int("live", 100_000, "with -recover, live procedures at the restart")
	locks := fs.String("locks", "none", "comma-separated lock modes to run: none; uncontended (each procedure holds an exclusive region lock under one of 16 tables, no two alike); contended (16 tables, one procedure in ten takes a whole table exclusively)")
	rounds := fs.Int("rounds", 1, "run the -locks modes this many times, interleaved, and report medians (and each mode's ratio to none)")
	baseline := fs.Bool("baseline", true, "first time the disk: a one-record pwrite+fdatasync loop (over preallocated zeros, as the log writes) for 1 s in the same directory, reported as raw_fsyncs_per_sec")
	scrape := fs.Duration("scrape", 0, "while procedures run, serve the metrics collector over HTTP on loopback and read /metrics at this interval, as Prometheus would, reporting the reads' count and p50/max duration (0: off)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	return func(ctx context.Context, e *env, args []string) error {
		if *scrape < 0 {
			return usagef("-scrape must be 0 (off) or positive, got %v", *scrape)
		}
		if err := firstErr(
			intIn("concurrency", *concurrency, 1, 100_000),
			intIn("steps", *steps, 1, 1000),
			positive("duration", *duration),
			intIn("workers", *workers, 1, 10_000),
			intIn("live", *live, 1, 20_000_000),
			intIn("rounds", *rounds, 1, 1000),
		); err != nil {
			return err
		}
		modes, err := parseLockModes(*locks)
		if err != nil {
			return err
		}
		cfg := procRunConfig{locks: modes[0], steps: *steps, workers: *workers, committers: *committers,
			concurrency: *concurrency, duration: *duration, scrape: *scrape}
		if !*recoverMode && (len(modes) > 1 || *rounds > 1) {
			return benchLockModes(ctx, e, *dir, modes, *rounds, cfg, *baseline, *asJSON)
		}
		root, cleanup, err := benchDir(*dir, "procedures-")
		if err != nil {
			return err
		}
		defer cleanup()
		data := filepath.Join(root, "data")
		var res procBenchResult
		if *recoverMode {
			res, err = benchProcRecover(ctx, data, *steps, *workers, *committers, *live, *concurrency)
		} else {
			var raw float64
			if *baseline {
				if raw, err = rawFsyncsPerSec(ctx, filepath.Join(root, "raw")); err != nil {
					return err
				}
			}
			res, err = benchProcRun(ctx, data, cfg)
			if raw > 0 {
				res.RawFsyncsPerSec, res.ProcsPerRawFsync = raw, res.ProcsPerSec/raw
			}
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, res)
		}
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		if *recoverMode {
			fmt.Fprintf(tw, "live procedures\t%d (%d-step, built in %.1f s)\n", res.Live, res.Steps, res.BuildSec)
			fmt.Fprintf(tw, "restart: store open + engine load\t%.0f ms + %.0f ms = %.0f ms\n", res.StoreOpenMs, res.LoadMs, res.RecoverMs)
			fmt.Fprintf(tw, "heap per live procedure\t%.0f B (store records %.0f B, engine %.0f B)\n", res.BytesPerLP, res.RecordBytes, res.EngineBytes)
			return tw.Flush()
		}
		fmt.Fprintf(tw, "procedures\t%d-step, %d in flight, %d workers, %.1f s, locks %s\n", res.Steps, res.Concurrency, res.Workers, res.DurationSec, res.Locks)
		fmt.Fprintf(tw, "procedures/s\t%.0f\n", res.ProcsPerSec)
		fmt.Fprintf(tw, "steps/s\t%.0f\n", res.StepsPerSec)
		fmt.Fprintf(tw, "store commits/s\t%.0f\n", res.CommitsPerS)
		fmt.Fprintf(tw, "latency p50 / p99 (submit to result)\t%.2f ms / %.2f ms\n", res.P50ms, res.P99ms)
		fmt.Fprintf(tw, "CPU per procedure (user+system)\t%.1f µs\n", res.CPUus)
		if res.Locks != "none" {
			fmt.Fprintf(tw, "lock wait p99\t%.3f ms (%d requests)\n", res.LockWaitP99ms, res.LockWaits)
		}
		if res.RawFsyncsPerSec > 0 {
			fmt.Fprintf(tw, "disk, same run\t%.0f raw fsyncs/s (%.0f µs each): %.1f procedures per raw fsync\n",
				res.RawFsyncsPerSec, 1e6/res.RawFsyncsPerSec, res.ProcsPerRawFsync)
		}
		if *scrape > 0 {
			fmt.Fprintf(tw, "metrics scrapes\t%d, every %v: p50 %.2f ms, max %.2f ms\n", res.Scrapes, *scrape, res.ScrapeP50ms, res.ScrapeMaxms)
		}
		return tw.Flush()
	}
}

// parseLockModes parses -locks.
func parseLockModes(s string) ([]string, error) {
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		switch m {
		case "none", "uncontended", "contended":
			out = append(out, m)
		default:
			return nil, usagef("-locks: unknown mode %q (none, uncontended, contended)", m)
		}
	}
	return out, nil
}

// benchLockData is what client c submits as its i-th procedure in lock
// mode.
func benchLockData(mode string, c int, i uint64) benchData {
	d := benchData{Slot: uint32(c), Seq: i}
	switch mode {
	case "uncontended":
		d.Lock, d.Table = benchRegion, uint8(c%16)
	case "contended":
		d.Lock, d.Table = benchRegion, uint8((uint64(c)+i)%16)
		if (uint64(c)+i)%10 == 0 {
			d.Lock = benchTable
		}
	}
	return d
}

// lockRunSummary is the median of one lock mode's runs.
type lockRunSummary struct {
	Locks          string    `json:"locks"`
	Runs           int       `json:"runs"`
	ProcsPerSec    float64   `json:"procedures_per_sec"`
	ProcsPerSecAll []float64 `json:"procedures_per_sec_runs"`
	VsNone         float64   `json:"vs_none,omitempty"` // median of the per-round ratios to none
	P99ms          float64   `json:"p99_ms"`
	LockWaitP99ms  float64   `json:"lock_wait_p99_ms"`
	CPUus          float64   `json:"cpu_us_per_procedure"`
	Scrapes        int       `json:"scrapes,omitempty"`       // with -scrape: in all its runs
	ScrapeP50ms    float64   `json:"scrape_p50_ms,omitempty"` // the median of its runs' p50
}

// benchLockModes runs each lock mode rounds times with cfg, interleaved
// (so that the disk's drift hits every mode alike), and reports each
// mode's median and, per round, its ratio to none.
func benchLockModes(ctx context.Context, e *env, parent string, modes []string, rounds int, cfg procRunConfig, baseline, asJSON bool) error {
	root, cleanup, err := benchDir(parent, "procedures-")
	if err != nil {
		return err
	}
	defer cleanup()
	var raw float64
	if baseline {
		if raw, err = rawFsyncsPerSec(ctx, filepath.Join(root, "raw")); err != nil {
			return err
		}
	}
	runs := map[string][]procBenchResult{}
	ratios := map[string][]float64{}
	for r := range rounds {
		// Every other round runs the modes in reverse, and each run starts
		// with the previous one's data deleted and the disk synced: the
		// previous run's writeback must not slow the next one down, nor
		// always the same mode.
		order := slices.Clone(modes)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		var none float64
		for _, m := range order {
			dir := filepath.Join(root, fmt.Sprintf("data-%d-%s", r, m))
			syscall.Sync()
			cfg.locks = m
			res, err := benchProcRun(ctx, dir, cfg)
			if err != nil {
				return err
			}
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			runs[m] = append(runs[m], res)
			if m == "none" {
				none = res.ProcsPerSec
			}
		}
		if none > 0 {
			for _, m := range modes {
				ratios[m] = append(ratios[m], runs[m][r].ProcsPerSec/none)
			}
		}
	}
	out := struct {
		Concurrency     int              `json:"concurrency"`
		Steps           int              `json:"steps"`
		Workers         int              `json:"workers"`
		DurationSec     float64          `json:"duration_sec"`
		RawFsyncsPerSec float64          `json:"raw_fsyncs_per_sec,omitempty"`
		Modes           []lockRunSummary `json:"modes"`
	}{Concurrency: cfg.concurrency, Steps: cfg.steps, Workers: cfg.workers, DurationSec: cfg.duration.Seconds(), RawFsyncsPerSec: raw}
	for _, m := range modes {
		rs := runs[m]
		sum := lockRunSummary{Locks: m, Runs: len(rs)}
		pick := func(f func(procBenchResult) float64) float64 {
			var v []float64
			for _, r := range rs {
				v = append(v, f(r))
			}
			return median(v)
		}
		for _, r := range rs {
			sum.ProcsPerSecAll = append(sum.ProcsPerSecAll, r.ProcsPerSec)
		}
		sum.ProcsPerSec = pick(func(r procBenchResult) float64 { return r.ProcsPerSec })
		sum.P99ms = pick(func(r procBenchResult) float64 { return r.P99ms })
		sum.LockWaitP99ms = pick(func(r procBenchResult) float64 { return r.LockWaitP99ms })
		sum.CPUus = pick(func(r procBenchResult) float64 { return r.CPUus })
		sum.ScrapeP50ms = pick(func(r procBenchResult) float64 { return r.ScrapeP50ms })
		for _, r := range rs {
			sum.Scrapes += r.Scrapes
		}
		if m != "none" && len(ratios[m]) > 0 {
			sum.VsNone = median(ratios[m])
		}
		out.Modes = append(out.Modes, sum)
	}
	if asJSON {
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "procedures\t%d-step, %d in flight, %d workers, %d x %.1f s per mode, interleaved\n", cfg.steps, cfg.concurrency, cfg.workers, rounds, cfg.duration.Seconds())
	if raw > 0 {
		fmt.Fprintf(tw, "disk, before the runs\t%.0f raw fsyncs/s\n", raw)
	}
	fmt.Fprintf(tw, "locks\tprocedures/s (median)\tvs none\tp99 ms\tlock wait p99 ms\tCPU µs/procedure\n")
	for _, s := range out.Modes {
		vs := "-"
		if s.VsNone > 0 {
			vs = fmt.Sprintf("%.3f", s.VsNone)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%.2f\t%.3f\t%.1f\n", s.Locks, s.ProcsPerSec, vs, s.P99ms, s.LockWaitP99ms, s.CPUus)
	}
	return tw.Flush()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// procRunConfig is what a timed run of the bench type does.
type procRunConfig struct {
	locks                                   string // none, uncontended or contended (benchLockData)
	steps, workers, committers, concurrency int
	duration                                time.Duration
	// scrape: read the metrics over HTTP at this interval while clients
	// submit (0: no metrics served).
	scrape time.Duration
}

func benchProcRun(ctx context.Context, dir string, cfg procRunConfig) (procBenchResult, error) {
	res := procBenchResult{Mode: "run", Locks: cfg.locks, Concurrency: cfg.concurrency, Steps: cfg.steps, Workers: cfg.workers}
	w := newProcBench(dir, cfg.steps, cfg.workers, cfg.committers, false)
	if err := w.e.Start(ctx); err != nil { // opens the store too
		return res, err
	}
	defer w.e.Stop() // and closes it
	var sc *scraper
	if cfg.scrape > 0 {
		var err error
		if sc, err = startScraper(w, cfg.scrape); err != nil {
			return res, err
		}
	}
	commits0 := w.s.Stats().Commits
	cpu0 := processCPU()
	run := startWorkers(ctx, cfg.concurrency, func(c int) worker {
		return func(i uint64) error {
			id, err := w.typ.Submit(ctx, benchLockData(cfg.locks, c, i), procedure.SubmitOptions{})
			if err == nil {
				_, err = w.e.Wait(ctx, id)
			}
			return err
		}
	})
	sleepCtx(ctx, cfg.duration)
	err := run.stop()
	el := time.Since(run.start)
	if sc != nil {
		err = cmp.Or(err, sc.stop(&res))
	}
	if err != nil {
		return res, err
	}
	all := run.latencies()
	res.DurationSec = el.Seconds()
	res.Procedures = int64(len(all))
	res.ProcsPerSec = float64(len(all)) / el.Seconds()
	res.StepsPerSec = res.ProcsPerSec * float64(cfg.steps)
	res.CommitsPerS = float64(w.s.Stats().Commits-commits0) / el.Seconds()
	if len(all) > 0 {
		res.CPUus = float64((processCPU() - cpu0).Microseconds()) / float64(len(all))
	}
	res.P50ms = float64(all.quantile(0.50)) / float64(time.Millisecond)
	res.P99ms = float64(all.quantile(0.99)) / float64(time.Millisecond)
	lw := w.e.Stats().LockWait
	res.LockWaitP99ms = float64(lw.Quantile(0.99)) / float64(time.Millisecond)
	res.LockWaits = lw.Count
	return res, nil
}

func procHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchProcRecover builds live procedures (submitted; their first step
// blocks until the engine stops, so they stay live), snapshots the store,
// and times a restart: the store's recovery plus the engine's load.
func benchProcRecover(ctx context.Context, dir string, steps, workers, committers, live, concurrency int) (procBenchResult, error) {
	res := procBenchResult{Mode: "recover", Steps: steps, Workers: workers, Live: live}
	t0 := time.Now()
	w := newProcBench(dir, steps, 1, committers, true)
	// The store is opened apart from the engine: it is snapshotted once
	// the engine stopped.
	if err := w.s.Open(ctx); err != nil {
		return res, err
	}
	if err := w.e.Start(ctx); err != nil {
		w.s.Close()
		return res, err
	}
	err := runEach(ctx, concurrency, int64(live), func(int) func(int64) error {
		return func(i int64) error {
			_, err := w.typ.Submit(ctx, benchData{Slot: uint32(i), Seq: uint64(i)}, procedure.SubmitOptions{})
			return err
		}
	})
	if err != nil {
		w.close()
		return res, err
	}
	w.e.Stop()
	if _, err := w.s.Snapshot(ctx); err != nil {
		w.s.Close()
		return res, err
	}
	w.s.Close()
	res.BuildSec = time.Since(t0).Seconds()
	w = nil

	before := procHeap()
	t1 := time.Now()
	w = newProcBench(dir, steps, workers, committers, true)
	if err := w.s.Open(ctx); err != nil {
		return res, err
	}
	res.StoreOpenMs = float64(time.Since(t1)) / float64(time.Millisecond)
	afterStore := procHeap()
	t2 := time.Now()
	if err := w.e.Start(ctx); err != nil {
		w.s.Close()
		return res, err
	}
	res.LoadMs = float64(time.Since(t2)) / float64(time.Millisecond)
	res.RecoverMs = res.StoreOpenMs + res.LoadMs
	after := procHeap()
	if st := w.e.Stats(); st.Recovered != live {
		w.close()
		return res, fmt.Errorf("bench: %d procedures recovered, want %d", st.Recovered, live)
	}
	res.BytesPerLP = (float64(after) - float64(before)) / float64(live)
	res.RecordBytes = (float64(afterStore) - float64(before)) / float64(live)
	res.EngineBytes = (float64(after) - float64(afterStore)) / float64(live)
	w.close()
	runtime.KeepAlive(w)
	return res, nil
}

// processCPU returns the CPU time (user and system) the process used so
// far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scraper serves a bench's metrics collector on loopback and reads
// /metrics at an interval, as Prometheus would, timing each read.
type scraper struct {
	srv  *http.Server
	url  string
	quit chan struct{}
	done chan struct{} // closed when the reading goroutine returned
	took []time.Duration
	err  error // the first failed read, which ends the reading
}

// startScraper serves w's metrics on a loopback port and reads them every
// interval until stop.
func startScraper(w *benchWorld, every time.Duration) (*scraper, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics.NewCollector(metrics.Options{Engine: w.e, Store: w.s})); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	s := &scraper{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		url: "http://" + ln.Addr().String() + "/metrics", quit: make(chan struct{}), done: make(chan struct{})}
	go s.srv.Serve(ln) // returns when stop closes the server
	go s.loop(every)
	return s, nil
}

func (s *scraper) loop(every time.Duration) {
	defer close(s.done)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-tick.C:
		}
		took, err := scrapeOnce(client, s.url)
		if err != nil {
			s.err = err
			return
		}
		s.took = append(s.took, took)
	}
}

// scrapeOnce reads url to the end and returns how long that took.
func scrapeOnce(c *http.Client, url string) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return 0, fmt.Errorf("bench: scrape: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, fmt.Errorf("bench: scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: scrape: GET %s: %s", url, resp.Status)
	}
	return time.Since(start), nil
}

// stop ends the reading and the server, and puts the reads' count and
// their p50 and max durations in res. It returns the error of a failed
// read.
func (s *scraper) stop(res *procBenchResult) error {
	close(s.quit)
	<-s.done
	s.srv.Close()
	slices.Sort(s.took)
	l := latencies(s.took)
	res.Scrapes = len(l)
	if len(l) > 0 {
		res.ScrapeP50ms = float64(l.quantile(0.5)) / float64(time.Millisecond)
		res.ScrapeMaxms = float64(l[len(l)-1]) / float64(time.Millisecond)
	}
	return s.err
}
