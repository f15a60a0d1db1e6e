package procedure

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// idSet does what a sorted slice does, through random inserts (mostly
// appends, as ids are allocated), deletes and descents.
func TestIDSet(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 4))
	var s idSet
	var model []uint64 // sorted
	next := uint64(1)
	for i := range 60_000 {
		switch op := r.IntN(10); {
		case op < 4: // a new id
			if len(model) > 0 {
				next = max(next, model[len(model)-1]+1)
			}
			next += uint64(r.IntN(3))
			s.Insert(next)
			model = append(model, next)
			next++
		case op < 5: // an id anywhere (maybe present)
			id := uint64(r.IntN(int(next) + 2))
			s.Insert(id)
			if j, ok := slices.BinarySearch(model, id); !ok {
				model = slices.Insert(model, j, id)
			}
		default: // a delete, mostly of a present id
			id := uint64(r.IntN(int(next) + 2))
			if len(model) > 0 && r.IntN(4) > 0 {
				id = model[r.IntN(len(model))]
			}
			j, ok := slices.BinarySearch(model, id)
			if ok {
				model = slices.Delete(model, j, j+1)
			}
			if got := s.Delete(id); got != ok {
				t.Fatalf("op %d: Delete(%d) = %v, want %v", i, id, got, ok)
			}
		}
		if s.Len() != len(model) {
			t.Fatalf("op %d: Len %d, want %d", i, s.Len(), len(model))
		}
		if i%997 == 0 {
			checkIDSet(t, &s, model, r)
		}
	}
	checkIDSet(t, &s, model, r)
}

func checkIDSet(t *testing.T, s *idSet, model []uint64, r *rand.Rand) {
	t.Helper()
	for bi, b := range s.blocks {
		if len(b) == 0 || len(b) > idSetBlock || !slices.IsSorted(b) || (bi > 0 && s.blocks[bi-1][len(s.blocks[bi-1])-1] >= b[0]) {
			t.Fatalf("block %d of %d malformed: %v", bi, len(s.blocks), b)
		}
	}
	for _, hi := range []uint64{math.MaxUint64, 0, uint64(r.IntN(len(model) + 10)), uint64(r.IntN(len(model) + 10))} {
		limit := 1 + r.IntN(len(model)+1)
		var got []uint64
		s.Descend(hi, func(id uint64) bool {
			got = append(got, id)
			return len(got) < limit
		})
		j, ok := slices.BinarySearch(model, hi)
		if ok {
			j++
		}
		want := slices.Clone(model[:j])
		slices.Reverse(want)
		want = want[:min(len(want), limit)]
		if !slices.Equal(got, want) {
			t.Fatalf("Descend(%d) with %d ids: got %v, want %v", hi, len(model), got, want)
		}
	}
}
