package durable

import (
	"context"
	"errors"
	"fmt"
	"github.com/procyon-dev/procyon/internal/testseed"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

func testSeed(t *testing.T) uint64 { return testseed.Seed(t) }

// The crash workload uses two collections: kv holds each writer's keys
// ("w<writer>/<n>"), and txns holds, per writer, how many of its
// transactions committed. Every transaction changes both, so a state in
// which they disagree was partly applied.
type crashStore struct {
	*Store
	kv   *Collection[string, string]
	txns *Collection[int64, int64]
}

func newCrashStore(fs vfs.FS, opts Options) *crashStore {
	opts.Dir, opts.FS, opts.Logger = "/data", fs, quiet()
	s := New(opts)
	return &crashStore{Store: s,
		kv:   NewCollection[string, string](s, "kv", nil),
		txns: NewCollection[int64, int64](s, "txns", nil)}
}

// writerModel is what one writer knows: the state of its keys after each
// of its committed transactions, how many were acknowledged, and how many
// were attempted (acknowledged, plus at most one in flight at the crash).
type writerModel struct {
	states    []map[string]string // states[c]: after c commits
	acked     int
	attempted int
}

// crashWorkload runs writers concurrent writers until each has done steps
// transactions or the FS crashed. Writer 0 also asks for snapshots; with
// autoSnap, small logs trigger them too.
func crashWorkload(t *testing.T, fs *vfs.MemFS, seed uint64, writers, steps int, opts Options) []*writerModel {
	models := make([]*writerModel, writers)
	for w := range models {
		models[w] = &writerModel{states: []map[string]string{{}}}
	}
	s := newCrashStore(fs, opts)
	if err := s.Open(context.Background()); err != nil {
		if !fs.Crashed() {
			t.Fatalf("seed %d: Open: %v", seed, err)
		}
		return models
	}
	defer s.Close()
	errUser := errors.New("user error")
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := models[w]
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := 0; i < steps; i++ {
				cur := m.states[len(m.states)-1]
				next := maps.Clone(cur)
				// 1 in 8 transactions fails in fn after writing: it must
				// leave no trace.
				fails := rng.IntN(8) == 0
				nested := rng.IntN(4) == 0
				nkeys := 1 + rng.IntN(3)
				ops := make([]func(tx *Tx) error, 0, nkeys+1)
				for range nkeys {
					k := fmt.Sprintf("w%d/%d", w, rng.IntN(6))
					if rng.IntN(4) == 0 {
						delete(next, k)
						ops = append(ops, func(tx *Tx) error { return s.kv.Delete(tx, k) })
					} else {
						v := fmt.Sprintf("%d.%d.%s", w, i, strings.Repeat("x", rng.IntN(40)))
						next[k] = v
						ops = append(ops, func(tx *Tx) error { return s.kv.Put(tx, k, v) })
					}
				}
				n := int64(len(m.states)) // commits after this one
				fn := func(tx *Tx) error {
					for _, op := range ops {
						if err := op(tx); err != nil {
							return err
						}
					}
					if nested {
						// A failing nested write is undone.
						s.Write(tx.Context(), func(tx *Tx) error {
							s.kv.Put(tx, fmt.Sprintf("w%d/nested", w), "junk")
							return errUser
						})
					}
					if err := s.txns.Put(tx, int64(w), n); err != nil {
						return err
					}
					if fails {
						return errUser
					}
					return nil
				}
				if !fails {
					m.attempted++
				}
				err := s.Write(context.Background(), fn)
				switch {
				case fails && errors.Is(err, errUser):
					continue
				case err == nil && !fails:
					m.states = append(m.states, next)
					m.acked++
				case err != nil && fs.Crashed():
					if !fails {
						// In flight: it may be there, whole, after recovery.
						m.states = append(m.states, next)
					}
					return
				default:
					t.Errorf("seed %d: writer %d txn %d: Write returned %v (fails=%v)", seed, w, i, err, fails)
					return
				}
				if w == 0 && i%9 == 8 {
					if _, err := s.Snapshot(context.Background()); err != nil && !fs.Crashed() {
						t.Errorf("seed %d: Snapshot: %v", seed, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return models
}

// checkRecovered opens the store on a crash state and checks it against
// the models.
func checkRecovered(t *testing.T, fs vfs.FS, models []*writerModel, opts Options, what string) {
	t.Helper()
	s := newCrashStore(fs, opts)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("%s: recovery failed: %v", what, err)
	}
	defer s.Close()
	got := map[string]string{}
	for k, v := range s.kv.All(s.Latest()) {
		got[k] = v
	}
	for w, m := range models {
		c, _, err := s.txns.Get(s.Latest(), int64(w))
		if err != nil {
			t.Fatal(err)
		}
		if int(c) < m.acked || int(c) > m.attempted {
			t.Fatalf("%s: writer %d: %d transactions recovered; acknowledged %d, attempted %d", what, w, c, m.acked, m.attempted)
		}
		want := m.states[c]
		prefix := fmt.Sprintf("w%d/", w)
		mine := map[string]string{}
		for k, v := range got {
			if strings.HasPrefix(k, prefix) {
				mine[k] = v
			}
		}
		if !maps.Equal(mine, want) {
			t.Fatalf("%s: writer %d after %d transactions: state\n%v\nwant\n%v", what, w, c, mine, want)
		}
	}
	for k := range got {
		var w int
		if _, err := fmt.Sscanf(k, "w%d/", &w); err != nil || w >= len(models) || strings.HasSuffix(k, "nested") {
			t.Fatalf("%s: unexpected key %q", what, k)
		}
	}
	// The recovered store takes writes.
	if err := s.Write(context.Background(), func(tx *Tx) error { return s.kv.Put(tx, "w0/after", "x") }); err != nil {
		t.Fatalf("%s: write after recovery: %v", what, err)
	}
}

// TestCrashEveryOp crashes the FS at the k-th mutating operation, for every
// k until a run completes, during transactions, log rolls, snapshots and
// segment deletion, and checks the recovered state against the model.
func TestCrashEveryOp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		writers int
		steps   int
		stride  int
		opts    Options
	}{
		{"one writer, explicit snapshots", 1, 60, 1, Options{SegmentSize: 512, SnapshotBytes: -1}},
		{"four writers, automatic snapshots", 4, 25, 2, Options{SegmentSize: 1 << 10, SnapshotBytes: 1 << 10, SnapshotSyncBytes: 512}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			runs := 0
			for k := 1; ; k += tc.stride {
				fs := vfs.NewMem()
				fs.SetCrashAfter(k)
				models := crashWorkload(t, fs, seed, tc.writers, tc.steps, tc.opts)
				if t.Failed() {
					return
				}
				if !fs.Crashed() {
					checkRecovered(t, fs.CrashClone(0), models, tc.opts, "no crash")
					t.Logf("%d crash points; the workload takes %d operations", runs, fs.Ops())
					return
				}
				runs++
				for c := range 2 {
					checkRecovered(t, fs.CrashClone(int64(seed)+int64(k*10+c)), models, tc.opts,
						fmt.Sprintf("seed %d, crash at op %d, clone %d", seed, k, c))
				}
				if k > 100000 {
					t.Fatal("workload never finishes")
				}
			}
		})
	}
}
