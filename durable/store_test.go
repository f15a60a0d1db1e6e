package durable

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

type user struct {
	Name string
	Tags []string
}

// testStore is a store with two collections: users (string -> user) and
// counts (int64 -> int64).
type testStore struct {
	*Store
	users  *Collection[string, user]
	counts *Collection[int64, int64]
}

func newTestStore(opts Options) *testStore {
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	s := New(opts)
	return &testStore{Store: s,
		users:  NewCollection[string, user](s, "users", nil),
		counts: NewCollection[int64, int64](s, "counts", nil)}
}

func openTestStore(t testing.TB, opts Options) *testStore {
	t.Helper()
	ts := newTestStore(opts)
	if err := ts.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ts
}

// has reports whether k is in c as r sees it.
func has[K cmp.Ordered, V any](c *Collection[K, V], r Reader, k K) bool {
	_, ok, _ := c.Get(r, k)
	return ok
}

// keysOf returns the keys of seq, in its order.
func keysOf[K, V any](seq iter.Seq2[K, V]) []K {
	var keys []K
	for k := range seq {
		keys = append(keys, k)
	}
	return keys
}

func mustWrite(t testing.TB, s *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := s.Write(context.Background(), fn); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestPutGetDeleteScan(t *testing.T) {
	for _, kind := range []string{"mem", "wal"} {
		t.Run(kind, func(t *testing.T) {
			opts := Options{Persistence: NewMemPersistence()}
			if kind == "wal" {
				opts = Options{Dir: "/data", FS: vfs.NewMem()}
			}
			s := openTestStore(t, opts)
			mustWrite(t, s.Store, func(tx *Tx) error {
				for i := range 10 {
					if err := s.counts.Put(tx, int64(i-5), int64(i*i)); err != nil {
						return err
					}
				}
				if err := s.users.Put(tx, "ann", user{Name: "Ann", Tags: []string{"a"}}); err != nil {
					return err
				}
				// The transaction sees its own writes.
				if v, ok, err := s.counts.Get(tx, -5); err != nil || !ok || v != 0 {
					t.Errorf("Get(tx, -5) = %v %v %v", v, ok, err)
				}
				if n := s.counts.Len(tx); n != 10 {
					t.Errorf("Len(tx) = %d", n)
				}
				// Readers do not, yet.
				if s.counts.Len(s.Latest()) != 0 {
					t.Errorf("reader sees uncommitted data")
				}
				return nil
			})
			mustWrite(t, s.Store, func(tx *Tx) error { return s.counts.Delete(tx, 0) })
			if s.counts.Len(s.Latest()) != 9 {
				t.Fatalf("Len = %d", s.counts.Len(s.Latest()))
			}
			v := s.Latest()
			if keys := keysOf(s.counts.All(v)); fmt.Sprint(keys) != "[-5 -4 -3 -2 -1 1 2 3 4]" {
				t.Fatalf("All keys %v", keys)
			}
			var keys []int64
			for k := range s.counts.From(v, -2) {
				if k >= 3 {
					break
				}
				keys = append(keys, k)
			}
			if fmt.Sprint(keys) != "[-2 -1 1 2]" {
				t.Fatalf("From(-2) up to 3: keys %v", keys)
			}
			if keys := keysOf(s.counts.From(v, 3)); fmt.Sprint(keys) != "[3 4]" {
				t.Fatalf("From(3) keys %v", keys)
			}
			seq := s.Seq()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopen: recovery replays the log.
			if kind == "wal" {
				opts.FS = opts.FS.(*vfs.MemFS).CrashClone(1)
			}
			s = openTestStore(t, opts)
			defer s.Close()
			if s.Seq() != seq || s.counts.Len(s.Latest()) != 9 {
				t.Fatalf("after reopen: seq %d (want %d), %d counts", s.Seq(), seq, s.counts.Len(s.Latest()))
			}
			u, ok, err := s.users.Get(s.Latest(), "ann")
			if err != nil || !ok || u.Name != "Ann" || len(u.Tags) != 1 {
				t.Fatalf("Get(ann) = %+v %v %v", u, ok, err)
			}
		})
	}
}

func TestValuesAreImmutable(t *testing.T) {
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	u := user{Name: "Bob", Tags: []string{"x"}}
	mustWrite(t, s.Store, func(tx *Tx) error { return s.users.Put(tx, "bob", u) })
	u.Tags[0] = "changed"
	got, _, _ := s.users.Get(s.Latest(), "bob")
	if got.Tags[0] != "x" {
		t.Fatalf("a change to the value put was seen: %v", got.Tags)
	}
	got.Tags[0] = "mutated"
	again, _, _ := s.users.Get(s.Latest(), "bob")
	if again.Tags[0] != "x" {
		t.Fatalf("a change to a value read was seen: %v", again.Tags)
	}
}

func TestBytesValuesAreCopied(t *testing.T) {
	s := New(Options{Persistence: NewMemPersistence(), Logger: quiet()})
	blobs := NewCollection[string, []byte](s, "blobs", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := []byte("hello")
	mustWrite(t, s, func(tx *Tx) error { return blobs.Put(tx, "k", b) })
	b[0] = 'J'
	got, _, _ := blobs.Get(s.Latest(), "k")
	if string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	got[0] = 'Y'
	again, _, _ := blobs.Get(s.Latest(), "k")
	if string(again) != "hello" {
		t.Fatalf("got %q after changing a read value", again)
	}
}

func TestErrorAndPanicRollBack(t *testing.T) {
	mp := NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp})
	defer s.Close()
	mustWrite(t, s.Store, func(tx *Tx) error { return s.counts.Put(tx, 1, 1) })
	boom := errors.New("boom")
	err := s.Write(context.Background(), func(tx *Tx) error {
		s.counts.Put(tx, 1, 100)
		s.counts.Put(tx, 2, 200)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write returned %v, want boom", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v, want the panic to go on", r)
			}
		}()
		s.Write(context.Background(), func(tx *Tx) error {
			s.counts.Put(tx, 1, 300)
			panic("kaboom")
		})
	}()
	if v, _, _ := s.counts.Get(s.Latest(), 1); v != 1 || has(s.counts, s.Latest(), 2) {
		t.Fatalf("failed transactions left state: counts[1]=%d has(2)=%v", v, has(s.counts, s.Latest(), 2))
	}
	if mp.records() != 1 {
		t.Fatalf("%d records written, want 1", mp.records())
	}
	// The store still works and builds on the committed state.
	mustWrite(t, s.Store, func(tx *Tx) error {
		v, _, _ := s.counts.Get(tx, 1)
		return s.counts.Put(tx, 3, v+1)
	})
	if v, _, _ := s.counts.Get(s.Latest(), 3); v != 2 {
		t.Fatalf("counts[3]=%d", v)
	}
}

