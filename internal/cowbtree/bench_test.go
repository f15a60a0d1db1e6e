package cowbtree

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key%09d", i)
	}
	return keys
}

// BenchmarkSetSorted loads a million keys in order one Set at a time, as
// recovery loads a snapshot. Reports ns per key.
func BenchmarkSetSorted(b *testing.B) {
	keys := benchKeys(1_000_000)
	val := make([]byte, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t := New[string, []byte]()
		for _, k := range keys {
			t.Set(k, val)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
}

// BenchmarkApply applies batches of 1,024 random keys (puts of existing
// keys, in 16 Apply calls of 64 as the durable store does) to a clone of a
// tree of n keys, as the durable store's applier does. Reports ns and
// bytes allocated per key.
func BenchmarkApply(b *testing.B) {
	val := make([]byte, 256)
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			keys := benchKeys(n)
			t := New[string, []byte]()
			for _, k := range keys {
				t.Set(k, val)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			batches := make([][]Op[string, []byte], 64)
			for i := range batches {
				picked := map[string]bool{}
				for len(picked) < 1024 {
					picked[keys[rng.IntN(n)]] = true
				}
				for k := range picked {
					batches[i] = append(batches[i], Op[string, []byte]{Key: k, Val: val})
				}
				slices.SortFunc(batches[i], func(a, b Op[string, []byte]) int { return cmp.Compare(a.Key, b.Key) })
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t = t.Clone()
				ops := batches[i%len(batches)]
				for c := 0; c < len(ops); c += 64 {
					t.Apply(ops[c:min(c+64, len(ops))])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1024), "ns/key")
		})
	}
}
