package region

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/internal/seqname"
	"github.com/procyon-dev/procyon/vfs"
)

const regionDir = "/root/data/t1/r1"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openT(t *testing.T, fs vfs.FS, dir string, opts Options) *Region {
	t.Helper()
	opts.FS, opts.Logger = fs, quiet()
	r, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return r
}

func put(t *testing.T, r *Region, kv ...string) {
	t.Helper()
	var rows []Row
	for i := 0; i < len(kv); i += 2 {
		rows = append(rows, Row{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	if err := r.Put(context.Background(), rows...); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

// collect returns the rows of seq as a map, failing on an error.
func collect(t *testing.T, seq func(func(Row, error) bool)) map[string]string {
	t.Helper()
	got := map[string]string{}
	var last []byte
	for row, err := range seq {
		if err != nil {
			t.Fatalf("iteration: %v", err)
		}
		if last != nil && string(last) >= string(row.Key) {
			t.Fatalf("rows out of order: %q then %q", last, row.Key)
		}
		last = row.Key
		got[string(row.Key)] = string(row.Value)
	}
	return got
}

func wantRows(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("%s: got %d rows %v, want %d rows %v", what, len(got), got, len(want), want)
	}
}

func TestPutGetScanAcrossFlushAndReopen(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{MaxFiles: 100})
	put(t, r, "a", "1", "b", "1", "c", "1")
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	put(t, r, "b", "2", "d", "2")
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	put(t, r, "c", "3")
	want := map[string]string{"a": "1", "b": "2", "c": "3", "d": "2"}
	check := func(r *Region) {
		t.Helper()
		wantRows(t, "Scan", collect(t, r.Scan(nil, nil)), want)
		wantRows(t, "Scan[b,d)", collect(t, r.Scan([]byte("b"), []byte("d"))), map[string]string{"b": "2", "c": "3"})
		for k, v := range want {
			got, ok, err := r.Get([]byte(k))
			if err != nil || !ok || string(got) != v {
				t.Fatalf("Get(%s) = %q, %v, %v; want %q", k, got, ok, err, v)
			}
		}
		if _, ok, err := r.Get([]byte("zz")); ok || err != nil {
			t.Fatalf("Get(zz) = %v, %v; want absent", ok, err)
		}
	}
	check(r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List(regionDir + "/files")
	if len(names) != 2 {
		t.Fatalf("files %v, want the two flushes", names)
	}
	r = openT(t, fs, regionDir, Options{MaxFiles: 100})
	defer r.Close()
	check(r)
}

func TestScanDoesNotSeeLaterWrites(t *testing.T) {
	r := openT(t, vfs.NewMem(), regionDir, Options{})
	defer r.Close()
	put(t, r, "a", "1", "b", "1")
	n := 0
	for row, err := range r.Scan(nil, nil) {
		if err != nil {
			t.Fatal(err)
		}
		if string(row.Value) != "1" {
			t.Fatalf("scan saw %s=%s, written after it started", row.Key, row.Value)
		}
		put(t, r, "b", "2", "c", "2")
		n++
	}
	if n != 2 {
		t.Fatalf("scan returned %d rows, want 2", n)
	}
}

func TestSecondOpenFailsWithErrLocked(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	// A flush of the first in progress: the second Open must fail before
	// it cleans up anything.
	tmp := regionDir + "/files/" + rowFileName(7) + tmpSuffix
	fs.WriteFile(tmp, []byte("being written"))
	if _, err := Open(regionDir, Options{FS: fs, Logger: quiet()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if _, err := fs.Stat(tmp); err != nil {
		t.Fatalf("the second Open removed the first's file in progress: %v", err)
	}
	put(t, r, "a", "1")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openT(t, fs, regionDir, Options{})
	defer r.Close()
	if v, ok, _ := r.Get([]byte("a")); !ok || string(v) != "1" {
		t.Fatalf("after the first closed: Get(a) = %q, %v", v, ok)
	}
}

func TestSecondOpenFailsOnOS(t *testing.T) {
	dir := t.TempDir() + "/data/t/r"
	r, err := Open(dir, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := Open(dir, Options{Logger: quiet()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestBadPutChangesNothing(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	defer r.Close()
	ops := fs.Ops()
	err := r.Put(context.Background(), Row{Key: []byte("a"), Value: []byte("1")}, Row{Value: []byte("no key")})
	if !errors.Is(err, ErrBadRow) {
		t.Fatalf("Put with an empty key: %v, want ErrBadRow", err)
	}
	if fs.Ops() != ops {
		t.Fatalf("a rejected Put wrote %d times", fs.Ops()-ops)
	}
	if _, ok, _ := r.Get([]byte("a")); ok {
		t.Fatal("a rejected Put's other row is readable")
	}
}

func TestClosedRegionRefusesCalls(t *testing.T) {
	r := openT(t, vfs.NewMem(), regionDir, Options{})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(context.Background(), Row{Key: []byte("a")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if _, _, err := r.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := r.Snapshot("/snap"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close: %v", err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConcurrentPuts(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{FlushBytes: 2 << 10, MaxFiles: 3})
	const writers, each = 16, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				k := fmt.Sprintf("w%02d-%03d", w, i)
				shared := fmt.Sprintf("shared-%d", i%4)
				err := r.Put(context.Background(), Row{Key: []byte(k), Value: []byte(k)}, Row{Key: []byte(shared), Value: []byte(k)})
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				if v, ok, err := r.Get([]byte(k)); err != nil || !ok || string(v) != k {
					t.Errorf("Get(%s) after its Put = %q, %v, %v", k, v, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	check := func(r *Region) {
		t.Helper()
		got := collect(t, r.Scan(nil, nil))
		if len(got) != writers*each+4 {
			t.Fatalf("%d rows, want %d", len(got), writers*each+4)
		}
		for w := range writers {
			for i := range each {
				if k := fmt.Sprintf("w%02d-%03d", w, i); got[k] != k {
					t.Fatalf("row %s = %q", k, got[k])
				}
			}
		}
	}
	check(r)
	// The shared keys' values too: the memstore applied the batches in
	// the log's order, which the reopened region replays.
	before := collect(t, r.Scan(nil, nil))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List(regionDir + "/files")
	if len(names) == 0 || len(names) > 4 {
		t.Fatalf("files %v: want flushes, compacted to at most MaxFiles+1", names)
	}
	r = openT(t, fs, regionDir, Options{})
	defer r.Close()
	wantRows(t, "reopened", collect(t, r.Scan(nil, nil)), before)
}

func TestCompactionMergesIntoOneFile(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{MaxFiles: 2})
	want := map[string]string{}
	for i := range 3 {
		for k := range 4 {
			key, val := fmt.Sprintf("k%d", k+i), fmt.Sprintf("v%d", i)
			put(t, r, key, val)
			want[key] = val
		}
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := fs.List(regionDir + "/files")
	if len(names) != 1 {
		t.Fatalf("after 3 flushes with MaxFiles 2: files %v, want one", names)
	}
	wantRows(t, "after compaction", collect(t, r.Scan(nil, nil)), want)
	r.Close()
	r = openT(t, fs, regionDir, Options{MaxFiles: 2})
	defer r.Close()
	wantRows(t, "reopened", collect(t, r.Scan(nil, nil)), want)
}

func TestFlushTruncatesLog(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	defer r.Close()
	for i := range 50 {
		put(t, r, fmt.Sprintf("k%d", i), "v")
		if i%10 == 9 {
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every record is in a row file: no segment before the last flush
	// is left (segments are named by their first record's seq).
	segs, _ := fs.List(regionDir + "/log")
	for _, name := range segs {
		if seq, ok := seqname.Parse(name, ".wal"); ok && seq <= 50 {
			t.Fatalf("log holds %v after flushing records 1-50", segs)
		}
	}
}

func TestOpenFailsOnCorruptRowFile(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	put(t, r, "a", "1")
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	path := regionDir + "/files/" + rowFileName(1)
	data, _ := fs.ReadFile(path)
	data[rowHeaderSize+3] ^= 0xff
	fs.WriteFile(path, data)
	_, err := Open(regionDir, Options{FS: fs, Logger: quiet()})
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != path || ce.Offset != int64(len(data)-4) {
		t.Fatalf("Open with a damaged row file: %v; want a CorruptionError naming %s at %d", err, path, len(data)-4)
	}
	// Open released the lock: a fixed region opens.
	data[rowHeaderSize+3] ^= 0xff
	fs.WriteFile(path, data)
	r = openT(t, fs, regionDir, Options{})
	r.Close()
}

func TestRemoveAll(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	put(t, r, "a", "1")
	r.Flush()
	r.Close()
	if err := RemoveAll(fs, "/root/data/t1"); err != nil {
		t.Fatal(err)
	}
	if names, _ := fs.List("/root/data"); len(names) != 0 {
		t.Fatalf("/root/data holds %v", names)
	}
	if err := RemoveAll(fs, "/root/data/t1"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
	// Durable: a crash right after keeps nothing of it.
	fs.Crash()
	if names, _ := fs.CrashClone(1).List("/root/data"); len(names) != 0 {
		t.Fatalf("after a crash /root/data holds %v", names)
	}
}

func TestFailedFlushFailsRegion(t *testing.T) {
	mem := vfs.NewMem()
	fs := vfs.NewFaulty(mem, vfs.WithPathSuffix(".rows"+tmpSuffix, vfs.FailNth(vfs.OpSync, 1, nil)))
	r := openT(t, fs, regionDir, Options{})
	put(t, r, "a", "1", "b", "1")
	if err := r.Flush(); !errors.Is(err, ErrFailed) || !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Flush with a failing fsync: %v, want ErrFailed wrapping the cause", err)
	}
	// Final: no retry, every later call refused.
	if err := r.Put(context.Background(), Row{Key: []byte("c")}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Put after a failed flush: %v, want ErrFailed", err)
	}
	if _, _, err := r.Get([]byte("a")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Get after a failed flush: %v, want ErrFailed", err)
	}
	if err := r.Flush(); !errors.Is(err, ErrFailed) {
		t.Fatalf("second Flush: %v, want ErrFailed", err)
	}
	r.Close()
	r = openT(t, mem, regionDir, Options{})
	defer r.Close()
	wantRows(t, "reopened", collect(t, r.Scan(nil, nil)), map[string]string{"a": "1", "b": "1"})
}

func TestFailedSnapshotLeavesRegionWorking(t *testing.T) {
	mem := vfs.NewMem()
	fs := vfs.NewFaulty(mem, vfs.WithPathSuffix(manifestName+tmpSuffix, vfs.FailNth(vfs.OpSync, 1, nil)))
	r := openT(t, fs, regionDir, Options{})
	defer r.Close()
	put(t, r, "a", "1")
	if _, err := r.Snapshot("/root/.snapshot/s1/r1"); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Snapshot with a failing manifest fsync: %v", err)
	}
	if _, err := ReadManifest(mem, "/root/.snapshot/s1/r1"); err == nil {
		t.Fatal("a failed Snapshot left a manifest")
	}
	put(t, r, "b", "1")
	if _, err := r.Snapshot("/root/.snapshot/s1/r1"); err != nil {
		t.Fatalf("Snapshot re-run: %v", err)
	}
	wantRows(t, "snapshot", collect(t, SnapshotRows(mem, "/root/.snapshot/s1/r1")), map[string]string{"a": "1", "b": "1"})
}