func TestNestedWriteJoins(t *testing.T) {
	mp := NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp})
	defer s.Close()
	ctx := context.Background()
	err := s.Write(ctx, func(tx *Tx) error {
		s.counts.Put(tx, 1, 1)
		// Joins: sees the outer writes, and commits with them.
		if err := s.Write(tx.Context(), func(inner *Tx) error {
			if inner != tx {
				t.Errorf("nested Write got another Tx")
			}
			v, ok, _ := s.counts.Get(inner, 1)
			if !ok || v != 1 {
				t.Errorf("nested sees %v %v", v, ok)
			}
			return s.counts.Put(inner, 2, 2)
		}); err != nil {
			return err
		}
		// A failing nested write is undone, and the outer one goes on.
		err := s.Write(tx.Context(), func(inner *Tx) error {
			s.counts.Put(inner, 2, 999)
			s.counts.Put(inner, 3, 3)
			s.users.Put(inner, "x", user{})
			return errors.New("inner fails")
		})
		if err == nil {
			t.Errorf("nested error lost")
		}
		if v, _, _ := s.counts.Get(tx, 2); v != 2 {
			t.Errorf("failed nested write left counts[2]=%d", v)
		}
		if has(s.counts, tx, 3) {
			t.Errorf("failed nested write left counts[3]")
		}
		if s.users.Len(tx) != 0 {
			t.Errorf("failed nested write left users")
		}
		return s.counts.Put(tx, 4, 4)
	})
	if err != nil {
		t.Fatal(err)
	}
	if mp.records() != 1 {
		t.Fatalf("%d records, want 1 (nested writes join)", mp.records())
	}
	if got := keysOf(s.counts.All(s.Latest())); fmt.Sprint(got) != "[1 2 4]" {
		t.Fatalf("keys %v", got)
	}
	if s.users.Len(s.Latest()) != 0 {
		t.Fatal("users written")
	}
}

