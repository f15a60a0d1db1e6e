package remote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// A procedure calls an operation, suspends, and reads its outcome: a
// result, a failure, a refusal; the request carries the epoch, the node's
// incarnation, the procedure and the payload; the outcome is consumed
// (record deleted, event reset).
func TestCallAwaitOutcome(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 7)
	cases := []struct {
		out      Outcome
		kind     string
		msg, res string
	}{
		{out: Outcome{Result: []byte("ok-bytes")}, res: "ok-bytes"},
		{out: Outcome{Error: "disk full"}, kind: "failed", msg: "disk full"},
		{out: Outcome{Refused: "unknown type"}, kind: "refused", msg: "unknown type"},
	}
	for _, tc := range cases {
		id := w.submit(callData{Node: "rs1", Payload: []byte("p")})
		req := w.request(n)
		if req.Epoch != w.d.Epoch() || req.Node != "rs1" || req.Incarnation != 7 || len(req.Ops) != 1 {
			t.Fatalf("request %+v", req)
		}
		op := req.Ops[0]
		if op.Proc != uint64(id) || op.Type != "echo" || string(op.Payload) != "p" || op.Attempt != 1 || op.ID.Epoch() != w.d.Epoch() {
			t.Fatalf("op %+v", op)
		}
		w.suspended(id)
		tc.out.Op, tc.out.Attempt = op.ID, 1
		if err := w.report("rs1", 7, tc.out); err != nil {
			t.Fatal(err)
		}
		c := w.result(id)
		if c.Kind != tc.kind || c.Message != tc.msg || string(c.Result) != tc.res || c.Op != op.ID {
			t.Fatalf("outcome %+v, want kind %q message %q result %q", c, tc.kind, tc.msg, tc.res)
		}
		if _, ok := w.op(op.ID); ok {
			t.Fatalf("op %d still stored after its outcome was consumed", op.ID)
		}
		if ok, _ := w.e.Signalled(eventOf(op.ID)); ok {
			t.Fatalf("op %d's event still signalled after its outcome was consumed", op.ID)
		}
	}
	waitFor(t, "the third batch counted", func() bool { return w.stats("rs1").Batches == 3 })
	if s := w.stats("rs1"); s.Batches != 3 || s.OpsSent != 3 || s.InFlight != 0 || s.Queued != 0 || s.RTT.Count != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// The typed layer encodes the request and decodes the result as JSON.
func TestOpTypeCallOutcome(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	id := w.submit(callData{Node: "rs1", Typed: true, Payload: []byte("r-17")})
	req := w.request(n)
	if op := req.Ops[0]; op.Type != "snapshot-region" || string(op.Payload) != `{"Region":"r-17"}` {
		t.Fatalf("typed op %+v (payload %s)", op, op.Payload)
	}
	if err := w.report("rs1", 1, result(req.Ops[0].ID, `{"Files":3}`)); err != nil {
		t.Fatal(err)
	}
	if c := w.result(id); c.Files != 3 || c.Kind != "" {
		t.Fatalf("typed outcome %+v", c)
	}
}

// The outcome and the wake-up commit in one transaction before the report
// is acknowledged: a crash right after the acknowledgement keeps both,
// and the restarted master finishes the procedure with the result
// without sending the op again.
func TestReportCommitsOutcomeWithWakeUp(t *testing.T) {
	w := newWorld(t, Options{})
	w.holdStep1()
	n := w.node("rs1", 1)
	ids := []procedure.ID{w.submit(callData{Node: "rs1"}), w.submit(callData{Node: "rs1"})}
	var outs []Outcome
	for len(outs) < len(ids) {
		for _, op := range w.request(n).Ops {
			outs = append(outs, result(op.ID, "r"+op.ID.String()))
		}
	}
	for _, id := range ids {
		w.suspended(id)
	}
	// The woken steps cannot run before the crash: what the clone has,
	// the report committed.
	if err := w.report("rs1", 1, outs...); err != nil {
		t.Fatal(err)
	}
	crashed := w.fs.CrashClone(1)
	for _, id := range ids {
		if in := w.info(id); in.Steps != 1 {
			t.Fatalf("procedure %d ran on before the crash: %+v", id, in)
		}
	}
	w.reopen(crashed)
	for _, id := range ids {
		c := w.result(id)
		if c.Kind != "" || string(c.Result) != "r"+c.Op.String() {
			t.Fatalf("after the crash: %+v", c)
		}
	}
	w.noRequest(n)
}

