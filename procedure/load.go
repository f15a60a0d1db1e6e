package procedure

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// load rebuilds the engine's memory from the store: every live procedure,
// grouped in trees, each tree's rollback stack checked, the AfterReplay
// hooks run, and the runnable work queued. Finished roots are only noted
// for the sweeper. A tree that cannot be loaded whole is quarantined,
// visibly and alone: the others load and run.
//
// It scans the procedures collection once, in id order; the durable
// store's snapshots bound the log, so start-up reads only the live
// procedures and kept results.
func (e *Engine) load(ctx context.Context) error {
	start := time.Now()
	v := e.store.Latest()
	hwm, _, err := e.meta.Get(v, metaNextID)
	if err != nil {
		return fmt.Errorf("procedure: load: %w", err)
	}
	l := &loader{e: e, v: v}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, b := range e.procsC.All(v) { // Bytes values: no decoding error
		l.record(k, b)
	}
	e.nextID = max(hwm, l.maxID+1)
	e.hwm = hwm
	live, quarantined := l.check()
	now := e.opts.Clock.Now()
	quarantined += l.restoreLocks(now)
	if err := l.queue(now.UnixNano()); err != nil {
		return fmt.Errorf("procedure: load: %w", err)
	}
	l.index()
	e.stats.recovered.Store(int64(live))
	e.stats.recoverTime.Store(int64(time.Since(start)))
	e.log.Info("procedure: recovered", "live", live, "trees", len(l.order), "quarantined", quarantined,
		"results", l.results, "took", time.Since(start))
	_ = ctx
	return nil
}

// loader is one run of load: the trees found by its scan, and the steps
// that follow it. Its methods run under the engine's lock.
type loader struct {
	e       *Engine
	v       *durable.View // the version loaded: every read of the load is in it
	order   []*tree       // trees in root id order (the scan's)
	maxID   uint64        // the largest id of a record
	results int           // finished roots (kept results)
	rec     record        // each record decodes into it: a load allocates none
}

// record loads the record of procedure k: a kept result is only noted
// for the sweeper, a live procedure joins its tree (a root starts one). A
// record that does not decode, or whose data does not, quarantines its
// tree.
func (l *loader) record(k uint64, b []byte) {
	e := l.e
	l.maxID = max(l.maxID, k)
	id := ID(k)
	l.rec = record{}
	r := &l.rec
	derr := decodeRecordInto(r, b)
	if derr != nil {
		// The record itself is unreadable: it stays as it is, alone.
		e.ix.noteCreated(id, 0) // Info.Created is zero
		p := &proc{id: id, committed: true, quarantine: fmt.Sprintf("undecodable record: %v", derr)}
		t := &tree{root: p, procs: []*proc{p}, quarantine: fmt.Sprintf("procedure %d: %s", id, p.quarantine)}
		p.t = t
		e.procs[id], e.trees[id] = p, t
		l.order = append(l.order, t)
		return
	}
	e.ix.noteCreated(id, r.created)
	if r.parent == 0 && r.completed != 0 {
		e.ix.add(id, r.status, r.typ)
		e.results.add(id, e.expiry(r.completed, r.acked))
		l.results++
		return
	}
	p := l.proc(id, r)
	e.procs[id] = p
	if r.parent == 0 {
		if r.root != id {
			p.quarantine = fmt.Sprintf("root procedure names root %d", r.root)
		}
		t := &tree{root: p, procs: []*proc{p}}
		p.t = t
		e.trees[id] = t
		l.order = append(l.order, t)
		return
	}
	t := e.trees[r.root]
	if t == nil {
		// Ids grow, so a root is always scanned before its
		// descendants: this one's root is gone.
		t = &tree{quarantine: fmt.Sprintf("root %d missing", r.root)}
		e.trees[r.root] = t
		l.order = append(l.order, t)
	}
	p.t = t
	t.procs = append(t.procs, p)
}

// index enters the live procedures in the index (the kept results are,
// as they are scanned), with their statuses as the load left them.
func (l *loader) index() {
	e := l.e
	var odd []ID
	for _, t := range l.order {
		if t.quarantine != "" {
			e.quarantined++
		}
		for _, p := range t.procs {
			e.ix.add(p.id, p.ps.status, p.typeName)
			p.indexed, p.ixStatus = true, p.ps.status
			e.ix.countLive(p, true)
			if t.quarantine != "" {
				odd = append(odd, p.id)
			}
		}
	}
	e.ix.setOdd(odd)
	e.ixReady = true
}

