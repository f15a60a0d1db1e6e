package durable

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// opEnt is one key a transaction touched: its final state (the coalesced
// effect of every Put and Delete of the key).
type opEnt[K cmp.Ordered] struct {
	key K
	val []byte
	del bool
}

// txOps holds a transaction's ops on one collection, in first-touch order.
// Most transactions touch a few keys: they are found by a linear scan, and
// an index map is built only past opsIndexMin keys.
type txOps[K cmp.Ordered] struct {
	ents  []opEnt[K]
	idx   map[K]int  // nil until len(ents) > opsIndexMin
	order []keyAt[K] // scratch for encoding in key order
}

const opsIndexMin = 16

func (o *txOps[K]) find(k K) int {
	if o.idx != nil {
		if i, ok := o.idx[k]; ok {
			return i
		}
		return -1
	}
	for i := range o.ents {
		if o.ents[i].key == k {
			return i
		}
	}
	return -1
}

func (o *txOps[K]) add(e opEnt[K]) {
	o.ents = append(o.ents, e)
	switch {
	case o.idx != nil:
		o.idx[e.key] = len(o.ents) - 1
	case len(o.ents) > opsIndexMin:
		o.idx = make(map[K]int, 2*len(o.ents))
		for i := range o.ents {
			o.idx[o.ents[i].key] = i
		}
	}
}

// newOps returns an empty txOps, the one the last transaction gave back
// if there is one. Called with the store's write lock held.
func (c *Collection[K, V]) newOps() any {
	if o := c.spare; o != nil {
		c.spare = nil
		return o
	}
	return &txOps[K]{}
}

// maxSpareOps bounds the ops slice kept for reuse: a huge transaction's
// is left to the collector.
const maxSpareOps = 4096

// freeOps takes back a committed transaction's ops for the next one.
// Called with the store's write lock held, once the ops are encoded.
func (c *Collection[K, V]) freeOps(o any) {
	t := o.(*txOps[K])
	if cap(t.ents) > maxSpareOps {
		return
	}
	// Past len the arrays are still zero: every use is cleared here.
	clear(t.ents)
	clear(t.order)
	t.ents, t.idx, t.order = t.ents[:0], nil, t.order[:0]
	c.spare = t
}
func (c *Collection[K, V]) cloneOps(o any) any {
	t := o.(*txOps[K])
	return &txOps[K]{ents: slices.Clone(t.ents), idx: maps.Clone(t.idx)}
}
func (c *Collection[K, V]) numOps(o any) int { return len(o.(*txOps[K]).ents) }

// appendOps appends the collection's group of a transaction record (see
// doc.go), with keys in order so that records are deterministic.
func (c *Collection[K, V]) appendOps(dst []byte, o any) []byte {
	ents := o.(*txOps[K]).ents
	dst = binary.AppendUvarint(dst, uint64(len(c.name)))
	dst = append(dst, c.name...)
	dst = binary.AppendUvarint(dst, uint64(len(ents)))
	ops := o.(*txOps[K])
	order := ops.order[:0]
	sorted := true
	for i := range ents {
		order = append(order, keyAt[K]{ents[i].key, int32(i)})
		sorted = sorted && (i == 0 || ents[i-1].key < ents[i].key)
	}
	if !sorted {
		// Sort the keys with their positions, not the entries: a third of
		// the bytes to move, and the transaction's order stays as it is.
		slices.SortFunc(order, func(a, b keyAt[K]) int { return cmp.Compare(a.k, b.k) })
	}
	ops.order = order
	for _, ka := range order {
		e, k := &ents[ka.i], ka.k
		if e.del {
			dst = append(dst, opDelete)
		} else {
			dst = append(dst, opPut)
		}
		mark := len(dst)
		dst = append(dst, 0) // room for a one-byte length
		dst = c.keys.append(dst, k)
		if n := len(dst) - mark - 1; n < 0x80 {
			dst[mark] = byte(n)
		} else {
			// Rare: a long key; move it to make room for its length.
			kb := append([]byte(nil), dst[mark+1:]...)
			dst = binary.AppendUvarint(dst[:mark], uint64(len(kb)))
			dst = append(dst, kb...)
		}
		if !e.del {
			dst = binary.AppendUvarint(dst, uint64(len(e.val)))
			dst = append(dst, e.val...)
		}
	}
	return dst
}

