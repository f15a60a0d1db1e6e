package procedure

import (
	"math"
	"slices"
	"sort"
)

// idSet is an ordered set of ids, kept as sorted blocks of at most
// idSetBlock ids. It is made for the index's sets (index.go): ids are
// allocated in increasing order, so nearly every insert (all of them at
// load, which scans in id order) appends to the last block in O(1); a
// delete or an insert in the middle moves at most a block's ids. Unlike a
// B-tree, building a set of n ids in order costs n appends, and the ids
// take 8 bytes each.
type idSet struct {
	// blocks are sorted and not empty, and every id of blocks[i] is below
	// every id of blocks[i+1].
	blocks [][]uint64
	n      int
}

// idSetBlock bounds a block: a middle insert or delete moves up to this
// many ids.
const idSetBlock = 512

func (s *idSet) Len() int { return s.n }

// find returns the block that holds id if any does: the last one whose
// first id is <= id (0 if none is).
func (s *idSet) find(id uint64) int {
	i := sort.Search(len(s.blocks), func(i int) bool { return s.blocks[i][0] > id })
	return max(i-1, 0)
}

// Insert adds id (nothing if it is there).
func (s *idSet) Insert(id uint64) {
	nb := len(s.blocks)
	if nb == 0 || id > s.blocks[nb-1][len(s.blocks[nb-1])-1] {
		s.append(id)
		return
	}
	bi := s.find(id)
	b := s.blocks[bi]
	j, found := slices.BinarySearch(b, id)
	if found {
		return
	}
	b = slices.Insert(b, j, id)
	s.n++
	if len(b) <= idSetBlock {
		s.blocks[bi] = b
		return
	}
	half := len(b) / 2
	right := append(make([]uint64, 0, idSetBlock), b[half:]...)
	s.blocks[bi] = b[:half]
	s.blocks = slices.Insert(s.blocks, bi+1, right)
}

// append adds id, greater than every id of s.
func (s *idSet) append(id uint64) {
	s.n++
	if nb := len(s.blocks); nb > 0 && len(s.blocks[nb-1]) < idSetBlock {
		s.blocks[nb-1] = append(s.blocks[nb-1], id)
		return
	}
	s.blocks = append(s.blocks, append(make([]uint64, 0, 16), id))
}

// Delete removes id and reports whether it was there. A block that
// becomes small is merged with its predecessor or shrunk, so that sparse
// sets do not keep large blocks.
func (s *idSet) Delete(id uint64) bool {
	if len(s.blocks) == 0 {
		return false
	}
	bi := s.find(id)
	b := s.blocks[bi]
	j, found := slices.BinarySearch(b, id)
	if !found {
		return false
	}
	b = slices.Delete(b, j, j+1)
	s.n--
	switch {
	case len(b) == 0:
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		return true
	case bi > 0 && len(s.blocks[bi-1])+len(b) <= idSetBlock/4:
		s.blocks[bi-1] = append(s.blocks[bi-1], b...)
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		return true
	case cap(b) > 64 && len(b) < cap(b)/8:
		b = slices.Clone(b)
	}
	s.blocks[bi] = b
	return true
}

// Descend calls fn with the ids <= hi, in descending order, until it
// returns false.
func (s *idSet) Descend(hi uint64, fn func(id uint64) bool) {
	if len(s.blocks) == 0 {
		return
	}
	for bi := s.find(hi); bi >= 0; bi-- {
		b := s.blocks[bi]
		j, found := slices.BinarySearch(b, hi)
		if found {
			j++
		}
		for k := j - 1; k >= 0; k-- {
			if !fn(b[k]) {
				return
			}
		}
		hi = math.MaxUint64
	}
}

// Min returns the smallest id (false if the set is empty).
func (s *idSet) Min() (uint64, bool) {
	if len(s.blocks) == 0 {
		return 0, false
	}
	return s.blocks[0][0], true
}