// proc returns the live procedure r stores, with its data decoded
// (through its type's upgrade if it is older), or quarantined with its
// raw data if its type is unknown or its data does not decode.
func (l *loader) proc(id ID, r *record) *proc {
	e := l.e
	p := &proc{id: id, parent: r.parent, typ: e.types[r.typ], typeName: r.typ, version: r.version,
		created: r.created, submitter: r.submitter, nonce: r.nonce, committed: true,
		ps: pstate{status: r.status, aborted: r.aborted, next: r.next, steps: r.steps, entries: r.entries,
			updated: r.updated, err: r.err, bypass: r.bypass, completed: r.completed, acked: r.acked}}
	if r.wait.kind != 0 || r.timeout != 0 || len(r.locks) > 0 || r.stepTimeout != 0 || len(r.undone) > 0 {
		p.ps.ext = &pext{wait: r.wait, timeout: r.timeout, locks: r.locks, stepTimeout: r.stepTimeout, undone: r.undone}
	}
	if p.typ == nil {
		p.quarantine = fmt.Sprintf("unknown type %q", r.typ)
		p.raw = slices.Clone(r.data)
		return p
	}
	d, err := e.decodeData(p.typ, r.version, r.data)
	if err != nil {
		p.quarantine = err.Error()
		p.raw = slices.Clone(r.data)
	} else {
		p.data, p.version = d, p.typ.version
	}
	return p
}

// check checks every loaded tree (checkTree) and runs the
// AfterReplay hooks of those that pass. It returns the live procedures
// and the trees quarantined.
func (l *loader) check() (live, quarantined int) {
	e := l.e
	for _, t := range l.order {
		live += len(t.procs)
		if t.quarantine == "" {
			if reason := l.checkTree(t); reason != "" {
				t.quarantine = reason
			}
		}
		if t.quarantine == "" {
			l.replay(t)
		}
		if t.quarantine != "" {
			quarantined++
			id := ID(0)
			if t.root != nil {
				id = t.root.id
			}
			e.log.Error("procedure: tree quarantined on load; it will not run", "root", id, "procedures", len(t.procs), "reason", t.quarantine)
		}
	}
	return live, quarantined
}

// restoreLocks holds again the locks held across steps, before anything
// runs, by every tree (a quarantined one keeps what it held). A tree
// whose locks cannot be restored is quarantined; it returns how many
// were.
func (l *loader) restoreLocks(now time.Time) (quarantined int) {
	e := l.e
	for _, t := range l.order {
		for _, p := range t.procs {
			if len(p.ps.locks()) == 0 {
				continue
			}
			req := &lockReq{owner: p.id, ancestors: e.locks.ancestors(nil, p), locks: p.ps.locks()}
			if err := e.locks.table.restore(req, now); err != nil {
				if t.quarantine == "" {
					t.quarantine = fmt.Sprintf("procedure %d: restoring its locks: %v", p.id, err)
					quarantined++
					e.log.Error("procedure: tree quarantined on load; it will not run", "root", p.id, "reason", t.quarantine)
				}
				continue
			}
			p.sched().holdLocks = req
		}
	}
	return quarantined
}

// queue resumes the waits of the trees that can run and queues their
// work: a failed tree's rollback, the others' runnable procedures. It
// runs only once everything is loaded: ids of procedures created from
// then on must not collide, and the hooks have run.
func (l *loader) queue(now int64) error {
	e := l.e
	for _, t := range l.order {
		if t.quarantine != "" {
			continue
		}
		if err := l.resumeWaits(t, now); err != nil {
			return err
		}
		if t.ts.failed {
			t.rbQueued = true
			e.q.pushBack(item{p: t.root, rollback: true})
			continue
		}
		for _, p := range t.procs {
			if p.ps.status == Runnable && p.ps.bypass == nil {
				p.queued = true
				e.q.pushBack(item{p: p})
			}
		}
	}
	return nil
}