// Tx is a transaction: the working state of one Store.Write. Its Puts and
// Deletes are visible to reads in it (Get(tx, ...), All(tx), ...) and are
// recorded as ops, coalesced to the final state of each key. If an
// iterator over it meets a value its codec cannot decode, the transaction
// fails: the Write returns that error and nothing commits. A Tx belongs to
// the goroutine running the Write's function and is dead once it returns.
//
// A transaction's writes stay in its ops until it commits (the write lock
// is held): reads in it look at its ops, then at the store's head (see
// Store.w); if the function fails, the ops are dropped.
type Tx struct {
	s      *Store
	ops    []any // per collection: *txOps[K], or nil
	nOps   int
	parent context.Context
	ctx    context.Context // made on demand by Context
	done   bool
	err    error // a read's failure (see Collection.All): the Write fails with it
}

type txKey struct{}

// Context returns the Write's context carrying the transaction: a Write
// of the same store given this context (or one derived from it) joins the
// transaction instead of starting one (Aurora's doInTransaction).
func (tx *Tx) Context() context.Context {
	if tx.ctx == nil {
		tx.ctx = context.WithValue(tx.parent, txKey{}, tx)
	}
	return tx.ctx
}

func txFrom(ctx context.Context) *Tx {
	tx, _ := ctx.Value(txKey{}).(*Tx)
	return tx
}

// readState returns the head of collection id with the transaction's own
// writes on top (see Store.w).
func (tx *Tx) readState(s *Store, id int) (readState, error) {
	switch {
	case tx == nil:
		return readState{}, fmt.Errorf("%w: nil Tx", errMisuse)
	case tx.s != s:
		return readState{}, fmt.Errorf("%w: Tx of another store", errMisuse)
	case tx.done:
		return readState{}, fmt.Errorf("%w: %w", errMisuse, ErrTxDone)
	}
	return readState{ops: tx.ops[id], top: s.w.forming[id], layers: s.w.pending, tree: s.w.trees[id]}, nil
}

// fail makes the transaction fail with err (the first error wins).
func (tx *Tx) fail(err error) {
	if tx.err == nil {
		tx.err = err
	}
}

// writable returns the transaction's ops of collection id, for a write.
func (tx *Tx) writable(s *Store, id int, c coll) (any, error) {
	if tx == nil {
		return nil, fmt.Errorf("durable: nil transaction")
	}
	if tx.s != s {
		return nil, fmt.Errorf("durable: transaction of another store")
	}
	if tx.done {
		return nil, ErrTxDone
	}
	if tx.ops[id] == nil {
		tx.ops[id] = c.newOps()
	}
	return tx.ops[id], nil
}

// rollback drops the transaction's writes: they never left its ops.
func (tx *Tx) rollback() {
	for id, o := range tx.ops {
		if o != nil {
			tx.s.colls[id].freeOps(o)
			tx.ops[id] = nil
		}
	}
	tx.nOps = 0
}

// nested runs fn inside tx. If fn fails or panics, the transaction is put
// back as it was before.
func (tx *Tx) nested(fn func(*Tx) error) (err error) {
	saved := make([]any, len(tx.ops))
	for id, o := range tx.ops {
		if o != nil {
			saved[id] = tx.s.colls[id].cloneOps(o)
		}
	}
	nOps := tx.nOps
	ok := false
	defer func() {
		if !ok {
			tx.ops, tx.nOps = saved, nOps
		}
	}()
	err = fn(tx)
	if err == nil {
		err = tx.err
	}
	ok = err == nil
	return err
}

// encode appends the transaction's record (see doc.go) to dst.
func (tx *Tx) encode(dst []byte) []byte {
	groups := 0
	for i, o := range tx.ops {
		if o != nil && tx.s.colls[i].numOps(o) > 0 {
			groups++
		}
	}
	dst = append(dst, recordKindTx, recordVersion)
	dst = binary.AppendUvarint(dst, uint64(groups))
	for i, o := range tx.ops {
		if o != nil && tx.s.colls[i].numOps(o) > 0 {
			dst = tx.s.colls[i].appendOps(dst, o)
		}
	}
	return dst
}

// keyAt is a key and its position in a transaction's ops, for encoding
// them in key order.
type keyAt[K cmp.Ordered] struct {
	k K
	i int32
}
