package cowbtree

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// FuzzApply reads the input as a program of batches over 127 keys (so
// that batches collide, fill leaves and empty them): each byte is an op
// (the key is its low 7 bits, a delete if its top bit is set); a zero
// byte ends a batch, applied with Apply, or with Set and Delete one at a
// time, to a clone of the tree before it. After each batch the tree must
// equal a map, with a valid structure, and every earlier tree must still
// hold what it held.
func FuzzApply(f *testing.F) {
	f.Add([]byte{1, 2, 3, 0, 0x81, 0})
	f.Add([]byte("the quick brown fox\x00jumps over\x00\xff\xfe\xfd\x00the lazy dog"))
	// Fill every key, then delete most of them (leaves fall under their
	// minimum and are joined), in one batch and one at a time.
	var fill, drain []byte
	for b := byte(1); b < 0x80; b++ {
		fill = append(fill, b)
		if b%16 != 0 {
			drain = append(drain, b|0x80)
		}
	}
	f.Add(slices.Concat(fill, []byte{0}, drain, []byte{0}, fill, []byte{0, 0}, drain))
	f.Fuzz(func(t *testing.T, prog []byte) {
		type frozen struct {
			t *Tree[int, string]
			m map[int]string
		}
		tr := New[int, string]()
		model := map[int]string{}
		var old []frozen
		batch := map[int]Op[int, string]{}
		flush := func(step int) {
			ops := slices.SortedFunc(maps.Values(batch), func(a, b Op[int, string]) int { return cmp.Compare(a.Key, b.Key) })
			clear(batch)
			old = append(old, frozen{tr, maps.Clone(model)})
			tr = tr.Clone()
			applyBoth(t, tr, model, ops, step%2 == 1)
		}
		step := 0
		for i, b := range prog {
			if b == 0 {
				flush(step)
				step++
				continue
			}
			k := int(b & 0x7f)
			batch[k] = Op[int, string]{Key: k, Val: fmt.Sprint(i), Del: b&0x80 != 0}
		}
		flush(step)
		for _, o := range old {
			equal(t, o.t, o.m)
		}
	})
}
