package durable

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// The damage tests' store: two snapshots and several log segments, built
// cleanly closed or crashed, and helpers to compare disk states.

const (
	dmgDir     = "/data"
	dmgTxns    = 240 // transactions in the workload
	dmgKeys    = 20  // keys they cycle through
	dmgSnapAt1 = 80  // snapshots after these transactions
	dmgSnapAt2 = 160
)

// dmgStore is the damage workload's store: txn i sets kv["k<i%dmgKeys>"]
// and meta["n"] = i, so the state after n transactions is known.
type dmgStore struct {
	*Store
	kv, meta *Collection[string, string]
}

func newDmgStore(fs vfs.FS, readOnly bool) *dmgStore {
	s := New(Options{Dir: dmgDir, FS: fs, Logger: quiet(), SegmentSize: 4096, SnapshotBytes: -1, ReadOnly: readOnly})
	return &dmgStore{Store: s, kv: NewCollection[string, string](s, "kv", nil), meta: NewCollection[string, string](s, "meta", nil)}
}

// newKVOnlyStore is a program that does not register the damage store's
// "meta" collection: recovery refuses it (ErrUnknownCollection).
func newKVOnlyStore(fs vfs.FS) *Store {
	s := New(Options{Dir: dmgDir, FS: fs, Logger: quiet(), SegmentSize: 4096, SnapshotBytes: -1})
	NewCollection[string, string](s, "kv", nil)
	return s
}

func dmgValue(i int) string { return fmt.Sprintf("v%d-%s", i, strings.Repeat("x", i%37)) }

func (s *dmgStore) txn(i int) error {
	return s.Write(context.Background(), func(tx *Tx) error {
		if err := s.kv.Put(tx, fmt.Sprintf("k%d", i%dmgKeys), dmgValue(i)); err != nil {
			return err
		}
		return s.meta.Put(tx, "n", fmt.Sprint(i))
	})
}

// check verifies that the store holds exactly the state after n
// transactions for some n in [minN, maxN], and returns n.
func (s *dmgStore) check(minN, maxN int) (int, error) {
	n := 0
	v := s.Latest()
	if val, ok, err := s.meta.Get(v, "n"); err != nil {
		return 0, err
	} else if ok {
		fmt.Sscan(val, &n)
	}
	if n < minN || n > maxN {
		return n, fmt.Errorf("state after %d transactions, want %d..%d", n, minN, maxN)
	}
	want := map[string]string{}
	for i := 1; i <= n; i++ {
		want[fmt.Sprintf("k%d", i%dmgKeys)] = dmgValue(i)
	}
	got := map[string]string{}
	for k, val := range s.kv.All(v) {
		got[k] = val
	}
	for k, v := range want {
		if got[k] != v {
			return n, fmt.Errorf("after %d transactions %s = %q, want %q", n, k, got[k], v)
		}
	}
	if len(got) != len(want) {
		return n, fmt.Errorf("after %d transactions %d keys, want %d", n, len(got), len(want))
	}
	return n, nil
}

// dmgBase is a store's disk to damage copies of.
type dmgBase struct {
	fs      *vfs.MemFS // crashed (or closed): clone it
	crashed bool
	acked   int // transactions acknowledged
	tried   int // acknowledged plus at most one in flight
}

// runDmgWorkload runs the workload on fs; a crash stops it.
func runDmgWorkload(fs *vfs.MemFS) (acked, tried int, err error) {
	s := newDmgStore(fs, false)
	if err := s.Open(context.Background()); err != nil {
		return 0, 0, err
	}
	defer s.Close()
	for i := 1; i <= dmgTxns; i++ {
		tried = i
		if err := s.txn(i); err != nil {
			return acked, tried, err
		}
		acked = i
		if i == dmgSnapAt1 || i == dmgSnapAt2 {
			if _, err := s.Snapshot(context.Background()); err != nil {
				return acked, tried, err
			}
		}
	}
	return acked, tried, s.Close()
}

// buildDmgBase builds the store cleanly closed, or crashed at a random
// point after its second snapshot.
func buildDmgBase(t *testing.T, rng *rand.Rand, crash bool) *dmgBase {
	t.Helper()
	fs := vfs.NewMem()
	acked, tried, err := runDmgWorkload(fs)
	if err != nil {
		t.Fatal(err)
	}
	b := &dmgBase{fs: fs, acked: acked, tried: tried}
	if crash {
		// Crash somewhere between the second snapshot and the end.
		probe := vfs.NewMem()
		s := newDmgStore(probe, false)
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= dmgSnapAt2; i++ {
			s.txn(i)
		}
		s.Snapshot(context.Background())
		from := probe.Ops()
		s.Close()
		fs = vfs.NewMem()
		fs.SetCrashAfter(from + 1 + rng.IntN(fs2ops(t)-from))
		b = &dmgBase{fs: fs, crashed: true}
		b.acked, b.tried, _ = runDmgWorkload(fs)
		if !fs.Crashed() {
			fs.Crash()
		}
	}
	// Leave an unfinished snapshot, as a crash while writing one does.
	c := b.fs.CrashClone(0)
	snaps := dmgFiles(c, func(n string) bool { _, ok := parseSnapName(n); return ok })
	data, _ := c.ReadFile(snaps[0])
	c.WriteFile(filepath.Join(dmgDir, snapName(uint64(b.acked+1))+tmpSuffix), data[:len(data)/2])
	c.Crash()
	b.fs = c
	return b
}

// fs2ops counts the file operations of the whole workload.
func fs2ops(t *testing.T) int {
	fs := vfs.NewMem()
	if _, _, err := runDmgWorkload(fs); err != nil {
		t.Fatal(err)
	}
	return fs.Ops()
}

// walkDmg calls fn for every path under dmgDir, directories first and
// then what they hold.
func walkDmg(fs *vfs.MemFS, fn func(path string, dir bool)) {
	var walk func(dir string)
	walk = func(dir string) {
		names, _ := fs.List(dir)
		for _, n := range names {
			p := filepath.Join(dir, n)
			_, err := fs.List(p)
			fn(p, err == nil)
			if err == nil {
				walk(p)
			}
		}
	}
	walk(dmgDir)
}

// dmgFiles lists the files (not directories) under dmgDir that match.
func dmgFiles(fs *vfs.MemFS, match func(base string) bool) []string {
	var out []string
	walkDmg(fs, func(p string, dir bool) {
		if !dir && match(filepath.Base(p)) {
			out = append(out, p)
		}
	})
	return out
}

// diskState is every path under dmgDir with its content ("/" for a
// directory), the LOCK file included.
func diskState(fs *vfs.MemFS) map[string]string {
	st := map[string]string{}
	walkDmg(fs, func(p string, dir bool) {
		if dir {
			st[p] = "/"
			return
		}
		data, _ := fs.ReadFile(p)
		st[p] = string(data)
	})
	return st
}

func diffState(a, b map[string]string) string {
	for p, v := range a {
		if w, ok := b[p]; !ok {
			return p + " removed"
		} else if v != w {
			return p + " changed"
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			return p + " created"
		}
	}
	return ""
}
