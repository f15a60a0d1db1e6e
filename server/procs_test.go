package server

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/procedure"
)

func ids(ps []Procedure) []procedure.ID {
	var out []procedure.ID
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func TestListFiltersAndPaging(t *testing.T) {
	f := newFixture(t, nil)
	var done []procedure.ID
	for i := range 5 {
		id := f.submit(t, f.finish, job{N: i})
		f.finished(t, id)
		done = append(done, id)
	}
	stuck := f.submit(t, f.stuck, job{})
	parent := f.submit(t, f.parent, job{N: 2})
	slices.Reverse(done) // newest first

	list := func(q string) ProcedureList {
		t.Helper()
		var l ProcedureList
		f.do("GET", "/api/v1/procedures?"+q, readSecret, "").must(t, 200, &l)
		return l
	}
	if got := ids(list("type=finish").Procedures); !slices.Equal(got, done) {
		t.Fatalf("type=finish: %v, want %v", got, done)
	}
	kids := ids(list("parent=" + strconv.Itoa(int(parent))).Procedures)
	if len(kids) != 2 || kids[0] <= parent {
		t.Fatalf("children of %d: %v", parent, kids)
	}
	if got := ids(list("root=" + strconv.Itoa(int(parent))).Procedures); len(got) != 3 {
		t.Fatalf("tree of %d: %v", parent, got)
	}
	if got := ids(list("status=suspended").Procedures); !slices.Equal(got, append(slices.Clone(kids), stuck)) {
		t.Fatalf("suspended: %v, want %v and %d", got, kids, stuck)
	}
	if got := list("status=succeeded,waiting&type=parent").Procedures; len(got) != 1 || got[0].ID != parent || got[0].Status != "waiting" {
		t.Fatalf("waiting parent: %+v", got)
	}
	if got := list("since=2100-01-01T00:00:00Z").Procedures; len(got) != 0 {
		t.Fatalf("since the future: %v", ids(got))
	}
	if got := list("until=2000-01-01T00:00:00Z").Procedures; len(got) != 0 {
		t.Fatalf("until the past: %v", ids(got))
	}

	// Paging: limit 2 over the five finished, following Next.
	var paged []procedure.ID
	q := url.Values{"type": {"finish"}, "limit": {"2"}}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		l := list(q.Encode())
		paged = append(paged, ids(l.Procedures)...)
		if l.Next == "" {
			break
		}
		q.Set("before", l.Next)
	}
	if !slices.Equal(paged, done) {
		t.Fatalf("pages: %v, want %v", paged, done)
	}

	// An aborted tree is found by its error's text.
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/abort", stuck), `{"why":"cleanup after test"}`).must(t, 200, nil)
	f.finished(t, stuck)
	if got := ids(list("error=CLEANUP+after").Procedures); !slices.Equal(got, []procedure.ID{stuck}) {
		t.Fatalf("error=cleanup: %v, want [%d]", got, stuck)
	}
}

func TestListBadQuery(t *testing.T) {
	f := newFixture(t, nil)
	f.submit(t, f.stuck, job{})
	before := f.seq()
	for _, q := range []string{"status=bogus", "status=", "limit=0", "limit=1001", "limit=x", "root=abc", "root=0",
		"parent=-1", "before=1.5", "since=yesterday", "until=2026-13-01T00:00:00Z", "bogus=1", "type=a&type=b", "status=%zz",
		"since=2026-12-05T17:00:00Z&until=2026-12-05T17:00:00Z", "since=2026-12-06T00:00:00Z&until=2026-12-05T00:00:00Z"} {
		f.do("GET", "/api/v1/procedures?"+q, readSecret, "").refused(t, 400, CodeBadRequest)
	}
	f.unchanged(t, before, "bad list queries")
}