func TestTxDeadAfterWrite(t *testing.T) {
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	var saved *Tx
	mustWrite(t, s.Store, func(tx *Tx) error { saved = tx; return nil })
	if err := s.counts.Put(saved, 1, 1); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Put on a finished Tx: %v", err)
	}
	if err := readPanic(func() { s.counts.Get(saved, 1) }); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Get on a finished Tx panicked with %v, want ErrTxDone", err)
	}
	if err := s.Write(saved.Context(), func(*Tx) error { return nil }); !errors.Is(err, ErrTxDone) {
		t.Fatalf("Write with a finished Tx's context: %v", err)
	}
}

// records returns the decoded ops of every record in mp, as strings.
func records(t *testing.T, mp *MemPersistence) []string {
	var out []string
	first, _, _ := mp.LogBounds()
	mp.Replay(first, func(seq uint64, rec []byte) error {
		out = append(out, dumpRecord(t, rec))
		return nil
	})
	return out
}

// dumpRecord renders a record as "coll:put(key)=len,..." for tests.
func dumpRecord(t *testing.T, rec []byte) string {
	d := &recordDecoder{b: rec, off: 2}
	var b strings.Builder
	groups, _ := d.uvarint("")
	for range groups {
		name, _ := d.bytes("", 1<<20)
		n, _ := d.uvarint("")
		fmt.Fprintf(&b, "%s:", name)
		for range n {
			kind := rec[d.off]
			d.off++
			key, _ := d.bytes("", 1<<20)
			if kind == opPut {
				val, _ := d.bytes("", 1<<30)
				fmt.Fprintf(&b, "put(%x)=%d;", key, len(val))
			} else {
				fmt.Fprintf(&b, "del(%x);", key)
			}
		}
	}
	if d.off != len(rec) {
		t.Fatalf("record has %d bytes left", len(rec)-d.off)
	}
	return b.String()
}

func TestOpsCoalesce(t *testing.T) {
	mp := NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp})
	defer s.Close()
	mustWrite(t, s.Store, func(tx *Tx) error {
		s.users.Put(tx, "a", user{Name: "1"})
		s.users.Put(tx, "a", user{Name: "22"})
		s.users.Put(tx, "b", user{Name: "x"})
		s.users.Delete(tx, "b") // put then delete: one delete
		s.counts.Delete(tx, 7)
		s.counts.Put(tx, 7, 1) // delete then put: one put
		return nil
	})
	recs := records(t, mp)
	want := `users:put(61)=25;del(62);counts:put(0e)=1;`
	if len(recs) != 1 || recs[0] != want {
		t.Fatalf("records %q, want [%q]", recs, want)
	}
	// A transaction with no writes writes nothing.
	mustWrite(t, s.Store, func(tx *Tx) error { _, _, err := s.users.Get(tx, "a"); return err })
	if len(records(t, mp)) != 1 {
		t.Fatal("read-only transaction wrote a record")
	}
}

