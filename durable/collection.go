package durable

import (
	"cmp"
	"fmt"
	"iter"

	"github.com/procyon-dev/procyon/internal/cowbtree"
)

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
// Every read (Get, Len, All, From) takes a Reader: a View from
// Store.Latest (a durable version; several reads at one version) or the
// Tx of a Store.Write (it sees the transaction's own writes); a wrong
// Reader panics (see Reader). Put and Delete take the Tx.
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

// stateIn returns what reads of the collection in r look at. It panics if
// r cannot be read here (see Reader).
func (c *Collection[K, V]) stateIn(r Reader) readState {
	if r == nil {
		panic(fmt.Errorf("durable: collection %q: %w: nil Reader (use Store.Latest, or the Tx of a Write)", c.name, errMisuse))
	}
	st, err := r.readState(c.s, c.id)
	if err != nil {
		panic(fmt.Errorf("durable: collection %q: %w", c.name, err))
	}
	return st
}

func (c *Collection[K, V]) decode(k K, b []byte) (V, error) {
	v, err := c.codec.Decode(b)
	if err != nil {
		return v, fmt.Errorf("durable: collection %q: decode value of key %v: %w", c.name, k, err)
	}
	return v, nil
}

// Get returns the value of k in r (a *View or a *Tx), freshly decoded.
// err is set only if the stored value cannot be decoded (never with the
// Bytes and String codecs); it names the collection and the key.
func (c *Collection[K, V]) Get(r Reader, k K) (v V, ok bool, err error) {
	st := c.stateIn(r)
	val, found := c.lookup(st, k)
	if !found {
		return v, false, nil
	}
	v, err = c.decode(k, val)
	return v, err == nil, err
}

// lookup returns the stored value of k in st.
func (c *Collection[K, V]) lookup(st readState, k K) ([]byte, bool) {
	if e, ok := c.layerLookup(st, k); ok {
		return e.val, !e.del
	}
	return st.tree.(*tree[K]).Get(k)
}

// Len returns the number of entries in r.
func (c *Collection[K, V]) Len(r Reader) int {
	st := c.stateIn(r)
	n := st.tree.(*tree[K]).Len()
	if c.layered(st) {
		n += c.layerDelta(st)
	}
	return n
}

// All returns an iterator over the entries of r in key order, each value
// freshly decoded:
//
//	for k, v := range users.All(tx) { ... }
//
// It reads r when the loop starts: in a Tx, the transaction's writes made
// by the loop's body are not seen by the loop. If a value cannot be
// decoded, the iteration stops and the error is kept on r: a Tx fails with
// it (its Write returns it and nothing commits), a View keeps it for
// View.Err. The Bytes and String codecs never fail.
func (c *Collection[K, V]) All(r Reader) iter.Seq2[K, V] { return c.entries(r, nil) }

// From is All from key from on: the entries of r with key >= from, in
// key order. For a range, break out of the loop at its end.
func (c *Collection[K, V]) From(r Reader, from K) iter.Seq2[K, V] { return c.entries(r, &from) }

func (c *Collection[K, V]) entries(r Reader, from *K) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		c.ascend(c.stateIn(r), from, func(k K, val []byte) bool {
			v, err := c.decode(k, val)
			if err != nil {
				r.fail(err)
				return false
			}
			return yield(k, v)
		})
	}
}

// ascend calls fn with the entries of st with key >= from (nil: all) in
// key order, until fn returns false: the tree merged with what is above
// it (a Tx's ops, layers not yet applied to the tree).
func (c *Collection[K, V]) ascend(st readState, from *K, fn func(k K, val []byte) bool) {
	t := st.tree.(*tree[K])
	if !c.layered(st) {
		t.Ascend(from, nil, fn)
		return
	}
	over := c.overlay(st, from)
	// emit passes the overlay's entries before key k (all of them if k is
	// nil); it returns false once fn did.
	emit := func(k *K) bool {
		for e, ok := over.peek(); ok && (k == nil || e.key < *k); e, ok = over.peek() {
			over.drop()
			if !e.del && !fn(e.key, e.val) {
				return false
			}
		}
		return true
	}
	stopped := false
	t.Ascend(from, nil, func(k K, val []byte) bool {
		if !emit(&k) {
			stopped = true
			return false
		}
		if e, ok := over.peek(); ok && e.key == k {
			over.drop()
			if e.del {
				return true
			}
			val = e.val
		}
		if !fn(k, val) {
			stopped = true
			return false
		}
		return true
	})
	if !stopped {
		emit(nil)
	}
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