func TestDetail(t *testing.T) {
	f := newFixture(t, nil)
	parent := f.submit(t, f.parent, job{N: 2})
	var d ProcedureDetail
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", parent), readSecret, "").must(t, 200, &d)
	if d.ID != parent || d.Type != "parent" || d.Status != "waiting" || d.Root != parent {
		t.Fatalf("detail: %+v", d.Procedure)
	}
	if len(d.Tree) != 3 || d.Tree[0].ID != parent || d.Tree[0].Depth != 0 || d.Tree[1].Depth != 1 || d.Tree[2].Depth != 1 {
		t.Fatalf("tree: %+v", d.Tree)
	}
	if len(d.Executed) != 1 || d.Executed[0] != "0" {
		t.Fatalf("executed: %v", d.Executed)
	}
	if len(d.History) != 1 || d.History[0].State != "0" || d.History[0].At.Before(d.Created) {
		t.Fatalf("history: %+v", d.History)
	}
	child := d.Tree[1].ID
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", child), readSecret, "").must(t, 200, &d)
	if d.Parent != parent || d.Event != stuckEvent || d.Status != "suspended" {
		t.Fatalf("child: %+v", d.Procedure)
	}

	id := f.submit(t, f.finish, job{N: 3})
	f.finished(t, id)
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", id), readSecret, "").must(t, 200, &d)
	if d.Status != "succeeded" || d.Completed == nil || string(d.Result) != `{"n":3,"out":"xxx"}` {
		t.Fatalf("finished: %+v, result %s", d.Procedure, d.Result)
	}

	before := f.seq()
	f.do("GET", "/api/v1/procedures/999999", readSecret, "").refused(t, 404, CodeNotFound)
	for _, p := range []string{"abc", "0", "-1", "18446744073709551616", strconv.Itoa(int(id)) + "?x=1"} {
		f.do("GET", "/api/v1/procedures/"+p, readSecret, "").refused(t, 400, CodeBadRequest)
	}
	f.unchanged(t, before, "bad detail requests")
}

func TestSubmitAndWait(t *testing.T) {
	f := newFixture(t, nil)
	var sub SubmitResponse
	f.op("POST", "/api/v1/procedures", `{"type":"finish","args":{"n":2},"nonce":"req-1","timeout":"1h"}`).must(t, 201, &sub)
	var w WaitResponse
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d/wait?timeout=1m", sub.ID), readSecret, "").must(t, 200, &w)
	if !w.Done || w.Procedure.ID != sub.ID || w.Procedure.Status != "succeeded" || w.Procedure.Submitter != "operator" ||
		w.Procedure.Nonce != "req-1" {
		t.Fatalf("wait: %+v", w)
	}
	var again SubmitResponse
	f.op("POST", "/api/v1/procedures", `{"type":"finish","args":{"n":5},"nonce":"req-1"}`).must(t, 201, &again)
	if again.ID != sub.ID {
		t.Fatalf("a repeated nonce submitted %d, want %d", again.ID, sub.ID)
	}
	f.op("POST", "/api/v1/procedures", `{"type":"stuck","timeout":"1h"}`).must(t, 201, &sub)
	f.settle(t)
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d/wait?timeout=0s", sub.ID), readSecret, "").must(t, 200, &w)
	if w.Done || w.Procedure.Status != "suspended" || w.Procedure.Deadline == nil {
		t.Fatalf("wait on a stuck one: %+v", w)
	}
}

func TestSubmitBad(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBody = 512 })
	before := f.seq()
	for _, body := range []string{
		``, `null`, `[]`, `{`, `{"type":"finish"} {}`, `{"type":"finish"}}`, `{"type":"finish","bogus":1}`,
		`{"type":"nope"}`, `{"type":""}`, `{"type":"finish","args":{"n":"two"}}`, `{"type":"finish","args":{"m":1}}`,
		`{"type":"finish","args":[1]}`, `{"type":"finish","timeout":"soon"}`, `{"type":"finish","timeout":"-1s"}`,
		`{"type":"finish","timeout":"0s"}`, `{"type":"finish","nonce":"` + strings.Repeat("n", maxNonce+1) + `"}`,
	} {
		f.op("POST", "/api/v1/procedures", body).refused(t, 400, CodeBadRequest)
	}
	e := f.op("POST", "/api/v1/procedures", `{"type":"nope"}`).refused(t, 400, CodeBadRequest)
	if !strings.Contains(e.Message, "finish, parent, ponr, stuck") {
		t.Fatalf("the refusal does not list the submittable types: %q", e.Message)
	}
	f.op("POST", "/api/v1/procedures", `{"type":"finish","args":{"out":"`+strings.Repeat("x", 600)+`"}}`).refused(t, 413, CodeTooLarge)
	f.op("POST", "/api/v1/procedures?x=1", `{"type":"finish"}`).refused(t, 400, CodeBadRequest)
	f.unchanged(t, before, "bad submissions")
}

