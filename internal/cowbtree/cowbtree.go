package cowbtree

import (
	"cmp"
	"slices"
)

const (
	maxLeaf = 32
	minLeaf = maxLeaf / 4
	maxKids = 32
	minKids = maxKids / 4
)

// Op is one update of a batch: put Key = Val, or delete Key if Del.
type Op[K cmp.Ordered, V any] struct {
	Key K
	Val V
	Del bool
}

// owner marks the nodes a tree may change in place. It has a size so that
// two owners never share an address.
type owner struct{ _ byte }

type node[K cmp.Ordered, V any] struct {
	own  *owner
	keys []K           // leaf: the entries' keys; inner: each kid's smallest key
	vals []V           // leaf only
	kids []*node[K, V] // inner only (never empty)
	size int           // entries in the subtree
}

func (n *node[K, V]) leaf() bool { return n.kids == nil }

// under reports whether n holds fewer than a non-root node must.
func (n *node[K, V]) under() bool {
	if n.leaf() {
		return len(n.keys) < minLeaf
	}
	return len(n.kids) < minKids
}

// Tree is an ordered map from K to V. The zero value is not usable: make
// trees with New or Clone.
//
// Reads (Get, Len, Ascend) may run concurrently with each other and with
// Clone. Changes (Set, Delete, Apply) need the tree to themselves, and a
// tree must not be changed once it has been cloned: the clone shares its
// nodes. Change the clone instead.
type Tree[K cmp.Ordered, V any] struct {
	root *node[K, V]
	own  *owner
	// scratch[d] holds the nodes an update at depth d returns, when the
	// caller reads them at once (a single Set allocates nothing but what
	// it stores).
	scratch [][]*node[K, V]
}

// New returns an empty tree.
func New[K cmp.Ordered, V any]() *Tree[K, V] { return &Tree[K, V]{own: new(owner)} }

// Clone returns a tree with t's entries in O(1). The clone copies a node of
// t the first time it changes it; t must not be changed afterwards.
func (t *Tree[K, V]) Clone() *Tree[K, V] { return &Tree[K, V]{root: t.root, own: new(owner)} }

// Len returns the number of entries.
func (t *Tree[K, V]) Len() int {
	if t.root == nil {
		return 0
	}
	return t.root.size
}

// route returns the kid of an inner node whose keys (each kid's smallest)
// are keys that k belongs to.
func route[K cmp.Ordered](keys []K, k K) int {
	i, found := slices.BinarySearch(keys, k)
	if !found && i > 0 {
		i--
	}
	return i
}

// Get returns k's value.
func (t *Tree[K, V]) Get(k K) (v V, ok bool) {
	n := t.root
	if n == nil {
		return v, false
	}
	for !n.leaf() {
		n = n.kids[route(n.keys, k)]
	}
	if i, found := slices.BinarySearch(n.keys, k); found {
		return n.vals[i], true
	}
	return v, false
}

// Ascend calls fn with the entries whose keys are in [from, to) (a nil
// bound is open) in key order, until fn returns false.
func (t *Tree[K, V]) Ascend(from, to *K, fn func(k K, v V) bool) {
	if t.root != nil {
		t.root.ascend(from, to, fn)
	}
}

// ascend returns false once it has stopped: fn returned false or a key
// reached to.
func (n *node[K, V]) ascend(from, to *K, fn func(K, V) bool) bool {
	if n.leaf() {
		i := 0
		if from != nil {
			i, _ = slices.BinarySearch(n.keys, *from)
		}
		for ; i < len(n.keys); i++ {
			if to != nil && cmp.Compare(n.keys[i], *to) >= 0 {
				return false
			}
			if !fn(n.keys[i], n.vals[i]) {
				return false
			}
		}
		return true
	}
	i := 0
	if from != nil {
		i = route(n.keys, *from)
	}
	for ; i < len(n.kids); i++ {
		if to != nil && cmp.Compare(n.keys[i], *to) >= 0 {
			return false
		}
		if !n.kids[i].ascend(from, to, fn) {
			return false
		}
		from = nil // the later kids' keys are all above from
	}
	return true
}

// Set puts k = v.
func (t *Tree[K, V]) Set(k K, v V) {
	if t.appendLast(k, v) {
		return
	}
	op := [1]Op[K, V]{{Key: k, Val: v}}
	t.Apply(op[:])
}

// appendLast puts k = v and returns true if k is past every key and the
// last leaf, which t owns (as it does every node on the way), has room:
// the common case of loading keys in order, done without a search.
func (t *Tree[K, V]) appendLast(k K, v V) bool {
	n := t.root
	if n == nil {
		return false
	}
	for ; !n.leaf(); n = n.kids[len(n.kids)-1] {
		if n.own != t.own {
			return false
		}
	}
	if n.own != t.own || len(n.keys) == maxLeaf || !(n.keys[len(n.keys)-1] < k) {
		return false
	}
	n.keys = append(n.keys, k)
	n.vals = append(n.vals, v)
	for n := t.root; ; n = n.kids[len(n.kids)-1] {
		n.size++
		if n.leaf() {
			return true
		}
	}
}

