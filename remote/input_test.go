package remote

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/durable"
)

// Bad input from the wire gets an error wrapping the right sentinel and
// changes nothing: no store write, the op still pending, the node table
// as it was.
func TestMalformedInputChangesNothing(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	id := w.submit(callData{Node: "rs1"})
	op := w.request(n).Ops[0].ID
	w.suspended(id)
	ctx := context.Background()
	s := w.d.Service()
	epoch := w.d.Epoch()
	report := func(r ReportRequest) func() error {
		return func() error { _, err := s.Report(ctx, &r); return err }
	}
	register := func(r RegisterRequest) func() error {
		return func() error { _, err := s.Register(ctx, &r); return err }
	}
	heartbeat := func(r HeartbeatRequest) func() error {
		return func() error { _, err := s.Heartbeat(ctx, &r); return err }
	}
	ok := result(op, "x")
	ok.Epoch = epoch
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"register: empty name", register(RegisterRequest{Addr: "a", Incarnation: 1}), ErrBadRequest},
		{"register: long name", register(RegisterRequest{Node: strings.Repeat("n", 256), Addr: "a", Incarnation: 1}), ErrBadRequest},
		{"register: no address", register(RegisterRequest{Node: "rs9", Incarnation: 1}), ErrBadRequest},
		{"register: incarnation 0", register(RegisterRequest{Node: "rs9", Addr: "a"}), ErrBadRequest},
		{"heartbeat: unknown node", heartbeat(HeartbeatRequest{Node: "rs9", Incarnation: 1, Epoch: epoch}), ErrUnknownNode},
		{"heartbeat: other incarnation", heartbeat(HeartbeatRequest{Node: "rs1", Incarnation: 2, Epoch: epoch}), ErrUnknownNode},
		{"heartbeat: newer epoch", heartbeat(HeartbeatRequest{Node: "rs1", Incarnation: 1, Epoch: epoch + 1}), ErrStaleEpoch},
		{"report: empty name", report(ReportRequest{Incarnation: 1, Epoch: epoch, Outcomes: []Outcome{ok}}), ErrBadRequest},
		{"report: unknown node", report(ReportRequest{Node: "rs9", Incarnation: 1, Epoch: epoch, Outcomes: []Outcome{ok}}), ErrUnknownNode},
		{"report: other incarnation", report(ReportRequest{Node: "rs1", Incarnation: 2, Epoch: epoch, Outcomes: []Outcome{ok}}), ErrUnknownNode},
		{"report: newer epoch", report(ReportRequest{Node: "rs1", Incarnation: 1, Epoch: epoch + 1, Outcomes: []Outcome{ok}}), ErrStaleEpoch},
		{"report: op twice", report(ReportRequest{Node: "rs1", Incarnation: 1, Epoch: epoch, Outcomes: []Outcome{ok, ok}}), ErrBadRequest},
		{"report: result and error", report(ReportRequest{Node: "rs1", Incarnation: 1, Epoch: epoch,
			Outcomes: []Outcome{{Op: op, Epoch: epoch, Result: []byte("r"), Error: "e"}}}), ErrBadRequest},
		{"report: refused and error", report(ReportRequest{Node: "rs1", Incarnation: 1, Epoch: epoch,
			Outcomes: []Outcome{{Op: op, Epoch: epoch, Refused: "r", Error: "e"}}}), ErrBadRequest},
		{"report: too many outcomes", report(ReportRequest{Node: "rs1", Incarnation: 1, Epoch: epoch,
			Outcomes: make([]Outcome, maxOutcomes+1)}), ErrBadRequest},
		{"report: too large", report(ReportRequest{Node: "rs1", Incarnation: 1, Epoch: epoch,
			Outcomes: []Outcome{{Op: op, Epoch: epoch, Result: bytes.Repeat([]byte{1}, maxResultBytes+1)}}}), ErrBadRequest},
	}
	seq := w.store.Seq()
	for _, tc := range cases {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if got := w.store.Seq(); got != seq {
		t.Fatalf("bad input moved the store from seq %d to %d", seq, got)
	}
	if rec, ok := w.op(op); !ok || rec.State != opPending {
		t.Fatalf("op after bad input: %+v", rec)
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || !nodes[0].Live || nodes[0].Incarnation != 1 {
		t.Fatalf("nodes after bad input: %+v", nodes)
	}
	if err := w.report("rs1", 1, result(op, "fine")); err != nil {
		t.Fatal(err)
	}
	if c := w.result(id); string(c.Result) != "fine" {
		t.Fatalf("%+v", c)
	}
}

// Records round-trip through their codecs; a damaged one is an error that
// names what is wrong and where, and Get names the collection and key.
func TestRecordCodecs(t *testing.T) {
	op := opRecord{Proc: 9, Node: "rs1", Incarnation: 3, Type: "t", Payload: []byte("p"), State: opPending}
	b, _ := op.encode()
	got, err := decodeOpRecord(b)
	if err != nil || got.Proc != 9 || got.Node != "rs1" || got.Incarnation != 3 || string(got.Payload) != "p" || got.State != opPending {
		t.Fatalf("op round trip: %+v, %v", got, err)
	}
	op.finish(outcomeFailed, nil, "boom")
	b, _ = op.encode()
	if got, err := decodeOpRecord(b); err != nil || got.Kind != outcomeFailed || got.Message != "boom" || got.Payload != nil {
		t.Fatalf("done op round trip: %+v, %v", got, err)
	}
	nr := nodeRecord{Addr: "a", Incarnation: 4, Live: true, Registered: 10,
		Unhandled: []deadIncarnation{{Addr: "b", Incarnation: 2, Registered: 1, Died: 5}}}
	nb, _ := nr.encode()
	if got, err := decodeNodeRecord(nb); err != nil || got.Addr != "a" || !got.Live || len(got.Unhandled) != 1 || got.Unhandled[0].Died != 5 {
		t.Fatalf("node round trip: %+v, %v", got, err)
	}
	damaged := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version", append([]byte{9}, b[1:]...), "unknown version 9"},
		{"truncated", b[:len(b)-2], "at byte"},
		{"trailing", append(bytes.Clone(b), 0), "trailing"},
		{"state", append([]byte{opRecordV1, 7}, b[2:]...), "bad state 7"},
	}
	for _, tc := range damaged {
		if _, err := decodeOpRecord(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}

	w := newWorld(t, Options{})
	err = w.store.Write(context.Background(), func(tx *durable.Tx) error {
		return w.d.ops.Put(tx, 77, opRecord{State: 99})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.d.ops.Get(w.store.Latest(), 77); err == nil || !strings.Contains(err.Error(), `"remote.ops"`) || !strings.Contains(err.Error(), "77") {
		t.Fatalf("Get of a damaged op record: %v, want the collection and key named", err)
	}
}

func FuzzDecodeOpRecord(f *testing.F) {
	b, _ := opRecord{Proc: 1, Node: "n", Incarnation: 2, Type: "t", Payload: []byte("p"), State: opPending}.encode()
	f.Add(b)
	d := opRecord{Proc: 1, Node: "n", State: opPending}
	d.finish(outcomeResult, []byte("r"), "")
	b, _ = d.encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeOpRecord(data)
		if err != nil {
			return
		}
		b, _ := r.encode()
		if r2, err := decodeOpRecord(b); err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("%+v re-encoded decodes as %+v, %v", r, r2, err)
		}
	})
}