// Reports that are not for an outstanding op of the reporting
// incarnation in this epoch are acknowledged and change nothing: an
// unknown op, another node's op, an outcome of another epoch, an op
// already reported.
func TestReportIgnoresWhatIsNotOutstanding(t *testing.T) {
	w := newWorld(t, Options{})
	n1 := w.node("rs1", 1)
	w.node("rs2", 1)
	id := w.submit(callData{Node: "rs1"})
	op := w.request(n1).Ops[0].ID
	w.suspended(id)
	ignored := []struct {
		name string
		node string
		outs []Outcome
	}{
		{"unknown op", "rs1", []Outcome{result(op+1000, "x")}},
		{"another node's op", "rs2", []Outcome{result(op, "from rs2")}},
		{"an older epoch's outcome", "rs1", []Outcome{{Op: op, Attempt: 1, Epoch: 1 << 20, Result: []byte("x")}}},
	}
	for _, tc := range ignored {
		if err := w.report(tc.node, 1, tc.outs...); err != nil {
			t.Fatalf("%s: %v, want it acknowledged", tc.name, err)
		}
		if rec, ok := w.op(op); !ok || rec.State != opPending {
			t.Fatalf("%s: the op is no longer pending: %+v", tc.name, rec)
		}
		if in := w.info(id); in.Status != procedure.Suspended {
			t.Fatalf("%s: the procedure was woken: %v", tc.name, in.Status)
		}
	}
	if err := w.report("rs1", 1, result(op, "first")); err != nil {
		t.Fatal(err)
	}
	if err := w.report("rs1", 1, result(op, "second")); err != nil {
		t.Fatalf("a second report of the op: %v, want it acknowledged", err)
	}
	if c := w.result(id); string(c.Result) != "first" {
		t.Fatalf("result %q, want the first report's", c.Result)
	}
}

// An outcome of an older epoch is ignored: reported to a restarted master
// (HBASE-28420), the old master's outcome does not count; the resent op's
// does.
func TestReportOfOlderEpochIgnored(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	id := w.submit(callData{Node: "rs1"})
	first := w.request(n)
	w.reopen(w.fs)
	second := w.request(n)
	if second.Epoch != first.Epoch+1 || second.Ops[0].ID != first.Ops[0].ID || second.Ops[0].Attempt != 1 {
		t.Fatalf("after a restart: %+v, want the op %d again with epoch %d", second, first.Ops[0].ID, first.Epoch+1)
	}
	op := first.Ops[0].ID
	stale := Outcome{Op: op, Attempt: 1, Epoch: first.Epoch, Result: []byte("to the old master")}
	id2 := w.submit(callData{Node: "rs1"})
	op2 := w.request(n).Ops[0].ID
	if err := w.report("rs1", 1, stale, result(op2, "current")); err != nil {
		t.Fatalf("report of an older epoch's outcome: %v, want it acknowledged", err)
	}
	w.suspended(id)
	if rec, _ := w.op(op); rec.State != opPending {
		t.Fatalf("an older epoch's outcome was recorded: %+v", rec)
	}
	if c := w.result(id2); string(c.Result) != "current" {
		t.Fatalf("the current outcome reported with a stale one: %+v", c)
	}
	if err := w.report("rs1", 1, result(op, "current")); err != nil {
		t.Fatal(err)
	}
	if c := w.result(id); string(c.Result) != "current" {
		t.Fatalf("result %q", c.Result)
	}
	if err := w.reportEpoch("rs1", 1, w.d.Epoch()+1); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("a report from a newer epoch: %v, want ErrStaleEpoch", err)
	}
	_, err := w.d.Service().Heartbeat(context.Background(), &HeartbeatRequest{Node: "rs1", Incarnation: 1, Epoch: w.d.Epoch() + 1})
	if !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("a heartbeat from a newer epoch: %v, want ErrStaleEpoch", err)
	}
}

