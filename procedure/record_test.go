package procedure

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
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
		// The extension: an error's code and outcome, a step's deadline.
		{status: RolledBack, root: 11, typ: "t", version: 1, completed: 4,
			err: &Error{Source: "t#12", Message: "region r7: offline", Code: "tables.region-offline", outcome: outcomeChildFailed | outcomeTimedOut}},
		{status: Suspended, root: 11, parent: 11, typ: "t", version: 1, wait: waitState{kind: waitEvent, event: "report"}, stepTimeout: -9},
		{status: Failed, root: 13, typ: "t", version: 1, err: &Error{Source: "abort", Message: "m", outcome: outcomeAborted}, timeout: 5, stepTimeout: 1 << 50},
		// Entry times: all of them, after a prefix stored without, one
		// earlier than the one before (a clock set back), one at 0.
		{status: Runnable, root: 15, typ: "t", version: 1, next: 3, steps: 3, created: 1 << 60, updated: 1<<60 + 9,
			entries: []entry{{state: 0, idx: 0, at: 1<<60 + 1}, {state: 1, idx: 1, at: 1<<60 + 5, spawn: true}, {state: 2, idx: 2, at: 1<<60 + 3}}},
		{status: Waiting, root: 15, parent: 15, typ: "t", version: 1, next: 2, created: 7, updated: 9,
			entries:     []entry{{state: 0, idx: 3}, {state: 1, idx: 4}, {state: 5, idx: 5, at: 8}, {state: 6, idx: 6}, {state: 7, idx: 7, at: -1}},
			stepTimeout: 3},
		// Undone states: rolling back (one still on the stack), and a
		// rolled-back result, one undone state stored before times were.
		{status: Failed, root: 17, typ: "t", version: 1, next: 3, steps: 6, created: 1 << 60, updated: 1<<60 + 90,
			err:     &Error{Source: "t#17", Message: "m"},
			entries: []entry{{state: 0, idx: 0, at: 1<<60 + 10}},
			undone:  []undoneEntry{{state: 2, at: 1<<60 + 30, undoneAt: 1<<60 + 80}, {state: -1, at: 1<<60 + 20, undoneAt: 1<<60 + 90}}},
		{status: RolledBack, root: 19, typ: "t", version: 1, next: 1, steps: 3, created: 5, updated: 50, completed: 50,
			err:    &Error{Source: "t#19", Message: "m"},
			undone: []undoneEntry{{state: 1, undoneAt: 40}, {state: 0, at: 6, undoneAt: 50}}},
	}
}

// legacyRecords are records as the program wrote them before the
// extension sections existed (hex), with what they decode to.
var legacyRecords = []struct {
	hex  string
	want *record
}{
	{"010509000501780100000000000000027b7d0774696d656f75740670617373656416",
		&record{status: RolledBack, root: 5, typ: "x", version: 1, data: []byte(`{}`), completed: 11,
			err: &Error{Source: "timeout", Message: "passed", outcome: outcomeTimedOut}}},
	{"010441050501780100000000000000000378233604626f6f6d06",
		&record{status: Failed, parent: 5, root: 5, typ: "x", version: 1, timeout: 3, err: &Error{Source: "x#6", Message: "boom"}}},
	{"01050d000701780100000000000000000561626f72741361626f72746564206279206120636c69656e7418",
		&record{status: RolledBack, root: 7, typ: "x", version: 1, aborted: true, completed: 12,
			err: &Error{Source: "abort", Message: "aborted by a client", outcome: outcomeAborted}}},
	// Entries stored before they had times: they decode with none.
	{"0101000003017801040202000000020101c801d804000000",
		&record{status: Runnable, root: 3, typ: "x", version: 1, next: 2, steps: 2, created: 100, updated: 300,
			entries: []entry{{state: 0, idx: 0}, {state: 1, idx: 1, spawn: true}}}},
	{"0206200303017801020101000200c801900300000001016502880e",
		&record{status: Suspended, parent: 3, root: 3, typ: "x", version: 1, next: 1, steps: 1, created: 100, updated: 200,
			entries: []entry{{state: 0, idx: 2}}, wait: waitState{kind: waitEvent, event: "e"}, stepTimeout: 900}},
}

