package durable

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/vfs"
)

// fill commits n transactions, each putting one user and bumping a count.
func fill(t testing.TB, s *testStore, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		mustWrite(t, s.Store, func(tx *Tx) error {
			if err := s.users.Put(tx, fmt.Sprintf("u%04d", i%50), user{Name: fmt.Sprint(i)}); err != nil {
				return err
			}
			return s.counts.Put(tx, int64(i%7), int64(i))
		})
	}
}

// stateOf renders both collections of the latest version.
func stateOf(t testing.TB, s *testStore) string {
	t.Helper()
	var b strings.Builder
	v := s.Latest()
	fmt.Fprintf(&b, "seq=%d ", v.Seq())
	for k, u := range s.users.All(v) {
		fmt.Fprintf(&b, "%s=%s,", k, u.Name)
	}
	for k, c := range s.counts.All(v) {
		fmt.Fprintf(&b, "%d=%d,", k, c)
	}
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func listDir(t testing.TB, fs vfs.FS, dir string) []string {
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestSnapshotRecoverAndTruncate(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{Dir: "/d", FS: fs, SegmentSize: 1 << 10, SnapshotBytes: -1}
	s := openTestStore(t, opts)
	fill(t, s, 0, 100)
	r1, err := s.Snapshot(context.Background())
	if err != nil || r1.Seq != 100 || r1.Skipped {
		t.Fatalf("Snapshot: %+v %v", r1, err)
	}
	if r, _ := s.Snapshot(context.Background()); !r.Skipped {
		t.Fatal("a second snapshot of the same version was written")
	}
	fill(t, s, 100, 100)
	if _, err := s.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	fill(t, s, 200, 100)
	if _, err := s.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	fill(t, s, 300, 10)
	want := stateOf(t, s)
	s.Close()

	// Two snapshots kept: 200 and 300; the log reaches back to 201.
	var snaps []string
	for _, n := range listDir(t, fs, "/d") {
		if strings.HasSuffix(n, ".snap") {
			snaps = append(snaps, n)
		}
	}
	if fmt.Sprint(snaps) != fmt.Sprintf("[%s %s]", snapName(200), snapName(300)) {
		t.Fatalf("snapshots %v", snaps)
	}
	s = openTestStore(t, opts)
	defer s.Close()
	first, _, _ := s.p.LogBounds()
	if first > 201 || first < 101 {
		t.Fatalf("log starts at %d; want it to cover snapshot 200 but not much more", first)
	}
	if got := stateOf(t, s); got != want {
		t.Fatalf("recovered\n%s\nwant\n%s", got, want)
	}
}

// TestSnapshotCorruption damages the newest snapshot in various ways:
// recovery falls back to the previous snapshot when the log covers it,
// and otherwise fails naming the file.
func TestSnapshotCorruption(t *testing.T) {
	damage := []struct {
		name string
		fn   func(b []byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"empty", func(b []byte) []byte { return nil }},
		{"bit flip in body", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"bit flip in header", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"bad checksum", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"trailing garbage", func(b []byte) []byte { return append(b, 1, 2, 3) }},
		{"zeroed tail", func(b []byte) []byte { clear(b[len(b)-100:]); return b }},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			fs := vfs.NewMem()
			opts := Options{Dir: "/d", FS: fs, SegmentSize: 1 << 10, SnapshotBytes: -1}
			s := openTestStore(t, opts)
			fill(t, s, 0, 40)
			s.Snapshot(context.Background())
			fill(t, s, 40, 40)
			s.Snapshot(context.Background())
			fill(t, s, 80, 5)
			want := stateOf(t, s)
			s.Close()
			path := filepath.Join("/d", snapName(80))
			b, err := fs.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fs.WriteFile(path, d.fn(b))

			s = openTestStore(t, opts)
			if got := stateOf(t, s); got != want {
				t.Fatalf("recovered from the previous snapshot:\n%s\nwant\n%s", got, want)
			}
			s.Close()

			// Without the log since the previous snapshot, recovery must
			// fail and name the damaged file.
			fs2 := fs.CrashClone(1)
			s2 := newTestStore(Options{Dir: "/d", FS: fs2})
			p := newWALPersistence(s2.opts)
			p.Open()
			p.w.TruncateFront(81)
			p.Close()
			// Drop the previous snapshot too, so nothing older helps.
			fs2.Remove(filepath.Join("/d", snapName(40)))
			err = s2.Open(context.Background())
			if err == nil || !strings.Contains(err.Error(), snapName(80)) {
				t.Fatalf("Open with a damaged snapshot and no fallback: %v", err)
			}
		})
	}
}

