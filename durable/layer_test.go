package durable

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/internal/cowbtree"
)

// layerModel is the state after each transaction of a run: states[i] is
// the state after the first i transactions (seq i with MemPersistence).
type layerModel struct {
	mu     sync.Mutex
	states []map[string]string
}

func (m *layerModel) at(seq uint64) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[seq]
}

// checkReads compares every kind of read of kv in r with want.
func checkReads(t *testing.T, kv *Collection[string, string], r Reader, want map[string]string, rng *rand.Rand, keys int) error {
	t.Helper()
	for range 8 {
		k := fmt.Sprintf("k%03d", rng.IntN(keys+10))
		v, ok, err := kv.Get(r, k)
		if err != nil {
			return err
		}
		if wv, wok := want[k]; ok != wok || v != wv {
			return fmt.Errorf("Get(%s) = %q, %v; want %q, %v", k, v, ok, wv, wok)
		}
	}
	if n := kv.Len(r); n != len(want) {
		return fmt.Errorf("Len = %d; want %d", n, len(want))
	}
	sorted := slices.Sorted(maps.Keys(want))
	var got []string
	for k, v := range kv.All(r) {
		got = append(got, k+"="+v)
	}
	var all []string
	for _, k := range sorted {
		all = append(all, k+"="+want[k])
	}
	if !slices.Equal(got, all) {
		return fmt.Errorf("All = %v\nwant %v", got, all)
	}
	from := fmt.Sprintf("k%03d", rng.IntN(keys))
	to := fmt.Sprintf("k%03d", rng.IntN(keys))
	got = got[:0]
	for k, v := range kv.From(r, from) {
		if k >= to {
			break
		}
		got = append(got, k+"="+v)
	}
	var rng2 []string
	for _, k := range sorted {
		if k >= from && k < to {
			rng2 = append(rng2, k+"="+want[k])
		}
	}
	if !slices.Equal(got, rng2) {
		return fmt.Errorf("From(%s) up to %s = %v\nwant %v", from, to, got, rng2)
	}
	// From, stopped after a few entries.
	got = got[:0]
	for k, v := range kv.From(r, from) {
		got = append(got, k+"="+v)
		if len(got) == 5 {
			break
		}
	}
	var fr []string
	for _, k := range sorted {
		if k >= from && len(fr) < 5 {
			fr = append(fr, k+"="+want[k])
		}
	}
	if !slices.Equal(got, fr) {
		return fmt.Errorf("From(%s), 5 entries = %v\nwant %v", from, got, fr)
	}
	return nil
}

