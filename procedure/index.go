package procedure

import "slices"

// procIndex is what List reads instead of the procedures collection: the
// id of every record in it (live procedures and kept results), in ordered
// sets by status and by type. It is built by load and kept by the
// engine, under Engine.mu.
//
// A live procedure enters it when the commit that creates it is applied
// (before its record is durable: a record is never visible before List
// can find it) and leaves it when its tree retires; its status entry
// follows proc.ps.status once each change is durable, which is what Get
// reports once no commit of it is in flight (a stored Waiting or
// Suspended procedure that memory knows runnable is reported runnable).
// A finished root stays under its final status until Sweep deletes its
// record. The entries change only when a record is added or deleted or a
// status changes: on the commit path that is a comparison, and, when the
// status changed, an idSet delete and insert (an append when the id is
// the set's newest, as it mostly is); no allocation but an occasional
// new block.
type procIndex struct {
	// byStatus[s]: the ids whose status is s (0: an undecodable record).
	// An id is in exactly one of them.
	byStatus [numStatuses]*idSet
	byType   map[string]*idSet // by type name; none for ""

	// live[s] counts the live procedures (of trees not retired) indexed
	// under status s: Stats reads them instead of visiting every
	// procedure under the engine's lock.
	live [numStatuses]int

	// odd are the procedures of trees quarantined on load, ascending:
	// their records may name a parent or root that is not in their tree,
	// so Root and Parent queries consider them all.
	odd []ID

	// created says whether the records' creation times grow with their
	// ids (never decrease), as they do while the clock does not go back:
	// then a List with Since stops at the first record created before it.
	// It only goes from true to false, until the next load.
	created struct {
		ordered bool
		maxID   ID    // the largest id noted
		last    int64 // its creation time
	}
}

// numStatuses bounds the statuses an index entry can have: 0 (an
// undecodable record) to Suspended.
const numStatuses = int(Suspended) + 1

func newProcIndex() *procIndex {
	ix := &procIndex{byType: map[string]*idSet{}}
	for i := range ix.byStatus {
		ix.byStatus[i] = &idSet{}
	}
	ix.created.ordered = true
	return ix
}

// status returns the set of status st (nil: no record can have it).
func (ix *procIndex) status(st Status) *idSet {
	if int(st) >= numStatuses {
		return nil
	}
	return ix.byStatus[st]
}

// add enters a record.
func (ix *procIndex) add(id ID, st Status, typ string) {
	if s := ix.status(st); s != nil {
		s.Insert(uint64(id))
	}
	if typ == "" {
		return
	}
	s := ix.byType[typ]
	if s == nil {
		s = &idSet{}
		ix.byType[typ] = s
	}
	s.Insert(uint64(id))
}

// move changes a record's status.
func (ix *procIndex) move(id ID, from, to Status) {
	if s := ix.status(from); s != nil {
		s.Delete(uint64(id))
	}
	if s := ix.status(to); s != nil {
		s.Insert(uint64(id))
	}
}

// remove takes a deleted record out.
func (ix *procIndex) remove(id ID, st Status, typ string) {
	if s := ix.status(st); s == nil || !s.Delete(uint64(id)) {
		for _, s := range ix.byStatus { // not where expected: wherever it is
			if s.Delete(uint64(id)) {
				break
			}
		}
	}
	if s := ix.byType[typ]; s != nil {
		s.Delete(uint64(id))
		if s.Len() == 0 {
			delete(ix.byType, typ)
		}
	}
}

// noteCreated notes that record id was created at created (unix ns); ids
// must be noted in increasing order, else the order is lost.
func (ix *procIndex) noteCreated(id ID, created int64) {
	c := &ix.created
	if id <= c.maxID || created < c.last {
		c.ordered = false
	}
	c.maxID, c.last = max(c.maxID, id), created
}

// setOdd records the procedures of the trees quarantined on load.
func (ix *procIndex) setOdd(ids []ID) {
	slices.Sort(ids)
	ix.odd = slices.Compact(ids)
}

// indexNewLocked enters a procedure just created (its record is being
// written: from then on List considers it, so that a record is never
// durable before the index has it).
func (e *Engine) indexNewLocked(p *proc) {
	e.ix.add(p.id, p.ps.status, p.typeName)
	e.ix.noteCreated(p.id, p.created)
	p.indexed, p.ixStatus = true, p.ps.status
	e.ix.countLive(p, true)
}

// countLive counts p as live (or no longer), under its indexed status.
func (ix *procIndex) countLive(p *proc, live bool) {
	if p.ixLive == live || int(p.ixStatus) >= numStatuses {
		return
	}
	p.ixLive = live
	if live {
		ix.live[p.ixStatus]++
	} else {
		ix.live[p.ixStatus]--
	}
}

// indexLocked moves p's entry to its status if that changed. It is called
// once the change is durable (or, for a change only memory knows, a
// wake-up, at once), so that the index says what Get says.
func (e *Engine) indexLocked(p *proc) {
	if p.indexed && p.ixStatus != p.ps.status {
		e.ix.move(p.id, p.ixStatus, p.ps.status)
		live := p.ixLive
		e.ix.countLive(p, false)
		p.ixStatus = p.ps.status
		e.ix.countLive(p, live)
	}
}

// unindexLocked takes p, whose record is deleted, out of the index for
// good.
func (e *Engine) unindexLocked(p *proc) {
	if p.indexed {
		e.ix.remove(p.id, p.ixStatus, p.typeName)
	}
	e.ix.countLive(p, false)
	p.indexed = false
}
