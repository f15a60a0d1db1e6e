package durable

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// gatedPersistence is a MemPersistence whose Append reports each call on
// entered and then waits for a token on release (none once it is closed):
// the test decides when each group reaches the disk, so what forms while
// one is on its way is known.
type gatedPersistence struct {
	*MemPersistence
	entered chan int // the number of records of each Append
	release chan struct{}
}

func newGatedPersistence() *gatedPersistence {
	return &gatedPersistence{MemPersistence: NewMemPersistence(), entered: make(chan int, 16), release: make(chan struct{})}
}

func (p *gatedPersistence) Append(recs [][]byte) (Pending, error) {
	p.entered <- len(recs)
	<-p.release
	return p.MemPersistence.Append(recs)
}

// gatherAfterSecondGroup opens a store on a gated persistence, commits a
// first group of one transaction, and while it is on its way queues two
// more with write (WriteAsync or Write, each on its own goroutine for
// Write); then it lets the first group through, and returns how many
// times the committer waited for a group to fill (Store.stats.gathers)
// before it froze the second.
func gatherAfterSecondGroup(t *testing.T, write func(s *testStore, key int64)) int64 {
	t.Helper()
	p := newGatedPersistence()
	s := openTestStore(t, Options{Persistence: p})
	defer s.Close()
	defer close(p.release)
	write(s, 1)
	if n := <-p.entered; n != 1 {
		t.Fatalf("first group: %d records, want 1", n)
	}
	// The first group is on its way: these two form the next.
	write(s, 2)
	write(s, 3)
	for s.formingRecords() < 2 {
		runtime.Gosched()
	}
	p.release <- struct{}{}
	if n := <-p.entered; n != 2 {
		t.Fatalf("second group: %d records, want 2", n)
	}
	// A gather comes before the group is frozen, so the count is final
	// for the second group once it is on its way.
	return s.stats.gathers.Load()
}

// formingRecords returns the number of records in the forming group.
func (s *Store) formingRecords() int {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	return len(s.w.group.ends)
}

// TestGatherOnlyForWaitingWriters: after a group, the committer waits for
// the writers it released to come back only if they wait for their
// commits (Write). WriteAsync callers batch themselves (the procedure
// engine's committer): they are not coming back for a released group, and
// a wait for them would only delay the next fsync. (The log does the same:
// it gathers for Append callers, never for AppendAsync.)
func TestGatherOnlyForWaitingWriters(t *testing.T) {
	async := gatherAfterSecondGroup(t, func(s *testStore, key int64) {
		if _, err := s.WriteAsync(context.Background(), func(tx *Tx) error { return s.counts.Put(tx, key, key) }); err != nil {
			t.Errorf("WriteAsync: %v", err)
		}
	})
	if async != 0 {
		t.Errorf("WriteAsync writers: the committer gathered %d times, want 0", async)
	}
	waiting := gatherAfterSecondGroup(t, func(s *testStore, key int64) {
		go func() {
			if err := s.Write(context.Background(), func(tx *Tx) error { return s.counts.Put(tx, key, key) }); err != nil {
				t.Errorf("Write: %v", err)
			}
		}()
	})
	if waiting != 1 {
		t.Errorf("Write writers: the committer gathered %d times, want 1 (after the first group, which released one writer and had two waiting)", waiting)
	}
}

// TestGroupsSyncOnTheCommitter: on the WAL, the store's committer writes
// and syncs each group itself (the log's lone-appender path); the log's
// flusher, a goroutine hand-off away and another back, takes no part.
func TestGroupsSyncOnTheCommitter(t *testing.T) {
	var syncs, onFlusher atomic.Int64
	fs := vfs.NewFaulty(vfs.NewMem(), vfs.InjectorFunc(func(op vfs.Op) error {
		if op.Kind == vfs.OpSync && strings.HasSuffix(op.Path, segSuffix) {
			syncs.Add(1)
			buf := make([]byte, 64<<10)
			if bytes.Contains(buf[:runtime.Stack(buf, false)], []byte("wal.(*WAL).flusher")) {
				onFlusher.Add(1)
			}
		}
		return nil
	}))
	s := openTestStore(t, Options{Dir: "/d", FS: fs, SnapshotBytes: -1})
	defer s.Close()
	before := syncs.Load()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				key := int64(w*100 + i)
				put := func(tx *Tx) error { return s.counts.Put(tx, key, key) }
				var err error
				if i%2 == 0 {
					err = s.Write(context.Background(), put)
				} else {
					var c *Commit
					if c, err = s.WriteAsync(context.Background(), put); err == nil {
						err = c.Wait(context.Background())
					}
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if syncs.Load() == before {
		t.Fatal("no group was synced")
	}
	if n := onFlusher.Load(); n != 0 {
		t.Errorf("%d of %d segment syncs ran on the log's flusher, want none", n, syncs.Load()-before)
	}
}
