package procedure

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// LockMode is the mode in which a procedure takes a lock. Its values are
// part of the on-disk format (the engine persists held locks): they must
// never change.
type LockMode uint8

const (
	// Shared locks on a resource are compatible with each other.
	Shared LockMode = 1
	// Exclusive locks on a resource conflict with every other lock on
	// it, and with every lock on its descendants.
	Exclusive LockMode = 2
)

// String returns "shared" or "exclusive".
func (m LockMode) String() string {
	switch m {
	case Shared:
		return "shared"
	case Exclusive:
		return "exclusive"
	default:
		return fmt.Sprintf("LockMode(%d)", uint8(m))
	}
}

// Lock is a resource a procedure needs, with its mode.
//
// Resources are hierarchical keys whose segments are separated by '/',
// such as "table/t1", "table/t1/region/r7" or "server/s3". Every proper
// '/'-prefix of a resource is one of its ancestors ("table/t1/region/r7"
// has the ancestors "table/t1/region", "table/t1" and "table"), and a lock
// on a resource implies a shared lock on each of its ancestors. Two locks
// held by unrelated procedures therefore conflict if one of them is
// exclusive on a resource that the other locks or implies: an exclusive
// lock on "table/t1" conflicts with any lock on "table/t1/..." and with a
// shared lock on "table/t1", while exclusive locks on "table/t1/region/r7"
// and "table/t1/region/r8", or a shared lock on "table/t1" and an
// exclusive one on "table/t1/region/r7", are compatible.
//
// A procedure never conflicts with the locks of its ancestors: children
// inherit the locks of their parents.
type Lock struct {
	Resource string
	Mode     LockMode
}

// ExclusiveLock returns an exclusive lock on resource.
func ExclusiveLock(resource string) Lock { return Lock{Resource: resource, Mode: Exclusive} }

// SharedLock returns a shared lock on resource.
func SharedLock(resource string) Lock { return Lock{Resource: resource, Mode: Shared} }

// LockInfo is one row of the lock table's view, for operators and tests:
// the procedures that hold, or wait for, a lock on a resource they named.
// Shared locks implied on ancestors are not listed.
type LockInfo struct {
	Resource string
	Holders  []LockHolder // sorted by ID
	Waiters  []LockHolder // in the order they will be considered (FIFO)
}

// LockHolder is a procedure holding, or waiting for, a lock.
type LockHolder struct {
	ID   ID
	Mode LockMode
	// Since is when the lock was granted (holders) or requested (waiters).
	Since time.Time
}

// maxResourceLen is the length limit of a lock's resource, in bytes.
const maxResourceLen = 1024

// validateLocks returns an error describing the first invalid lock in ls:
// one whose resource is empty, longer than maxResourceLen bytes or has an
// empty segment (a leading or trailing '/', or "//"), or whose mode is
// neither Shared nor Exclusive.
func validateLocks(ls []Lock) error {
	for _, l := range ls {
		res := l.Resource
		switch {
		case res == "":
			return errors.New("procedure: lock resource is empty")
		case len(res) > maxResourceLen:
			return fmt.Errorf("procedure: lock resource %.64q... is %d bytes long, more than the limit of %d",
				res, len(res), maxResourceLen)
		case res[0] == '/' || res[len(res)-1] == '/' || strings.Contains(res, "//"):
			return fmt.Errorf("procedure: lock resource %q has an empty segment", res)
		case l.Mode != Shared && l.Mode != Exclusive:
			return fmt.Errorf("procedure: lock on %q has invalid mode %d", res, uint8(l.Mode))
		}
	}
	return nil
}

// modesConflict reports whether two requests with modes a and b at the
// same node conflict.
func modesConflict(a, b LockMode) bool { return a == Exclusive || b == Exclusive }

