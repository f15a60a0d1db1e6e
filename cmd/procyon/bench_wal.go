package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/procyon-dev/procyon/wal"
)

func init() {
	register(command{path: "bench wal", usage: "[flags]", summary: "benchmark the write-ahead log against one thread writing the same batches (one pwrite + fdatasync)", define: benchWAL})
}

type walBenchResult struct {
	Mode          string  `json:"mode"` // "append" or "replay"
	Writers       int     `json:"writers,omitempty"`
	RecordSize    int     `json:"record_size"`
	Sync          bool    `json:"sync"`
	SyncEvery     int     `json:"sync_every,omitempty"`
	DurationSec   float64 `json:"duration_sec"`
	Appends       int64   `json:"appends,omitempty"`
	AppendsPerSec float64 `json:"appends_per_sec,omitempty"`
	MBPerSec      float64 `json:"mb_per_sec,omitempty"`
	Syncs         int64   `json:"syncs,omitempty"`
	SyncsPerSec   float64 `json:"syncs_per_sec,omitempty"`
	RecordsPerSyn float64 `json:"records_per_sync,omitempty"`
	SyncUs        float64 `json:"sync_us,omitempty"` // mean time of an fsync
	P50us         float64 `json:"p50_us,omitempty"`
	P99us         float64 `json:"p99_us,omitempty"`
	Baseline      string  `json:"baseline,omitempty"` // what the raw loop does
	RawK          int     `json:"raw_k,omitempty"`
	RawWriteBytes int     `json:"raw_write_bytes,omitempty"`     // bytes of the raw loop's pwrite
	RawPerSec     float64 `json:"raw_appends_per_sec,omitempty"` // records/s
	RawSyncUs     float64 `json:"raw_sync_us,omitempty"`         // mean time of the raw loop's fdatasync
	SyncBusy      float64 `json:"sync_busy,omitempty"`           // share of the log's run spent in fdatasync
	RawSyncBusy   float64 `json:"raw_sync_busy,omitempty"`       // share of the raw loop's run spent in fdatasync
	RatioToRaw    float64 `json:"ratio_to_raw,omitempty"`
	Skeleton      string  `json:"skeleton,omitempty"` // what the skeleton run is
	SkelPerSec    float64 `json:"skeleton_appends_per_sec,omitempty"`
	SkelSyncUs    float64 `json:"skeleton_sync_us,omitempty"`
	SkelToRaw     float64 `json:"skeleton_ratio_to_raw,omitempty"`
	RatioToSkel   float64 `json:"ratio_to_skeleton,omitempty"` // the log's appends/s over the skeleton's
	Records       int64   `json:"records,omitempty"`
	RecordsPerSec float64 `json:"records_per_sec,omitempty"`
	OpenMs        float64 `json:"open_ms,omitempty"`
}

