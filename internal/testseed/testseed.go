// Package testseed gives randomized tests a seed they print and can be
// replayed with: -seed N on the test binary, or PROCYON_SEED=N.
package testseed

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: derive from the time, printed)")

// Seed returns the seed for a randomized test: the -seed flag, else
// PROCYON_SEED, else one derived from the time. It logs the seed, and logs
// it again if the test fails.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if s := os.Getenv("PROCYON_SEED"); seed == 0 && s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed %d or PROCYON_SEED=%d)", seed, seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d", seed)
		}
	})
	return seed
}
