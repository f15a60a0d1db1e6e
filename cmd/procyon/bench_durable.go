package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

func init() {
	register(command{path: "bench durable", usage: "[flags]",
		summary: "benchmark durable transactions, snapshots under load, and recovery",
		define:  benchDurable})
}

type durableBenchResult struct {
	Mode            string  `json:"mode"` // "write" or "recover"
	Writers         int     `json:"writers,omitempty"`
	Keys            int     `json:"keys"`
	ValueSize       int     `json:"value_size"`
	DurationSec     float64 `json:"duration_sec,omitempty"`
	Txns            int64   `json:"txns,omitempty"`
	TxnsPerSec      float64 `json:"txns_per_sec,omitempty"`
	P50us           float64 `json:"p50_us,omitempty"`
	P99us           float64 `json:"p99_us,omitempty"`
	TxnsDuringSnap  int64   `json:"txns_during_snapshot,omitempty"`
	P99usDuringSnap float64 `json:"p99_us_during_snapshot,omitempty"`
	SnapshotMs      float64 `json:"snapshot_ms,omitempty"`
	SnapshotBytes   int64   `json:"snapshot_bytes,omitempty"`
	SnapshotShare   float64 `json:"snapshot_share,omitempty"`
	HeapBytesPerKey float64 `json:"heap_bytes_per_key,omitempty"`
	HeapToRaw       float64 `json:"heap_to_raw,omitempty"`
	LoadSec         float64 `json:"load_sec,omitempty"`
	ReplayTxns      int     `json:"replay_txns,omitempty"`
	RecoverMs       float64 `json:"recover_ms,omitempty"`
	// The store's group commits while the writers ran: transactions per
	// group, and the mean time from a group's append to its durability
	// (the fsync, and the time the log takes to start it).
	TxnsPerCommit float64 `json:"txns_per_commit,omitempty"`
	CommitUs      float64 `json:"commit_us,omitempty"`
	// The WAL alone, same writers and value size, same disk, same run:
	// appends/s, and its records per fsync and mean fsync time (to set
	// against the store's group commits: how full they are, and how long
	// the disk takes with the store's work going on).
	WALAppendsPerSec float64 `json:"wal_appends_per_sec,omitempty"`
	WALRecsPerSync   float64 `json:"wal_records_per_sync,omitempty"`
	WALSyncUs        float64 `json:"wal_sync_us,omitempty"`
	RatioToWAL       float64 `json:"ratio_to_wal,omitempty"`
	// With -rounds > 1, the figures above are medians over the rounds
	// (the ratio: the median of each round's ratio), and these are each
	// round's.
	Rounds        int       `json:"rounds,omitempty"`
	TxnsPerSecAll []float64 `json:"txns_per_sec_all,omitempty"`
	WALPerSecAll  []float64 `json:"wal_appends_per_sec_all,omitempty"`
	RatioToWALAll []float64 `json:"ratio_to_wal_all,omitempty"`
	P99usAll      []float64 `json:"p99_us_all,omitempty"`
	P99usSnapAll  []float64 `json:"p99_us_during_snapshot_all,omitempty"`
	SnapP99Ratio  float64   `json:"p99_during_snapshot_ratio,omitempty"` // median of each round's p99 during / p99 without
}