// lockTable grants lock requests. Each request is all-or-nothing: it holds
// every lock it asked for or, while it waits, none, so waiting requests
// never deadlock on one another.
//
// The table is a set of nodes, one per resource or ancestor touched by a
// request that holds or waits; a request's mode at a node is Exclusive if
// it asked for the node's resource exclusively, else Shared. A node exists
// only while it has holders or waiters.
//
// The kin of a request are its owner and the owner's ancestors. Locks held
// by kin never conflict with a request: children inherit their parents'
// locks, and a procedure may hold several requests (a step's locks beside
// those it keeps until it finishes) without deadlocking on itself.
//
// A request is blocked, and waits, if at one of its nodes
//   - a holder that is not kin has a conflicting mode, or
//   - an earlier waiter has a conflicting mode (FIFO, so that a stream of
//     shared requests cannot starve an exclusive one), unless some kin of
//     the request holds locks: such a request has priority, since it could
//     otherwise wait behind a request that waits for its kin's locks.
//
// Waiters are granted in sequence (arrival) order as soon as they are no
// longer blocked: after every call, no waiter could be granted.
//
// A lockTable is not safe for concurrent use: the engine guards it with
// its mutex.
type lockTable struct {
	nodes map[string]*lockNode // by resource
	free  []*lockNode          // emptied nodes kept for reuse
	seq   uint64               // of the last request acquired or restored

	// held counts the non-empty requests each owner holds; owners that
	// hold nothing are absent.
	held map[ID]int

	// Waiting requests, in sequence order.
	waitHead, waitTail *lockReq

	// waitingKin counts, for each owner, the waiting requests it is kin
	// of: those that gain priority when it starts to hold locks. Owners
	// with none are absent.
	waitingKin map[ID]int

	// cand holds the waiting requests that grantWaiters is to examine,
	// by decreasing seq, each with its candidate flag set.
	cand []*lockReq
}

// maxFreeNodes bounds lockTable.free.
const maxFreeNodes = 256

// newLockTable returns an empty lock table.
func newLockTable() *lockTable {
	return &lockTable{
		nodes:      map[string]*lockNode{},
		held:       map[ID]int{},
		waitingKin: map[ID]int{},
	}
}

// lockReq is one owner's all-or-nothing request for a set of locks. The
// engine sets owner, ancestors and locks, and must not change them while
// the table has the request: from acquire or restore until the release or
// cancel that hands it back. The request may be reused after that, and
// its internal slices are then reused too.
type lockReq struct {
	owner     ID
	ancestors []ID   // the owner's ancestor procedures, nearest first
	locks     []Lock // as given (validated by the caller); duplicates are merged

	state   reqState
	seq     uint64      // arrival order, set by acquire and restore
	since   time.Time   // when the request was granted (held) or queued (waiting)
	entries []lockEntry // one per node the request touches

	// Neighbours in the table's list of waiting requests.
	prevWaiter, nextWaiter *lockReq

	candidate bool // in lockTable.cand
}

// reqState is where a lockReq stands in its table.
type reqState uint8

const (
	reqIdle    reqState = iota // not in the table
	reqWaiting                 // queued, holding nothing
	reqHeld                    // holding every lock it asked for
)

// isKin reports whether owner is kin of r: r's owner or one of its
// ancestors.
func (r *lockReq) isKin(owner ID) bool {
	return owner == r.owner || slices.Contains(r.ancestors, owner)
}

// relatedTo reports whether r is kin of o or o is kin of r: whether the
// two requests may hold conflicting locks at once.
func (r *lockReq) relatedTo(o *lockReq) bool { return r.isKin(o.owner) || o.isKin(r.owner) }

// lockEntry is a request's claim on one node. It is in the node's holders
// while the request holds its locks, and in the node's wait queue while
// the request waits.
type lockEntry struct {
	req      *lockReq
	node     *lockNode
	mode     LockMode // Exclusive if req asked for the node exclusively
	explicit bool     // req asked for the node's resource, not only descendants

	pos        int        // index in node.holders, while held
	prev, next *lockEntry // neighbours in the node's wait queue, while waiting
}

// lockNode is the state of one resource or ancestor.
type lockNode struct {
	resource  string
	holders   []*lockEntry // in no particular order; see lockEntry.pos
	exclusive int          // holders in Exclusive mode (the others are Shared)

	waitHead, waitTail *lockEntry // the wait queue, in sequence order
	waiting            int        // entries in the wait queue
	waitingExclusive   int        // waiting entries in Exclusive mode

	// stamp is the seq of the last request prepare added the node to, and
	// stampIdx the index of the node's entry in that request's entries:
	// prepare merges a request's duplicate nodes without searching.
	stamp    uint64
	stampIdx int
}

