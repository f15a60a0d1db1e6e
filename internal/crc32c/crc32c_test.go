package crc32c

import "testing"

// TestKnownValues pins the polynomial: these are CRC-32C's published check
// values, and every file procyon ever wrote depends on them.
func TestKnownValues(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint32
	}{
		{"", 0},
		{"123456789", 0xe3069283},
		{"The quick brown fox jumps over the lazy dog", 0x22620404},
	} {
		if got := Checksum([]byte(c.in)); got != c.want {
			t.Errorf("Checksum(%q) = %08x, want %08x", c.in, got, c.want)
		}
	}
}

// TestUpdateContinues checks that summing in pieces gives the checksum of
// the whole, at every split point.
func TestUpdateContinues(t *testing.T) {
	b := []byte("The quick brown fox jumps over the lazy dog")
	want := Checksum(b)
	for i := range len(b) + 1 {
		if got := Update(Update(0, b[:i]), b[i:]); got != want {
			t.Errorf("split at %d: %08x, want %08x", i, got, want)
		}
	}
}