func benchDurable(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "procyon-bench", "parent directory for the benchmark's data (a fresh subdirectory is made and removed)")
	writers := fs.Int("writers", 64, "concurrent writers, each committing one put per transaction")
	keys := fs.Int("keys", 100_000, "keys loaded before the run (and the key space writers update)")
	valueSize := fs.Int("value-size", 256, "value size in bytes")
	duration := fs.Duration("duration", 3*time.Second, "how long writers run; a snapshot is taken a third of the way in")
	recoverMode := fs.Bool("recover", false, "measure recovery instead: a snapshot of -keys keys plus -replay transactions in the log")
	replay := fs.Int("replay", 100_000, "with -recover, transactions logged after the snapshot")
	share := fs.Float64("snapshot-share", 0.5, "durable.Options.SnapshotShare: the share of wall time the snapshot may spend serializing (1: no pacing)")
	baseline := fs.Bool("baseline", true, "also run the WAL alone (procyon bench wal with the same writers and value size, same directory) for the same duration, and report the ratio")
	rounds := fs.Int("rounds", 1, "run the store and the WAL alone this many times each, interleaved (every other round in reverse order, the disk synced before each run), and report medians and the median of the rounds' ratios")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	return func(ctx context.Context, e *env, args []string) error {
		if err := firstErr(
			intIn("writers", *writers, 1, 100_000),
			intIn("keys", *keys, 1, 100_000_000),
			sizeIn("value-size", *valueSize, 0, 1<<20),
			positive("duration", *duration),
			fraction("snapshot-share", *share),
			atLeast("replay", *replay, 0),
			intIn("rounds", *rounds, 1, 1000),
		); err != nil {
			return err
		}
		root, cleanup, err := benchDir(*dir, "durable-")
		if err != nil {
			return err
		}
		defer cleanup()
		data := filepath.Join(root, "data")
		var res durableBenchResult
		if *recoverMode {
			res, err = benchDurableRecover(ctx, data, *keys, *valueSize, *replay)
		} else {
			res, err = benchDurableRounds(ctx, root, *rounds, *baseline, *writers, *keys, *valueSize, *duration, *share)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, res)
		}
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "keys × value size\t%d × %d B (loaded in %.1f s)\n", res.Keys, res.ValueSize, res.LoadSec)
		if *recoverMode {
			fmt.Fprintf(tw, "snapshot\t%d B\n", res.SnapshotBytes)
			fmt.Fprintf(tw, "replayed transactions\t%d\n", res.ReplayTxns)
			fmt.Fprintf(tw, "recovery (snapshot + replay)\t%.0f ms\n", res.RecoverMs)
			return tw.Flush()
		}
		fmt.Fprintf(tw, "writers\t%d, one %d-byte put per durable transaction, %.1f s\n", res.Writers, res.ValueSize, res.DurationSec)
		if res.Rounds > 1 {
			fmt.Fprintf(tw, "rounds\t%d, interleaved with the WAL alone; medians below\n", res.Rounds)
		}
		fmt.Fprintf(tw, "transactions/s\t%.0f\n", res.TxnsPerSec)
		if res.WALAppendsPerSec > 0 {
			fmt.Fprintf(tw, "WAL alone, same run\t%.0f appends/s (ratio %.2f)\n", res.WALAppendsPerSec, res.RatioToWAL)
		}
		if res.TxnsPerCommit > 0 {
			fmt.Fprintf(tw, "group commits\t%.1f transactions each, %.0f µs from append to durable\n", res.TxnsPerCommit, res.CommitUs)
		}
		if res.WALRecsPerSync > 0 {
			fmt.Fprintf(tw, "WAL alone: syncs\t%.1f records each, %.0f µs per fsync\n", res.WALRecsPerSync, res.WALSyncUs)
		}
		fmt.Fprintf(tw, "latency p50 / p99 (no snapshot)\t%.0f µs / %.0f µs\n", res.P50us, res.P99us)
		fmt.Fprintf(tw, "snapshot\t%.0f ms, %d B\n", res.SnapshotMs, res.SnapshotBytes)
		fmt.Fprintf(tw, "latency p99 during the snapshot\t%.0f µs (%d transactions)\n", res.P99usDuringSnap, res.TxnsDuringSnap)
		if res.SnapP99Ratio > 0 {
			fmt.Fprintf(tw, "p99 during / without the snapshot\t%.2f (median of the rounds' ratios)\n", res.SnapP99Ratio)
		}
		fmt.Fprintf(tw, "heap per key\t%.0f B (%.2f × raw key+value)\n", res.HeapBytesPerKey, res.HeapToRaw)
		return tw.Flush()
	}
}

