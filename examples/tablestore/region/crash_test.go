package region

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/procyon-dev/procyon/internal/testseed"
	"github.com/procyon-dev/procyon/vfs"
)

// crashModel is what the workload knows when the crash hits.
type crashModel struct {
	acked map[string]string // latest acknowledged value of each key
	// open is the batch whose Put had not returned nil when the crash
	// hit (nil if none): it may be there, whole, or not at all.
	open map[string]string
	// snaps holds, for each snapshot directory whose last Snapshot
	// returned nil, the rows it must hold.
	snaps map[string]map[string]string
}

// crashWorkload runs a seeded mix of puts, flushes (compactions with
// MaxFiles 2), snapshots (new and re-run), reads and reopens until it
// finishes or fs crashes.
func crashWorkload(t *testing.T, fs *vfs.MemFS, seed uint64, steps int) *crashModel {
	m := &crashModel{acked: map[string]string{}, snaps: map[string]map[string]string{}}
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	opts := Options{FS: fs, FlushBytes: 200, MaxFiles: 2, LogSegmentSize: 4 << 10, Logger: quiet()}
	fail := func(what string, err error) {
		if !fs.Crashed() {
			t.Fatalf("seed %d: %s: %v", seed, what, err)
		}
	}
	r, err := Open(regionDir, opts)
	if err != nil {
		fail("Open", err)
		return m
	}
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	for step := range steps {
		switch op := rng.IntN(100); {
		case op < 60:
			batch := map[string]string{}
			var rows []Row
			for range 1 + rng.IntN(4) {
				k := fmt.Sprintf("k%02d", rng.IntN(20))
				if _, dup := batch[k]; dup {
					continue
				}
				batch[k] = fmt.Sprintf("s%d-%s", step, k)
				rows = append(rows, Row{Key: []byte(k), Value: []byte(batch[k])})
			}
			m.open = batch
			if err := r.Put(context.Background(), rows...); err != nil {
				fail("Put", err)
				return m
			}
			maps.Copy(m.acked, batch)
			m.open = nil
		case op < 70:
			if err := r.Flush(); err != nil {
				fail("Flush", err)
				return m
			}
		case op < 82:
			dir := fmt.Sprintf("/root/.snapshot/s%d/r1", rng.IntN(3))
			delete(m.snaps, dir) // a re-run that crashes leaves no snapshot
			if _, err := r.Snapshot(dir); err != nil {
				fail("Snapshot", err)
				return m
			}
			m.snaps[dir] = maps.Clone(m.acked)
		case op < 95:
			k := fmt.Sprintf("k%02d", rng.IntN(20))
			v, ok, err := r.Get([]byte(k))
			if err != nil {
				fail("Get", err)
				return m
			}
			if want, has := m.acked[k]; ok != has || string(v) != want {
				t.Fatalf("seed %d: Get(%s) = %q, %v; want %q, %v", seed, k, v, ok, want, has)
			}
		default:
			if err := r.Close(); err != nil {
				fail("Close", err)
				return m
			}
			r = nil
			if r, err = Open(regionDir, opts); err != nil {
				fail("reopen", err)
				return m
			}
		}
	}
	return m
}

