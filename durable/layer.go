package durable

import (
	"cmp"
	"runtime"
	"slices"

	"github.com/procyon-dev/procyon/internal/cowbtree"
)

// A version (View) is one B+tree per collection (internal/cowbtree: Clone
// is O(1) and copy-on-write, and a sorted batch of updates is applied in
// one walk of the tree), a few layers on top of them, and the sequence
// number of the last transaction it reflects; a read looks at the layers,
// newest first, then at the tree. Values are stored encoded: every read
// decodes a fresh copy, snapshots stream the bytes as they are, and memory
// stays near the raw size.
//
// Layers are what stands between a write and the B-trees. A transaction
// only merges its ops into the forming group's layer (one per collection
// it touched: each key's final state); the group's layer is frozen with
// the group and published with it once durable: readers look at the
// layers of a View, newest first, before its trees. The store's applier
// (see Store.applier) later merges the small group layers into one larger
// merged layer, and applies that to copy-on-write clones of the trees
// once it has enough keys (or the store is idle), so that the tree's
// copy-on-write (about a leaf per key, the inner nodes shared by many) is
// paid for many keys at once and off the writers' path. No layer is
// changed once published.

// layerEnt is one key's final state in a layer.
type layerEnt struct {
	val []byte
	del bool
}

// layer is the writes of one group's transactions to one collection.
// Mutable while its group forms (under the write lock), never after.
type layer[K cmp.Ordered] map[K]layerEnt

// merged is the writes of several consecutive groups to one collection,
// newest kept, with the keys in order for range reads.
type merged[K cmp.Ordered] struct {
	m    map[K]layerEnt
	keys []K // sorted
}

// layerGet returns k's state in l (a layer[K] or *merged[K]).
func layerGet[K cmp.Ordered](l any, k K) (layerEnt, bool) {
	switch l := l.(type) {
	case layer[K]:
		e, ok := l[k]
		return e, ok
	case *merged[K]:
		e, ok := l.m[k]
		return e, ok
	}
	return layerEnt{}, false
}

// mergeOps merges a committed transaction's ops into l (nil: a new layer,
// made with room for hint keys) and returns it. Called with the write lock
// held.
func (c *Collection[K, V]) mergeOps(l any, o any, hint int) any {
	ops := o.(*txOps[K])
	var m layer[K]
	if l == nil {
		m = make(layer[K], max(len(ops.ents), hint))
	} else {
		m = l.(layer[K])
	}
	for _, e := range ops.ents {
		m[e.key] = layerEnt{val: e.val, del: e.del}
	}
	return m
}

// layerLen returns the number of keys in l.
func (c *Collection[K, V]) layerLen(l any) int {
	switch l := l.(type) {
	case layer[K]:
		return len(l)
	case *merged[K]:
		return len(l.keys)
	}
	return 0
}