// benchDurableRounds runs the store's write benchmark and, with baseline,
// the WAL alone with the same writers and record size, rounds times each,
// interleaved: every other round runs them in reverse order, and every run
// starts with the previous one's data deleted and the disk synced, so that
// the disk's drift and the previous run's writeback hit both alike. With
// more than one round the result holds medians (and each round's figures).
func benchDurableRounds(ctx context.Context, root string, rounds int, baseline bool, writers, keys, size int, d time.Duration, share float64) (durableBenchResult, error) {
	var runs []durableBenchResult
	for r := range rounds {
		var res durableBenchResult
		var wal walBenchResult
		steps := []string{"store", "wal"}
		if !baseline {
			steps = steps[:1]
		}
		if r%2 == 1 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			dir := filepath.Join(root, fmt.Sprintf("%s-%d", step, r))
			runtime.GC()
			syscall.Sync()
			var err error
			if step == "store" {
				res, err = benchDurableWrite(ctx, dir, writers, keys, size, d, share)
			} else {
				wal, err = benchWALAppend(ctx, dir, writers, max(size, 1), d, true, 0)
			}
			if err != nil {
				return res, err
			}
			if err := os.RemoveAll(dir); err != nil {
				return res, err
			}
		}
		res.WALAppendsPerSec = wal.AppendsPerSec
		res.WALRecsPerSync = wal.RecordsPerSyn
		res.WALSyncUs = wal.SyncUs
		if wal.AppendsPerSec > 0 {
			res.RatioToWAL = res.TxnsPerSec / wal.AppendsPerSec
		}
		runs = append(runs, res)
	}
	if rounds == 1 {
		return runs[0], nil
	}
	out := runs[0]
	out.Rounds = rounds
	var snapRatios []float64
	for _, r := range runs {
		out.TxnsPerSecAll = append(out.TxnsPerSecAll, r.TxnsPerSec)
		out.WALPerSecAll = append(out.WALPerSecAll, r.WALAppendsPerSec)
		if r.RatioToWAL > 0 {
			out.RatioToWALAll = append(out.RatioToWALAll, r.RatioToWAL)
		}
		out.P99usAll = append(out.P99usAll, r.P99us)
		out.P99usSnapAll = append(out.P99usSnapAll, r.P99usDuringSnap)
		if r.P99us > 0 && r.P99usDuringSnap > 0 {
			snapRatios = append(snapRatios, r.P99usDuringSnap/r.P99us)
		}
	}
	pick := func(f func(durableBenchResult) float64) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		return median(v)
	}
	out.Txns = int64(pick(func(r durableBenchResult) float64 { return float64(r.Txns) }))
	out.TxnsPerSec = median(out.TxnsPerSecAll)
	out.WALAppendsPerSec = median(out.WALPerSecAll)
	out.RatioToWAL = median(out.RatioToWALAll)
	out.P50us = pick(func(r durableBenchResult) float64 { return r.P50us })
	out.P99us = median(out.P99usAll)
	out.P99usDuringSnap = median(out.P99usSnapAll)
	out.TxnsPerCommit = pick(func(r durableBenchResult) float64 { return r.TxnsPerCommit })
	out.CommitUs = pick(func(r durableBenchResult) float64 { return r.CommitUs })
	out.WALRecsPerSync = pick(func(r durableBenchResult) float64 { return r.WALRecsPerSync })
	out.WALSyncUs = pick(func(r durableBenchResult) float64 { return r.WALSyncUs })
	out.SnapP99Ratio = median(snapRatios)
	out.TxnsDuringSnap = int64(pick(func(r durableBenchResult) float64 { return float64(r.TxnsDuringSnap) }))
	out.SnapshotMs = pick(func(r durableBenchResult) float64 { return r.SnapshotMs })
	out.HeapBytesPerKey = pick(func(r durableBenchResult) float64 { return r.HeapBytesPerKey })
	out.HeapToRaw = pick(func(r durableBenchResult) float64 { return r.HeapToRaw })
	out.LoadSec = pick(func(r durableBenchResult) float64 { return r.LoadSec })
	return out, nil
}

func benchKey(i int) string { return fmt.Sprintf("key%09d", i) }

func openBenchStore(dir string, opts durable.Options) (*durable.Store, *durable.Collection[string, []byte], error) {
	opts.Dir = dir
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.SnapshotBytes = -1 // the benchmark takes its snapshots itself
	s := durable.New(opts)
	kv := durable.NewCollection[string, []byte](s, "kv", nil)
	if err := s.Open(context.Background()); err != nil {
		return nil, nil, err
	}
	return s, kv, nil
}