func TestPersistenceFailure(t *testing.T) {
	t.Run("mem", func(t *testing.T) {
		mp := NewMemPersistence()
		s := openTestStore(t, Options{Persistence: mp})
		defer s.Close()
		mustWrite(t, s.Store, func(tx *Tx) error { return s.counts.Put(tx, 1, 1) })
		mp.Fail(errors.New("disk on fire"))
		err := s.Write(context.Background(), func(tx *Tx) error { return s.counts.Put(tx, 2, 2) })
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("Write after failure: %v", err)
		}
		mp.Fail(nil)
		err = s.Write(context.Background(), func(tx *Tx) error { return s.counts.Put(tx, 3, 3) })
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("store took a write after failing: %v", err)
		}
		if s.counts.Len(s.Latest()) != 1 {
			t.Fatalf("reads: %d counts", s.counts.Len(s.Latest()))
		}
	})
	t.Run("wal", func(t *testing.T) {
		// The 2nd sync of a segment fails (its header is synced under the
		// temporary name, *.wal.tmp): the first write commits, the second
		// fails with the WAL's error, and later ones are refused.
		mem := vfs.NewMem()
		fs := vfs.NewFaulty(mem, vfs.WithPathSuffix(".wal", vfs.FailFrom(vfs.OpSync, 2, nil)))
		s := openTestStore(t, Options{Dir: "/d", FS: fs})
		defer s.Close()
		ctx := context.Background()
		var errs []error
		for i := range 3 {
			errs = append(errs, s.Write(ctx, func(tx *Tx) error { return s.counts.Put(tx, int64(i), 1) }))
		}
		if errs[0] != nil || !errors.Is(errs[1], wal.ErrFailed) || !errors.Is(errs[1], ErrFailed) || !errors.Is(errs[2], ErrFailed) {
			t.Fatalf("errors %v", errs)
		}
		if !errors.Is(s.Err(), wal.ErrFailed) {
			t.Fatalf("Err() = %v", s.Err())
		}
		// The group whose sync failed counts in Aborts, not in Groups.
		if st := s.Stats(); st.Commits != 1 || st.Groups != 1 || st.Aborts != 1 {
			t.Fatalf("stats after the failure: %d commits, %d groups, %d aborts; want 1, 1, 1", st.Commits, st.Groups, st.Aborts)
		}
		if s.counts.Len(s.Latest()) != 1 || !has(s.counts, s.Latest(), 0) {
			t.Fatalf("reads after failure: %d counts", s.counts.Len(s.Latest()))
		}
		// Reopening gives exactly what was durable.
		s.Close()
		s2 := openTestStore(t, Options{Dir: "/d", FS: mem.CrashClone(3)})
		defer s2.Close()
		if s2.counts.Len(s2.Latest()) > 2 || !has(s2.counts, s2.Latest(), 0) {
			t.Fatalf("after reopen: %d counts", s2.counts.Len(s2.Latest()))
		}
	})
}

func TestTooLargeRecord(t *testing.T) {
	s := New(Options{Dir: "/d", FS: vfs.NewMem(), Logger: quiet()})
	blobs := NewCollection[string, []byte](s, "blobs", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err := s.Write(context.Background(), func(tx *Tx) error { return blobs.Put(tx, "big", make([]byte, 17<<20)) })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write: %v", err)
	}
	mustWrite(t, s, func(tx *Tx) error { return blobs.Put(tx, "small", []byte("x")) })
	if blobs.Len(s.Latest()) != 1 {
		t.Fatal("store broken after a rejected record")
	}
}

func TestRegistration(t *testing.T) {
	s := New(Options{Persistence: NewMemPersistence(), Logger: quiet()})
	NewCollection[string, string](s, "a", nil)
	mustPanic(t, "duplicate", func() { NewCollection[string, string](s, "a", nil) })
	mustPanic(t, "empty name", func() { NewCollection[string, string](s, "", nil) })
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustPanic(t, "after Open", func() { NewCollection[string, string](s, "b", nil) })
	if err := New(Options{}).Open(context.Background()); err == nil {
		t.Fatal("Open without Dir or Persistence succeeded")
	}
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	fn()
}