func TestSnapshotPreviousNotCoveredFails(t *testing.T) {
	mp := NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp, SnapshotBytes: -1})
	fill(t, s, 0, 10)
	s.Snapshot(context.Background())
	fill(t, s, 10, 10)
	s.Snapshot(context.Background())
	fill(t, s, 20, 10)
	s.Snapshot(context.Background()) // drops records up to 20
	s.Close()
	mp.setSnapshotBytes(30, []byte("garbage"))
	// The previous snapshot (20) is covered: fine.
	s = openTestStore(t, Options{Persistence: mp})
	s.Close()
	// Damage both: fail, naming the newest.
	mp.setSnapshotBytes(20, []byte("garbage"))
	s2 := newTestStore(Options{Persistence: mp})
	err := s2.Open(context.Background())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "mem-snapshot-30") {
		t.Fatalf("Open: %v", err)
	}
}

func TestUnknownCollection(t *testing.T) {
	mp := NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp, SnapshotBytes: -1})
	fill(t, s, 0, 5)
	s.Snapshot(context.Background()) // users and counts in the snapshot
	fill(t, s, 5, 5)                 // and in the log
	want := stateOf(t, s)
	s.Close()

	only := func(policy UnknownPolicy) (*Store, *Collection[string, user], error) {
		s := New(Options{Persistence: mp, UnknownCollections: policy, Logger: quiet()})
		u := NewCollection[string, user](s, "users", nil)
		return s, u, s.Open(context.Background())
	}
	_, _, err := only(FailUnknown)
	if !errors.Is(err, ErrUnknownCollection) || !strings.Contains(err.Error(), `"counts"`) {
		t.Fatalf("Open with an unknown collection: %v", err)
	}
	s2, users, err := only(DropUnknown)
	if err != nil {
		t.Fatalf("DropUnknown: %v", err)
	}
	if n := users.Len(s2.Latest()); n != 50 && n != 10 {
		t.Fatalf("DropUnknown: %d users", n)
	}
	s2.Close()

	s3, _, err := only(KeepUnknown)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s3.Collections()) != "[users counts]" {
		t.Fatalf("collections %v", s3.Collections())
	}
	// Kept data goes into snapshots unchanged: a program that knows the
	// collection reads it back.
	if _, err := s3.Snapshot(context.Background()); err == nil {
		// Nothing new since the last snapshot: write one more.
	}
	var buf bytes.Buffer
	if _, err := s3.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	s3.Close()
	fs := vfs.NewMem()
	if _, err := Restore(context.Background(), &buf, "/r", RestoreOptions{FS: fs}); err != nil {
		t.Fatal(err)
	}
	s4 := openTestStore(t, Options{Dir: "/r", FS: fs})
	defer s4.Close()
	if got := stateOf(t, s4); got[strings.Index(got, " "):] != want[strings.Index(want, " "):] {
		t.Fatalf("restored\n%s\nwant\n%s", got, want)
	}
}

func TestNewerFormatVersion(t *testing.T) {
	// A log record of a newer version.
	mp := NewMemPersistence()
	mp.Open()
	mp.Append([][]byte{{recordKindTx, recordVersion + 1, 0}})
	mp.Close()
	err := newTestStore(Options{Persistence: mp}).Open(context.Background())
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer record: %v", err)
	}
	// A snapshot of a newer version.
	mp = NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp})
	fill(t, s, 0, 3)
	s.Snapshot(context.Background())
	s.Close()
	rc, _ := mp.ReadSnapshot(3)
	var b bytes.Buffer
	b.ReadFrom(rc)
	data := b.Bytes()
	binary.LittleEndian.PutUint32(data[8:12], snapVersion+1)
	binary.LittleEndian.PutUint32(data[36:40], crc32c.Checksum(data[:36]))
	mp.setSnapshotBytes(3, data)
	err = newTestStore(Options{Persistence: mp}).Open(context.Background())
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "mem-snapshot-3") {
		t.Fatalf("newer snapshot: %v", err)
	}
}