// Records written before the extension sections decode, their errors'
// outcomes named by their sources as the engine named them then.
func TestRecordLegacy(t *testing.T) {
	for i, l := range legacyRecords {
		b, err := hex.DecodeString(l.hex)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if len(got.data) == 0 {
			got.data = l.want.data
		}
		if !reflect.DeepEqual(got, l.want) {
			t.Fatalf("%d: got %+v (err %+v)\nwant %+v (err %+v)", i, got, got.err, l.want, l.want.err)
		}
	}
	// An extension must say something, only what this program knows, and
	// an error's section only with an error.
	base := appendRecord(nil, sampleRecords()[0])
	base[0] = recordV2
	for _, ext := range [][]byte{{}, {0}, {4}, {1, 0, 0}, {2, 0}} {
		if _, err := decodeRecord(append(slices.Clone(base), ext...)); !errors.Is(err, errRecord) {
			t.Fatalf("extension %x accepted: %v", ext, err)
		}
	}
	withErr := appendRecord(nil, sampleRecords()[3])
	if _, err := decodeRecord(append(withErr[:len(withErr)-1], 0xff)); !errors.Is(err, errRecord) {
		t.Fatalf("unknown outcome accepted: %v", err)
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
		if st, ok := storedStatus(b); !ok || st != r.status {
			t.Fatalf("%d: storedStatus %v %v, want %v", i, st, ok, r.status)
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
	b[0] = 3
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
	for _, l := range legacyRecords {
		b, _ := hex.DecodeString(l.hex)
		f.Add(b)
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

// The undone section holds at least one state, each of at least 3 bytes.
func TestRecordUndone(t *testing.T) {
	r := &record{status: RolledBack, root: 3, typ: "x", version: 1, created: 100, updated: 300, completed: 300,
		undone: []undoneEntry{{state: 4, at: 150, undoneAt: 300}}}
	b := appendRecord(nil, r)
	section := []byte{xflagUndone, 1, 8, 100, 0xac, 2} // one: state 4, created+50, run time+150 (signed varints)
	if b[0] != recordV2 || !bytes.HasSuffix(b, section) {
		t.Fatalf("undone: % x, want the suffix % x", b, section)
	}
	head := b[:len(b)-len(section)]
	for _, bad := range [][]byte{{xflagUndone, 0}, {xflagUndone, 2, 8, 100, 0xac, 2}, {xflagUndone, 1, 8, 100}} {
		if _, err := decodeRecord(append(slices.Clone(head), bad...)); !errors.Is(err, errRecord) {
			t.Fatalf("undone section % x accepted: %v", bad, err)
		}
	}
}

// A bypass recorded before targets and roles were (a version 1 record)
// reads as a direct bypass with no target; the bypass-of section needs the
// bypass section, and unknown extension bits are corruption.
func TestRecordBypassWithoutRole(t *testing.T) {
	r := &record{status: Succeeded, root: 4, typ: "t", version: 1, bypass: &Bypass{Who: "w", Why: "y", At: 5}}
	b := appendRecord(nil, r)
	ext := []byte{xflagBypassOf, 0, 0} // xflags, target 0, role direct
	if b[0] != recordV2 || !bytes.HasSuffix(b, ext) {
		t.Fatalf("no bypass-of extension: % x", b)
	}
	old := append([]byte{recordV1}, b[1:len(b)-len(ext)]...)
	got, err := decodeRecord(old)
	if err != nil {
		t.Fatal(err)
	}
	if got.bypass == nil || *got.bypass != *r.bypass || got.status != Succeeded || got.root != 4 {
		t.Fatalf("got %+v (bypass %+v)", got, got.bypass)
	}
	// A bypass-of section in a record without a bypass.
	st := &record{status: Runnable, root: 4, typ: "t", version: 1, stepTimeout: 7}
	sb := appendRecord(nil, st)
	tail := binary.AppendVarint(nil, 7)
	if !bytes.HasSuffix(sb, append([]byte{xflagStepTimeout}, tail...)) {
		t.Fatalf("unexpected step-timeout extension: % x", sb)
	}
	bad := append(append(append([]byte{}, sb[:len(sb)-len(tail)-1]...), xflagStepTimeout|xflagBypassOf), tail...)
	bad = append(bad, 9, byte(BypassAncestor))
	if _, err := decodeRecord(bad); !errors.Is(err, errRecord) {
		t.Fatalf("bypass-of without bypass: %v", err)
	}
	// An unknown extension bit.
	b[len(b)-len(ext)] |= 8
	if _, err := decodeRecord(b); !errors.Is(err, errRecord) {
		t.Fatalf("unknown extension bit: %v", err)
	}
}

// Entry times are an extension section: a record whose entries have none
// is written as before them (version 1 when nothing else needs the
// extension); one with times counts the leading entries without and
// stores the others as differences; a section that holds no time is
// corruption.
func TestRecordEntryTimes(t *testing.T) {
	r := &record{status: Runnable, root: 3, typ: "x", version: 1, next: 2, steps: 2, created: 100, updated: 300,
		entries: []entry{{state: 0, idx: 0}, {state: 1, idx: 1, spawn: true}}}
	if b := appendRecord(nil, r); b[0] != recordV1 || hex.EncodeToString(b) != legacyRecords[3].hex {
		t.Fatalf("entries without times: % x, want the format before times", b)
	}
	r.entries[1].at = 250
	b := appendRecord(nil, r)
	section := append([]byte{xflagEntryTimes, 1}, binary.AppendVarint(nil, 150)...) // one untimed, then created+150
	if b[0] != recordV2 || !bytes.HasSuffix(b, section) {
		t.Fatalf("entry times: % x, want the suffix % x", b, section)
	}
	got, err := decodeRecord(b)
	if err != nil || !reflect.DeepEqual(got.entries, r.entries) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	// Every entry untimed, or more than there are: not a section this
	// program writes.
	for _, k := range []byte{2, 3} {
		bad := append(slices.Clone(b[:len(b)-len(section)]), xflagEntryTimes, k)
		if _, err := decodeRecord(bad); !errors.Is(err, errRecord) {
			t.Fatalf("entry times after %d of 2 untimed entries accepted: %v", k, err)
		}
	}
	// The section without entries.
	st := &record{status: Runnable, root: 4, typ: "t", version: 1, stepTimeout: 7}
	sb := appendRecord(nil, st)
	tail := binary.AppendVarint(nil, 7)
	bad := append(append(slices.Clone(sb[:len(sb)-len(tail)-1]), xflagStepTimeout|xflagEntryTimes), tail...)
	if _, err := decodeRecord(append(bad, 0, 2)); !errors.Is(err, errRecord) {
		t.Fatalf("entry times without entries accepted: %v", err)
	}
}