func FuzzDecodeNodeRecord(f *testing.F) {
	b, _ := nodeRecord{Addr: "a", Incarnation: 4, Live: true, Registered: 10,
		Unhandled: []deadIncarnation{{Addr: "b", Incarnation: 2, Registered: 1, Died: 5}}}.encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeNodeRecord(data)
		if err != nil {
			return
		}
		b, _ := r.encode()
		if r2, err := decodeNodeRecord(b); err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("%+v re-encoded decodes as %+v, %v", r, r2, err)
		}
	})
}

// A stopped dispatcher answers ErrStopped, and writes nothing.
func TestServiceAfterStop(t *testing.T) {
	w := newWorld(t, Options{})
	w.node("rs1", 1)
	d := w.d
	d.Stop()
	seq := w.store.Seq()
	ctx := context.Background()
	if _, err := d.Service().Register(ctx, &RegisterRequest{Node: "rs2", Addr: "a", Incarnation: 1}); !errors.Is(err, ErrStopped) {
		t.Fatalf("register after Stop: %v", err)
	}
	if _, err := d.Service().Heartbeat(ctx, &HeartbeatRequest{Node: "rs1", Incarnation: 1, Epoch: 1}); !errors.Is(err, ErrStopped) {
		t.Fatalf("heartbeat after Stop: %v", err)
	}
	if _, err := d.Service().Report(ctx, &ReportRequest{Node: "rs1", Incarnation: 1, Epoch: 1, Outcomes: []Outcome{{Op: 1, Epoch: 1}}}); !errors.Is(err, ErrStopped) {
		t.Fatalf("report after Stop: %v", err)
	}
	if w.store.Seq() != seq {
		t.Fatal("a stopped dispatcher wrote")
	}
}
