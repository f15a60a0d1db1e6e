package main

import (
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/examples/tablestore"
)

// TestCheckSnapshotRegion checks the snapshot check the demo and the
// process crash test rely on, on histories of two writers over a region
// [b, c): what it must accept and each way a snapshot can be wrong.
func TestCheckSnapshotRegion(t *testing.T) {
	desc := tablestore.RegionDesc{ID: "t.1.0001", Table: "t", Start: []byte("b"), End: []byte("c")}
	ack := func(keys ...string) []tsAck {
		var as []tsAck
		for _, k := range keys {
			as = append(as, tsAck{Key: k, Value: "v" + k})
		}
		return as
	}
	// w1's rows outside [b, c) do not count; w2 acknowledged 1 row
	// before the snapshot, w1 2 (of which 1 in the region).
	hs := []tsHistory{
		{writer: "w1", acked: ack("a1", "b1", "b2", "d1", "b3"), before: 2},
		{writer: "w2", acked: ack("b4", "b5"), before: 1},
	}
	rows := func(keys ...string) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v" + k
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		rows  map[string]string
		held  int
		error string // "" if the snapshot is right
	}{
		{name: "exactly what was acknowledged before", rows: rows("b1", "b4"), held: 2},
		{name: "and later rows, a prefix of each writer's", rows: rows("b1", "b2", "b4", "b5"), held: 4},
		{name: "everything", rows: rows("b1", "b2", "b3", "b4", "b5"), held: 5},
		{name: "a row acknowledged before is missing", rows: rows("b4"), error: "w1's row b1 was acknowledged before"},
		{name: "a gap", rows: rows("b1", "b3", "b4"), error: "not a point in time: row b3 is in it but the earlier b2 is not"},
		{name: "a wrong value", rows: map[string]string{"b1": "x", "b4": "vb4"}, error: `row b1 is "x"`},
		{name: "a row nobody acknowledged", rows: rows("b1", "b4", "b9"), error: "1 rows that no writer acknowledged"},
	} {
		n, err := tsCheckSnapshotRegion(tc.rows, desc, hs)
		switch {
		case tc.error == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.error == "" && (n.held != tc.held || n.acked != 5 || n.before != 2):
			t.Errorf("%s: counts %+v, want %d held of 5, 2 before", tc.name, n, tc.held)
		case tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.error)
		}
	}
}
