package procedure

import (
	"cmp"
	"iter"
	"math"
	"slices"
	"strings"
	"time"
)

// Query selects procedures for List. The zero Query selects every
// procedure the store holds. Conditions combine with "and".
type Query struct {
	// Status keeps the procedures whose Info.Status is one of these
	// (empty: any).
	Status []Status
	// Type keeps the procedures of this type (empty: any).
	Type string
	// Root keeps the procedures of this tree (0: any).
	Root ID
	// Parent keeps the children of this procedure (0: any).
	Parent ID
	// Error keeps the procedures whose error (Info.Err's message, or
	// LastError) contains this text, case-insensitively (empty: any).
	Error string
	// Since and Until keep the procedures created in [Since, Until)
	// (zero: unbounded).
	Since, Until time.Time
	// Before is the cursor: List yields only ids below it (0: from the
	// newest). To page, pass the last id of the previous page.
	Before ID
}

// List yields the procedures that match q, newest (highest id) first,
// each as Get would return it. The store is read as the loop goes, a
// chunk of candidates at a time, without holding the engine's lock while
// the caller's loop body runs (it may call the engine): a procedure that
// changes meanwhile is seen as it is when reached, one that finishes and
// expires is skipped, and one created after the loop started is not
// seen.
//
// It reads the engine's index (built by Start), not the store: the
// candidates come from the most selective of q's Status (the ordered id
// sets of those statuses, merged), Type (that type's set), Root (the
// tree's procedures while it is live, else its root) and Parent (its
// children), and each is checked against the whole of q. A page costs
// about its size in candidates when one of those conditions selects it.
// With only Error, Since or Until (or nothing) every record below Before
// is a candidate, read until the page is full: a search for rare error
// text scans the store. Since ends the scan at the first record created
// before it when the creation times grow with the ids (the clock never
// went back), which is checked, not assumed. Before Start (no index),
// List scans the store.
//
//	for in := range e.List(procedure.Query{Status: []procedure.Status{procedure.Failed}}) { ... }
func (e *Engine) List(q Query) iter.Seq[Info] {
	return func(yield func(Info) bool) {
		l := listing{e: e, q: &q, hi: math.MaxUint64, n: listChunk}
		if q.Before != 0 {
			l.hi = uint64(q.Before) - 1
		}
		if q.Before == 1 {
			return
		}
		for {
			infos, ordered := l.next()
			if infos == nil {
				return
			}
			for i := range infos {
				in := &infos[i]
				if ordered && !q.Since.IsZero() && in.Created.Before(q.Since) {
					return // every record below was created before it too
				}
				if q.matches(in) && !yield(*in) {
					return
				}
			}
		}
	}
}

// listChunk is how many candidates List takes under the engine's lock
// first; it doubles up to listMaxChunk while the loop goes on.
const (
	listChunk    = 64
	listMaxChunk = 512
)

// listing is one run of List: which candidates it reads, and how far it
// got.
type listing struct {
	e     *Engine
	q     *Query
	src   listSource // chosen with the first chunk
	hi    uint64     // the next candidates are <= hi
	done  bool       // no candidates left
	n     int        // candidates per chunk
	ids   []uint64   // the chunk's candidates
	infos []Info
}

// listSource is where List takes its candidates from.
type listSource uint8

const (
	srcNone   listSource = iota // not chosen yet
	srcEmpty                    // nothing can match
	srcStatus                   // q.Status's sets
	srcType                     // q.Type's set
	srcRoot                     // q.Root's tree
	srcParent                   // q.Parent's children
	srcAll                      // every record (all the status sets)
	srcScan                     // the store (no index yet)
)

// next returns the Infos of the next chunk of candidates, descending (nil:
// none left), and whether a record created before q.Since ends the list.
func (l *listing) next() ([]Info, bool) {
	if l.done {
		return nil, false
	}
	e := l.e
	e.mu.Lock()
	if l.src == srcNone {
		l.src = l.chooseLocked()
	}
	l.ids = l.candidatesLocked(l.ids[:0])
	ordered := e.ix.created.ordered
	e.mu.Unlock()
	if len(l.ids) == 0 {
		l.done = true
		return nil, false
	}
	last := l.ids[len(l.ids)-1]
	l.hi, l.done = last-1, last == 0
	l.n = min(2*l.n, listMaxChunk)
	l.infos = e.infos(l.infos[:0], l.ids)
	return l.infos, ordered && l.src != srcScan
}

// chooseLocked picks the source with the fewest candidates.
func (l *listing) chooseLocked() listSource {
	e, q := l.e, l.q
	if !e.ixReady {
		return srcScan
	}
	best, size := srcAll, 0
	for _, s := range e.ix.byStatus {
		size += s.Len()
	}
	consider := func(src listSource, n int) {
		if n < size || (n == size && best == srcAll) { // on a tie, an index over all
			best, size = src, n
		}
	}
	if len(q.Status) > 0 {
		n := 0
		for i, st := range q.Status {
			if s := e.ix.status(st); s != nil && !slices.Contains(q.Status[:i], st) {
				n += s.Len()
			}
		}
		consider(srcStatus, n)
	}
	if q.Type != "" {
		n := 0
		if s := e.ix.byType[q.Type]; s != nil {
			n = s.Len()
		}
		consider(srcType, n)
	}
	if q.Root != 0 {
		n := 1
		if t := e.trees[q.Root]; t != nil {
			n = len(t.procs)
		}
		consider(srcRoot, n+len(e.ix.odd))
	}
	if q.Parent != 0 {
		n := 0
		if p := e.procs[q.Parent]; p != nil {
			n = len(p.t.procs)
		}
		consider(srcParent, n+len(e.ix.odd))
	}
	if size == 0 {
		return srcEmpty
	}
	return best
}