// loadKeys puts keys keys with values of size bytes, 1000 per transaction.
func loadKeys(ctx context.Context, s *durable.Store, kv *durable.Collection[string, []byte], keys, size int) error {
	val := make([]byte, size)
	for i := 0; i < keys; i += 1000 {
		err := s.Write(ctx, func(tx *durable.Tx) error {
			for j := i; j < min(i+1000, keys); j++ {
				binaryFill(val, j)
				if err := kv.Put(tx, benchKey(j), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func binaryFill(b []byte, seed int) {
	for i := range b {
		b[i] = byte(seed + i)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func benchDurableWrite(ctx context.Context, dir string, writers, keys, size int, d time.Duration, share float64) (durableBenchResult, error) {
	res := durableBenchResult{Mode: "write", Writers: writers, Keys: keys, ValueSize: size, SnapshotShare: share}
	before := heapInUse()
	s, kv, err := openBenchStore(dir, durable.Options{SnapshotShare: share})
	if err != nil {
		return res, err
	}
	defer s.Close()
	t0 := time.Now()
	if err := loadKeys(ctx, s, kv, keys, size); err != nil {
		return res, err
	}
	res.LoadSec = time.Since(t0).Seconds()
	heap := float64(heapInUse()) - float64(before)
	raw := float64(keys) * float64(len(benchKey(0))+size)
	res.HeapBytesPerKey = heap / float64(keys)
	res.HeapToRaw = heap / raw
	// A first snapshot, so that the one measured is a steady-state one.
	if _, err := s.Snapshot(ctx); err != nil {
		return res, err
	}

	// The writers' keys, formatted once (up to a bound on memory): the
	// WAL's benchmark formats nothing per append either.
	var names []string
	if keys <= 10_000_000 {
		names = make([]string, keys)
		for i := range names {
			names[i] = benchKey(i)
		}
	}
	key := func(i int) string {
		if names != nil {
			return names[i]
		}
		return benchKey(i)
	}
	st0 := s.Stats()
	run := startWorkers(ctx, writers, func(g int) worker {
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		val := make([]byte, size)
		return func(uint64) error {
			k := key(rng.IntN(keys))
			binaryFill(val, int(rng.Uint32()))
			return s.Write(context.Background(), func(tx *durable.Tx) error { return kv.Put(tx, k, val) })
		}
	})
	start := run.start
	var snapStart, snapEnd time.Time
	var snapRes durable.SnapshotResult
	var snapErr error
	timer := time.NewTimer(d / 3)
	select {
	case <-timer.C:
		snapStart = time.Now()
		snapRes, snapErr = s.Snapshot(ctx)
		snapEnd = time.Now()
	case <-ctx.Done():
	}
	if rest := d - time.Since(start); rest > 0 {
		select {
		case <-time.After(rest):
		case <-ctx.Done():
		}
	}
	errs := run.stop()
	elapsed := time.Since(start)
	if st := s.Stats(); st.Groups > st0.Groups {
		groups := st.Groups - st0.Groups
		res.TxnsPerCommit = float64(st.Commits-st0.Commits) / float64(groups)
		res.CommitUs = us((st.GroupTime - st0.GroupTime) / time.Duration(groups))
	}
	if err := errors.Join(errs, snapErr); err != nil {
		return res, err
	}
	var normal, during latencies
	snapFrom, snapTo := snapStart.Sub(start), snapEnd.Sub(start)
	for _, l := range run.spans {
		for _, x := range l {
			lat := x.end - x.start
			if !snapStart.IsZero() && x.end > snapFrom && x.start < snapTo {
				during = append(during, lat)
			} else {
				normal = append(normal, lat)
			}
		}
	}
	slices.Sort(normal)
	slices.Sort(during)
	res.DurationSec = elapsed.Seconds()
	res.Txns = int64(len(normal) + len(during))
	res.TxnsPerSec = float64(res.Txns) / elapsed.Seconds()
	res.P50us = us(normal.quantile(0.50))
	res.P99us = us(normal.quantile(0.99))
	res.TxnsDuringSnap = int64(len(during))
	res.P99usDuringSnap = us(during.quantile(0.99))
	res.SnapshotMs = float64(snapEnd.Sub(snapStart)) / float64(time.Millisecond)
	res.SnapshotBytes = snapRes.Size
	return res, nil
}

func benchDurableRecover(ctx context.Context, dir string, keys, size, replay int) (durableBenchResult, error) {
	res := durableBenchResult{Mode: "recover", Keys: keys, ValueSize: size, ReplayTxns: replay}
	s, kv, err := openBenchStore(dir, durable.Options{})
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := loadKeys(ctx, s, kv, keys, size); err != nil {
		s.Close()
		return res, err
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		s.Close()
		return res, err
	}
	res.SnapshotBytes = snap.Size
	// Log replay transactions after the snapshot, from 64 writers so that
	// it goes at group-commit speed.
	err = runEach(ctx, 64, int64(replay), func(int) func(int64) error {
		val := make([]byte, size)
		return func(i int64) error {
			i++ // transactions 1 .. replay
			binaryFill(val, int(i))
			k := benchKey(int(i*7919) % keys)
			return s.Write(ctx, func(tx *durable.Tx) error { return kv.Put(tx, k, val) })
		}
	})
	if err != nil {
		s.Close()
		return res, err
	}
	want := s.Seq()
	if err := s.Close(); err != nil {
		return res, err
	}
	res.LoadSec = time.Since(t0).Seconds()
	runtime.GC()
	start := time.Now()
	s, kv, err = openBenchStore(dir, durable.Options{})
	if err != nil {
		return res, err
	}
	res.RecoverMs = float64(time.Since(start)) / float64(time.Millisecond)
	defer s.Close()
	v := s.Latest()
	if v.Seq() != want || kv.Len(v) != keys {
		return res, fmt.Errorf("recovered seq %d with %d keys, want seq %d with %d keys", v.Seq(), kv.Len(v), want, keys)
	}
	return res, nil
}
