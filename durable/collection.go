package durable

import (
	"cmp"
	"fmt"

	"github.com/procyon-dev/procyon/internal/cowbtree"
)

// item is one entry of a collection. The value stays encoded: Get decodes
// a fresh copy, and snapshots stream the bytes as they are.
type item[K cmp.Ordered] struct {
	key K
	val []byte // never changed after the item is made
}

// tree is a collection's copy-on-write B+tree (values encoded, never
// changed once stored). A published tree is never changed: the applier
// changes clones.
type tree[K cmp.Ordered] = cowbtree.Tree[K, []byte]

// coll is the type-erased side of a Collection, used by records, snapshots
// and recovery, which see keys and values only as bytes.
type coll interface {
	collName() string
	// newTree returns an empty tree.
	newTree() any
	// cloneTree returns an O(1) copy-on-write clone of t (which must not
	// be changed afterwards).
	cloneTree(t any) any
	length(t any) int
	// loadEntry puts an encoded entry into t, which the caller owns. val
	// is kept as it is.
	loadEntry(t any, key, val []byte) error
	// deleteEntry deletes an encoded key from t, which the caller owns.
	deleteEntry(t any, key []byte) error
	// each calls fn with every entry of t in key order; key is valid only
	// during the call, val is the stored (immutable) value.
	each(t any, fn func(key, val []byte) error) error
	// Transaction ops (see tx.go).
	newOps() any
	freeOps(ops any)
	cloneOps(ops any) any
	numOps(ops any) int
	appendOps(dst []byte, ops any) []byte
	// Head layers (see Store.w).
	mergeOps(layer any, ops any, hint int) any
	layerLen(layer any) int
	applyLayer(t any, layer any)
	mergeLayers(layers []any) any
}

// Collection is a named, ordered map from K to V in a Store. Create
// collections with NewCollection before Store.Open. Values are kept
// encoded with the collection's codec; keys of every cmp.Ordered type are
// supported.
//
// Reads without a Reader (Get, Len, Scan, ...) see the latest durable
// version; the ...In forms read in a View (several reads at one version)
// or in a Tx (they see the transaction's own writes). Put and Delete take
// the Tx of a Store.Write.
type Collection[K cmp.Ordered, V any] struct {
	s     *Store
	name  string
	id    int
	codec Codec[V]
	keys  keyCodec[K]
	spare *txOps[K] // ops for the next transaction; guarded by the store's write lock
}

// NewCollection registers a collection named name on s, with codec for its
// values (nil picks the default: Bytes for []byte, String for string, JSON
// otherwise). It panics if s is already open or name is taken or empty:
// collections are part of the program, like flags.
func NewCollection[K cmp.Ordered, V any](s *Store, name string, codec Codec[V]) *Collection[K, V] {
	if codec == nil {
		codec = defaultCodec[V]()
	}
	c := &Collection[K, V]{s: s, name: name, codec: codec, keys: newKeyCodec[K]()}
	if err := s.register(c, name, func(id int) { c.id = id }); err != nil {
		panic(err)
	}
	return c
}

// Name returns the collection's name.
func (c *Collection[K, V]) Name() string { return c.name }

func (c *Collection[K, V]) collName() string { return c.name }
func (c *Collection[K, V]) newTree() any     { return cowbtree.New[K, []byte]() }
func (c *Collection[K, V]) cloneTree(t any) any {
	return t.(*tree[K]).Clone()
}
func (c *Collection[K, V]) length(t any) int { return t.(*tree[K]).Len() }

func (c *Collection[K, V]) loadEntry(t any, key, val []byte) error {
	k, err := c.keys.decode(key)
	if err != nil {
		return fmt.Errorf("collection %q: %w", c.name, err)
	}
	t.(*tree[K]).Set(k, val)
	return nil
}

func (c *Collection[K, V]) deleteEntry(t any, key []byte) error {
	k, err := c.keys.decode(key)
	if err != nil {
		return fmt.Errorf("collection %q: %w", c.name, err)
	}
	t.(*tree[K]).Delete(k)
	return nil
}

func (c *Collection[K, V]) each(t any, fn func(key, val []byte) error) error {
	var err error
	var kb []byte
	t.(*tree[K]).Ascend(nil, nil, func(k K, val []byte) bool {
		kb = c.keys.append(kb[:0], k)
		err = fn(kb, val)
		return err == nil
	})
	return err
}

// stateIn returns what reads of the collection in r look at (nil: the
// latest durable version).
func (c *Collection[K, V]) stateIn(r Reader) (readState, error) {
	if r == nil {
		r = c.s.current()
	}
	return r.readState(c.s, c.id)
}

func (c *Collection[K, V]) decode(k K, b []byte) (V, error) {
	v, err := c.codec.Decode(b)
	if err != nil {
		return v, fmt.Errorf("durable: collection %q: decode value of key %v: %w", c.name, k, err)
	}
	return v, nil
}

// Get returns the value of k in the latest durable version.
func (c *Collection[K, V]) Get(k K) (v V, ok bool, err error) { return c.GetIn(nil, k) }

// GetIn returns the value of k in r (a *View or a *Tx; nil: the latest
// durable version). Every call returns a freshly decoded value.
func (c *Collection[K, V]) GetIn(r Reader, k K) (v V, ok bool, err error) {
	val, found, err := c.lookup(r, k)
	if err != nil || !found {
		return v, false, err
	}
	v, err = c.decode(k, val)
	return v, err == nil, err
}