// candidatesLocked appends up to l.n candidate ids <= l.hi to ids, in
// descending order.
func (l *listing) candidatesLocked(ids []uint64) []uint64 {
	e, q := l.e, l.q
	switch l.src {
	case srcStatus:
		for i, st := range q.Status {
			if s := e.ix.status(st); s != nil && !slices.Contains(q.Status[:i], st) {
				ids = l.descend(ids, s)
			}
		}
	case srcType:
		if s := e.ix.byType[q.Type]; s != nil {
			ids = l.descend(ids, s)
		}
	case srcAll:
		for _, s := range e.ix.byStatus {
			ids = l.descend(ids, s)
		}
	case srcRoot:
		if t := e.trees[q.Root]; t != nil {
			ids = l.treeIDs(ids, t, 0)
		} else if uint64(q.Root) <= l.hi {
			ids = append(ids, uint64(q.Root))
		}
		ids = l.oddIDs(ids)
	case srcParent:
		if p := e.procs[q.Parent]; p != nil {
			ids = l.treeIDs(ids, p.t, q.Parent)
		}
		ids = l.oddIDs(ids)
	case srcScan:
		return l.scan(ids)
	}
	slices.SortFunc(ids, func(a, b uint64) int { return cmp.Compare(b, a) })
	ids = slices.Compact(ids)
	return ids[:min(len(ids), l.n)]
}

// descend appends the first l.n ids of s <= l.hi, descending.
func (l *listing) descend(ids []uint64, s *idSet) []uint64 {
	n := 0
	s.Descend(l.hi, func(id uint64) bool {
		ids = append(ids, id)
		n++
		return n < l.n
	})
	return ids
}

// treeIDs appends the first l.n ids <= l.hi of t's procedures (those
// whose parent is parent, if not 0), descending. t.procs is in id order.
func (l *listing) treeIDs(ids []uint64, t *tree, parent ID) []uint64 {
	i, _ := slices.BinarySearchFunc(t.procs, l.hi, func(p *proc, hi uint64) int {
		if uint64(p.id) <= hi {
			return -1
		}
		return 1
	})
	for n := 0; i > 0 && n < l.n; i-- {
		if p := t.procs[i-1]; parent == 0 || p.parent == parent {
			ids = append(ids, uint64(p.id))
			n++
		}
	}
	return ids
}

// oddIDs appends the first l.n odd ids <= l.hi, descending.
func (l *listing) oddIDs(ids []uint64) []uint64 {
	odd := l.e.ix.odd
	i, _ := slices.BinarySearch(odd, ID(l.hi)+1)
	if l.hi == math.MaxUint64 {
		i = len(odd)
	}
	for n := 0; i > 0 && n < l.n; i, n = i-1, n+1 {
		ids = append(ids, uint64(odd[i-1]))
	}
	return ids
}

// scan appends the first l.n ids <= l.hi of the store's records,
// descending (before Start: no index). The collection is read in id
// order, so it reads every record up to l.hi for each chunk.
func (l *listing) scan(ids []uint64) []uint64 {
	for k := range l.e.procsC.All(l.e.store.Latest()) {
		if k > l.hi {
			break
		}
		ids = append(ids, k)
	}
	slices.Reverse(ids)
	return ids[:min(len(ids), l.n)]
}

// infos appends the Infos of the procedures ids, as Get returns them, to
// dst (one reading of the store, one taking of the engine's lock). A
// procedure whose record is gone is left out.
func (e *Engine) infos(dst []Info, ids []uint64) []Info {
	v := e.store.Latest()
	for _, id := range ids {
		if b, ok, _ := e.procsC.Get(v, id); ok { // Bytes values: no decoding error
			dst = append(dst, e.infoOf(ID(id), b))
		}
	}
	e.mu.Lock()
	for i := range dst {
		e.overlayLocked(&dst[i])
	}
	e.mu.Unlock()
	return dst
}

// matches reports whether in satisfies every condition of q.
func (q *Query) matches(in *Info) bool {
	if len(q.Status) > 0 && !slices.Contains(q.Status, in.Status) {
		return false
	}
	if q.Type != "" && in.Type != q.Type {
		return false
	}
	if q.Root != 0 && in.Root != q.Root {
		return false
	}
	if q.Parent != 0 && in.Parent != q.Parent {
		return false
	}
	if !q.Since.IsZero() && in.Created.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !in.Created.Before(q.Until) {
		return false
	}
	if q.Error != "" {
		msg := in.LastError
		if in.Err != nil {
			msg = in.Err.Error() + "\n" + msg
		}
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(q.Error)) {
			return false
		}
	}
	return true
}
