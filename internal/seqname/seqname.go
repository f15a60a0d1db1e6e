// Package seqname formats and parses file names made of a sequence number
// and a suffix ("00000000000000000042.wal"): 20 decimal digits, so that
// names sort in sequence order. The format is part of the on-disk layout of
// the packages that use it.
package seqname

import "fmt"

// Digits is the number of decimal digits in a name.
const Digits = 20

// Format returns the name of seq with suffix.
func Format(seq uint64, suffix string) string { return fmt.Sprintf("%020d%s", seq, suffix) }

// Parse returns the sequence number a name claims, and false if name is not
// 20 decimal digits followed by suffix.
func Parse(name, suffix string) (uint64, bool) {
	if len(name) != Digits+len(suffix) || name[Digits:] != suffix {
		return 0, false
	}
	var seq uint64
	for _, c := range name[:Digits] {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if seq > (1<<64-1-d)/10 {
			return 0, false
		}
		seq = seq*10 + d
	}
	return seq, true
}