func TestWaitBad(t *testing.T) {
	f := newFixture(t, nil)
	id := f.submit(t, f.stuck, job{})
	before := f.seq()
	for _, q := range []string{"timeout=soon", "timeout=-1s", "bogus=1", "timeout=1s&timeout=2s"} {
		f.do("GET", fmt.Sprintf("/api/v1/procedures/%d/wait?%s", id, q), readSecret, "").refused(t, 400, CodeBadRequest)
	}
	f.do("GET", "/api/v1/procedures/999999/wait?timeout=0s", readSecret, "").refused(t, 404, CodeNotFound)
	f.do("GET", "/api/v1/procedures/x/wait", readSecret, "").refused(t, 400, CodeBadRequest)
	f.unchanged(t, before, "bad waits")
}

func TestAbort(t *testing.T) {
	f := newFixture(t, nil)
	id := f.submit(t, f.stuck, job{})
	past := f.submit(t, f.ponr, job{})
	before := f.seq()
	path := func(id procedure.ID) string { return fmt.Sprintf("/api/v1/procedures/%d/abort", id) }
	for _, body := range []string{``, `{}`, `{"why":""}`, `{"why":"   "}`, `{"why":"` + strings.Repeat("w", 1025) + `"}`,
		`{"why":"x","who":"me"}`, `{"why":1}`} {
		f.op("POST", path(id), body).refused(t, 400, CodeBadRequest)
	}
	f.op("POST", "/api/v1/procedures/999999/abort", `{"why":"gone"}`).refused(t, 404, CodeNotFound)
	e := f.op("POST", path(past), `{"why":"too late"}`).refused(t, 409, CodeConflict)
	if !strings.Contains(e.Message, "point of no return") {
		t.Fatalf("409 message: %q", e.Message)
	}
	f.unchanged(t, before, "refused aborts")

	var p Procedure
	f.op("POST", path(id), `{"why":"  wrong region  "}`).must(t, 200, &p)
	if p.ID != id || !p.Aborted || p.Error == nil || !strings.Contains(p.Error.Message, "operator") || !strings.Contains(p.Error.Message, "wrong region") {
		t.Fatalf("after abort: %+v, error %+v", p, p.Error)
	}
	if res := f.finished(t, id); res.Status != procedure.RolledBack {
		t.Fatalf("aborted one: %v", res.Status)
	}
	// Its history keeps what ran, each with when the rollback undid it.
	var d ProcedureDetail
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", id), readSecret, "").must(t, 200, &d)
	if len(d.History) == 0 || len(d.Executed) != 0 {
		t.Fatalf("rolled back: history %+v, executed %v", d.History, d.Executed)
	}
	for _, h := range d.History {
		if h.RolledBack == nil || h.RolledBack.Before(h.At) {
			t.Fatalf("rolled back: history %+v", d.History)
		}
	}
	before = f.seq()
	f.op("POST", path(id), `{"why":"again"}`).refused(t, 409, CodeConflict)
	f.unchanged(t, before, "abort of a finished one")
	if log := f.log.String(); !strings.Contains(log, "who=operator") || !strings.Contains(log, `why="wrong region"`) {
		t.Fatalf("the abort is not logged with who and why:\n%s", log)
	}
}

func TestBypass(t *testing.T) {
	f := newFixture(t, nil)
	id := f.submit(t, f.stuck, job{})
	path := fmt.Sprintf("/api/v1/procedures/%d/bypass", id)
	before := f.seq()
	f.op("POST", path, `{}`).refused(t, 400, CodeBadRequest)
	f.op("POST", "/api/v1/procedures/999999/bypass", `{"why":"x"}`).refused(t, 404, CodeNotFound)
	f.unchanged(t, before, "refused bypasses")
	var p Procedure
	f.op("POST", path, `{"why":"stuck for good"}`).must(t, 200, &p)
	if p.Status != "succeeded" || p.Bypass == nil || p.Bypass.Who != "operator" || p.Bypass.Why != "stuck for good" || p.Bypass.Role != "direct" {
		t.Fatalf("after bypass: %+v bypass %+v", p, p.Bypass)
	}
	f.op("POST", path, `{"why":"again"}`).refused(t, 409, CodeConflict)
}

