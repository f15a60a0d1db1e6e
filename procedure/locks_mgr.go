package procedure

import "time"

// lockWait is who waits for a lock request: a procedure's forward step,
// or (t set) its tree's rollback step.
type lockWait struct {
	p     *proc
	t     *tree
	since time.Time
}

// maxFreeReqs bounds the lock requests kept for reuse.
const maxFreeReqs = 1024

// lockManager owns the engine's locks: the lock table, the requests
// waiting in it with who each wakes, and the requests let go of, kept for
// reuse. Engine.mu guards it: every method is called with mu held. It
// reads the engine's live procedures to find an owner's ancestors, and
// hands each request granted after waiting to the engine (granted), which
// wakes its waiter.
type lockManager struct {
	table *lockTable
	waits map[*lockReq]lockWait // requests waiting in table: who to wake
	free  []*lockReq            // lock requests let go of, for reuse
	procs map[ID]*proc          // the engine's live procedures, read only
	clock Clock
	stats *engineStats // lockWaiting, lockWait

	// granted wakes w, waiting for r, which the table has just granted
	// (r is no longer in waits). It reports whether w uses r; if not, r
	// is released at once (which may grant others).
	granted func(r *lockReq, w lockWait) (use bool)
}

// newLockManager returns a lock manager with an empty table.
func newLockManager(procs map[ID]*proc, clock Clock, stats *engineStats, granted func(*lockReq, lockWait) bool) *lockManager {
	return &lockManager{
		table:   newLockTable(),
		waits:   map[*lockReq]lockWait{},
		procs:   procs,
		clock:   clock,
		stats:   stats,
		granted: granted,
	}
}

// ancestors appends p's ancestors to dst, nearest first.
func (m *lockManager) ancestors(dst []ID, p *proc) []ID {
	for q := p; q != nil && q.parent != 0; q = m.procs[q.parent] {
		dst = append(dst, q.parent)
	}
	return dst
}

// newReq returns a lock request of owner for ls, reusing one let go
// of (the table reuses its slices too).
func (m *lockManager) newReq(owner *proc, ls []Lock) *lockReq {
	r := popFree(&m.free)
	r.owner, r.ancestors, r.locks = owner.id, m.ancestors(r.ancestors[:0], owner), ls
	return r
}

// freeReq takes back r, which the table let go of and nothing refers to
// any more.
func (m *lockManager) freeReq(r *lockReq) {
	r.locks = nil
	if len(m.free) < maxFreeReqs {
		m.free = append(m.free, r)
	}
}

// acquire asks for ls for w, all or nothing. It returns the request and
// whether it is granted; if not, w is woken (granted) when it is.
func (m *lockManager) acquire(owner *proc, ls []Lock, w lockWait) (*lockReq, bool) {
	req := m.newReq(owner, ls)
	now := m.clock.Now()
	ok, woken := m.table.acquire(req, now)
	if ok {
		m.stats.lockWait.observe(0)
	} else {
		w.since = now
		m.waits[req] = w
		m.stats.lockWaiting.Add(1)
	}
	// A request granted may give priority to its owner's descendants
	// waiting: they are granted too.
	m.grant(woken)
	return req, ok
}

// waiting reports whether r waits in the table.
func (m *lockManager) waiting(r *lockReq) bool {
	_, ok := m.waits[r]
	return ok
}

// release lets go of held request r (nil: nothing) and wakes the
// requests that this lets in.
func (m *lockManager) release(r *lockReq) {
	if r != nil {
		granted := m.table.release(r, m.clock.Now())
		m.freeReq(r)
		m.grant(granted)
	}
}

// cancelWait withdraws waiting request r.
func (m *lockManager) cancelWait(r *lockReq) {
	if _, ok := m.waits[r]; !ok {
		return
	}
	delete(m.waits, r)
	m.stats.lockWaiting.Add(-1)
	granted := m.table.cancel(r, m.clock.Now())
	m.freeReq(r)
	m.grant(granted)
}

// grant hands the requests just granted to their waiters (granted). A
// request whose waiter can no longer use it is released at once (which
// may grant others).
func (m *lockManager) grant(granted []*lockReq) {
	for len(granted) > 0 {
		r := granted[0]
		granted = granted[1:]
		w, ok := m.waits[r]
		if !ok {
			panic("procedure: internal error: lock granted to an unknown request")
		}
		delete(m.waits, r)
		m.stats.lockWaiting.Add(-1)
		now := m.clock.Now()
		m.stats.lockWait.observe(now.Sub(w.since))
		if !m.granted(r, w) {
			granted = append(granted, m.table.release(r, now)...)
			m.freeReq(r)
		}
	}
}
