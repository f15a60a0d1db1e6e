package durable

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Reader is a consistent state to read collections in: a *View (a
// committed, durable version, from Store.Latest) or a *Tx (the
// transaction's working state, its own writes included). Reading with a
// nil Reader, a View of another store or a Tx whose Write has returned is
// a programming error: the read panics.
type Reader interface {
	// readState returns what a read of collection id of s looks at, or
	// an error wrapping errMisuse if the reader cannot be read there.
	readState(s *Store, id int) (readState, error)
	// fail records an iterator's decoding error on the reader.
	fail(err error)
}

// errMisuse is what the panic of a read with a wrong Reader wraps.
var errMisuse = errors.New("durable: read with a wrong Reader")

// readState is what a read of one collection looks at, newest first: a
// transaction's own ops, the forming group's layer (top), layers (oldest
// first: each a group's writes, per collection), then the tree. Only a
// Tx has ops and top; a View has the layers of durable groups not yet
// applied to its trees.
type readState struct {
	ops    any
	top    any
	layers [][]any
	tree   any
}

// version is an immutable state of every collection of a store, as of one
// committed transaction whose record is durable: what the store publishes
// to readers, and what snapshots write. It is never changed.
type version struct {
	seq   uint64
	trees []any // one per collection, indexed by collection id; never mutated
	// layers are the writes of the durable groups not yet applied to
	// trees, oldest first (see Store.applier); never mutated.
	layers [][]any
	store  *Store
}

// View is a durable version of every collection of a store, from
// Store.Latest: every read through it sees the same committed state, for
// as long as it is held. Holding a View keeps its version readable.
//
// A View is its caller's own, and may be shared by goroutines: if an
// iterator over it (Collection.All, Collection.From) meets a value its
// codec cannot decode, the iterator stops and the View keeps the error
// for Err. The Bytes and String codecs never fail: with them there is
// nothing to check.
type View struct {
	ver *version // shared with every View of the version
	err atomic.Pointer[error]
}

// Seq returns the log sequence number of the last transaction the view
// reflects (0: none since the log began, or a restored snapshot).
func (v *View) Seq() uint64 { return v.ver.seq }

// Err returns the first error an iterator over v stopped at (a value its
// codec could not decode), or nil.
func (v *View) Err() error {
	if e := v.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (v *View) fail(err error) { v.err.CompareAndSwap(nil, &err) }

func (v *View) readState(s *Store, id int) (readState, error) {
	switch {
	case v == nil:
		return readState{}, fmt.Errorf("%w: nil View", errMisuse)
	case v.ver.store != s:
		return readState{}, fmt.Errorf("%w: View of another store", errMisuse)
	case id >= len(v.ver.trees):
		return readState{}, fmt.Errorf("%w: View taken before the store was open", errMisuse)
	}
	return readState{layers: v.ver.layers, tree: v.ver.trees[id]}, nil
}
