package region

import "bytes"

// mergeRows calls yield with the rows of srcs in key order, each key once
// with its value from the first (newest) source holding it, until yield
// returns false. Each source is sorted by key, keys unique. There are few
// sources (at most MaxFiles plus two memstores), so the smallest head is
// found by a linear pass.
func mergeRows(srcs [][]Row, yield func(Row) bool) {
	pos := make([]int, len(srcs))
	for {
		best := -1
		for i, src := range srcs {
			if pos[i] < len(src) && (best < 0 || bytes.Compare(src[pos[i]].Key, srcs[best][pos[best]].Key) < 0) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		row := srcs[best][pos[best]]
		for i, src := range srcs {
			if pos[i] < len(src) && bytes.Equal(src[pos[i]].Key, row.Key) {
				pos[i]++
			}
		}
		if !yield(row) {
			return
		}
	}
}

// rowsIn returns the part of sorted rows with keys in [from, to); a nil
// bound is open.
func rowsIn(rows []Row, from, to []byte) []Row {
	lo, hi := 0, len(rows)
	if from != nil {
		lo = searchRows(rows, from)
	}
	if to != nil {
		hi = searchRows(rows, to)
	}
	if lo > hi {
		return nil
	}
	return rows[lo:hi]
}

// searchRows returns the index of the first row of sorted rows whose key
// is at least key.
func searchRows(rows []Row, key []byte) int {
	lo, hi := 0, len(rows)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(rows[m].Key, key) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
