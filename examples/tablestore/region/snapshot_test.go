package region

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/vfs"
)

const snapDir = "/root/.snapshot/s1/r1"

func TestSnapshotIsAPointInTime(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{MaxFiles: 2})
	defer r.Close()
	want := map[string]string{}
	for i := range 30 {
		k, v := fmt.Sprintf("k%02d", i%12), fmt.Sprintf("v%d", i)
		put(t, r, k, v)
		want[k] = v
		if i%7 == 6 {
			if err := r.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	m, err := r.Snapshot(snapDir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, r, "k00", "after", "zz", "after")
	if m.Region != "r1" || m.Seq != 30 || m.Rows != int64(len(want)) || len(m.Files) == 0 {
		t.Fatalf("manifest %+v: want region r1, seq 30, %d rows", m, len(want))
	}
	vm, err := VerifyManifest(fs, snapDir)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Seq != m.Seq || len(vm.Files) != len(m.Files) {
		t.Fatalf("VerifyManifest %+v, Snapshot returned %+v", vm, m)
	}
	wantRows(t, "SnapshotRows", collect(t, SnapshotRows(fs, snapDir)), want)
}

func TestSnapshotRerunRewritesWhole(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	put(t, r, "a", "1", "b", "1")
	if _, err := r.Snapshot(snapDir); err != nil {
		t.Fatal(err)
	}
	// A leftover of an older attempt, and a server that opens the region
	// later and snapshots it again.
	fs.WriteFile(filepath.Join(snapDir, rowFileName(99)), []byte("junk"))
	put(t, r, "b", "2")
	r.Close()
	r = openT(t, fs, regionDir, Options{})
	defer r.Close()
	m, err := r.Snapshot(snapDir)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List(snapDir)
	if len(names) != len(m.Files)+1 {
		t.Fatalf("snapshot dir holds %v, manifest lists %v", names, m.Files)
	}
	if _, err := VerifyManifest(fs, snapDir); err != nil {
		t.Fatal(err)
	}
	wantRows(t, "SnapshotRows", collect(t, SnapshotRows(fs, snapDir)), map[string]string{"a": "1", "b": "2"})
}

func TestSnapshotOfEmptyRegion(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	defer r.Close()
	m, err := r.Snapshot(snapDir)
	if err != nil || m.Rows != 0 || len(m.Files) != 0 {
		t.Fatalf("Snapshot of an empty region: %+v, %v", m, err)
	}
	if _, err := VerifyManifest(fs, snapDir); err != nil {
		t.Fatal(err)
	}
}

// snapshotT writes a snapshot with three files and returns its manifest.
func snapshotT(t *testing.T, fs *vfs.MemFS) Manifest {
	t.Helper()
	r := openT(t, fs, regionDir, Options{})
	defer r.Close()
	for i := range 3 {
		put(t, r, fmt.Sprintf("k%d", i), "value", "shared", fmt.Sprint(i))
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.Snapshot(snapDir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVerifyManifestNamesDamage(t *testing.T) {
	type damage struct {
		name   string
		file   func(m Manifest) string // the file damaged, relative to snapDir
		damage func(data []byte) []byte
		offset func(data []byte) int64 // want, from the undamaged data
	}
	lastFile := func(m Manifest) string { return m.Files[len(m.Files)-1].Name }
	manifest := func(Manifest) string { return manifestName }
	at := func(off int) func([]byte) int64 { return func([]byte) int64 { return int64(off) } }
	flip := func(off func([]byte) int) func([]byte) []byte {
		return func(b []byte) []byte { b[off(b)] ^= 0x40; return b }
	}
	fromEnd := func(n int) func([]byte) int { return func(b []byte) int { return len(b) - n } }
	cases := []damage{
		{"row file value byte", lastFile, flip(fromEnd(rowFooterSize + 1)), func(b []byte) int64 { return int64(len(b) - 4) }},
		{"row file magic", lastFile, flip(func([]byte) int { return 2 }), at(0)},
		{"row file version", lastFile, flip(func([]byte) int { return 8 }), at(8)},
		{"row file truncated", lastFile, func(b []byte) []byte { return b[:len(b)-5] }, func(b []byte) int64 { return int64(len(b) - 5) }},
		{"row file grown", lastFile, func(b []byte) []byte { return append(b, 0) }, func(b []byte) int64 { return int64(len(b)) }},
		{"row file missing", lastFile, nil, at(0)},
		{"row file replaced by another intact one", lastFile, func(b []byte) []byte {
			b[len(b)-rowFooterSize-1] ^= 0x40
			binary.LittleEndian.PutUint32(b[len(b)-4:], crc32c.Checksum(b[:len(b)-4]))
			return b
		}, func(b []byte) int64 { return int64(len(b) - 4) }},
		{"manifest byte", manifest, flip(func([]byte) int { return 14 }), func(b []byte) int64 { return int64(len(b) - 4) }},
		{"manifest magic", manifest, flip(func([]byte) int { return 0 }), at(0)},
		{"manifest truncated", manifest, func(b []byte) []byte { return b[:len(b)-9] }, func(b []byte) int64 { return int64(len(b) - 13) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			m := snapshotT(t, fs)
			path := filepath.Join(snapDir, tc.file(m))
			data, err := fs.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.offset(data)
			if tc.damage == nil {
				if err := fs.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				fs.WriteFile(path, tc.damage(data))
			}
			_, err = VerifyManifest(fs, snapDir)
			var ce *CorruptionError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != path || ce.Offset != want {
				t.Fatalf("VerifyManifest: %v; want a CorruptionError naming %s at offset %d", err, path, want)
			}
			for _, err := range SnapshotRows(fs, snapDir) {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("SnapshotRows of a damaged snapshot: %v, want ErrCorrupt", err)
				}
			}
			if err := Clone(fs, snapDir, "/root/data/t2/r1"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Clone of a damaged snapshot: %v, want ErrCorrupt", err)
			}
			if _, err := fs.Stat("/root/data/t2"); err == nil {
				t.Fatal("a refused Clone created its destination")
			}
		})
	}
}

func TestCloneEqualsSnapshotRows(t *testing.T) {
	fs := vfs.NewMem()
	m := snapshotT(t, fs)
	want := collect(t, SnapshotRows(fs, snapDir))
	if len(want) != int(m.Rows) || len(want) != 4 {
		t.Fatalf("snapshot rows %v, manifest counts %d", want, m.Rows)
	}
	const dst = "/root/data/t2/r1"
	if err := Clone(fs, snapDir, dst); err != nil {
		t.Fatal(err)
	}
	// Re-run, as after a crash: idempotent.
	if err := Clone(fs, snapDir, dst); err != nil {
		t.Fatalf("Clone re-run: %v", err)
	}
	c := openT(t, fs, dst, Options{})
	wantRows(t, "clone", collect(t, c.Scan(nil, nil)), want)
	// The clone goes on from the snapshot's seq: its writes survive a
	// reopen on top of the copied files.
	put(t, c, "shared", "clone")
	want["shared"] = "clone"
	c.Close()
	c = openT(t, fs, dst, Options{})
	wantRows(t, "clone reopened", collect(t, c.Scan(nil, nil)), want)
	c.Close()
	if err := Clone(fs, snapDir, dst); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Clone onto a region in use: %v, want ErrNotEmpty", err)
	}
}

func TestOverlappingDirectoriesChangeNothing(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{})
	defer r.Close()
	put(t, r, "a", "1")
	ops := fs.Ops()
	for _, dir := range []string{regionDir, regionDir + "/snap", "/root/data/t1", "/root/data/t1/r1/../r1"} {
		if _, err := r.Snapshot(dir); !errors.Is(err, ErrOverlap) {
			t.Fatalf("Snapshot(%s): %v, want ErrOverlap", dir, err)
		}
	}
	if err := Clone(fs, snapDir, snapDir+"/clone"); !errors.Is(err, ErrOverlap) {
		t.Fatalf("Clone into the snapshot: %v, want ErrOverlap", err)
	}
	if fs.Ops() != ops {
		t.Fatalf("refused calls wrote %d times", fs.Ops()-ops)
	}
	if v, ok, _ := r.Get([]byte("a")); !ok || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
}

func TestVerifyManifestChecksRowCount(t *testing.T) {
	fs := vfs.NewMem()
	m := snapshotT(t, fs)
	m.Rows++
	path := filepath.Join(snapDir, manifestName)
	fs.WriteFile(path, m.encode())
	_, err := VerifyManifest(fs, snapDir)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.File != path || ce.Offset != rowsOffset(m) {
		t.Fatalf("VerifyManifest with a wrong row count: %v; want a CorruptionError naming %s at %d", err, path, rowsOffset(m))
	}
	data, _ := fs.ReadFile(path)
	if got := binary.LittleEndian.Uint64(data[ce.Offset:]); got != uint64(m.Rows) {
		t.Fatalf("offset %d holds %d, not the row count %d", ce.Offset, got, m.Rows)
	}
}

// TestSnapshotDuringPuts takes snapshots while writers put: each
// snapshot holds, for each writer's key, a value no older than the one
// acknowledged before the call and no newer than the last one begun
// before it returned.
func TestSnapshotDuringPuts(t *testing.T) {
	fs := vfs.NewMem()
	r := openT(t, fs, regionDir, Options{FlushBytes: 1 << 10, MaxFiles: 2})
	defer r.Close()
	const writers = 4
	var acked, begun [writers]atomic.Int64
	stop := make(chan struct{})
	progress := make(chan struct{}, 1) // a put was acknowledged
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				begun[w].Store(i)
				row := Row{Key: fmt.Appendf(nil, "w%d", w), Value: fmt.Appendf(nil, "%09d", i)}
				if err := r.Put(context.Background(), row); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				// Read your writes: the put is applied when Put returns.
				if v, ok, err := r.Get(row.Key); err != nil || !ok || string(v) < string(row.Value) {
					t.Errorf("Get(%s) after its Put of %s = %q, %v, %v", row.Key, row.Value, v, ok, err)
					return
				}
				acked[w].Store(i)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	var lo, hi [writers]int64
	for s := range 10 {
		// Every writer has acknowledged a put since the last snapshot.
		for w := 0; w < writers; {
			if acked[w].Load() > lo[w] {
				w++
				continue
			}
			<-progress
		}
		for w := range writers {
			lo[w] = acked[w].Load()
		}
		dir := fmt.Sprintf("/root/.snapshot/s%d/r1", s)
		if _, err := r.Snapshot(dir); err != nil {
			t.Fatal(err)
		}
		for w := range writers {
			hi[w] = begun[w].Load()
		}
		rows := collect(t, SnapshotRows(fs, dir))
		for w := range writers {
			var v int64
			if s, ok := rows[fmt.Sprintf("w%d", w)]; ok {
				v, _ = strconv.ParseInt(s, 10, 64)
			}
			if v < lo[w] || v > hi[w] {
				t.Fatalf("snapshot %d holds write %d of writer %d; acknowledged before it: %d, begun before it returned: %d", s, v, w, lo[w], hi[w])
			}
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("writes per writer: %d %d %d %d", acked[0].Load(), acked[1].Load(), acked[2].Load(), acked[3].Load())
}