// sortedKeys returns l's keys in order.
func sortedKeys[K cmp.Ordered](l any) []K {
	switch l := l.(type) {
	case layer[K]:
		keys := make([]K, 0, len(l))
		for k := range l {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	case *merged[K]:
		return l.keys
	}
	return nil
}

// applyLayer applies l to tree t, which the caller owns, in batches of
// applyChunk keys in order: each batch is one walk of the tree, copying
// each node it touches that t does not own yet (about one leaf per key,
// with random keys; later batches change those copies in place). So
// applying a thousand keys to one clone costs much less per key than a
// clone per group.
func (c *Collection[K, V]) applyLayer(t any, l any) {
	tr := t.(*tree[K])
	keys := sortedKeys[K](l)
	ops := make([]cowbtree.Op[K, []byte], 0, min(len(keys), applyChunk))
	for len(keys) > 0 {
		n := min(len(keys), applyChunk)
		ops = ops[:0]
		for _, k := range keys[:n] {
			e, _ := layerGet(l, k)
			ops = append(ops, cowbtree.Op[K, []byte]{Key: k, Val: e.val, Del: e.del})
		}
		tr.Apply(ops)
		keys = keys[n:]
		if len(keys) > 0 {
			// The applier is background work: let the writers and the
			// committer, who wait on a core, run first.
			runtime.Gosched()
		}
	}
}

// applyChunk is how many keys applyLayer applies between yields.
const applyChunk = 64

// mergeLayers returns one *merged[K] with the keys of ls (oldest first;
// nil entries skipped), each key's newest state kept; nil if ls has none.
func (c *Collection[K, V]) mergeLayers(ls []any) any {
	n := 0
	for _, l := range ls {
		n += c.layerLen(l)
	}
	if n == 0 {
		return nil
	}
	out := &merged[K]{m: make(map[K]layerEnt, n)}
	var keys []K
	for _, l := range ls {
		if l == nil {
			continue
		}
		if m, ok := l.(*merged[K]); ok && len(keys) == 0 {
			// A merged layer, first: its keys carry over as they are.
			keys = append(keys, m.keys...)
			for k, e := range m.m {
				out.m[k] = e
			}
			continue
		}
		// Merge l's new keys (in order) into keys, both sorted.
		add := sortedKeys[K](l)
		fresh := add[:0:0]
		for _, k := range add {
			if _, seen := out.m[k]; !seen {
				fresh = append(fresh, k)
			}
			out.m[k], _ = layerGet(l, k)
		}
		all := make([]K, 0, len(keys)+len(fresh))
		i, j := 0, 0
		for i < len(keys) && j < len(fresh) {
			if keys[i] < fresh[j] {
				all = append(all, keys[i])
				i++
			} else {
				all = append(all, fresh[j])
				j++
			}
		}
		all = append(all, keys[i:]...)
		keys = append(all, fresh[j:]...)
	}
	out.keys = keys
	return out
}

// layerDelta returns how many entries what st has above its tree adds to
// the tree's count: for each key of each layer, whether it exists just
// below that layer is looked up.
func (c *Collection[K, V]) layerDelta(st readState) int {
	d := 0
	below := readState{tree: st.tree}
	present := func(k K) bool {
		if e, ok := c.layerLookup(below, k); ok {
			return !e.del
		}
		_, ok := below.tree.(*tree[K]).Get(k)
		return ok
	}
	count := func(k K, e layerEnt) {
		if was := present(k); was && e.del {
			d--
		} else if !was && !e.del {
			d++
		}
	}
	for i, ls := range st.layers {
		switch l := ls[c.id].(type) {
		case *merged[K]:
			for k, e := range l.m {
				count(k, e)
			}
		case layer[K]:
			for k, e := range l {
				count(k, e)
			}
		}
		below.layers = st.layers[:i+1]
	}
	if l, _ := st.top.(layer[K]); l != nil {
		for k, e := range l {
			count(k, e)
		}
		below.top = st.top
	}
	if o, _ := st.ops.(*txOps[K]); o != nil {
		for _, e := range o.ents {
			count(e.key, layerEnt{val: e.val, del: e.del})
		}
	}
	return d
}

// layerLookup returns k's state in what st has above its tree, newest
// first (ok false: the tree decides).
func (c *Collection[K, V]) layerLookup(st readState, k K) (layerEnt, bool) {
	if o, _ := st.ops.(*txOps[K]); o != nil {
		if i := o.find(k); i >= 0 {
			return layerEnt{val: o.ents[i].val, del: o.ents[i].del}, true
		}
	}
	if st.top != nil {
		if e, ok := layerGet(st.top, k); ok {
			return e, true
		}
	}
	for i := len(st.layers) - 1; i >= 0; i-- {
		if l := st.layers[i][c.id]; l != nil {
			if e, ok := layerGet(l, k); ok {
				return e, true
			}
		}
	}
	return layerEnt{}, false
}

// layered reports whether anything above the tree touches the collection
// in st.
func (c *Collection[K, V]) layered(st readState) bool {
	if o, _ := st.ops.(*txOps[K]); o != nil && len(o.ents) > 0 {
		return true
	}
	if st.top != nil {
		return true
	}
	for _, l := range st.layers {
		if l[c.id] != nil {
			return true
		}
	}
	return false
}

// overlay returns the keys that what st has above its tree touches within
// [from, to) (nil bounds: open), each with its newest state, in key order.
func (c *Collection[K, V]) overlay(st readState, from, to *K) []opEnt[K] {
	seen := map[K]bool{}
	var out []opEnt[K]
	in := func(k K) bool { return (from == nil || k >= *from) && (to == nil || k < *to) }
	add := func(k K, e layerEnt) {
		if in(k) && !seen[k] {
			seen[k] = true
			out = append(out, opEnt[K]{key: k, val: e.val, del: e.del})
		}
	}
	if o, _ := st.ops.(*txOps[K]); o != nil {
		for _, e := range o.ents {
			add(e.key, layerEnt{val: e.val, del: e.del})
		}
	}
	layers := []any{st.top}
	for i := len(st.layers) - 1; i >= 0; i-- {
		layers = append(layers, st.layers[i][c.id])
	}
	for _, l := range layers {
		switch l := l.(type) {
		case layer[K]:
			for k, e := range l {
				add(k, e)
			}
		case *merged[K]:
			// Only the keys in range: a merged layer can be large.
			i := 0
			if from != nil {
				i, _ = slices.BinarySearch(l.keys, *from)
			}
			for _, k := range l.keys[i:] {
				if to != nil && k >= *to {
					break
				}
				add(k, l.m[k])
			}
		}
	}
	slices.SortFunc(out, func(a, b opEnt[K]) int { return cmp.Compare(a.key, b.key) })
	return out
}