func benchWAL(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "procyon-bench", "parent directory for the benchmark's data (a fresh subdirectory is made and removed)")
	writers := fs.Int("writers", 1, "concurrent appenders")
	size := fs.Int("size", 256, "record size in bytes")
	duration := fs.Duration("duration", 3*time.Second, "how long to append")
	syncMode := fs.Bool("sync", true, "each append waits until durable (false: non-waiting appends, each writer calls Sync every -sync-every records)")
	syncEvery := fs.Int("sync-every", 4096, "with -sync=false, records between a writer's Sync calls")
	baseline := fs.Bool("baseline", true, "also run the raw ceiling, half the duration before the log and half after, and report the ratio: one thread, one pwrite of k records (k × (size + 24) bytes, as the log writes them) over zeros written ahead, as the log preallocates, then fdatasync; k = writers, or -sync-every with -sync=false")
	skeleton := fs.Bool("skeleton", true, "with -sync and the baseline, also run the same writers on the skeleton of a group commit (a forming batch under a mutex, one goroutine that waits for all of them, writes it with one pwrite and fdatasyncs) half the duration before the log and half after, and report its ratio to the raw ceiling and the log's ratio to it: what blocking and waking the writers costs on this machine, apart from the log")
	replay := fs.Bool("replay", false, "measure reopening the log and reading back -records records instead")
	records := fs.Int("records", 1_000_000, "with -replay, records to write and read back")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	return func(ctx context.Context, e *env, args []string) error {
		if err := firstErr(
			intIn("writers", *writers, 1, 100_000),
			sizeIn("size", *size, 1, 16<<20),
			positive("duration", *duration),
			atLeast("sync-every", *syncEvery, 1),
			atLeast("records", *records, 1),
		); err != nil {
			return err
		}
		root, cleanup, err := benchDir(*dir, "wal-")
		if err != nil {
			return err
		}
		defer cleanup()

		var res walBenchResult
		if *replay {
			res, err = benchWALReplay(root, *size, *records)
		} else {
			k := *writers
			if !*syncMode {
				k = *syncEvery
			}
			n := k * (*size + walFrameHeader)
			rawPath := filepath.Join(root, "raw")
			skelPath := filepath.Join(root, "skeleton")
			withSkel := *baseline && *skeleton && *syncMode
			// The baselines run half before the log and half after (raw
			// first and last): the disk's drift over the run then cancels to
			// first order.
			var before, after rawRun
			var skelBefore, skelAfter skeletonRun
			if *baseline {
				if before, err = rawLoop(ctx, rawPath, n, *duration/2); err != nil {
					return err
				}
			}
			if withSkel {
				if skelBefore, err = runSkeleton(ctx, skelPath, *writers, *size, *duration/2); err != nil {
					return err
				}
			}
			res, err = benchWALAppend(ctx, filepath.Join(root, "log"), *writers, *size, *duration, *syncMode, *syncEvery)
			if err == nil && withSkel {
				skelAfter, err = runSkeleton(ctx, skelPath, *writers, *size, *duration/2)
			}
			if err == nil && *baseline {
				after, err = rawLoop(ctx, rawPath, n, *duration/2)
				res.setRaw(k, n, before.add(after))
			}
			if err == nil && withSkel {
				res.setSkeleton(skelBefore.add(skelAfter))
			}
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, res)
		}
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		if *replay {
			fmt.Fprintf(tw, "replay\t%d records of %d bytes\n", res.Records, res.RecordSize)
			fmt.Fprintf(tw, "open (checks every record)\t%.1f ms\n", res.OpenMs)
			fmt.Fprintf(tw, "open + read back\t%.2f s\n", res.DurationSec)
			fmt.Fprintf(tw, "records/s\t%.0f\n", res.RecordsPerSec)
			return tw.Flush()
		}
		mode := "durable append each (waits for fsync)"
		if !res.Sync {
			mode = fmt.Sprintf("non-waiting appends, Sync every %d per writer", res.SyncEvery)
		}
		fmt.Fprintf(tw, "mode\t%s\n", mode)
		fmt.Fprintf(tw, "writers × record size\t%d × %d B, %.1f s\n", res.Writers, res.RecordSize, res.DurationSec)
		fmt.Fprintf(tw, "appends/s\t%.0f\n", res.AppendsPerSec)
		fmt.Fprintf(tw, "MB/s\t%.1f\n", res.MBPerSec)
		fmt.Fprintf(tw, "syncs/s\t%.0f\n", res.SyncsPerSec)
		fmt.Fprintf(tw, "records/sync\t%.1f\n", res.RecordsPerSyn)
		fmt.Fprintf(tw, "fsync (mean)\t%.0f µs\n", res.SyncUs)
		fmt.Fprintf(tw, "latency p50 / p99\t%.0f µs / %.0f µs\n", res.P50us, res.P99us)
		if res.RawPerSec > 0 {
			fmt.Fprintf(tw, "raw ceiling\tone thread: 1 pwrite of k=%d records (%d B) + fdatasync, over preallocated zeros\n", res.RawK, res.RawWriteBytes)
			fmt.Fprintf(tw, "raw records/s\t%.0f (fdatasync %.0f µs mean)\n", res.RawPerSec, res.RawSyncUs)
			fmt.Fprintf(tw, "time in fdatasync\tlog %.0f%%, raw %.0f%%\n", 100*res.SyncBusy, 100*res.RawSyncBusy)
			fmt.Fprintf(tw, "ratio to raw\t%.2f\n", res.RatioToRaw)
		}
		if res.SkelPerSec > 0 {
			fmt.Fprintf(tw, "skeleton\tthe same writers on a group commit with no log around it (-skeleton)\n")
			fmt.Fprintf(tw, "skeleton records/s\t%.0f (fdatasync %.0f µs mean), %.2f of raw\n", res.SkelPerSec, res.SkelSyncUs, res.SkelToRaw)
			fmt.Fprintf(tw, "ratio to skeleton\t%.2f\n", res.RatioToSkel)
		}
		return tw.Flush()
	}
}

