package seqname

import "testing"

func TestRoundTripAndRejects(t *testing.T) {
	for _, seq := range []uint64{0, 1, 42, 1<<64 - 1} {
		name := Format(seq, ".wal")
		got, ok := Parse(name, ".wal")
		if !ok || got != seq {
			t.Fatalf("Parse(%q) = %d, %v", name, got, ok)
		}
	}
	for _, bad := range []string{"", "1.wal", "0000000000000000000x.wal", "00000000000000000001.snap",
		"99999999999999999999.wal" /* overflows uint64 */, "000000000000000000001.wal"} {
		if _, ok := Parse(bad, ".wal"); ok {
			t.Fatalf("Parse(%q) accepted", bad)
		}
	}
	if Format(7, ".wal") >= Format(10, ".wal") {
		t.Fatal("names do not sort in sequence order")
	}
}
