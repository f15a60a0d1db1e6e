package durable

import (
	"cmp"
	"runtime"
	"slices"

	"github.com/procyon-dev/procyon/internal/cowbtree"
)

// A version (what a View reads) is one B+tree per collection
// (internal/cowbtree: Clone is O(1) and copy-on-write, and a sorted batch
// of updates is applied in one walk of the tree), a few layers on top of
// them, and the sequence number of the last transaction it reflects; a
// read looks at the layers,
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

// overlay reads what st has above its tree, from a bound on, in key order
// and lazily: a loop that stops early pays for what it read. A
// transaction's ops and the group layers (small) are sorted when it is
// made; a merged layer (possibly large) is read in place, from the bound
// on, through its sorted keys.
type overlay[K cmp.Ordered] struct {
	srcs []overlaySrc[K] // newest first; the exhausted ones are dropped
	head opEnt[K]        // the next entry, if ok
	ok   bool
}

// overlaySrc is one layer of an overlay, what is left of it in key order:
// entries (a transaction's ops, a group's layer), or a merged layer's keys
// and states.
type overlaySrc[K cmp.Ordered] struct {
	ents []opEnt[K]
	keys []K
	m    map[K]layerEnt
}

func (s *overlaySrc[K]) empty() bool { return len(s.ents) == 0 && len(s.keys) == 0 }

func (s *overlaySrc[K]) first() K {
	if len(s.ents) > 0 {
		return s.ents[0].key
	}
	return s.keys[0]
}

func (s *overlaySrc[K]) pop() opEnt[K] {
	if len(s.ents) > 0 {
		e := s.ents[0]
		s.ents = s.ents[1:]
		return e
	}
	k := s.keys[0]
	s.keys = s.keys[1:]
	e := s.m[k]
	return opEnt[K]{key: k, val: e.val, del: e.del}
}

// overlay returns the overlay of st from key from on (nil: all of it).
func (c *Collection[K, V]) overlay(st readState, from *K) *overlay[K] {
	o := &overlay[K]{}
	in := func(k K) bool { return from == nil || k >= *from }
	add := func(src overlaySrc[K]) {
		if !src.empty() {
			o.srcs = append(o.srcs, src)
		}
	}
	addSorted := func(ents []opEnt[K]) {
		slices.SortFunc(ents, func(a, b opEnt[K]) int { return cmp.Compare(a.key, b.key) })
		add(overlaySrc[K]{ents: ents})
	}
	if ops, _ := st.ops.(*txOps[K]); ops != nil {
		var ents []opEnt[K]
		for _, e := range ops.ents {
			if in(e.key) {
				ents = append(ents, e)
			}
		}
		addSorted(ents)
	}
	layers := []any{st.top}
	for i := len(st.layers) - 1; i >= 0; i-- {
		layers = append(layers, st.layers[i][c.id])
	}
	for _, l := range layers {
		switch l := l.(type) {
		case layer[K]:
			var ents []opEnt[K]
			for k, e := range l {
				if in(k) {
					ents = append(ents, opEnt[K]{key: k, val: e.val, del: e.del})
				}
			}
			addSorted(ents)
		case *merged[K]:
			i := 0
			if from != nil {
				i, _ = slices.BinarySearch(l.keys, *from)
			}
			add(overlaySrc[K]{keys: l.keys[i:], m: l.m})
		}
	}
	return o
}

// peek returns the overlay's next entry (false: none left) without
// taking it.
func (o *overlay[K]) peek() (opEnt[K], bool) {
	if !o.ok && len(o.srcs) > 0 {
		o.head, o.ok = o.next(), true
	}
	return o.head, o.ok
}

// drop takes the entry peek returned.
func (o *overlay[K]) drop() { o.ok = false }

// next takes the smallest key left out of every source that has it, and
// returns it in the newest source's state.
func (o *overlay[K]) next() opEnt[K] {
	k := o.srcs[0].first()
	for i := 1; i < len(o.srcs); i++ {
		k = min(k, o.srcs[i].first())
	}
	var out opEnt[K]
	found := false
	live := o.srcs[:0]
	for _, s := range o.srcs {
		if s.first() == k {
			if e := s.pop(); !found {
				out, found = e, true
			}
		}
		if !s.empty() {
			live = append(live, s)
		}
	}
	clear(o.srcs[len(live):])
	o.srcs = live
	return out
}