// rawPrealloc is how far ahead the raw loop writes zeros: the log's
// default (wal.Options.Preallocate).
const rawPrealloc = 1 << 20

// walFrameHeader is the bytes the log adds to each record (wal's frame
// header). TestRawWriteIsTheLogsBytes checks it against the log's Stats.
const walFrameHeader = 24

// rawBaseline says in bench wal's output and JSON what the raw loop is.
const rawBaseline = "one thread: one pwrite of k records (k × (size + 24) bytes, the bytes the log writes for them, unframed) over zeros written ahead, then fdatasync; half the run before the log's, half after"

// rawRun is what a raw loop did.
type rawRun struct {
	rounds   int64         // pwrite + fdatasync rounds
	elapsed  time.Duration // wall time
	syncTime time.Duration // time in fdatasync
}

func (r rawRun) add(o rawRun) rawRun {
	return rawRun{r.rounds + o.rounds, r.elapsed + o.elapsed, r.syncTime + o.syncTime}
}

// perSec returns the rounds per second.
func (r rawRun) perSec() float64 { return float64(r.rounds) / r.elapsed.Seconds() }

// rawLoop is the ceiling a group commit is measured against: one thread
// that writes n bytes with one pwrite at the end of what it wrote, over
// zeros written ahead as the log preallocates, then fdatasyncs, for d.
func rawLoop(ctx context.Context, path string, n int, d time.Duration) (rawRun, error) {
	var run rawRun
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return run, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(i)
	}
	zeros := make([]byte, rawPrealloc)
	var off, allocEnd int64
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		// Zeros ahead, as the log preallocates its segments: the
		// fdatasync below then has no file-size change to commit (except
		// the one that makes these zeros durable).
		for allocEnd < off+int64(n) {
			if _, err := f.WriteAt(zeros, allocEnd); err != nil {
				return run, err
			}
			allocEnd += rawPrealloc
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return run, err
		}
		off += int64(n)
		t := time.Now()
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return run, err
		}
		run.syncTime += time.Since(t)
		run.rounds++
	}
	run.elapsed = time.Since(start)
	return run, nil
}

// rawFsyncsPerSec is the disk's raw pace for bench procedures: rawLoop
// with one 64-byte write per fdatasync, for a second.
func rawFsyncsPerSec(ctx context.Context, path string) (float64, error) {
	run, err := rawLoop(ctx, path, 64, time.Second)
	if err != nil {
		return 0, fmt.Errorf("raw fsync baseline: %w", err)
	}
	return run.perSec(), nil
}

// setRaw records the raw ceiling's run, k records of n bytes in all per
// round, and the log's ratio to it.
func (res *walBenchResult) setRaw(k, n int, run rawRun) {
	if run.rounds == 0 {
		return
	}
	res.Baseline, res.RawK, res.RawWriteBytes = rawBaseline, k, n
	res.RawPerSec = run.perSec() * float64(k)
	res.RawSyncUs = us(run.syncTime / time.Duration(run.rounds))
	res.RawSyncBusy = run.syncTime.Seconds() / run.elapsed.Seconds()
	res.RatioToRaw = res.AppendsPerSec / res.RawPerSec
}