// Delete deletes k, if present.
func (t *Tree[K, V]) Delete(k K) {
	op := [1]Op[K, V]{{Key: k, Del: true}}
	t.Apply(op[:])
}

// Apply applies ops, whose keys must be strictly increasing (it panics
// otherwise), in one walk of the tree.
func (t *Tree[K, V]) Apply(ops []Op[K, V]) {
	if len(ops) == 0 {
		return
	}
	for i := 1; i < len(ops); i++ {
		if cmp.Compare(ops[i-1].Key, ops[i].Key) >= 0 {
			panic("cowbtree: Apply: keys not strictly increasing")
		}
	}
	root := t.root
	if root == nil {
		root = &node[K, V]{own: t.own}
	}
	nodes := t.update(root, ops, t.buf(0), 0)
	// Grow a level while the old root split; drop levels with one kid.
	for len(nodes) > 1 {
		nodes = t.inners(nodes, nil)
	}
	var r *node[K, V]
	if len(nodes) == 1 {
		r = nodes[0]
		for !r.leaf() && len(r.kids) == 1 {
			r = r.kids[0]
		}
	}
	t.root = r
	clear(t.scratch[0][:cap(t.scratch[0])]) // keep no node alive
}

// buf returns the scratch slice for depth d, empty.
func (t *Tree[K, V]) buf(d int) []*node[K, V] {
	for len(t.scratch) <= d {
		t.scratch = append(t.scratch, make([]*node[K, V], 0, 2))
	}
	return t.scratch[d][:0]
}

// lowerBound returns the index of the first op whose key is >= k.
func lowerBound[K cmp.Ordered, V any](ops []Op[K, V], k K) int {
	i, _ := slices.BinarySearchFunc(ops, k, func(o Op[K, V], k K) int { return cmp.Compare(o.Key, k) })
	return i
}

// update applies ops (all within n's key range, as routed by n's parent)
// to n and appends the nodes that replace n, at n's height, to out: none
// if n became empty, more than one if it split. The nodes may be under
// their minimum; the parent fixes that with their neighbours.
func (t *Tree[K, V]) update(n *node[K, V], ops []Op[K, V], out []*node[K, V], depth int) []*node[K, V] {
	if n.leaf() {
		return t.updateLeaf(n, ops, out)
	}
	// Fast path: the ops all go to one kid, which stays one node with
	// enough entries.
	if i := route(n.keys, ops[0].Key); i+1 == len(n.kids) || cmp.Compare(ops[len(ops)-1].Key, n.keys[i+1]) < 0 {
		kid := n.kids[i]
		was := kid.size // before update changes kid, if t owns it
		res := t.update(kid, ops, t.buf(depth+1), depth+1)
		if len(res) == 1 && !res[0].under() {
			r := res[0]
			res[0] = nil
			m := n
			if n.own != t.own {
				m = &node[K, V]{own: t.own, keys: slices.Clone(n.keys), kids: slices.Clone(n.kids), size: n.size}
			}
			m.kids[i] = r
			m.keys[i] = r.keys[0]
			m.size += r.size - was
			return append(out, m)
		}
		kids := make([]*node[K, V], 0, len(n.kids)+len(res))
		kids = append(kids, n.kids[:i]...)
		kids = append(kids, res...)
		kids = append(kids, n.kids[i+1:]...)
		clear(res)
		return t.rebuild(n, t.fix(kids), out)
	}
	kids := make([]*node[K, V], 0, len(n.kids)+4)
	j := 0
	for i, kid := range n.kids {
		end := len(ops)
		if i+1 < len(n.kids) {
			end = j + lowerBound(ops[j:], n.keys[i+1])
		}
		if end == j {
			kids = append(kids, kid)
			continue
		}
		kids = t.update(kid, ops[j:end], kids, depth+1)
		j = end
	}
	return t.rebuild(n, t.fix(kids), out)
}

// rebuild appends the inner nodes holding kids (n's new kids, at most
// enough for a few nodes) to out: n itself if t owns it and they fit.
func (t *Tree[K, V]) rebuild(n *node[K, V], kids []*node[K, V], out []*node[K, V]) []*node[K, V] {
	if len(kids) == 0 {
		return out
	}
	if n.own == t.own && len(kids) <= maxKids {
		n.kids = append(n.kids[:0], kids...)
		n.keys = n.keys[:0]
		n.size = 0
		for _, k := range kids {
			n.keys = append(n.keys, k.keys[0])
			n.size += k.size
		}
		return append(out, n)
	}
	return t.inners(kids, out)
}

