package procedure

import "slices"

// undoLog keeps what a commit function changed in memory, to put it back
// if the transaction fails after the function returned (a record too
// large for the log): the store undoes its side, this undoes ours.
type undoLog struct {
	procs    []savedProc
	procsArr [2]savedProc // procs' first backing array: most commits change one or two
	tree     *tree
	ts       tstate
	nprocs   int    // len(tree.procs) before
	version  uint64 // tree.ts.version after this commit's change
	newTree  bool   // the commit created the tree (a submission)
	hwm      uint64 // e.hwm before, if hwmSet
	hwmSet   bool
	hwmAfter uint64
}

type savedProc struct {
	p  *proc
	ps pstate
}

func (u *undoLog) saveProc(p *proc) {
	for _, s := range u.procs {
		if s.p == p {
			return
		}
	}
	if u.procs == nil {
		u.procs = u.procsArr[:0]
	}
	u.procs = append(u.procs, savedProc{p, p.ps})
}

// begin records the tree's state before the commit changes it, and marks
// the change.
func (c *commit) begin(t *tree) {
	c.applied = true
	c.undo.tree, c.undo.ts, c.undo.nprocs = t, t.ts, len(t.procs)
	t.ts.version++
	c.undo.version = t.ts.version
}

func (c *commit) markDirty(p *proc) {
	if !slices.Contains(c.dirty, p) {
		c.undo.saveProc(p)
		c.dirty = append(c.dirty, p)
	}
}

// markDirtyNoPut saves p for undo without writing its record: a change
// that is derived on load (a parent's count of running children).
func (c *commit) markDirtyNoPut(p *proc) { c.undo.saveProc(p) }

// undoLocked puts back what c's commit function changed. If another commit
// changed the tree since, that is no longer possible: the tree is
// quarantined until a restart rebuilds it from the store. (Within a batch
// the undo runs in reverse, so this happens only across batches.)
func (e *Engine) undoLocked(c *commit) {
	u := &c.undo
	if u.hwmSet && e.hwm == u.hwmAfter {
		e.hwm = u.hwm
	}
	t := u.tree
	if t == nil {
		return
	}
	if t.ts.version != u.version {
		e.quarantineLocked(t, "a commit of the tree failed after later commits of the tree; restart to rebuild it from the store")
		return
	}
	for i := len(u.procs) - 1; i >= 0; i-- {
		u.procs[i].p.ps = u.procs[i].ps
		e.indexLocked(u.procs[i].p) // a wake may have moved it meanwhile
	}
	for _, p := range c.added {
		delete(e.procs, p.id)
		e.unindexLocked(p)
	}
	t.ts = u.ts
	t.procs = t.procs[:u.nprocs]
	if u.newTree {
		delete(e.trees, t.root.id)
		delete(e.procs, t.root.id)
		e.unindexLocked(t.root)
	}
}

// undoBatch undoes, in reverse, what the commit functions of a batch
// whose transaction failed changed in memory.
func (e *Engine) undoBatch(batch []*commit) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(batch) - 1; i >= 0; i-- {
		if batch[i].applied {
			e.undoLocked(batch[i])
		}
	}
}

// quarantineLocked keeps t from running, visibly, until a restart (see
// Info.Quarantined).
func (e *Engine) quarantineLocked(t *tree, reason string) {
	if t.quarantine != "" {
		return
	}
	t.quarantine = reason
	e.quarantined++
	id := ID(0)
	if t.root != nil {
		id = t.root.id
	}
	e.log.Error("procedure: tree quarantined", "root", id, "reason", reason)
}