// setSkeleton records the skeleton's run and the log's ratio to it.
func (res *walBenchResult) setSkeleton(run skeletonRun) {
	if run.records == 0 || run.rounds == 0 {
		return
	}
	perSec := float64(run.records) / run.elapsed.Seconds()
	res.Skeleton, res.SkelPerSec, res.SkelSyncUs = skeletonBaseline, perSec, us(run.syncTime/time.Duration(run.rounds))
	if res.RawPerSec > 0 {
		res.SkelToRaw = perSec / res.RawPerSec
	}
	res.RatioToSkel = res.AppendsPerSec / perSec
}

func benchWALAppend(ctx context.Context, dir string, writers, size int, d time.Duration, syncMode bool, syncEvery int) (walBenchResult, error) {
	res := walBenchResult{Mode: "append", Writers: writers, RecordSize: size, Sync: syncMode}
	if !syncMode {
		res.SyncEvery = syncEvery
	}
	w, err := wal.Open(dir, wal.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, err
	}
	rec := make([]byte, size)
	for i := range rec {
		rec[i] = byte(i)
	}
	run := startWorkers(ctx, writers, func(int) worker {
		return func(i uint64) error {
			if syncMode {
				_, err := w.Append(wal.Entry{Data: rec})
				return err
			}
			_, err := w.AppendAsync(wal.Entry{Data: rec})
			if err == nil && (i+1)%uint64(syncEvery) == 0 {
				err = w.Sync()
			}
			return err
		}
	})
	sleepCtx(ctx, d)
	errs := run.stop()
	if err := w.Sync(); err != nil {
		return res, err
	}
	elapsed := time.Since(run.start)
	st := w.Stats()
	if err := w.Close(); err != nil {
		return res, err
	}
	if errs != nil {
		return res, errs
	}
	all := run.latencies()
	secs := elapsed.Seconds()
	res.DurationSec = secs
	res.Appends = st.Appends
	res.AppendsPerSec = float64(st.Appends) / secs
	res.MBPerSec = float64(st.Appends) * float64(size) / secs / 1e6
	res.Syncs = st.Syncs
	res.SyncsPerSec = float64(st.Syncs) / secs
	res.RecordsPerSyn = st.RecordsPerSync
	if st.Syncs > 0 {
		res.SyncUs = us(st.SyncTime / time.Duration(st.Syncs))
		res.SyncBusy = st.SyncTime.Seconds() / secs
	}
	res.P50us = us(all.quantile(0.50))
	res.P99us = us(all.quantile(0.99))
	return res, nil
}

func benchWALReplay(dir string, size, n int) (walBenchResult, error) {
	res := walBenchResult{Mode: "replay", RecordSize: size, Sync: true}
	logDir := filepath.Join(dir, "log")
	opts := wal.Options{Logger: slog.New(slog.DiscardHandler)}
	w, err := wal.Open(logDir, opts)
	if err != nil {
		return res, err
	}
	rec := make([]byte, size)
	batch := make([]wal.Entry, 0, 1000)
	for i := 0; i < n; i += len(batch) {
		batch = batch[:0]
		for j := 0; j < 1000 && i+j < n; j++ {
			batch = append(batch, wal.Entry{Data: rec})
		}
		if _, err := w.AppendAsync(batch...); err != nil {
			return res, err
		}
	}
	if err := w.Close(); err != nil {
		return res, err
	}
	start := time.Now()
	w, err = wal.Open(logDir, opts)
	if err != nil {
		return res, err
	}
	res.OpenMs = float64(time.Since(start)) / float64(time.Millisecond)
	r, err := w.NewReader(1)
	if err != nil {
		return res, err
	}
	var got int64
	for {
		rc, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return res, err
		}
		if len(rc.Data) != size {
			return res, fmt.Errorf("record %d has %d bytes, want %d", rc.Seq, len(rc.Data), size)
		}
		got++
	}
	elapsed := time.Since(start)
	r.Close()
	if err := w.Close(); err != nil {
		return res, err
	}
	if got != int64(n) {
		return res, fmt.Errorf("read back %d records, wrote %d", got, n)
	}
	res.Records = got
	res.DurationSec = elapsed.Seconds()
	res.RecordsPerSec = float64(got) / elapsed.Seconds()
	return res, nil
}
