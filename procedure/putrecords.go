package procedure

import (
	"bytes"
	"fmt"

	"github.com/procyon-dev/procyon/durable"
)

// record returns p's record with data.
func (p *proc) record(data []byte) record {
	r := record{
		status: p.ps.status, aborted: p.ps.aborted, parent: p.parent, typ: p.typeName, version: p.version,
		next: p.ps.next, steps: p.ps.steps, entries: p.ps.entries, created: p.created, updated: p.ps.updated,
		submitter: p.submitter, nonce: p.nonce, data: data, err: p.ps.err, bypass: p.ps.bypass,
		completed: p.ps.completed, acked: p.ps.acked, timeout: p.ps.timeout(), locks: p.ps.locks(),
		stepTimeout: p.ps.stepTimeout(),
	}
	if p.ps.status == Suspended {
		r.wait = p.ps.wait()
	}
	if p.t != nil && p.t.root != nil {
		r.root = p.t.root.id
	}
	return r
}

// putDirtyLocked stores the record of every procedure c changed. The data
// of the procedure whose step ran is c.data; the others' is what the
// store holds (their data belongs to whoever runs them). With c.recs set
// (a batch of commits), the records are only encoded here, under the
// engine's lock, and put in the transaction after it is released.
func (e *Engine) putDirtyLocked(tx *durable.Tx, c *commit) error {
	for _, q := range c.dirty {
		e.eventWaits.clearWoken(q) // its record no longer says suspended
		if c.completed && q != c.t.root {
			continue // completeLocked deleted its record
		}
		var data []byte
		shared := false // data is in a buffer that is reused or in the store
		switch {
		case q == c.p && c.data != nil:
			data = c.data
		case q.raw != nil:
			data = q.raw
		default:
			shared = true
			b, ok := c.recs.lookup(uint64(q.id))
			if !ok {
				var err error
				if b, ok, err = e.procsC.Get(tx, uint64(q.id)); err != nil {
					return err
				}
			}
			if !ok {
				return fmt.Errorf("procedure: internal error: record of live procedure %d missing", q.id)
			}
			old, err := decodeRecord(b)
			if err != nil {
				return err
			}
			data = old.data
		}
		r := q.record(data)
		if c.completed && q == c.t.root {
			res := resultOfRecord(q.id, &r)
			if shared {
				res.Data = bytes.Clone(data)
			}
			c.result = &res
		}
		if c.recs != nil {
			c.recs.put(uint64(q.id), &r)
			continue
		}
		c.buf = appendRecord(c.buf[:0], &r)
		if err := e.procsC.Put(tx, uint64(q.id), c.buf); err != nil {
			return err
		}
	}
	return nil
}

// deleteRecordLocked deletes procedure id's record in tx, or defers it
// like putDirtyLocked's puts.
func (e *Engine) deleteRecordLocked(tx *durable.Tx, c *commit, id ID) error {
	if c.recs != nil {
		c.recs.del(uint64(id))
		return nil
	}
	return e.procsC.Delete(tx, uint64(id))
}

// recWrites are the procedure-record writes of a batch of commits,
// encoded under the engine's lock and applied to the transaction, in
// order, after it is released: the B-tree inserts then hold only the
// store's write lock, not the lock every worker needs.
type recWrites struct {
	ids   []uint64
	ends  []int // end of each record in arena; -1: a delete
	arena []byte
}

func (w *recWrites) reset() { w.ids, w.ends, w.arena = w.ids[:0], w.ends[:0], w.arena[:0] }

func (w *recWrites) put(id uint64, r *record) {
	w.arena = appendRecord(w.arena, r)
	w.ids, w.ends = append(w.ids, id), append(w.ends, len(w.arena))
}

func (w *recWrites) del(id uint64) { w.ids, w.ends = append(w.ids, id), append(w.ends, -1) }

// lookup returns the latest record written for id in the batch (ok
// false: none, or deleted).
func (w *recWrites) lookup(id uint64) ([]byte, bool) {
	if w == nil {
		return nil, false
	}
	for i := len(w.ids) - 1; i >= 0; i-- {
		if w.ids[i] != id {
			continue
		}
		if w.ends[i] < 0 {
			return nil, false
		}
		return w.arena[w.start(i):w.ends[i]], true
	}
	return nil, false
}

func (w *recWrites) start(i int) int {
	for j := i - 1; j >= 0; j-- {
		if w.ends[j] >= 0 {
			return w.ends[j]
		}
	}
	return 0
}

// apply puts and deletes the records in tx, in the order they were made.
func (w *recWrites) apply(tx *durable.Tx, c *durable.Collection[uint64, []byte]) error {
	start := 0
	for i, id := range w.ids {
		var err error
		if end := w.ends[i]; end < 0 {
			err = c.Delete(tx, id)
		} else {
			err = c.Put(tx, id, w.arena[start:end])
			start = end
		}
		if err != nil {
			return err
		}
	}
	return nil
}