// A cancelled op's late report is acknowledged and ignored: nothing is
// stored, no event is signalled.
func TestCancelThenLateReport(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	id := w.submit(callData{Node: "rs1", CancelIt: true})
	c := w.result(id)
	if _, ok := w.op(c.Op); ok {
		t.Fatal("the cancelled op is still stored")
	}
	var sent OpID
	select { // sent or not, depending on the race with Cancel's commit
	case r := <-n.reqs:
		sent = r.Ops[0].ID
	default:
	}
	if sent != 0 && sent != c.Op {
		t.Fatalf("sent op %d, want %d", sent, c.Op)
	}
	if err := w.report("rs1", 1, result(c.Op, "late")); err != nil {
		t.Fatalf("late report: %v", err)
	}
	if _, ok := w.op(c.Op); ok {
		t.Fatal("a late report stored a cancelled op")
	}
	if ok, _ := w.e.Signalled(eventOf(c.Op)); ok {
		t.Fatal("a late report signalled a cancelled op's event")
	}
}

// Ops are batched by count: MaxBatch ops go in one request at once; fewer
// wait BatchDelay (on the clock) and then go together.
func TestBatchingByCountAndDelay(t *testing.T) {
	w := newWorld(t, Options{MaxBatch: 3, BatchDelay: 50 * 1e6})
	n := w.node("rs1", 1)
	for range 3 {
		w.submit(callData{Node: "rs1"})
	}
	if req := w.request(n); len(req.Ops) != 3 {
		t.Fatalf("a full batch went with %d ops, want 3", len(req.Ops))
	}
	ids := []procedure.ID{w.submit(callData{Node: "rs1"}), w.submit(callData{Node: "rs1"})}
	for _, id := range ids {
		w.suspended(id)
	}
	waitFor(t, "two ops queued", func() bool { return w.stats("rs1").Queued == 2 })
	w.noRequest(n)
	w.clock.Advance(w.d.opts.BatchDelay)
	if req := w.request(n); len(req.Ops) != 2 {
		t.Fatalf("the batch sent after BatchDelay has %d ops, want 2", len(req.Ops))
	}
	waitFor(t, "the second batch counted", func() bool { return w.stats("rs1").Batches == 2 })
	if s := w.stats("rs1"); s.Batches != 2 || s.OpsSent != 5 || s.InFlight != 5 || s.Queued != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// At most MaxInFlight ops are sent and unreported; a report frees slots.
func TestMaxInFlight(t *testing.T) {
	w := newWorld(t, Options{MaxInFlight: 2, MaxBatch: 10})
	n := w.node("rs1", 1)
	const total = 7
	var ids []procedure.ID
	for range total {
		ids = append(ids, w.submit(callData{Node: "rs1"}))
	}
	var unreported []OpID
	done := 0
	for done < total {
		waitFor(t, "the sender fills its in-flight slots", func() bool {
			s := w.stats("rs1")
			return s.InFlight == min(2, total-done) || s.Queued+s.InFlight+done < total
		})
		for len(n.reqs) > 0 {
			for _, op := range w.request(n).Ops {
				unreported = append(unreported, op.ID)
			}
		}
		if len(unreported) > 2 {
			t.Fatalf("%d ops sent and unreported, MaxInFlight 2", len(unreported))
		}
		if len(unreported) == 0 {
			continue // the queue had not got them all yet
		}
		if err := w.report("rs1", 1, result(unreported[0], "ok")); err != nil {
			t.Fatal(err)
		}
		unreported = unreported[1:]
		done++
	}
	for _, id := range ids {
		if c := w.result(id); string(c.Result) != "ok" {
			t.Fatalf("%+v", c)
		}
	}
}

// A failed request is resent, one attempt more, after the Retry backoff,
// while the node lives; once it died (here: it came back as a new
// incarnation), not again, and its ops fail with ErrNodeDied.
func TestResendWhileLiveNotAfterDeath(t *testing.T) {
	w := newWorld(t, Options{Retry: procedure.RetryPolicy{Initial: 1e9, Max: 1e9, Jitter: -1}})
	n := w.node("rs1", 1)
	n.failNext(1000, nil)
	id := w.submit(callData{Node: "rs1"})
	for attempt := uint32(1); attempt <= 3; attempt++ {
		req := w.request(n)
		if len(req.Ops) != 1 || req.Ops[0].Attempt != attempt {
			t.Fatalf("send %d: %+v", attempt, req.Ops)
		}
		waitFor(t, "the resend is arranged", func() bool { return w.stats("rs1").Retries == int64(attempt) })
		w.noRequest(n) // not before the backoff
		w.clock.Advance(w.d.opts.Retry.Initial)
		heartbeat(t, w, "rs1", 1)
	}
	req := w.request(n) // the 4th send, failed too
	waitFor(t, "the resend is arranged", func() bool { return w.stats("rs1").Retries == 4 })
	w.d.mu.Lock()
	old := w.d.mu.nodes["rs1"].snd
	w.d.mu.Unlock()
	w.node("rs1", 2) // a new incarnation: the old one died
	old.mu.Lock()
	closed := old.mu.closed
	old.mu.Unlock()
	if !closed {
		t.Fatal("the dead incarnation's sender still runs")
	}
	if c := w.result(id); c.Kind != "died" || c.Op != req.Ops[0].ID {
		t.Fatalf("outcome %+v, want node died", c)
	}
	w.clock.Advance(10 * w.d.opts.Retry.Initial)
	w.noRequest(n)
	if s := w.stats("rs1"); s.Failures != 4 || s.Batches != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func heartbeat(t *testing.T, w *world, node string, inc uint64) {
	t.Helper()
	if _, err := w.d.Service().Heartbeat(context.Background(), &HeartbeatRequest{Node: node, Incarnation: inc, Epoch: w.d.Epoch()}); err != nil {
		t.Fatalf("heartbeat %s/%d: %v", node, inc, err)
	}
}

// A node that answers a request with ErrWrongNode restarted: its
// incarnation is declared dead and its ops fail.
func TestWrongNodeKillsIncarnation(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	n.failNext(0, &wireError{sentinel: ErrWrongNode, msg: "I am incarnation 2"})
	id := w.submit(callData{Node: "rs1"})
	w.request(n)
	if c := w.result(id); c.Kind != "died" {
		t.Fatalf("outcome %+v, want node died", c)
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || nodes[0].Live {
		t.Fatalf("nodes %+v, want rs1 dead", nodes)
	}
}

// Retry.Attempts bounds the failed requests in a row: then the node is
// declared dead (the only safe way to give up on an op that may have
// reached it), and its ops fail with ErrNodeDied.
func TestRetryAttemptsDeclareDead(t *testing.T) {
	w := newWorld(t, Options{Retry: procedure.RetryPolicy{Initial: 1e9, Max: 1e9, Jitter: -1, Attempts: 2}})
	n := w.node("rs1", 1)
	n.failNext(1000, nil)
	id := w.submit(callData{Node: "rs1"})
	for attempt := 1; attempt <= 2; attempt++ {
		w.request(n)
		waitFor(t, "the resend is arranged", func() bool { return w.stats("rs1").Retries == int64(attempt) })
		w.clock.Advance(w.d.opts.Retry.Initial)
	}
	w.request(n) // the third failure in a row
	if c := w.result(id); c.Kind != "died" {
		t.Fatalf("outcome %+v, want node died", c)
	}
	if nodes := w.d.Nodes(); nodes[0].Live {
		t.Fatalf("nodes %+v, want rs1 dead", nodes)
	}
}

// A node the transport cannot dial yet is dialled again for the resend.
func TestDialFailureRetried(t *testing.T) {
	w := newWorld(t, Options{Retry: procedure.RetryPolicy{Initial: 1e9, Max: 1e9, Jitter: -1}})
	if _, err := w.d.Service().Register(context.Background(), &RegisterRequest{Node: "rs1", Addr: "addr-rs1", Incarnation: 1}); err != nil {
		t.Fatal(err)
	}
	id := w.submit(callData{Node: "rs1"})
	waitFor(t, "the failed dial counted", func() bool { return w.stats("rs1").Retries == 1 })
	n := newFakeNode()
	w.tr.mu.Lock()
	w.tr.nodes["addr-rs1"] = n
	w.tr.mu.Unlock()
	w.clock.Advance(w.d.opts.Retry.Initial)
	req := w.request(n)
	if req.Ops[0].Attempt != 2 {
		t.Fatalf("resent op %+v, want attempt 2", req.Ops[0])
	}
	if err := w.report("rs1", 1, result(req.Ops[0].ID, "ok")); err != nil {
		t.Fatal(err)
	}
	if c := w.result(id); string(c.Result) != "ok" {
		t.Fatalf("%+v", c)
	}
	// The request reaches the fake node before Execute returns, and the
	// batch is counted after it returns.
	waitFor(t, "the batch counted", func() bool { return w.stats("rs1").Batches == 1 })
	if s := w.stats("rs1"); s.Failures != 1 || s.Batches != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A request the node refuses as malformed is not resent (it would be
// refused again): its operations fail with ErrRefused, and the node stays
// live.
func TestBadRequestRefusesItsOps(t *testing.T) {
	w := newWorld(t, Options{})
	n := w.node("rs1", 1)
	n.failNext(0, &wireError{sentinel: ErrBadRequest, msg: "body over 8 MiB"})
	id := w.submit(callData{Node: "rs1"})
	w.request(n)
	if c := w.result(id); c.Kind != "refused" || !strings.Contains(c.Message, "body over 8 MiB") {
		t.Fatalf("outcome %+v, want refused with the node's message", c)
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || !nodes[0].Live {
		t.Fatalf("nodes %+v, want rs1 live", nodes)
	}
	// The sender commits the refusal before it takes the ops out of
	// flight: the outcome may be read first.
	waitFor(t, "the refused ops out of flight", func() bool { return w.stats("rs1").InFlight == 0 })
	w.noRequest(n)
	if s := w.stats("rs1"); s.Retries != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v: the refused request was resent or is still in flight", s)
	}
}

// A payload over MaxPayload fails its step (nothing is recorded or sent);
// the payloads of one request stay under maxBatchBytes.
func TestPayloadLimits(t *testing.T) {
	w := newWorld(t, Options{MaxPayload: 1 << 20})
	w.node("rs1", 1)
	id := w.submit(callData{Node: "rs1", Payload: make([]byte, 1<<20+1)})
	r, err := w.e.Wait(context.Background(), id)
	if err != nil || r.Err() == nil || !strings.Contains(r.Err().Error(), "over Options.MaxPayload") {
		t.Fatalf("result %v (%v), want the step failed on the payload's size", r.Err(), err)
	}
	if w.d.ops.Len(w.store.Latest()) != 0 {
		t.Fatal("an op was recorded for a refused payload")
	}
	if ops := batchLen([]Op{{Payload: make([]byte, 3<<20)}, {Payload: make([]byte, 1<<20)}, {Payload: make([]byte, 1)}}); ops != 2 {
		t.Fatalf("batchLen %d, want 2 (4 MiB of payloads, then the limit)", ops)
	}
	if ops := batchLen([]Op{{Payload: make([]byte, 5<<20)}, {}}); ops != 1 {
		t.Fatalf("batchLen %d, want 1 (the first op always goes)", ops)
	}
}

// An op cancelled while the request that carries it is failing is not
// resent with that request.
func TestCancelWhileInFlightNotResent(t *testing.T) {
	w := newWorld(t, Options{Retry: procedure.RetryPolicy{Initial: time.Hour, Max: time.Hour, Jitter: -1}})
	n := w.node("rs1", 1)
	n.failNext(1, nil)
	gate := make(chan struct{})
	w.gate2.Store(&gate)
	id := w.submit(callData{Node: "rs1", CancelIt: true})
	if r := w.request(n); len(r.Ops) != 1 {
		t.Fatalf("request %+v", r)
	}
	waitFor(t, "the failed request's resend arranged", func() bool { return w.stats("rs1").Retries == 1 })
	close(gate) // now Cancel commits, with the op queued for its resend
	w.result(id)
	waitFor(t, "the cancelled op out of the queue", func() bool { return w.stats("rs1").Queued == 0 })

	// Cancelled while its request is out: a failed resend leaves it out.
	w2 := newWorld(t, Options{Retry: procedure.RetryPolicy{Initial: time.Hour, Max: time.Hour, Jitter: -1}})
	n2 := w2.node("rs1", 1)
	block := make(chan struct{})
	n2.block = block
	gate2 := make(chan struct{})
	w2.gate2.Store(&gate2)
	id2 := w2.submit(callData{Node: "rs1", CancelIt: true})
	w2.request(n2) // the request is out (its Execute blocks)
	close(gate2)
	w2.result(id2) // Cancel committed while the op is in flight
	n2.failNext(1, nil)
	close(block) // the request fails now
	waitFor(t, "the failed request's resend arranged", func() bool { return w2.stats("rs1").Retries == 1 })
	if s := w2.stats("rs1"); s.Queued != 0 || s.InFlight != 0 {
		t.Fatalf("stats %+v: the cancelled op is queued for a resend", s)
	}
}