func TestAck(t *testing.T) {
	f := newFixture(t, nil)
	id := f.submit(t, f.finish, job{N: 1})
	f.finished(t, id)
	stuck := f.submit(t, f.stuck, job{})
	before := f.seq()
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/ack", stuck), "").refused(t, 409, CodeConflict)
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/ack", id), `{"x":1}`).refused(t, 400, CodeBadRequest)
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/ack", id), `[]`).refused(t, 400, CodeBadRequest)
	f.op("POST", "/api/v1/procedures/999999/ack", "").refused(t, 404, CodeNotFound)
	f.unchanged(t, before, "refused acks")
	var p Procedure
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/ack", id), `{}`).must(t, 200, &p)
	if p.Acked == nil {
		t.Fatalf("after ack: %+v", p)
	}
}

func TestBulkAbort(t *testing.T) {
	f := newFixture(t, nil)
	var stuck []procedure.ID
	for range 3 {
		stuck = append(stuck, f.submit(t, f.stuck, job{}))
	}
	past := f.submit(t, f.ponr, job{})
	parent := f.submit(t, f.parent, job{N: 1})
	f.finished(t, f.submit(t, f.finish, job{}))
	slices.Reverse(stuck)

	before := f.seq()
	for _, body := range []string{`{"filter":{"type":"stuck"}}`, `{"filter":{"limit":"5"},"why":"x"}`,
		`{"filter":{"bogus":"1"},"why":"x"}`, `{"filter":{"status":"nope"},"why":"x"}`, `{"why":"x","limit":10001}`,
		`{"why":"x","limit":-1}`, `{"why":"x","dryrun":1}`, `{"why":"x","filter":[]}`} {
		f.op("POST", "/api/v1/procedures/abort", body).refused(t, 400, CodeBadRequest)
	}
	var dry BulkAbortResponse
	f.op("POST", "/api/v1/procedures/abort", `{"filter":{"type":"stuck"},"why":"drain","dryRun":true}`).must(t, 200, &dry)
	var got []procedure.ID
	for _, o := range dry.Results {
		got = append(got, o.ID)
		if o.Outcome != outcomeWouldAbort {
			t.Fatalf("dry run: %+v", o)
		}
	}
	if !dry.DryRun || dry.More || !slices.Equal(got, stuck) {
		t.Fatalf("dry run: %+v, want roots %v (no children)", dry, stuck)
	}
	f.op("POST", "/api/v1/procedures/abort", `{"filter":{"type":"ponr"},"why":"drain","dryRun":true}`).must(t, 200, &dry)
	if len(dry.Results) != 1 || dry.Results[0].ID != past || dry.Results[0].Outcome != CodeConflict ||
		!strings.Contains(dry.Results[0].Message, "point of no return") {
		t.Fatalf("dry run past the point of no return: %+v, want conflict for %d", dry, past)
	}
	f.op("POST", "/api/v1/procedures/abort", `{"why":"drain","dryRun":true,"limit":2}`).must(t, 200, &dry)
	if len(dry.Results) != 2 || !dry.More {
		t.Fatalf("dry run with limit 2: %+v", dry)
	}
	f.unchanged(t, before, "refused bulk aborts and dry runs")

	var real BulkAbortResponse
	f.op("POST", "/api/v1/procedures/abort", `{"filter":{"status":"suspended,waiting"},"why":"drain"}`).must(t, 200, &real)
	outcome := map[procedure.ID]string{}
	for _, o := range real.Results {
		outcome[o.ID] = o.Outcome
	}
	want := map[procedure.ID]string{stuck[0]: "aborted", stuck[1]: "aborted", stuck[2]: "aborted", parent: "aborted", past: CodeConflict}
	if real.DryRun || !maps.Equal(outcome, want) {
		t.Fatalf("bulk abort: %+v, want %v", real, want)
	}
	for _, id := range append(stuck, parent) {
		if res := f.finished(t, id); res.Status != procedure.RolledBack {
			t.Fatalf("procedure %d: %v", id, res.Status)
		}
	}
}
