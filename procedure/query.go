package procedure

import (
	"iter"
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
// each as Get would return it. The store is read as the loop goes: a
// procedure that changes meanwhile is seen as it is when reached, and one
// that finishes and expires is skipped.
//
//	for in := range e.List(procedure.Query{Status: []procedure.Status{procedure.Failed}}) { ... }
func (e *Engine) List(q Query) iter.Seq[Info] {
	// TODO(index): this scans; the index replaces it.
	return func(yield func(Info) bool) {
		var ids []ID
		for k := range e.procsC.All(e.store.Latest()) {
			if q.Before == 0 || ID(k) < q.Before {
				ids = append(ids, ID(k))
			}
		}
		slices.Reverse(ids)
		for _, id := range ids {
			in, err := e.Get(id)
			if err != nil || !q.matches(&in) {
				continue
			}
			if !yield(in) {
				return
			}
		}
	}
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