// updateLeaf is update for a leaf.
func (t *Tree[K, V]) updateLeaf(n *node[K, V], ops []Op[K, V], out []*node[K, V]) []*node[K, V] {
	var keys []K
	var vals []V
	owned := n.own == t.own
	if owned {
		keys, vals = n.keys, n.vals
		for _, op := range ops {
			i, found := slices.BinarySearch(keys, op.Key)
			switch {
			case op.Del && found:
				keys = slices.Delete(keys, i, i+1)
				vals = slices.Delete(vals, i, i+1)
			case op.Del:
			case found:
				vals[i] = op.Val
			default:
				keys = slices.Insert(keys, i, op.Key)
				vals = slices.Insert(vals, i, op.Val)
			}
		}
	} else {
		// Merge the shared entries with the ops into new arrays.
		c := len(n.keys) + len(ops)
		keys, vals = mergeLeaf(n.keys, n.vals, ops, make([]K, 0, c), make([]V, 0, c))
	}
	switch {
	case len(keys) == 0:
		return out
	case len(keys) > maxLeaf:
		return t.leaves(keys, vals, out)
	case owned:
		n.keys, n.vals, n.size = keys, vals, len(keys)
		return append(out, n)
	}
	return append(out, &node[K, V]{own: t.own, keys: keys, vals: vals, size: len(keys)})
}

// mergeLeaf appends to keys and vals the entries of a leaf (keys ks, values
// vs) with ops applied, in order.
func mergeLeaf[K cmp.Ordered, V any](ks []K, vs []V, ops []Op[K, V], keys []K, vals []V) ([]K, []V) {
	i := 0
	for _, op := range ops {
		// Search rather than scan: comparing a key can mean a cache miss
		// (a string's bytes live elsewhere).
		j, found := slices.BinarySearch(ks[i:], op.Key)
		j += i
		keys, vals = append(keys, ks[i:j]...), append(vals, vs[i:j]...)
		i = j
		if found {
			i++ // replaced or deleted
		}
		if !op.Del {
			keys, vals = append(keys, op.Key), append(vals, op.Val)
		}
	}
	return append(keys, ks[i:]...), append(vals, vs[i:]...)
}

// chunks returns how many nodes of at most max hold n things, as evenly as
// possible.
func chunks(n, max int) int { return (n + max - 1) / max }

// leaves appends new leaves holding keys and vals (sorted, too many for
// one leaf or not) to out, each with arrays of its own.
func (t *Tree[K, V]) leaves(keys []K, vals []V, out []*node[K, V]) []*node[K, V] {
	k := chunks(len(keys), maxLeaf)
	for c := range k {
		a, b := c*len(keys)/k, (c+1)*len(keys)/k
		out = append(out, &node[K, V]{own: t.own, keys: slices.Clone(keys[a:b]), vals: slices.Clone(vals[a:b]), size: b - a})
	}
	return out
}

// inners appends new inner nodes holding kids to out.
func (t *Tree[K, V]) inners(kids []*node[K, V], out []*node[K, V]) []*node[K, V] {
	k := chunks(len(kids), maxKids)
	for c := range k {
		a, b := c*len(kids)/k, (c+1)*len(kids)/k
		n := &node[K, V]{own: t.own, keys: make([]K, 0, b-a), kids: slices.Clone(kids[a:b])}
		for _, kid := range n.kids {
			n.keys = append(n.keys, kid.keys[0])
			n.size += kid.size
		}
		out = append(out, n)
	}
	return out
}

// fix joins each node of nodes (siblings, in order) that is under its
// minimum with its neighbour, and returns the result (in nodes' array).
// Only a lone node may stay under its minimum: its parent, itself then
// under, is joined with a neighbour a level up.
func (t *Tree[K, V]) fix(nodes []*node[K, V]) []*node[K, V] {
	out := nodes[:0] // never passes the node being read: a join makes at most two of two
	for _, n := range nodes {
		if len(out) > 0 {
			if last := out[len(out)-1]; last.under() || n.under() {
				out = t.join(last, n, out[:len(out)-1])
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

// join appends the nodes holding a's and b's entries (neighbours at the
// same height, a first) to out: one node if they fit in one, else two.
func (t *Tree[K, V]) join(a, b *node[K, V], out []*node[K, V]) []*node[K, V] {
	if a.leaf() {
		n := len(a.keys) + len(b.keys)
		keys := append(append(make([]K, 0, n), a.keys...), b.keys...)
		vals := append(append(make([]V, 0, n), a.vals...), b.vals...)
		if n <= maxLeaf {
			return append(out, &node[K, V]{own: t.own, keys: keys, vals: vals, size: n})
		}
		return t.leaves(keys, vals, out)
	}
	// The kids where a and b meet may be under their minimum too (a lone
	// kid left by the level below).
	kids := append(append(make([]*node[K, V], 0, len(a.kids)+len(b.kids)), a.kids...), b.kids...)
	return t.inners(t.fix(kids), out)
}
