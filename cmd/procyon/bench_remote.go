package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

func init() {
	register(command{path: "bench remote", usage: "[flags]",
		summary: "benchmark remote dispatch to node processes on loopback, and a table store snapshot of many regions",
		define:  benchRemote})
	register(command{path: "bench remote-node", usage: "-master ADDR -name NAME",
		summary: "internal: a node process for bench remote (answers \"echo\" operations)",
		define:  benchRemoteNode})
}

// remoteBenchResult is bench remote's JSON object.
type remoteBenchResult struct {
	Nodes       int     `json:"nodes"`
	Concurrency int     `json:"concurrency"`
	DurationSec float64 `json:"duration_sec"`
	Ops         int64   `json:"ops"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	OpsPerBatch float64 `json:"ops_per_batch"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	CPUus       float64 `json:"cpu_us_per_op"` // this process (master side) only
	// The table store part: a table of Regions regions on Nodes region
	// servers, snapshotted end to end (submit to completion), Rounds times.
	Regions        int       `json:"regions,omitempty"`
	Rows           int       `json:"rows,omitempty"`
	CreateMs       float64   `json:"create_ms,omitempty"`
	SnapshotMs     float64   `json:"snapshot_ms,omitempty"` // median of the rounds
	SnapshotMsRuns []float64 `json:"snapshot_ms_runs,omitempty"`
}

func benchRemote(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "procyon-bench", "parent directory for the benchmark's data (a fresh subdirectory is made and removed)")
	nodes := fs.Int("nodes", 3, "node processes (and region servers)")
	concurrency := fs.Int("concurrency", 1024, "procedures in flight, each one remote operation: submit, dispatch, report, the step after it")
	duration := fs.Duration("duration", 3*time.Second, "how long clients submit")
	regions := fs.Int("regions", 1000, "regions of the snapshotted table (0: skip the table store part)")
	rows := fs.Int("rows", 10, "rows per region loaded before the snapshot")
	rounds := fs.Int("rounds", 3, "snapshots taken (the median is reported)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the dispatch part to this file")
	return func(ctx context.Context, e *env, args []string) error {
		if err := firstErr(
			intIn("nodes", *nodes, 1, 64),
			intIn("concurrency", *concurrency, 1, 100_000),
			positive("duration", *duration),
			intIn("regions", *regions, 0, 100_000),
			intIn("rows", *rows, 0, 100_000),
			intIn("rounds", *rounds, 1, 100),
		); err != nil {
			return err
		}
		root, cleanup, err := benchDir(*dir, "remote-")
		if err != nil {
			return err
		}
		defer cleanup()
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
		}
		res, err := benchDispatch(ctx, e, filepath.Join(root, "dispatch"), *nodes, *concurrency, *duration)
		pprof.StopCPUProfile()
		if err != nil {
			return err
		}
		if *regions > 0 {
			if err := benchSnapshot(ctx, e, filepath.Join(root, "tablestore"), *nodes, *regions, *rows, *rounds, &res); err != nil {
				return err
			}
		}
		if *asJSON {
			return writeJSON(e.stdout, res)
		}
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "remote operations\t%d node processes, %d in flight, %.1f s\n", res.Nodes, res.Concurrency, res.DurationSec)
		fmt.Fprintf(tw, "operations/s\t%.0f (each: a step that dispatches, a report that commits, the step after it)\n", res.OpsPerSec)
		fmt.Fprintf(tw, "operations per request\t%.1f\n", res.OpsPerBatch)
		fmt.Fprintf(tw, "latency p50 / p99\t%.2f ms / %.2f ms\n", res.P50ms, res.P99ms)
		fmt.Fprintf(tw, "master CPU per operation\t%.1f µs\n", res.CPUus)
		if res.Regions > 0 {
			fmt.Fprintf(tw, "table store\t%d regions on %d region servers, %d rows; created in %.0f ms\n", res.Regions, res.Nodes, res.Rows, res.CreateMs)
			fmt.Fprintf(tw, "snapshot, end to end\t%.0f ms median of %v\n", res.SnapshotMs, res.SnapshotMsRuns)
		}
		return tw.Flush()
	}
}

// echoOp is the bench's remote operation: the node answers the payload.
// The bench calls it with the dispatcher's byte API (Call, Outcome), not
// the typed JSON layer, and its procedures' data has a binary codec: what
// it measures is the dispatch, not JSON.
const echoOp = "echo"

// benchRemoteData is a bench procedure's data.
type benchRemoteData struct {
	Node string      `json:"n"`
	Op   remote.OpID `json:"o,omitempty"`
}