// acquire grants r every lock it asks for, or queues it. It returns
// whether r was granted, and the waiting requests granted as a
// consequence, in grant order: r's owner starting to hold locks gives
// priority to the waiting requests it is kin of. r must not be in the
// table.
func (lt *lockTable) acquire(r *lockReq, now time.Time) (granted bool, woken []*lockReq) {
	if r.state != reqIdle {
		panic(fmt.Sprintf("procedure: acquire of a lock request of %d that the table already has", r.owner))
	}
	lt.prepare(r)
	if lt.blocked(r) {
		lt.enqueue(r, now)
		return false, nil
	}
	lt.grant(r, now)
	return true, lt.grantWaiters(now)
}

// release drops the locks of r, which must hold them, and returns the
// waiting requests granted as a consequence, in grant order.
func (lt *lockTable) release(r *lockReq, now time.Time) []*lockReq {
	if r.state != reqHeld {
		panic(fmt.Sprintf("procedure: release of a lock request of %d that holds nothing", r.owner))
	}
	for i := range r.entries {
		e := &r.entries[i]
		n := e.node
		n.removeHolder(e)
		lt.addBlocked(e.mode, n, n.waitHead)
		lt.freeIfEmpty(n)
	}
	if len(r.entries) > 0 {
		if c := lt.held[r.owner]; c > 1 {
			lt.held[r.owner] = c - 1
		} else {
			delete(lt.held, r.owner)
		}
	}
	r.reset()
	return lt.grantWaiters(now)
}

// cancel removes r, which must be waiting, from the table and returns the
// waiting requests granted as a consequence, in grant order.
func (lt *lockTable) cancel(r *lockReq, now time.Time) []*lockReq {
	if r.state != reqWaiting {
		panic(fmt.Sprintf("procedure: cancel of a lock request of %d that is not waiting", r.owner))
	}
	// Only the requests queued after r can have been blocked by it.
	for i := range r.entries {
		e := &r.entries[i]
		lt.addBlocked(e.mode, e.node, e.next)
	}
	lt.dequeue(r)
	lt.discard(r)
	return lt.grantWaiters(now)
}

// restore grants r as persisted, at start-up, before any request waits.
// Locks held by requests related to r (kin of r, or of which r is kin)
// are no conflict, whichever was restored first. If r conflicts with
// another holder, restore grants nothing and returns an error.
func (lt *lockTable) restore(r *lockReq, now time.Time) error {
	if r.state != reqIdle {
		panic(fmt.Sprintf("procedure: restore of a lock request of %d that the table already has", r.owner))
	}
	if lt.waitHead != nil {
		return fmt.Errorf("procedure: restoring the locks of %d: requests are already waiting", r.owner)
	}
	lt.prepare(r)
	for i := range r.entries {
		e := &r.entries[i]
		for _, h := range e.node.holders {
			if modesConflict(e.mode, h.mode) && !r.relatedTo(h.req) {
				err := fmt.Errorf("procedure: restoring the locks of %d: it needs %q %s, which %d holds %s",
					r.owner, e.node.resource, e.mode, h.req.owner, h.mode)
				lt.discard(r)
				return err
			}
		}
	}
	lt.grant(r, now)
	return nil
}

// holds reports whether owner holds any lock.
func (lt *lockTable) holds(owner ID) bool { return lt.held[owner] > 0 }

// len returns the number of nodes allocated.
func (lt *lockTable) len() int { return len(lt.nodes) }

// prepare gives r the next sequence number and computes its entries: one
// per node r touches (each resource it asks for and their ancestors),
// with r's mode there. Missing nodes are allocated: the caller must then
// add r to every node, or free the nodes left empty.
func (lt *lockTable) prepare(r *lockReq) {
	lt.seq++
	r.seq = lt.seq
	r.entries = r.entries[:0]
	for _, l := range r.locks {
		res := l.Resource
		for i := 0; ; i++ {
			j := strings.IndexByte(res[i:], '/')
			if j < 0 {
				break
			}
			i += j
			lt.addEntry(r, res[:i], Shared, false)
		}
		lt.addEntry(r, res, l.Mode, true)
	}
}

// addEntry adds to r's entries the node of resource with mode, or merges
// mode into r's entry for the node if it has one already: the strongest
// mode wins.
func (lt *lockTable) addEntry(r *lockReq, resource string, mode LockMode, explicit bool) {
	n := lt.nodes[resource]
	if n == nil {
		n = lt.newNode(resource)
	}
	if n.stamp == r.seq {
		e := &r.entries[n.stampIdx]
		e.mode = max(e.mode, mode)
		e.explicit = e.explicit || explicit
		return
	}
	n.stamp, n.stampIdx = r.seq, len(r.entries)
	r.entries = append(r.entries, lockEntry{req: r, node: n, mode: mode, explicit: explicit})
}

