package procedure

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleRecords() []*record {
	return []*record{
		{status: Runnable, root: 1, typ: "t", version: 1},
		{status: Waiting, parent: 7, root: 3, typ: "create-table", version: 2, next: -5, steps: 9,
			entries: []entry{{state: 0, idx: 0}, {state: 3, idx: 4, spawn: true}, {state: 1 << 40, idx: 1<<32 - 1}},
			created: 1, updated: 1 << 62, submitter: "ann", nonce: "n-1", data: []byte(`{"x":1}`)},
		{status: RolledBack, root: 5, typ: "x", version: 1, data: []byte{0, 1, 2}, err: &Error{Source: "s", Message: "m"},
			bypass: &Bypass{Who: "w", Why: "y", At: -3, Target: 7, Role: BypassAncestor}, aborted: true, completed: 11, acked: 12},
		{status: Failed, root: 5, parent: 5, typ: "x", version: 1, err: &Error{}},
		{status: Waiting, root: 5, parent: 5, typ: "x", version: 1, bypass: &Bypass{Who: "w", Why: "y", Target: 1 << 40, Role: BypassDescendant}},
		{status: Suspended, root: 9, typ: "snap", version: 1, wait: waitState{kind: waitEvent, event: "region/r7/opened"},
			timeout: 1 << 60, locks: []Lock{{Resource: "table/t1", Mode: Shared}, {Resource: "table/t1/region/r7", Mode: Exclusive}}},
		{status: Suspended, root: 9, parent: 9, typ: "snap", version: 1, wait: waitState{kind: waitTimer, until: -7}},
		{status: Runnable, root: 9, typ: "snap", version: 1, timeout: 3, locks: []Lock{{Resource: "server/s3", Mode: Exclusive}}},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for i, r := range sampleRecords() {
		b := appendRecord(nil, r)
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if len(r.data) == 0 {
			got.data = r.data
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("%d: got %+v\nwant %+v", i, got, r)
		}
		// Every strict prefix is an error, never a panic.
		for n := range len(b) {
			if _, err := decodeRecord(b[:n]); !errors.Is(err, errRecord) {
				t.Fatalf("%d: prefix %d: %v", i, n, err)
			}
		}
		if _, err := decodeRecord(append(b, 0)); !errors.Is(err, errRecord) {
			t.Fatalf("%d: trailing byte accepted", i)
		}
	}
	// A future format version is refused, naming it.
	b := appendRecord(nil, sampleRecords()[0])
	b[0] = 2
	if _, err := decodeRecord(b); !errors.Is(err, errRecord) {
		t.Fatal(err)
	}
}

// FuzzDecodeRecord: decoding bytes from disk never panics, and what
// decodes re-encodes to something that decodes to the same record.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(appendRecord(nil, r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		b2 := appendRecord(nil, r)
		r2, err := decodeRecord(b2)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		b3 := appendRecord(nil, r2)
		if !bytes.Equal(b2, b3) {
			t.Fatal("encoding not stable")
		}
	})
}

// A bypass recorded before targets and roles were (no flags2 byte) reads
// as a direct bypass with no target.
func TestRecordBypassWithoutRole(t *testing.T) {
	r := &record{status: Succeeded, root: 4, typ: "t", version: 1, bypass: &Bypass{Who: "w", Why: "y", At: 5}}
	b := appendRecord(nil, r)
	if b[1]&statusMore == 0 || b[3] != flag2BypassOf {
		t.Fatalf("no flags2 byte: % x", b)
	}
	old := append([]byte{b[0], b[1] &^ statusMore, b[2]}, b[4:len(b)-2]...) // target 0 and role: 2 bytes
	got, err := decodeRecord(old)
	if err != nil {
		t.Fatal(err)
	}
	if got.bypass == nil || *got.bypass != *r.bypass || got.status != Succeeded || got.root != 4 {
		t.Fatalf("got %+v (bypass %+v)", got, got.bypass)
	}
	// flags2 without a bypass, or with unknown bits, is corruption.
	bad := append([]byte{b[0], b[1], b[2] &^ flagBypass, b[3]}, b[4:]...)
	if _, err := decodeRecord(bad); !errors.Is(err, errRecord) {
		t.Fatalf("bypass-of without bypass: %v", err)
	}
	b[3] |= 2
	if _, err := decodeRecord(b); !errors.Is(err, errRecord) {
		t.Fatalf("unknown flags2 bit: %v", err)
	}
}