func TestKeyCodecs(t *testing.T) {
	type regionID uint16
	type name string
	checkKeys(t, []int8{-128, -1, 0, 1, 127})
	checkKeys(t, []int{-1 << 62, -1, 0, 1 << 62})
	checkKeys(t, []uint64{0, 1, 1<<64 - 1})
	checkKeys(t, []regionID{0, 7, 65535})
	checkKeys(t, []name{"", "a", "\x00\xff"})
	checkKeys(t, []float64{-1.5, 0, 3.25})
	checkKeys(t, []float32{-1.5, 0, 3.25})
	c := newKeyCodec[int8]()
	if _, err := c.decode(newKeyCodec[int]().append(nil, 300)); err == nil {
		t.Fatal("int8 key 300 decoded")
	}
	u := newKeyCodec[uint8]()
	if _, err := u.decode(newKeyCodec[uint]().append(nil, 256)); err == nil {
		t.Fatal("uint8 key 256 decoded")
	}
}

func checkKeys[K interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr | ~float32 | ~float64 | ~string
}](t *testing.T, keys []K) {
	t.Helper()
	c := newKeyCodec[K]()
	for _, k := range keys {
		b := c.append(nil, k)
		got, err := c.decode(b)
		if err != nil || got != k {
			t.Errorf("%T %v: round trip gave %v, %v", k, k, got, err)
		}
		if _, err := c.decode(append(bytes.Clone(b), 0xff, 0xff)); err == nil && c.kind.String() != "string" {
			t.Errorf("%T %v: trailing bytes accepted", k, k)
		}
	}
}

// TestWriteAsync: WriteAsync applies and queues at once, and its Commit
// tells when the record is durable; commits complete in the order they
// were made; a write that writes nothing has no commit; a nested one is
// refused; a failed persistence fails the commit.
// TestGroupStats: Stats counts group commits. A lone writer waits for each
// of its transactions, so each makes a group of one; transactions queued
// without waiting share groups.
func TestGroupStats(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	for i := range 10 {
		mustWrite(t, s.Store, func(tx *Tx) error { return s.counts.Put(tx, int64(i), 1) })
	}
	mustWrite(t, s.Store, func(tx *Tx) error { return nil }) // nothing to commit
	st := s.Stats()
	if st.Commits != 10 || st.Groups != 10 || st.GroupTime <= 0 {
		t.Fatalf("after 10 waited writes: %d commits, %d groups, %v; want 10, 10, > 0", st.Commits, st.Groups, st.GroupTime)
	}
	var last *Commit
	for i := range 200 {
		c, err := s.WriteAsync(ctx, func(tx *Tx) error { return s.counts.Put(tx, int64(i), 2) })
		if err != nil {
			t.Fatal(err)
		}
		last = c
	}
	if err := last.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.Commits != 210 || st.Groups <= 10 || st.Groups > 210 {
		t.Fatalf("after 200 more queued: %d commits, %d groups; want 210, 11 to 210", st.Commits, st.Groups)
	}
	t.Logf("200 queued transactions made %d groups", st.Groups-10)
	var n int64
	for _, c := range st.CommitLatency {
		n += c
	}
	if mean := st.GroupTime / time.Duration(st.Groups); n != st.Groups || st.CommitQuantile(1) < mean {
		t.Fatalf("commit latency histogram of %d groups, max under %v; want %d groups, max at least the mean %v",
			n, st.CommitQuantile(1), st.Groups, mean)
	}
}

// TestStoreStatsWALAndSnapshot: a store in a directory reports its log's
// counters, how long recovery and the newest snapshot took; a store on
// another persistence has no log counters.
func TestStoreStatsWALAndSnapshot(t *testing.T) {
	s := openTestStore(t, Options{Dir: "/d", FS: vfs.NewMem()})
	defer s.Close()
	for i := range 5 {
		mustWrite(t, s.Store, func(tx *Tx) error { return s.counts.Put(tx, int64(i), 1) })
	}
	st := s.Stats()
	if st.WAL == nil || st.WAL.Appends != 5 || st.WAL.Syncs < 1 || st.WAL.RecordsPerSync <= 0 {
		t.Fatalf("WAL stats after 5 writes: %+v", st.WAL)
	}
	if st.RecoverTime <= 0 || st.SnapshotTime != 0 {
		t.Fatalf("recover time %v, snapshot time %v before any snapshot", st.RecoverTime, st.SnapshotTime)
	}
	res, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.SnapshotTime != res.Duration || st.SnapshotSize != res.Size || st.SnapshotTime <= 0 {
		t.Fatalf("after a snapshot of %d bytes in %v: time %v, size %d", res.Size, res.Duration, st.SnapshotTime, st.SnapshotSize)
	}
	m := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer m.Close()
	if st := m.Stats(); st.WAL != nil {
		t.Fatalf("memory persistence has WAL stats %+v", st.WAL)
	}
}

