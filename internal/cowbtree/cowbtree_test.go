package cowbtree

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/procyon-dev/procyon/internal/testseed"
)

// check verifies t's structure: keys strictly increasing across the
// leaves, each inner key the smallest key of its kid, sizes, every
// non-root node within its bounds, every leaf at one depth, and each
// node's arrays its own when t owns it.
func check[K cmp.Ordered, V any](tb testing.TB, t *Tree[K, V]) {
	tb.Helper()
	if t.root == nil {
		return
	}
	depth := -1
	var last *K
	var walk func(n *node[K, V], d int, root bool) int
	walk = func(n *node[K, V], d int, root bool) int {
		if len(n.keys) == 0 {
			tb.Fatalf("empty node at depth %d", d)
		}
		if n.leaf() {
			if depth == -1 {
				depth = d
			} else if depth != d {
				tb.Fatalf("leaves at depths %d and %d", depth, d)
			}
			if len(n.vals) != len(n.keys) || len(n.keys) > maxLeaf || (!root && len(n.keys) < minLeaf) {
				tb.Fatalf("leaf with %d keys, %d values", len(n.keys), len(n.vals))
			}
			for i := range n.keys {
				if last != nil && cmp.Compare(*last, n.keys[i]) >= 0 {
					tb.Fatalf("keys out of order: %v then %v", *last, n.keys[i])
				}
				last = &n.keys[i]
			}
			if n.size != len(n.keys) {
				tb.Fatalf("leaf size %d, %d keys", n.size, len(n.keys))
			}
			return n.size
		}
		if len(n.kids) != len(n.keys) || len(n.kids) > maxKids || (!root && len(n.kids) < minKids) || (root && len(n.kids) < 2) {
			tb.Fatalf("inner node with %d kids, %d keys (root %v)", len(n.kids), len(n.keys), root)
		}
		size := 0
		for i, kid := range n.kids {
			if n.keys[i] != kid.keys[0] {
				tb.Fatalf("inner key %v, kid's smallest %v", n.keys[i], kid.keys[0])
			}
			size += walk(kid, d+1, false)
		}
		if size != n.size {
			tb.Fatalf("inner size %d, kids hold %d", n.size, size)
		}
		return size
	}
	walk(t.root, 0, true)
}

// equal checks that t holds exactly model, through Len, Get and Ascend.
func equal(tb testing.TB, t *Tree[int, string], model map[int]string) {
	tb.Helper()
	check(tb, t)
	if t.Len() != len(model) {
		tb.Fatalf("Len %d, model %d", t.Len(), len(model))
	}
	keys := slices.Sorted(maps.Keys(model))
	var got []int
	t.Ascend(nil, nil, func(k int, v string) bool {
		if model[k] != v {
			tb.Fatalf("Ascend: %d = %q, model %q", k, v, model[k])
		}
		got = append(got, k)
		return true
	})
	if !slices.Equal(got, keys) {
		tb.Fatalf("Ascend gave %d keys, model has %d", len(got), len(keys))
	}
	for _, k := range keys {
		if v, ok := t.Get(k); !ok || v != model[k] {
			tb.Fatalf("Get(%d) = %q, %v; model %q", k, v, ok, model[k])
		}
	}
}

// applyBoth applies ops to tr (with Apply, or with Set and Delete one at
// a time if oneByOne) and to model, and checks that they agree.
func applyBoth(tb testing.TB, tr *Tree[int, string], model map[int]string, ops []Op[int, string], oneByOne bool) {
	tb.Helper()
	if oneByOne {
		for _, op := range ops {
			if op.Del {
				tr.Delete(op.Key)
			} else {
				tr.Set(op.Key, op.Val)
			}
		}
	} else {
		tr.Apply(ops)
	}
	for _, op := range ops {
		if op.Del {
			delete(model, op.Key)
		} else {
			model[op.Key] = op.Val
		}
	}
	equal(tb, tr, model)
}

// frozen is a tree that is no longer changed and the entries it must hold.
type frozen struct {
	t *Tree[int, string]
	m map[int]string
}

// TestApplyModel applies random batches (sizes from one op to thousands,
// puts and deletes, dense and sparse key ranges) to a tree and a map, and
// checks after each that they hold the same entries, that the tree's
// structure is valid, and that the clones taken before each batch still
// hold what they held.
func TestApplyModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	for round := range 6 {
		tr := New[int, string]()
		model := map[int]string{}
		var old []frozen
		span := []int{50, 1000, 20000}[round%3]
		for step := range 120 {
			n := []int{1, 3, 40, 500, 3000}[rng.IntN(5)]
			delFrac := rng.Float64()
			if step%30 > 20 {
				delFrac = 0.95 // waves of deletes: nodes under their minimum
			}
			batch := map[int]Op[int, string]{}
			lo := rng.IntN(span)
			for range n {
				k := lo + rng.IntN(span/4+1)
				if rng.IntN(4) == 0 {
					k = rng.IntN(span)
				}
				batch[k] = Op[int, string]{Key: k, Val: fmt.Sprint(step, "/", k), Del: rng.Float64() < delFrac}
			}
			ops := slices.SortedFunc(maps.Values(batch), func(a, b Op[int, string]) int { return cmp.Compare(a.Key, b.Key) })
			if step%4 == 0 {
				old = append(old, frozen{tr, maps.Clone(model)})
				tr = tr.Clone()
			}
			applyBoth(t, tr, model, ops, step%7 == 3)
		}
		for _, f := range old {
			equal(t, f.t, f.m)
		}
	}
}