// discard frees the nodes of r's entries that are left empty, and makes r
// idle: it undoes prepare, or enqueue after dequeue.
func (lt *lockTable) discard(r *lockReq) {
	for i := range r.entries {
		lt.freeIfEmpty(r.entries[i].node)
	}
	r.reset()
}

// newNode allocates, or reuses, the node of resource.
func (lt *lockTable) newNode(resource string) *lockNode {
	n := popFree(&lt.free)
	n.resource = resource
	lt.nodes[resource] = n
	return n
}

// freeIfEmpty frees n if it has neither holders nor waiters.
func (lt *lockTable) freeIfEmpty(n *lockNode) {
	if len(n.holders) > 0 || n.waiting > 0 {
		return
	}
	delete(lt.nodes, n.resource)
	*n = lockNode{holders: n.holders} // removeHolder cleared the slots
	if len(lt.free) < maxFreeNodes {
		lt.free = append(lt.free, n)
	}
}

// blocked reports whether r, new or waiting, must wait.
func (lt *lockTable) blocked(r *lockReq) bool {
	priority := lt.kinHolds(r)
	for i := range r.entries {
		e := &r.entries[i]
		if e.conflictingHolder(priority) != nil || !priority && e.queueConflict() {
			return true
		}
	}
	return false
}

// kinHolds reports whether any kin of r holds locks.
func (lt *lockTable) kinHolds(r *lockReq) bool {
	if lt.held[r.owner] > 0 {
		return true
	}
	for _, a := range r.ancestors {
		if lt.held[a] > 0 {
			return true
		}
	}
	return false
}

// conflictingHolder returns a holder of e's node that conflicts with e and
// is not kin of e's request, or nil. kinHold says whether any kin of the
// request holds locks; if none does, no holder needs to be checked for
// kinship.
func (e *lockEntry) conflictingHolder(kinHold bool) *lockEntry {
	n := e.node
	if len(n.holders) == 0 || e.mode == Shared && n.exclusive == 0 {
		return nil
	}
	for _, h := range n.holders {
		if modesConflict(e.mode, h.mode) && !(kinHold && e.req.isKin(h.req.owner)) {
			return h
		}
	}
	return nil
}

// queueConflict reports whether a request queued at e's node before e's
// request conflicts with it there.
func (e *lockEntry) queueConflict() bool {
	n := e.node
	if e.req.state != reqWaiting {
		// Every waiter came first.
		if e.mode == Exclusive {
			return n.waiting > 0
		}
		return n.waitingExclusive > 0
	}
	if e.mode == Exclusive {
		return e.prev != nil
	}
	if n.waitingExclusive == 0 {
		return false
	}
	for w := e.prev; w != nil; w = w.prev {
		if w.mode == Exclusive {
			return true
		}
	}
	return false
}

// grant makes r, which is prepared and not blocked (or restored), a
// holder. If r's owner did not hold locks yet, the waiting requests it is
// kin of gain priority and become candidates for grantWaiters.
func (lt *lockTable) grant(r *lockReq, now time.Time) {
	r.state, r.since = reqHeld, now
	if len(r.entries) == 0 {
		return
	}
	for i := range r.entries {
		e := &r.entries[i]
		n := e.node
		e.pos = len(n.holders)
		n.holders = append(n.holders, e)
		if e.mode == Exclusive {
			n.exclusive++
		}
	}
	c := lt.held[r.owner]
	lt.held[r.owner] = c + 1
	if c == 0 && lt.waitingKin[r.owner] > 0 {
		for w := lt.waitHead; w != nil; w = w.nextWaiter {
			if !w.candidate && w.isKin(r.owner) {
				lt.insertCandidate(w)
			}
		}
	}
}

// removeHolder removes e from n's holders.
func (n *lockNode) removeHolder(e *lockEntry) {
	last := len(n.holders) - 1
	if e.pos != last {
		moved := n.holders[last]
		n.holders[e.pos] = moved
		moved.pos = e.pos
	}
	n.holders[last] = nil
	n.holders = n.holders[:last]
	if e.mode == Exclusive {
		n.exclusive--
	}
}