// benchRemoteCodec encodes a bench procedure's data: the op id, then the
// node's name.
var benchRemoteCodec = durable.CodecFunc(
	func(d benchRemoteData) ([]byte, error) {
		return append(binary.AppendUvarint(nil, uint64(d.Op)), d.Node...), nil
	},
	func(b []byte) (benchRemoteData, error) {
		op, n := binary.Uvarint(b)
		if n <= 0 {
			return benchRemoteData{}, errors.New("bad bench-remote data")
		}
		return benchRemoteData{Op: remote.OpID(op), Node: string(b[n:])}, nil
	})

// benchRemoteSM calls echo on its node, waits, and reads the outcome.
type benchRemoteSM struct{ d *remote.Dispatcher }

func (sm benchRemoteSM) Execute(ctx context.Context, env *procedure.Env, s int, d *benchRemoteData) (procedure.Next, error) {
	if s == 0 {
		d.Op = sm.d.Call(env, d.Node, echoOp, benchPayload)
		return remote.Await(1, d.Op), nil
	}
	if _, err := sm.d.Outcome(env, d.Op); err != nil {
		return procedure.Next{}, err
	}
	return procedure.Done(), nil
}

func (benchRemoteSM) Rollback(context.Context, *procedure.Env, int, *benchRemoteData) error {
	return nil
}

var benchPayload = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

// benchDispatch runs the dispatcher part: a master in this process and
// node processes answering echo.
func benchDispatch(ctx context.Context, e *env, dir string, nodes, concurrency int, d time.Duration) (remoteBenchResult, error) {
	res := remoteBenchResult{Nodes: nodes, Concurrency: concurrency}
	quiet := slog.New(slog.DiscardHandler)
	s := durable.New(durable.Options{Dir: dir, Logger: quiet})
	eng := procedure.New(s, procedure.Options{Workers: 8, Logger: quiet, SweepInterval: time.Second, ResultTTL: time.Second})
	disp := remote.NewDispatcher(eng, &remote.HTTP{}, remote.Options{Logger: quiet})
	typ := procedure.Register[int, benchRemoteData](eng, "bench-remote", benchRemoteSM{disp},
		&procedure.TypeOptions[benchRemoteData]{Codec: benchRemoteCodec})
	if err := eng.Start(ctx); err != nil {
		return res, err
	}
	defer eng.Stop()
	if err := disp.Start(ctx); err != nil {
		return res, err
	}
	defer disp.Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	srv := &http.Server{Handler: remote.MasterHandler(disp.Service(), remote.HTTPOptions{})}
	go srv.Serve(ln)
	defer srv.Close()
	procs, err := startBenchProcs(ctx, nodes, func(i int) []string {
		return []string{"bench", "remote-node", "-master", ln.Addr().String(), "-name", fmt.Sprintf("n%d", i+1)}
	})
	defer stopBenchProcs(procs)
	if err != nil {
		return res, err
	}
	if err := waitLive(ctx, disp.Nodes, nodes); err != nil {
		return res, err
	}
	names := make([]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i+1)
	}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cpu0 := processCPU()
	run := startWorkers(runCtx, concurrency, func(g int) worker {
		return func(i uint64) error {
			id, err := typ.Submit(ctx, benchRemoteData{Node: names[(g+int(i))%nodes]}, procedure.SubmitOptions{})
			if err != nil {
				return err
			}
			r, err := eng.Wait(ctx, id)
			if err != nil {
				return err
			}
			return r.Err()
		}
	})
	<-runCtx.Done()
	if err := run.stop(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	elapsed := time.Since(run.start)
	lat := run.latencies()
	res.DurationSec = elapsed.Seconds()
	res.Ops = int64(len(lat))
	res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	res.P50ms = float64(lat.quantile(0.5)) / 1e6
	res.P99ms = float64(lat.quantile(0.99)) / 1e6
	if res.Ops > 0 {
		res.CPUus = float64(processCPU()-cpu0) / 1e3 / float64(res.Ops)
	}
	var sent, batches int64
	for _, st := range disp.Stats() {
		sent += st.OpsSent
		batches += st.Batches
	}
	if batches > 0 {
		res.OpsPerBatch = float64(sent) / float64(batches)
	}
	return res, nil
}