// TestApplyEmpties deletes everything, in one batch and key by key.
func TestApplyEmpties(t *testing.T) {
	if _, ok := New[int, string]().Get(1); ok {
		t.Fatal("Get in an empty tree found a key")
	}
	for _, oneByOne := range []bool{false, true} {
		tr := New[int, string]()
		var ops []Op[int, string]
		for k := range 5000 {
			ops = append(ops, Op[int, string]{Key: k, Val: "v"})
		}
		tr.Apply(ops)
		kept := tr
		tr = tr.Clone()
		for i := range ops {
			ops[i].Del = true
		}
		if oneByOne {
			for _, op := range ops {
				tr.Delete(op.Key)
			}
		} else {
			tr.Apply(ops)
		}
		if tr.Len() != 0 || tr.root != nil {
			t.Fatalf("after deleting everything: Len %d", tr.Len())
		}
		tr.Set(7, "x")
		if v, ok := tr.Get(7); !ok || v != "x" || tr.Len() != 1 {
			t.Fatalf("Set after emptying: %q %v", v, ok)
		}
		check(t, kept)
		if kept.Len() != 5000 {
			t.Fatalf("clone lost entries: %d", kept.Len())
		}
	}
}

// TestAscendBounds compares every [from, to) range scan, and early stops,
// with the model.
func TestAscendBounds(t *testing.T) {
	tr := New[int, string]()
	var keys []int
	var ops []Op[int, string]
	for k := 0; k < 3000; k += 3 {
		keys = append(keys, k)
		ops = append(ops, Op[int, string]{Key: k, Val: fmt.Sprint(k)})
	}
	tr.Apply(ops)
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	for range 2000 {
		from, to := rng.IntN(3100)-50, rng.IntN(3100)-50
		limit := rng.IntN(50) + 1
		var want []int
		for _, k := range keys {
			if k >= from && k < to && len(want) < limit {
				want = append(want, k)
			}
		}
		var got []int
		tr.Ascend(&from, &to, func(k int, v string) bool {
			if v != fmt.Sprint(k) {
				t.Fatalf("value of %d: %q", k, v)
			}
			got = append(got, k)
			return len(got) < limit
		})
		if !slices.Equal(got, want) {
			t.Fatalf("Ascend [%d, %d) limit %d: got %v, want %v", from, to, limit, got, want)
		}
		var all []int
		tr.Ascend(&from, nil, func(k int, _ string) bool { all = append(all, k); return true })
		i, _ := slices.BinarySearch(keys, from)
		if !slices.Equal(all, keys[i:]) {
			t.Fatalf("Ascend from %d: %d keys, want %d", from, len(all), len(keys)-i)
		}
	}
}

// TestCloneDoesNotWrite: Apply on a clone leaves the source's nodes as
// they were (no node of the source is changed in place).
func TestCloneDoesNotWrite(t *testing.T) {
	a := New[int, string]()
	for k := range 2000 {
		a.Set(k, "a")
	}
	var before []string
	a.Ascend(nil, nil, func(k int, v string) bool { before = append(before, fmt.Sprint(k, v)); return true })
	b := a.Clone()
	var ops []Op[int, string]
	for k := 0; k < 2000; k += 2 {
		ops = append(ops, Op[int, string]{Key: k, Val: "b", Del: k%6 == 0})
	}
	b.Apply(ops)
	var after []string
	a.Ascend(nil, nil, func(k int, v string) bool { after = append(after, fmt.Sprint(k, v)); return true })
	if !slices.Equal(before, after) {
		t.Fatal("Apply on a clone changed the source")
	}
	check(t, a)
	check(t, b)
}

func TestApplyUnsorted(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for unsorted ops")
		}
	}()
	New[int, string]().Apply([]Op[int, string]{{Key: 2}, {Key: 1}})
}

// TestSetInOrder loads keys in increasing order (Set's append path),
// cloning now and then and going on in the clone: each clone must keep
// what it had, and the loaded tree must be well formed and complete.
func TestSetInOrder(t *testing.T) {
	tr := New[int, string]()
	model := map[int]string{}
	var clones []frozen
	for i := range 5_000 {
		k := 3 * i
		tr.Set(k, fmt.Sprint(k))
		model[k] = fmt.Sprint(k)
		if i%700 == 5 {
			clones = append(clones, frozen{tr, maps.Clone(model)})
			tr = tr.Clone()
		}
		if i%997 == 0 {
			// A key that is not the last: the general path.
			tr.Set(k-1, "x")
			model[k-1] = "x"
		}
	}
	check(t, tr)
	equal(t, tr, model)
	for _, c := range clones {
		check(t, c.t)
		equal(t, c.t, c.m)
	}
}