// enqueue makes r, which is prepared and blocked, a waiter.
func (lt *lockTable) enqueue(r *lockReq, now time.Time) {
	r.state, r.since = reqWaiting, now
	for i := range r.entries {
		e := &r.entries[i]
		n := e.node
		e.prev = n.waitTail
		if n.waitTail != nil {
			n.waitTail.next = e
		} else {
			n.waitHead = e
		}
		n.waitTail = e
		n.waiting++
		if e.mode == Exclusive {
			n.waitingExclusive++
		}
	}
	r.prevWaiter = lt.waitTail
	if lt.waitTail != nil {
		lt.waitTail.nextWaiter = r
	} else {
		lt.waitHead = r
	}
	lt.waitTail = r
	lt.waitingKin[r.owner]++
	for _, a := range r.ancestors {
		lt.waitingKin[a]++
	}
}

// dequeue removes r, which is waiting, from the wait queues. It frees no
// node: the caller either grants r or frees the nodes left empty.
func (lt *lockTable) dequeue(r *lockReq) {
	for i := range r.entries {
		e := &r.entries[i]
		n := e.node
		if e.prev != nil {
			e.prev.next = e.next
		} else {
			n.waitHead = e.next
		}
		if e.next != nil {
			e.next.prev = e.prev
		} else {
			n.waitTail = e.prev
		}
		e.prev, e.next = nil, nil
		n.waiting--
		if e.mode == Exclusive {
			n.waitingExclusive--
		}
	}
	if r.prevWaiter != nil {
		r.prevWaiter.nextWaiter = r.nextWaiter
	} else {
		lt.waitHead = r.nextWaiter
	}
	if r.nextWaiter != nil {
		r.nextWaiter.prevWaiter = r.prevWaiter
	} else {
		lt.waitTail = r.prevWaiter
	}
	r.prevWaiter, r.nextWaiter = nil, nil
	lt.uncountKin(r.owner)
	for _, a := range r.ancestors {
		lt.uncountKin(a)
	}
}

// uncountKin decrements waitingKin[owner].
func (lt *lockTable) uncountKin(owner ID) {
	if c := lt.waitingKin[owner]; c > 1 {
		lt.waitingKin[owner] = c - 1
	} else {
		delete(lt.waitingKin, owner)
	}
}

// reset makes r, which the table no longer has, idle.
func (r *lockReq) reset() {
	clear(r.entries)
	r.entries = r.entries[:0]
	r.state = reqIdle
}

// addBlocked makes candidates of the waiters at n, from w on, whose modes
// conflict with mode: those a request leaving n with mode may have
// blocked.
func (lt *lockTable) addBlocked(mode LockMode, n *lockNode, w *lockEntry) {
	if mode == Shared && n.waitingExclusive == 0 {
		return
	}
	for ; w != nil; w = w.next {
		if modesConflict(mode, w.mode) && !w.req.candidate {
			w.req.candidate = true
			lt.cand = append(lt.cand, w.req)
		}
	}
}

// insertCandidate adds w to lt.cand, keeping it sorted.
func (lt *lockTable) insertCandidate(w *lockReq) {
	w.candidate = true
	i, _ := slices.BinarySearchFunc(lt.cand, w, reqsBySeqDesc)
	lt.cand = slices.Insert(lt.cand, i, w)
}

// reqsBySeqDesc orders requests by decreasing seq.
func reqsBySeqDesc(a, b *lockReq) int { return cmp.Compare(b.seq, a.seq) }

// grantWaiters grants the candidates that are no longer blocked, in
// sequence order, empties lt.cand and returns the requests granted.
//
// The candidates are the only waiters that may have become grantable:
// the table changed only by a request leaving some nodes (the waiters it
// conflicted with there, possibly no longer blocked, were added by
// addBlocked), or by an owner starting to hold locks (the waiters it is
// kin of gained priority and were added by grant). Any other waiter was
// blocked before and still is.
//
// One pass in sequence order is enough: granting a waiter w cannot
// unblock a waiter v examined (and found blocked) before it, nor any
// other waiter that is not a candidate. Granting w takes w out of the
// queues but makes it a holder with the same modes, so a request that
// conflicted with w in a queue conflicts with it as a holder; the only
// exception is a request w is kin of, for which holds by w are no
// conflict. Such a request, if w's owner held nothing before, gains
// priority too, and grant makes it a candidate again, even if it came
// before w. (If w's owner already held locks, it had priority already,
// and w in the queue did not block it.) The pass thus grants exactly what
// repeatedly granting the earliest unblocked waiter would.
func (lt *lockTable) grantWaiters(now time.Time) []*lockReq {
	if len(lt.cand) == 0 {
		return nil
	}
	slices.SortFunc(lt.cand, reqsBySeqDesc) // addBlocked appends unsorted
	var woken []*lockReq
	for len(lt.cand) > 0 {
		last := len(lt.cand) - 1
		r := lt.cand[last]
		lt.cand[last] = nil
		lt.cand = lt.cand[:last]
		r.candidate = false
		if lt.blocked(r) {
			continue
		}
		lt.dequeue(r)
		lt.grant(r, now)
		woken = append(woken, r)
	}
	return woken
}