// lookup returns the stored value of k in r.
func (c *Collection[K, V]) lookup(r Reader, k K) ([]byte, bool, error) {
	st, err := c.stateIn(r)
	if err != nil {
		return nil, false, err
	}
	if e, ok := c.layerLookup(st, k); ok {
		return e.val, !e.del, nil
	}
	val, found := st.tree.(*tree[K]).Get(k)
	return val, found, nil
}

// ascend calls fn with the entries of r in [from, to) (nil bounds: open)
// in key order, until fn returns false: the tree merged with what is
// above it (a Tx's ops, layers not yet applied to the tree).
func (c *Collection[K, V]) ascend(r Reader, from, to *K, fn func(it item[K]) bool) error {
	st, err := c.stateIn(r)
	if err != nil {
		return err
	}
	t := st.tree.(*tree[K])
	var over []opEnt[K]
	if c.layered(st) {
		over = c.overlay(st, from, to)
	}
	// emit passes the overlay's entries before key k (all of them if k is
	// nil); it returns false once fn did.
	emit := func(k *K) bool {
		for len(over) > 0 && (k == nil || over[0].key < *k) {
			e := over[0]
			over = over[1:]
			if !e.del && !fn(item[K]{key: e.key, val: e.val}) {
				return false
			}
		}
		return true
	}
	stopped := false
	visit := func(k K, val []byte) bool {
		it := item[K]{key: k, val: val}
		if !emit(&it.key) {
			stopped = true
			return false
		}
		if len(over) > 0 && over[0].key == it.key {
			e := over[0]
			over = over[1:]
			if e.del {
				return true
			}
			it.val = e.val
		}
		if !fn(it) {
			stopped = true
			return false
		}
		return true
	}
	t.Ascend(from, to, visit)
	if !stopped {
		emit(nil)
	}
	return nil
}

// Has reports whether k is in the latest durable version.
func (c *Collection[K, V]) Has(k K) bool { ok, _ := c.HasIn(nil, k); return ok }

// HasIn reports whether k is in r.
func (c *Collection[K, V]) HasIn(r Reader, k K) (bool, error) {
	_, ok, err := c.lookup(r, k)
	return ok, err
}

// Len returns the number of entries in the latest durable version.
func (c *Collection[K, V]) Len() int { n, _ := c.LenIn(nil); return n }

// LenIn returns the number of entries in r.
func (c *Collection[K, V]) LenIn(r Reader) (int, error) {
	st, err := c.stateIn(r)
	if err != nil {
		return 0, err
	}
	n := st.tree.(*tree[K]).Len()
	if c.layered(st) {
		n += c.layerDelta(st)
	}
	return n, nil
}

// Scan calls fn for every entry of the latest durable version in key
// order, until fn returns false. It returns the first decoding error.
func (c *Collection[K, V]) Scan(fn func(k K, v V) bool) error { return c.ScanIn(nil, fn) }

// ScanIn is Scan in r.
func (c *Collection[K, V]) ScanIn(r Reader, fn func(k K, v V) bool) error {
	var err error
	if aerr := c.ascend(r, nil, nil, func(it item[K]) bool { return c.visit(it, fn, &err) }); aerr != nil {
		return aerr
	}
	return err
}

// ScanRange calls fn for the entries with from <= key < to of the latest
// durable version, in key order, until fn returns false.
func (c *Collection[K, V]) ScanRange(from, to K, fn func(k K, v V) bool) error {
	return c.ScanRangeIn(nil, from, to, fn)
}

// ScanRangeIn is ScanRange in r.
func (c *Collection[K, V]) ScanRangeIn(r Reader, from, to K, fn func(k K, v V) bool) error {
	var err error
	if aerr := c.ascend(r, &from, &to, func(it item[K]) bool { return c.visit(it, fn, &err) }); aerr != nil {
		return aerr
	}
	return err
}

// ScanFrom calls fn for the entries with key >= from of the latest durable
// version, in key order, until fn returns false.
func (c *Collection[K, V]) ScanFrom(from K, fn func(k K, v V) bool) error {
	return c.ScanFromIn(nil, from, fn)
}

// ScanFromIn is ScanFrom in r.
func (c *Collection[K, V]) ScanFromIn(r Reader, from K, fn func(k K, v V) bool) error {
	var err error
	if aerr := c.ascend(r, &from, nil, func(it item[K]) bool { return c.visit(it, fn, &err) }); aerr != nil {
		return aerr
	}
	return err
}

func (c *Collection[K, V]) visit(it item[K], fn func(K, V) bool, errp *error) bool {
	v, err := c.decode(it.key, it.val)
	if err != nil {
		*errp = err
		return false
	}
	return fn(it.key, v)
}

// Put sets k to v in tx. v is encoded at once: later changes to it are not
// seen.
func (c *Collection[K, V]) Put(tx *Tx, k K, v V) error {
	b, err := c.codec.Encode(v)
	if err != nil {
		return fmt.Errorf("durable: collection %q: encode value of key %v: %w", c.name, k, err)
	}
	return c.put(tx, k, b, false)
}

// Delete removes k in tx. Deleting a missing key is not an error (it is
// still recorded).
func (c *Collection[K, V]) Delete(tx *Tx, k K) error { return c.put(tx, k, nil, true) }

func (c *Collection[K, V]) put(tx *Tx, k K, val []byte, del bool) error {
	ops, err := tx.writable(c.s, c.id, c)
	if err != nil {
		return err
	}
	o := ops.(*txOps[K])
	if i := o.find(k); i >= 0 {
		o.ents[i].val, o.ents[i].del = val, del
		return nil
	}
	tx.nOps++
	o.add(opEnt[K]{key: k, val: val, del: del})
	return nil
}