// TestLayeredReads checks reads through the layers that stand between a
// commit and the trees (group layers, merged layers, trees with layers
// applied, merged layers made while an apply was under way): versions
// taken while a pipelined writer commits (held, and read again after more
// commits), and transactions' own reads, against a
// model of the state after each transaction. It also checks that every
// kind of version was seen.
func TestLayeredReads(t *testing.T) {
	seed := testSeed(t)
	s := New(Options{Persistence: NewMemPersistence(), Logger: quiet(), SnapshotBytes: -1})
	kv := NewCollection[string, string](s, "kv", nil)
	other := NewCollection[int64, int64](s, "other", nil)
	var kinds struct {
		sync.Mutex
		group, merged, bare, stacked int
	}
	// Until readers have read 20 versions with a merged layer above the
	// layers being applied, every other apply waits (up to 200 ms) for the
	// applier to merge the layers published meanwhile, then (up to 100 ms)
	// for a reader to read such a version: an apply is otherwise too quick
	// for merges to happen during one on a loaded machine.
	stacked := func() int {
		kinds.Lock()
		defer kinds.Unlock()
		return kinds.stacked
	}
	var applies, waited atomic.Int64
	s.applyPause = func() {
		if applies.Add(1)%2 == 0 || stacked() >= 20 {
			return
		}
		for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
			if v := s.current(); len(v.layers) > 1 && slices.ContainsFunc(v.layers[1:], isMergedLayer) {
				waited.Add(1)
				seen := stacked()
				for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline) && stacked() == seen; {
					time.Sleep(100 * time.Microsecond)
				}
				return
			}
			// The committer kicks the applier before each append, when
			// the group before is not yet published: kick it after.
			s.kickApplier()
			time.Sleep(100 * time.Microsecond)
		}
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const keys, txns = 400, 6000
	model := &layerModel{states: []map[string]string{{}}}
	ctx := context.Background()

	note := func(view *View) {
		kinds.Lock()
		defer kinds.Unlock()
		v := view.ver
		switch {
		case len(v.layers) == 0:
			kinds.bare++
		case isMergedLayer(v.layers[0]):
			kinds.merged++
		default:
			kinds.group++
		}
		// A merged layer above another: made while an apply was under way.
		for _, ls := range v.layers[min(1, len(v.layers)):] {
			if isMergedLayer(ls) {
				kinds.stacked++
				break
			}
		}
	}

	stop := make(chan struct{})
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(r)+1))
			var held []*View
			for {
				select {
				case <-stop:
					for _, v := range held {
						if err := checkReads(t, kv, v, model.at(v.Seq()), rng, keys); err != nil {
							errc <- fmt.Errorf("held version at seq %d: %w", v.Seq(), err)
							return
						}
					}
					errc <- nil
					return
				default:
				}
				v := s.Latest()
				note(v)
				if err := checkReads(t, kv, v, model.at(v.Seq()), rng, keys); err != nil {
					errc <- fmt.Errorf("version at seq %d: %w", v.Seq(), err)
					return
				}
				if rng.IntN(50) == 0 && len(held) < 40 {
					held = append(held, v)
				}
			}
		}()
	}

	rng := rand.New(rand.NewPCG(seed, 99))
	var commits []*Commit
	state := map[string]string{}
	// Every kind of version is read in one round of txns transactions on
	// most runs; on a loaded machine a round can miss one (a merged layer
	// applied before a reader saw it first): up to two more rounds then.
	allKinds := func() bool {
		kinds.Lock()
		defer kinds.Unlock()
		return kinds.group > 0 && kinds.merged > 0 && kinds.bare > 0 && kinds.stacked > 0
	}
	rounds := 0
	for i := 1; i <= 3*txns; i++ {
		if i%txns == 1 {
			if i > 1 && allKinds() {
				break
			}
			rounds++
		}
		next := maps.Clone(state)
		type op struct {
			k, v string
			del  bool
		}
		var ops []op
		for range 1 + rng.IntN(4) {
			k := fmt.Sprintf("k%03d", rng.IntN(keys))
			if rng.IntN(4) == 0 {
				ops = append(ops, op{k: k, del: true})
				delete(next, k)
			} else {
				v := fmt.Sprintf("v%d", i)
				ops = append(ops, op{k: k, v: v})
				next[k] = v
			}
		}
		model.mu.Lock()
		model.states = append(model.states, next)
		model.mu.Unlock()
		check := rng.IntN(10) == 0
		c, err := s.WriteAsync(ctx, func(tx *Tx) error {
			if check {
				// Reads in the transaction see every earlier one, durable
				// or not: the head's layers.
				if err := checkReads(t, kv, tx, state, rng, keys); err != nil {
					return fmt.Errorf("in transaction %d, before its writes: %w", i, err)
				}
			}
			for _, o := range ops {
				if o.del {
					kv.Delete(tx, o.k)
				} else {
					kv.Put(tx, o.k, o.v)
				}
			}
			// A write to another collection in some: layers hold several.
			if i%3 == 0 {
				other.Put(tx, int64(i%50), int64(i))
			}
			if check {
				if err := checkReads(t, kv, tx, next, rng, keys); err != nil {
					return fmt.Errorf("in transaction %d, after its writes: %w", i, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		state = next
		commits = append(commits, c)
		// Keep up to 64 in flight; now and then let the store go idle
		// (the applier then applies everything).
		if len(commits) >= 64 || rng.IntN(500) == 0 {
			for _, c := range commits {
				if err := c.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			commits = commits[:0]
			if rng.IntN(4) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	for _, c := range commits {
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	wg.Wait()
	// Idle: the applier applies what is left; the trees alone then hold
	// the final state.
	deadline := time.Now().Add(10 * time.Second)
	for len(s.current().layers) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	v := s.Latest()
	if len(v.ver.layers) != 0 {
		t.Fatalf("idle store still has %d layers", len(v.ver.layers))
	}
	if err := checkReads(t, kv, v, state, rng, keys); err != nil {
		t.Fatalf("seed %d: final version: %v", seed, err)
	}
	if n := other.Len(v); n != 50 {
		t.Fatalf("other has %d keys, want 50", n)
	}
	t.Logf("versions read in %d rounds of %d transactions: %d with group layers only, %d with a merged layer first, %d without layers; %d with a merged layer above another (%d applies, %d of them paused for readers to read that)",
		rounds, txns, kinds.group, kinds.merged, kinds.bare, kinds.stacked, applies.Load(), waited.Load())
	if kinds.group == 0 || kinds.merged == 0 || kinds.bare == 0 || kinds.stacked == 0 {
		t.Fatalf("seed %d: not every kind of version was read: %d group, %d merged, %d bare, %d stacked",
			seed, kinds.group, kinds.merged, kinds.bare, kinds.stacked)
	}
}

func isMergedLayer(ls []any) bool {
	for _, l := range ls {
		switch l.(type) {
		case *merged[string], *merged[int64]:
			return true
		}
	}
	return false
}

// TestOverlayModel checks reads over random stacks of what stands above a
// tree (a transaction's ops, the forming layer, group and merged layers in
// any order) against a model: All and From from random keys, stopped at
// random points; and that a merged layer is read in place, not copied.
func TestOverlayModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	s := New(Options{Persistence: NewMemPersistence(), Logger: quiet()})
	c := NewCollection[int64, string](s, "kv", nil)
	const keys = 200
	for round := range 300 {
		model := map[int64]string{}
		tr := cowbtree.New[int64, []byte]()
		for range rng.IntN(keys) {
			k := rng.Int64N(keys)
			tr.Set(k, []byte(fmt.Sprint("t", k)))
			model[k] = fmt.Sprint("t", k)
		}
		// apply writes n random keys of source src into m and the model.
		apply := func(src string, n int, set func(k int64, e layerEnt)) {
			for range n {
				k := rng.Int64N(keys)
				e := layerEnt{del: rng.IntN(3) == 0}
				if e.del {
					delete(model, k)
				} else {
					e.val = []byte(fmt.Sprint(src, k))
					model[k] = string(e.val)
				}
				set(k, e)
			}
		}
		st := readState{tree: tr}
		for i := range rng.IntN(5) { // oldest first
			if rng.IntN(2) == 0 {
				l := layer[int64]{}
				apply(fmt.Sprint("g", i), rng.IntN(30), func(k int64, e layerEnt) { l[k] = e })
				st.layers = append(st.layers, []any{l})
				continue
			}
			m := &merged[int64]{m: map[int64]layerEnt{}}
			apply(fmt.Sprint("m", i), rng.IntN(60), func(k int64, e layerEnt) { m.m[k] = e })
			m.keys = slices.Sorted(maps.Keys(m.m))
			st.layers = append(st.layers, []any{m})
		}
		if rng.IntN(2) == 0 {
			top := layer[int64]{}
			apply("top", rng.IntN(20), func(k int64, e layerEnt) { top[k] = e })
			st.top = top
		}
		if rng.IntN(2) == 0 {
			ops := &txOps[int64]{}
			apply("op", rng.IntN(20), func(k int64, e layerEnt) {
				if i := ops.find(k); i >= 0 {
					ops.ents[i] = opEnt[int64]{key: k, val: e.val, del: e.del}
				} else {
					ops.add(opEnt[int64]{key: k, val: e.val, del: e.del})
				}
			})
			st.ops = ops
		}

		from := rng.Int64N(keys+20) - 10
		stop := 1 + rng.IntN(len(model)+1) // fn returns false on entry stop
		var want []string
		for _, k := range slices.Sorted(maps.Keys(model)) {
			if k >= from && len(want) < stop {
				want = append(want, fmt.Sprintf("%d=%s", k, model[k]))
			}
		}
		var got []string
		c.ascend(st, &from, func(k int64, val []byte) bool {
			got = append(got, fmt.Sprintf("%d=%s", k, val))
			return len(got) < stop
		})
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d round %d: from %d, stop %d:\ngot  %v\nwant %v", seed, round, from, stop, got, want)
		}
		if n := len(model); c.length(tr)+c.layerDelta(st) != n {
			t.Fatalf("seed %d round %d: Len %d, want %d", seed, round, c.length(tr)+c.layerDelta(st), n)
		}
		for _, ls := range st.layers {
			m, ok := ls[0].(*merged[int64])
			if !ok {
				continue
			}
			i, _ := slices.BinarySearch(m.keys, from)
			if i == len(m.keys) {
				continue
			}
			for _, src := range c.overlay(st, &from).srcs {
				if len(src.keys) > 0 && &src.keys[0] == &m.keys[i] {
					ok = false
				}
			}
			if ok {
				t.Fatalf("seed %d round %d: a merged layer's keys were copied, not read in place", seed, round)
			}
		}
	}
}