// view returns every resource that requests holding or waiting asked for
// (not the ancestors they only imply), sorted by resource.
func (lt *lockTable) view() []LockInfo {
	var infos []LockInfo
	var holders []*lockEntry
	for _, n := range lt.nodes {
		info := LockInfo{Resource: n.resource}
		holders = holders[:0]
		for _, h := range n.holders {
			if h.explicit {
				holders = append(holders, h)
			}
		}
		slices.SortFunc(holders, func(a, b *lockEntry) int {
			return cmp.Or(cmp.Compare(a.req.owner, b.req.owner), cmp.Compare(a.req.seq, b.req.seq))
		})
		for _, h := range holders {
			info.Holders = append(info.Holders, h.lockHolder())
		}
		for w := n.waitHead; w != nil; w = w.next {
			if w.explicit {
				info.Waiters = append(info.Waiters, w.lockHolder())
			}
		}
		if info.Holders != nil || info.Waiters != nil {
			infos = append(infos, info)
		}
	}
	slices.SortFunc(infos, func(a, b LockInfo) int { return strings.Compare(a.Resource, b.Resource) })
	return infos
}

// lockHolder describes e's request at e's node.
func (e *lockEntry) lockHolder() LockHolder {
	return LockHolder{ID: e.req.owner, Mode: e.mode, Since: e.req.since}
}

// check verifies the table's invariants, for tests: the nodes, queues and
// counts are consistent, no node is empty, every entry has the mode its
// request implies at its node, no two holders of conflicting modes on a
// node are unrelated, and no waiter could be granted.
func (lt *lockTable) check() error {
	reqs := map[*lockReq]bool{} // the requests in the table
	holding := map[ID]int{}     // lt.held, recomputed
	heldReqs := 0
	for key, n := range lt.nodes {
		if n.resource != key {
			return fmt.Errorf("node %q is filed under %q", n.resource, key)
		}
		if len(n.holders) == 0 && n.waiting == 0 {
			return fmt.Errorf("node %q is empty", key)
		}
		exclusive := 0
		for i, h := range n.holders {
			if h.node != n || h.pos != i || h.req.state != reqHeld {
				return fmt.Errorf("node %q: holder %d (of %d) is misfiled", key, i, h.req.owner)
			}
			if h.mode == Exclusive {
				exclusive++
			}
			if !reqs[h.req] {
				reqs[h.req] = true
				holding[h.req.owner]++
				heldReqs++
			}
			for _, o := range n.holders[:i] {
				if modesConflict(h.mode, o.mode) && !h.req.relatedTo(o.req) {
					return fmt.Errorf("node %q: %d holds it %s and %d holds it %s", key, h.req.owner, h.mode, o.req.owner, o.mode)
				}
			}
		}
		if exclusive != n.exclusive {
			return fmt.Errorf("node %q: %d exclusive holders, counted %d", key, exclusive, n.exclusive)
		}
		waiting, waitingExclusive := 0, 0
		var prev *lockEntry
		for w := n.waitHead; w != nil; prev, w = w, w.next {
			if w.node != n || w.prev != prev || w.req.state != reqWaiting {
				return fmt.Errorf("node %q: waiter %d is misfiled", key, w.req.owner)
			}
			if prev != nil && prev.req.seq >= w.req.seq {
				return fmt.Errorf("node %q: waiters %d and %d are out of order", key, prev.req.owner, w.req.owner)
			}
			waiting++
			if w.mode == Exclusive {
				waitingExclusive++
			}
			reqs[w.req] = true
		}
		if n.waitTail != prev || waiting != n.waiting || waitingExclusive != n.waitingExclusive {
			return fmt.Errorf("node %q: wait queue of %d (%d exclusive), counted %d (%d)",
				key, waiting, waitingExclusive, n.waiting, n.waitingExclusive)
		}
	}
	if !maps.Equal(holding, lt.held) {
		return fmt.Errorf("owners holding locks: %v, counted %v", holding, lt.held)
	}

	waitingKin := map[ID]int{}
	waiting := 0
	var prev *lockReq
	for w := lt.waitHead; w != nil; prev, w = w, w.nextWaiter {
		waiting++
		if w.state != reqWaiting || w.prevWaiter != prev || !reqs[w] {
			return fmt.Errorf("waiting request of %d is misfiled", w.owner)
		}
		if prev != nil && prev.seq >= w.seq {
			return fmt.Errorf("waiting requests of %d and %d are out of order", prev.owner, w.owner)
		}
		waitingKin[w.owner]++
		for _, a := range w.ancestors {
			waitingKin[a]++
		}
	}
	if lt.waitTail != prev || waiting != len(reqs)-heldReqs {
		return errors.New("list of waiting requests is inconsistent")
	}
	if !maps.Equal(waitingKin, lt.waitingKin) {
		return fmt.Errorf("kin of waiting requests: %v, counted %v", waitingKin, lt.waitingKin)
	}
	if len(lt.cand) > 0 {
		return fmt.Errorf("%d grant candidates left", len(lt.cand))
	}

	for r := range reqs {
		if err := r.checkEntries(lt); err != nil {
			return err
		}
		if r.candidate {
			return fmt.Errorf("request of %d is marked as a candidate", r.owner)
		}
		if r.state == reqWaiting && !r.checkBlocked(holding) {
			return fmt.Errorf("waiting request of %d could be granted", r.owner)
		}
	}
	return nil
}