func TestCorruptRecord(t *testing.T) {
	for _, rec := range [][]byte{
		{},
		{'X', 1, 0},
		{recordKindTx, 1, 1},                   // group missing
		{recordKindTx, 1, 1, 5, 'u', 's', 'e'}, // name cut
		{recordKindTx, 1, 1, 6, 'c', 'o', 'u', 'n', 't', 's', 1, 9, 1, 0}, // bad op
		{recordKindTx, 1, 0, 0}, // trailing byte
	} {
		mp := NewMemPersistence()
		mp.Open()
		mp.Append([][]byte{rec})
		mp.Close()
		err := newTestStore(Options{Persistence: mp}).Open(context.Background())
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("record %x: %v", rec, err)
		}
	}
}

func TestBackupRestore(t *testing.T) {
	fs := vfs.NewMem()
	s := openTestStore(t, Options{Dir: "/src", FS: fs})
	fill(t, s, 0, 200)
	want := stateOf(t, s)
	// Writes go on during the backup; the backup is of one version.
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		fill(t, s, 200, 50)
	}()
	res, err := s.Backup(context.Background(), &buf)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	backup := buf.Bytes()

	// Refuses a non-empty directory.
	fs.MkdirAll("/busy")
	fs.WriteFile("/busy/x", []byte("x"))
	if _, err := Restore(context.Background(), bytes.NewReader(backup), "/busy", RestoreOptions{FS: fs}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a non-empty dir: %v", err)
	}
	// A damaged stream is refused and leaves the directory empty.
	for i, bad := range [][]byte{backup[:len(backup)-1], flip(backup, len(backup)/2), backup[:10], append(bytes.Clone(backup), 0)} {
		dir := fmt.Sprintf("/bad%d", i)
		if _, err := Restore(context.Background(), bytes.NewReader(bad), dir, RestoreOptions{FS: fs}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("damaged backup %d: %v", i, err)
		}
		if n := listDir(t, fs, dir); len(n) != 0 {
			t.Fatalf("failed restore left %v", n)
		}
	}
	rr, err := Restore(context.Background(), bytes.NewReader(backup), "/dst", RestoreOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if rr.SourceSeq != res.Seq || fmt.Sprint(rr.Collections) != "[users counts]" || rr.Bytes != int64(len(backup)) {
		t.Fatalf("restore result %+v (backup %+v)", rr, res)
	}
	s = openTestStore(t, Options{Dir: "/dst", FS: fs.CrashClone(1)})
	defer s.Close()
	got := stateOf(t, s)
	// The backup is at least the state before the concurrent writes.
	if res.Seq == 200 && got[strings.Index(got, " "):] != want[strings.Index(want, " "):] {
		t.Fatalf("restored\n%s\nwant\n%s", got, want)
	}
	if s.users.Len(s.Latest()) != 50 || s.Seq() != 0 {
		t.Fatalf("restored store: %d users, seq %d", s.users.Len(s.Latest()), s.Seq())
	}
	// The restored store takes writes and survives a restart.
	fill(t, s, 1000, 3)
	s.Snapshot(context.Background())
	fill(t, s, 1003, 3)
	want2 := stateOf(t, s)
	s.Close()
	s = openTestStore(t, Options{Dir: "/dst", FS: s.opts.FS})
	if got := stateOf(t, s); got != want2 {
		t.Fatalf("after restart\n%s\nwant\n%s", got, want2)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

// TestDiskBounded runs many updates of a fixed key set with automatic
// snapshots and checks that the data directory stays within a bound.
func TestDiskBounded(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{Dir: "/d", FS: fs, SegmentSize: 16 << 10, SnapshotBytes: 64 << 10}
	s := openTestStore(t, opts)
	defer s.Close()
	val := strings.Repeat("v", 100)
	var maxBytes int64
	for i := range 40000 {
		mustWrite(t, s.Store, func(tx *Tx) error {
			return s.users.Put(tx, fmt.Sprintf("k%03d", i%200), user{Name: val})
		})
		if i%500 == 0 {
			maxBytes = max(maxBytes, dirBytes(t, fs, "/d"))
		}
	}
	st := s.Stats()
	if st.Snapshots < 10 {
		t.Fatalf("only %d automatic snapshots", st.Snapshots)
	}
	// Live data is ~200 × ~140 B = 28 KB per snapshot; the updates add up
	// to 40000 × ~165 B = 6.6 MB of log. Allowed: two snapshots, the log
	// since the previous one (two intervals of 64 KB of records, ~77 KB
	// with framing), what is written while a snapshot is being started
	// and written (on MemFS a transaction takes ~10 µs, so hundreds of
	// them go by during a snapshot: up to ~8 intervals seen), and two
	// partial segments. That is a sixth of the total.
	bound := int64(2*28<<10 + 12*77<<10 + 2*16<<10)
	if maxBytes > bound {
		t.Fatalf("disk use reached %d bytes, bound %d", maxBytes, bound)
	}
	if st.SnapshotErrs > 0 {
		t.Fatalf("%d snapshots failed", st.SnapshotErrs)
	}
	t.Logf("max disk use %d bytes over 40000 updates (%d snapshots)", maxBytes, st.Snapshots)
}

func dirBytes(t testing.TB, fs *vfs.MemFS, dir string) int64 {
	var n int64
	for _, name := range listDir(t, fs, dir) {
		p := filepath.Join(dir, name)
		if name == walSubdir {
			n += dirBytes(t, fs, p)
			continue
		}
		size, err := fs.Stat(p)
		if err != nil && !errors.Is(err, iofs.ErrNotExist) { // deleted meanwhile
			t.Fatal(err)
		}
		n += size
	}
	return n
}

// TestLargeSnapshotRoundTrip writes a snapshot several times the size of
// the reader's buffer, with keys and values of many sizes, and reads it
// back exactly.
func TestLargeSnapshotRoundTrip(t *testing.T) {
	mp := NewMemPersistence()
	open := func() (*Store, *Collection[string, []byte]) {
		s := New(Options{Persistence: mp, Logger: quiet(), SnapshotBytes: -1})
		kv := NewCollection[string, []byte](s, "kv", nil)
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s, kv
	}
	s, kv := open()
	want := map[string][]byte{}
	for i := 0; i < 20000; i += 500 {
		mustWrite(t, s, func(tx *Tx) error {
			for j := i; j < i+500; j++ {
				k := fmt.Sprintf("%0*d", 1+j%200, j)
				v := bytes.Repeat([]byte{byte(j)}, j*7%700)
				want[k] = v
				if err := kv.Put(tx, k, v); err != nil {
					return err
				}
			}
			return nil
		})
	}
	res, err := s.Snapshot(context.Background())
	if err != nil || res.Size < 3<<20 {
		t.Fatalf("snapshot %+v %v", res, err)
	}
	s.Close()
	s, kv = open()
	defer s.Close()
	v := s.Latest()
	if kv.Len(v) != len(want) {
		t.Fatalf("%d keys back, want %d", kv.Len(v), len(want))
	}
	for k, val := range kv.All(v) {
		if !bytes.Equal(val, want[k]) {
			t.Fatalf("key %q: %d bytes, want %d", k, len(val), len(want[k]))
		}
	}
}

// TestPacedBackupIsIdentical: pacing (SnapshotShare < 1) changes when the
// snapshot's bytes are written, never what they are; and a paced snapshot
// stops when its context ends.
func TestPacedBackupIsIdentical(t *testing.T) {
	backup := func(share float64) []byte {
		ts := openTestStore(t, Options{Persistence: NewMemPersistence(), SnapshotShare: share})
		defer ts.Close()
		for i := range 40 {
			mustWrite(t, ts.Store, func(tx *Tx) error {
				for j := range 500 {
					if err := ts.counts.Put(tx, int64(i*500+j), int64(j)); err != nil {
						return err
					}
				}
				return ts.users.Put(tx, fmt.Sprint("u", i), user{Name: strings.Repeat("n", 8000)})
			})
		}
		var buf bytes.Buffer
		if _, err := ts.Backup(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	plain, paced := backup(1), backup(0.05)
	if len(plain) < 300<<10 {
		t.Fatalf("backup of %d bytes is too small to cross chunks", len(plain))
	}
	if !bytes.Equal(plain, paced) {
		t.Fatal("a paced backup differs from an unpaced one")
	}
	ts := openTestStore(t, Options{Persistence: NewMemPersistence(), SnapshotShare: 0.01})
	defer ts.Close()
	mustWrite(t, ts.Store, func(tx *Tx) error {
		for j := range 20000 {
			if err := ts.counts.Put(tx, int64(j), int64(j)); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.Backup(ctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("backup with a cancelled context: %v", err)
	}
}
