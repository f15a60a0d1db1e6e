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
		stepTimeout: p.ps.stepTimeout(), undone: p.ps.undone(),
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
		data, shared := c.data, false
		if q != c.p || c.data == nil {
			var ok bool
			var err error
			if data, shared, ok, err = e.storedDataLocked(tx, c, q); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("procedure: internal error: record of live procedure %d missing", q.id)
			}
		}
		r := q.record(data)
		if c.completed && q == c.t.root {
			res := resultOfRecord(q.id, &r)
			if shared {
				res.Data = bytes.Clone(data)
			}
			c.result = &res
		}
		if err := e.putLocked(tx, c, q.id, &r); err != nil {
			return err
		}
	}
	return nil
}

// putRewritesLocked stores as they are in memory (runnable) the records
// of the procedures an event reset by c had woken (Env.ResetEvent); one
// whose record is gone (its tree completed earlier in the batch) is
// skipped.
func (e *Engine) putRewritesLocked(tx *durable.Tx, c *commit, rewrite []*proc) error {
	for _, q := range rewrite {
		data, _, ok, err := e.storedDataLocked(tx, c, q)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		r := q.record(data)
		if err := e.putLocked(tx, c, q.id, &r); err != nil {
			return err
		}
	}
	return nil
}

// storedDataLocked returns q's data as the transaction (or the batch's
// record writes) holds it; shared: it is in a buffer that is reused or in
// the store. ok is false if q has no record.
func (e *Engine) storedDataLocked(tx *durable.Tx, c *commit, q *proc) (data []byte, shared, ok bool, err error) {
	if q.raw != nil {
		return q.raw, false, true, nil
	}
	b, ok := c.recs.lookup(uint64(q.id))
	if !ok {
		if b, ok, err = e.procsC.Get(tx, uint64(q.id)); err != nil || !ok {
			return nil, true, ok, err
		}
	}
	old, err := decodeRecord(b)
	if err != nil {
		return nil, true, false, err
	}
	return old.data, true, true, nil
}

// putLocked puts the record r of procedure id in tx, or defers it to the
// batch's record writes (c.recs).
func (e *Engine) putLocked(tx *durable.Tx, c *commit, id ID, r *record) error {
	if c.recs != nil {
		c.recs.put(uint64(id), r)
		return nil
	}
	c.buf = appendRecord(c.buf[:0], r)
	return e.procsC.Put(tx, uint64(id), c.buf)
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
