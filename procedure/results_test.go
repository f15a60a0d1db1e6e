package procedure

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestResultHeapOrder checks the sweeper's heap against a plain list:
// seeded random expiries, mostly growing (as completions are) with some
// earlier ones (acks) and duplicates; adds and pops interleaved; every pop
// must return the smallest expiry still held.
func TestResultHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	for round := range 200 {
		var h resultHeap
		var ref []int64
		pop := func() {
			got := h.pop().expiry
			i := slices.Index(ref, slices.Min(ref))
			if got != ref[i] {
				t.Fatalf("round %d: popped %d, the smallest held is %d", round, got, ref[i])
			}
			ref = slices.Delete(ref, i, i+1)
		}
		clock := int64(0)
		for i := range 1 + rng.IntN(300) {
			clock += int64(rng.IntN(5))
			x := clock
			if rng.IntN(4) == 0 {
				x -= int64(rng.IntN(50)) // an ack: earlier than the rest
			}
			h.add(ID(i), x)
			ref = append(ref, x)
			if rng.IntN(3) == 0 {
				pop()
			}
		}
		for len(ref) > 0 {
			pop()
		}
		if len(h) != 0 {
			t.Fatalf("round %d: %d entries left in the heap", round, len(h))
		}
	}
}
