package region

import "github.com/procyon-dev/procyon/internal/cowbtree"

// memtable holds the rows written since the newest row file, in key order.
// The region's mutex guards the one that takes writes; a frozen one (being
// flushed, or a Scan's view) is never changed and is read without it.
type memtable struct {
	tree   *cowbtree.Tree[string, []byte]
	bytes  int    // keys plus values, the flush trigger
	from   uint64 // the newest row file's seq when this memtable started
	seq    uint64 // the last row write applied (from if none)
	walSeq uint64 // the log sequence number of the last record applied
}

func newMemtable(from uint64) *memtable {
	return &memtable{tree: cowbtree.New[string, []byte](), from: from, seq: from}
}

// apply writes the rows of the put with region seq seq and log seq walSeq.
// The memtable keeps rows' values: the caller hands them over.
func (m *memtable) apply(seq, walSeq uint64, rows []Row) {
	for _, r := range rows {
		m.tree.Set(string(r.Key), r.Value)
		m.bytes += len(r.Key) + len(r.Value)
	}
	m.seq, m.walSeq = seq, walSeq
}

// rows returns m's rows with keys in [from, to) (a nil bound is open), in
// key order. m must be frozen or its owner's lock held.
func (m *memtable) rows(from, to []byte) []Row {
	var lo, hi *string
	if from != nil {
		s := string(from)
		lo = &s
	}
	if to != nil {
		s := string(to)
		hi = &s
	}
	var out []Row
	m.tree.Ascend(lo, hi, func(k string, v []byte) bool {
		out = append(out, Row{Key: []byte(k), Value: v})
		return true
	})
	return out
}