// checkEntries verifies r's entries against its locks, computed afresh,
// and their place in lt.
func (r *lockReq) checkEntries(lt *lockTable) error {
	want := map[string]lockEntry{}
	for _, l := range r.locks {
		for i, c := range l.Resource {
			if c == '/' {
				res := l.Resource[:i]
				want[res] = lockEntry{mode: max(want[res].mode, Shared), explicit: want[res].explicit}
			}
		}
		want[l.Resource] = lockEntry{mode: max(want[l.Resource].mode, l.Mode), explicit: true}
	}
	if len(r.entries) != len(want) {
		return fmt.Errorf("request of %d: %d entries, want %d", r.owner, len(r.entries), len(want))
	}
	for i := range r.entries {
		e := &r.entries[i]
		w, ok := want[e.node.resource]
		if !ok || e.mode != w.mode || e.explicit != w.explicit || e.req != r {
			return fmt.Errorf("request of %d: bad entry for %q", r.owner, e.node.resource)
		}
		delete(want, e.node.resource) // catches duplicates
		if lt.nodes[e.node.resource] != e.node {
			return fmt.Errorf("request of %d: node %q is not in the table", r.owner, e.node.resource)
		}
		if r.state == reqHeld && (e.pos >= len(e.node.holders) || e.node.holders[e.pos] != e) {
			return fmt.Errorf("request of %d: not a holder of %q", r.owner, e.node.resource)
		}
	}
	return nil
}

// checkBlocked reports whether r, which waits, is blocked, computed
// afresh from the holders and queues of its nodes; holding counts the
// requests each owner holds.
func (r *lockReq) checkBlocked(holding map[ID]int) bool {
	priority := holding[r.owner] > 0
	for _, a := range r.ancestors {
		priority = priority || holding[a] > 0
	}
	for i := range r.entries {
		e := &r.entries[i]
		for _, h := range e.node.holders {
			if modesConflict(e.mode, h.mode) && !r.isKin(h.req.owner) {
				return true
			}
		}
		for w := e.node.waitHead; !priority && w != e; w = w.next {
			if modesConflict(e.mode, w.mode) {
				return true
			}
		}
	}
	return false
}

// popFree takes the last of a free list, or a new T if it is empty.
func popFree[T any](free *[]*T) *T {
	k := len(*free)
	if k == 0 {
		return new(T)
	}
	x := (*free)[k-1]
	(*free)[k-1] = nil
	*free = (*free)[:k-1]
	return x
}