// checkRecovered opens the region on a crash clone and checks the model.
func checkRecovered(t *testing.T, fs *vfs.MemFS, m *crashModel, what string) {
	t.Helper()
	r, err := Open(regionDir, Options{FS: fs, FlushBytes: 200, MaxFiles: 2, LogSegmentSize: 4 << 10, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: Open after the crash: %v", what, err)
	}
	defer r.Close()
	checkNoLeftovers(t, fs, what)
	got := collect(t, r.Scan(nil, nil))
	want := maps.Clone(m.acked)
	if len(m.open) > 0 {
		// The open batch is there whole or not at all.
		var k0 string
		for k := range m.open {
			k0 = k
			break
		}
		if got[k0] == m.open[k0] {
			maps.Copy(want, m.open)
		}
	}
	wantRows(t, what+": rows after the crash", got, want)
	for dir, rows := range m.snaps {
		if _, err := VerifyManifest(fs, dir); err != nil {
			t.Fatalf("%s: snapshot %s: %v", what, dir, err)
		}
		wantRows(t, what+": snapshot "+dir, collect(t, SnapshotRows(fs, dir)), rows)
	}
	// The recovered region takes writes, flushes and snapshots.
	if err := r.Put(context.Background(), Row{Key: []byte("after"), Value: []byte("crash")}); err != nil {
		t.Fatalf("%s: Put after recovery: %v", what, err)
	}
	if _, err := r.Snapshot("/root/.snapshot/after/r1"); err != nil {
		t.Fatalf("%s: Snapshot after recovery: %v", what, err)
	}
}

// checkNoLeftovers checks that Open removed what a crash left in files/:
// temporary files and the inputs of a compaction whose output survived.
func checkNoLeftovers(t *testing.T, fs *vfs.MemFS, what string) {
	t.Helper()
	names, err := fs.List(regionDir + "/files")
	if err != nil {
		t.Fatal(err)
	}
	var files []*rowFile
	for _, name := range names {
		f, err := loadRowFile(fs, regionDir+"/files", name)
		if err != nil {
			t.Fatalf("%s: after Open, files/ holds %s: %v", what, name, err)
		}
		files = append(files, f)
	}
	for _, f := range files {
		if covered(f, files) {
			t.Fatalf("%s: after Open, files/ holds %s, which another file covers", what, f.name)
		}
	}
}

func TestCrashAtEveryWrite(t *testing.T) {
	seed := testseed.Seed(t)
	const steps = 60
	// Count the workload's writes, then crash it at each in turn.
	ref := vfs.NewMem()
	crashWorkload(t, ref, seed, steps)
	total := ref.Ops()
	rng := rand.New(rand.NewPCG(seed, 1))
	for k := 1; ; k++ {
		fs := vfs.NewMem()
		fs.SetCrashAfter(k)
		m := crashWorkload(t, fs, seed, steps)
		if !fs.Crashed() {
			if k <= total {
				t.Fatalf("seed %d: the run with crash point %d of %d writes finished", seed, k, total)
			}
			t.Logf("seed %d: crashed at each of %d writes", seed, k-1)
			return
		}
		for range 2 {
			cs := rng.Int64()
			checkRecovered(t, fs.CrashClone(cs), m, fmt.Sprintf("seed %d, crash at write %d, clone %d", seed, k, cs))
		}
	}
}

func TestCrashedCloneIsFinishedByRerun(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	base := vfs.NewMem()
	snapshotT(t, base)
	want := collect(t, SnapshotRows(base, snapDir))
	const dst = "/root/data/t2/r1"
	for k := 1; ; k++ {
		fs := base.CrashClone(0)
		fs.SetCrashAfter(k)
		err := Clone(fs, snapDir, dst)
		if !fs.Crashed() {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		c := fs.CrashClone(rng.Int64())
		if err := Clone(c, snapDir, dst); err != nil {
			t.Fatalf("seed %d: Clone re-run after a crash at write %d: %v", seed, k, err)
		}
		r := openT(t, c, dst, Options{})
		wantRows(t, fmt.Sprintf("seed %d, crash at write %d", seed, k), collect(t, r.Scan(nil, nil)), want)
		r.Close()
	}
}

func TestUnackedPutNeverPartial(t *testing.T) {
	// A batch large enough to span log writes, crashed at each write of
	// its Put: after recovery all of it or none of it.
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	for k := 1; ; k++ {
		fs := vfs.NewMem()
		r := openT(t, fs, regionDir, Options{})
		put(t, r, "k0", "old", "k9", "old")
		var rows []Row
		for i := range 10 {
			rows = append(rows, Row{Key: fmt.Appendf(nil, "k%d", i), Value: make([]byte, 300)})
		}
		fs.SetCrashAfter(k)
		err := r.Put(context.Background(), rows...)
		if !fs.Crashed() {
			r.Close()
			return
		}
		if err == nil {
			t.Fatalf("Put returned nil though the FS crashed at write %d", k)
		}
		c := openT(t, fs.CrashClone(rng.Int64()), regionDir, Options{})
		got := collect(t, c.Scan(nil, nil))
		c.Close()
		if len(got) != 2 && len(got) != 10 {
			t.Fatalf("seed %d, crash at write %d: %d rows %v: a batch appeared in part", seed, k, len(got), got)
		}
		if len(got) == 2 && (got["k0"] != "old" || got["k9"] != "old") {
			t.Fatalf("seed %d, crash at write %d: %v", seed, k, got)
		}
	}
}