// resumeWaits picks up where t's procedures were waiting: a
// procedure suspended on an event that is signalled, or on a time that
// has passed, is runnable; the others wait again (their timers armed at
// the stored wall-clock times, so a restart neither restarts nor
// shortens a wait: nothing fires before its time); timeouts are armed,
// and one that passed while the engine was down fires at once.
func (l *loader) resumeWaits(t *tree, now int64) error {
	e := l.e
	for _, p := range t.procs {
		if p.ps.status == Suspended {
			switch w := p.ps.wait(); w.kind {
			case waitEvent:
				_, set, err := e.events.Get(l.v, w.event)
				if err != nil {
					return err
				}
				if set {
					countEventWait(p, now)
					p.ps.status, p.ps.w().wait = Runnable, waitState{}
					e.eventWaits.markWoken(p, w.event)
				} else {
					e.eventWaits.suspend(p, w.event)
				}
			case waitTimer:
				if w.until <= now {
					p.ps.status, p.ps.w().wait = Runnable, waitState{}
				} else {
					e.armSleepLocked(p)
				}
			}
		}
		if !t.ts.failed && p.ps.status != Succeeded && p.ps.status != Failed && p.ps.bypass == nil {
			e.armTimeoutLocked(p)
		}
	}
	return nil
}

// checkTree checks a loaded tree and derives its state: parents,
// types, the rollback stack (every index from 0 to its size exactly once,
// in each procedure's order of execution), which procedures wait for
// children, whether it is failed or past its point of no return. It
// returns why the tree cannot run, or "".
func (l *loader) checkTree(t *tree) string {
	e := l.e
	n := 0
	for _, p := range t.procs {
		if p.quarantine != "" {
			return fmt.Sprintf("procedure %d: %s", p.id, p.quarantine)
		}
		if p != t.root {
			parent := e.procs[p.parent]
			if parent == nil || parent.t != t {
				return fmt.Sprintf("procedure %d: parent %d missing from tree %d", p.id, p.parent, t.root.id)
			}
			if p.ps.status == RolledBack {
				return fmt.Sprintf("procedure %d: a child marked rolled back", p.id)
			}
		}
		n += len(p.ps.entries)
	}
	if n > 1<<31 {
		return "rollback stack too large"
	}
	owner := make([]*proc, n)
	for _, p := range t.procs {
		last := -1
		for _, en := range p.ps.entries {
			switch {
			case int(en.idx) >= n:
				return fmt.Sprintf("rollback stack: procedure %d holds index %d of a stack of %d entries (a gap below it)", p.id, en.idx, n)
			case owner[en.idx] != nil:
				return fmt.Sprintf("rollback stack: index %d held by procedures %d and %d", en.idx, owner[en.idx].id, p.id)
			case int(en.idx) <= last:
				return fmt.Sprintf("rollback stack: procedure %d's entries out of order at index %d", p.id, en.idx)
			}
			owner[en.idx] = p
			last = int(en.idx)
		}
	}
	// n entries, no index >= n, no duplicate: every index is held.
	t.ts.nextIdx = uint32(n)
	root := t.root
	t.ts.failed = root.ps.aborted
	for _, p := range t.procs {
		// A failure is recorded as the procedure's error; its status says
		// Failed too, unless a step of it that was running when it failed
		// (a timeout) committed after the failure.
		if p.ps.status == Failed || p.ps.err != nil {
			t.ts.failed = true
		}
		// A child bypassed as an ancestor still waits for its children.
		if p != root && p.ps.status != Succeeded && (p.ps.bypass == nil || p.ps.bypass.Role == BypassAncestor) {
			e.procs[p.parent].ps.pending++
		}
	}
	for _, p := range t.procs {
		if p.ps.status == Waiting && p.ps.pending == 0 {
			p.ps.status = Runnable
		}
		if t.ts.failed || p.typ.noReturn == nil {
			continue
		}
		if p.ps.status == Runnable {
			e.checkPONRLocked(t, p, p.ps.next)
		}
		for _, en := range p.ps.entries {
			if !t.ts.pastPONR && p.typ.noReturn(en.state) {
				t.ts.pastPONR = true
				t.ts.ponr = fmt.Sprintf("procedure %d (%s) executed state %s", p.id, p.typeName, p.typ.stateName(en.state))
			}
		}
	}
	return ""
}

// replay runs the AfterReplay hooks of a loaded tree. A panicking
// hook quarantines the tree.
func (l *loader) replay(t *tree) {
	e := l.e
	for _, p := range t.procs {
		if p.typ.afterReplay == nil || p.data == nil {
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					e.log.Error("procedure: AfterReplay panicked", "id", p.id, "panic", r, "stack", string(debug.Stack()))
					t.quarantine = fmt.Sprintf("procedure %d: AfterReplay panicked: %v", p.id, r)
				}
			}()
			p.typ.afterReplay(p.id, p.ps.next, p.data)
		}()
		if t.quarantine != "" {
			return
		}
	}
}