// TestStatsDuringOpen: Stats and Damage may be called before and while
// Open recovers (a server scrapes a store that is still recovering);
// -race checks that they read nothing Open is writing.
func TestStatsDuringOpen(t *testing.T) {
	fs := vfs.NewMem()
	s := openTestStore(t, Options{Dir: "/d", FS: fs})
	for i := range 200 {
		mustWrite(t, s.Store, func(tx *Tx) error { return s.counts.Put(tx, int64(i), 1) })
	}
	s.Close()
	r := newTestStore(Options{Dir: "/d", FS: fs})
	if st := r.Stats(); st.WAL != nil || st.RecoverTime != 0 || st.Seq != 0 || r.Damage() != nil {
		t.Fatalf("before Open: %+v, damage %v", st, r.Damage())
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = r.Stats()
			_ = r.Damage()
		}
	}()
	err := r.Open(context.Background())
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st := r.Stats(); st.WAL == nil || st.RecoverTime <= 0 || st.Seq != 200 {
		t.Fatalf("after Open: %+v", st)
	}
}

func TestWriteAsync(t *testing.T) {
	ctx := context.Background()
	mp := NewMemPersistence()
	s := openTestStore(t, Options{Persistence: mp})
	defer s.Close()

	var commits []*Commit
	for i := range 50 {
		c, err := s.WriteAsync(ctx, func(tx *Tx) error { return s.counts.Put(tx, int64(i), int64(i)) })
		if err != nil || c == nil {
			t.Fatalf("WriteAsync %d: %v, %v", i, c, err)
		}
		commits = append(commits, c)
	}
	// In order: once commit i is done, every earlier one is.
	for i, c := range commits {
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		for j := range i {
			select {
			case <-commits[j].Done():
			default:
				t.Fatalf("commit %d done before commit %d", i, j)
			}
		}
		if v, ok, _ := s.counts.Get(s.Latest(), int64(i)); !ok || v != int64(i) {
			t.Fatalf("after commit %d is durable, readers see %d, %v", i, v, ok)
		}
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("Wait of a durable commit: %v", err)
		}
	}

	if c, err := s.WriteAsync(ctx, func(tx *Tx) error { return nil }); c != nil || err != nil {
		t.Fatalf("a write of nothing: %v, %v; want no commit and no error", c, err)
	}
	boom := errors.New("boom")
	if c, err := s.WriteAsync(ctx, func(tx *Tx) error { s.counts.Put(tx, 99, 1); return boom }); c != nil || !errors.Is(err, boom) {
		t.Fatalf("a failing write: %v, %v", c, err)
	}
	if has(s.counts, s.Latest(), 99) {
		t.Fatal("a failed WriteAsync left its write")
	}
	err := s.Write(ctx, func(tx *Tx) error {
		_, err := s.WriteAsync(tx.Context(), func(tx *Tx) error { return nil })
		return err
	})
	if !errors.Is(err, ErrNestedAsync) {
		t.Fatalf("WriteAsync inside a transaction: %v, want ErrNestedAsync", err)
	}

	mp.Fail(errors.New("disk on fire"))
	c, err := s.WriteAsync(ctx, func(tx *Tx) error { return s.counts.Put(tx, 100, 1) })
	if err == nil {
		err = c.Wait(ctx)
	}
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("WriteAsync on a failed persistence: %v, want ErrFailed", err)
	}
}