// benchSnapshot runs the table store part: a master in this process,
// region server processes, a table of regions regions, snapshots.
func benchSnapshot(ctx context.Context, e *env, root string, nodes, regions, rows, rounds int, res *remoteBenchResult) error {
	quiet := slog.New(slog.DiscardHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	m, err := master.New(master.Options{Root: root, Transport: &remote.HTTP{}, Logger: quiet})
	if err != nil {
		ln.Close()
		return err
	}
	if err := m.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	defer m.Stop()
	srv := &http.Server{Handler: m.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	procs, err := startBenchProcs(ctx, nodes, func(i int) []string {
		return []string{"tablestore", "regionserver", "-root", root, "-master", addr, "-name", fmt.Sprintf("rs%d", i+1)}
	})
	defer stopBenchProcs(procs)
	if err != nil {
		return err
	}
	if err := waitLive(ctx, m.Dispatcher().Nodes, nodes); err != nil {
		return err
	}
	splits := make([][]byte, regions-1)
	for i := range splits {
		splits[i] = fmt.Appendf(nil, "k%06d", (i+1)*1000)
	}
	t0 := time.Now()
	id, err := m.CreateTable(ctx, master.CreateTable{Name: "bench", Splits: splits}, procedure.SubmitOptions{})
	if err != nil {
		return err
	}
	if err := m.Wait(ctx, id); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	res.Regions, res.CreateMs = regions, float64(time.Since(t0).Microseconds())/1e3
	cl := tablestore.NewClient(addr)
	var batch []tablestore.Row
	for r := range regions {
		for k := range rows {
			batch = append(batch, tablestore.Row{Key: fmt.Appendf(nil, "k%06d", r*1000+k), Value: benchPayload})
		}
		if len(batch) >= 4096 || r == regions-1 {
			if err := cl.Put(ctx, "bench", batch...); err != nil {
				return fmt.Errorf("load rows: %w", err)
			}
			res.Rows += len(batch)
			batch = batch[:0]
		}
	}
	for i := range rounds {
		t0 := time.Now()
		id, err := m.SnapshotTable(ctx, master.SnapshotTable{Table: "bench", Name: fmt.Sprintf("s%d", i)}, procedure.SubmitOptions{})
		if err != nil {
			return err
		}
		if err := m.Wait(ctx, id); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		res.SnapshotMsRuns = append(res.SnapshotMsRuns, float64(time.Since(t0).Microseconds())/1e3)
	}
	sorted := slices.Sorted(slices.Values(res.SnapshotMsRuns))
	res.SnapshotMs = sorted[len(sorted)/2]
	return nil
}

// waitLive waits until n nodes are live.
func waitLive(ctx context.Context, nodesOf func() []remote.NodeInfo, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		live := 0
		for _, ni := range nodesOf() {
			if ni.Live {
				live++
			}
		}
		if live >= n {
			return nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("%d of %d nodes registered: %w", live, n, err)
		}
	}
}

// startBenchProcs starts n processes of this binary with argsOf(i) and
// waits for each one's ready line.
func startBenchProcs(ctx context.Context, n int, argsOf func(i int) []string) ([]*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var procs []*exec.Cmd
	for i := range n {
		cmd := exec.Command(self, argsOf(i)...)
		cmd.Stderr = io.Discard
		out, err := cmd.StdoutPipe()
		if err != nil {
			return procs, err
		}
		if err := cmd.Start(); err != nil {
			return procs, err
		}
		procs = append(procs, cmd)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.Contains(line, `"ready"`) {
			return procs, fmt.Errorf("%s: no ready line (%q, %v)", strings.Join(argsOf(i), " "), line, err)
		}
		go io.Copy(io.Discard, out)
	}
	return procs, nil
}

func stopBenchProcs(procs []*exec.Cmd) {
	for _, p := range procs {
		p.Process.Kill()
		p.Wait()
	}
}

func benchRemoteNode(fs *flag.FlagSet) runFunc {
	masterAddr := fs.String("master", "", "the bench's master address (required)")
	name := fs.String("name", "", "node name (required)")
	return func(ctx context.Context, e *env, args []string) error {
		if *masterAddr == "" || *name == "" {
			return usagef("-master and -name are required")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		n, err := remote.NewNode(remote.NodeOptions{Name: *name, Addr: ln.Addr().String(), Master: *masterAddr,
			Transport: &remote.HTTP{}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		n.Handle(echoOp, func(ctx context.Context, op remote.Op) ([]byte, error) { return op.Payload, nil })
		srv := &http.Server{Handler: remote.NodeHandler(n.Service(), remote.HTTPOptions{})}
		go srv.Serve(ln)
		defer srv.Close()
		if err := n.Start(ctx); err != nil {
			return err
		}
		defer n.Stop()
		if err := json.NewEncoder(e.stdout).Encode(readyLine{Event: "ready", Role: "node", Name: *name, Addr: ln.Addr().String(), PID: os.Getpid()}); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
}
