package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/procedure"
)

func TestViews(t *testing.T) {
	f := newFixture(t, nil)
	stuck := f.submit(t, f.stuck, job{})
	past := f.submit(t, f.ponr, job{N: 7})
	done := f.submit(t, f.finish, job{})
	f.finished(t, done)

	var locks LockList
	f.do("GET", "/api/v1/locks", readSecret, "").must(t, 200, &locks)
	if len(locks.Locks) != 1 || locks.Locks[0].Resource != "table/7" || len(locks.Locks[0].Holders) != 1 ||
		locks.Locks[0].Holders[0].ID != past || locks.Locks[0].Holders[0].Type != "ponr" || locks.Locks[0].Holders[0].Mode != "shared" {
		t.Fatalf("locks: %+v", locks)
	}
	var d ProcedureDetail
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", past), readSecret, "").must(t, 200, &d)
	if len(d.Locks) != 1 || d.Locks[0].Resource != "table/7" {
		t.Fatalf("the detail's locks: %+v", d.Locks)
	}
	var waits WaitList
	f.do("GET", "/api/v1/waits", readSecret, "").must(t, 200, &waits)
	if len(waits.Events) != 1 || waits.Events[0].Event != stuckEvent || !slices.Equal(waits.Events[0].Waiters, []procedure.ID{stuck, past}) ||
		waits.Timers == nil {
		t.Fatalf("waits: %+v", waits)
	}
	var nodes NodeList
	f.do("GET", "/api/v1/nodes", readSecret, "").must(t, 200, &nodes)
	if nodes.Nodes == nil || len(nodes.Nodes) != 0 {
		t.Fatalf("nodes without a dispatcher: %+v", nodes)
	}
	var st StoreInfo
	f.do("GET", "/api/v1/store", readSecret, "").must(t, 200, &st)
	if st.Seq != f.seq() || st.Commits == 0 {
		t.Fatalf("store: %+v", st)
	}
	var eng EngineInfo
	f.do("GET", "/api/v1/engine", readSecret, "").must(t, 200, &eng)
	if eng.Types["finish"].Submitted != 1 || len(eng.Types) != 4 || !eng.Types["finish"].Submittable || eng.ByStatus["suspended"] != 2 {
		t.Fatalf("engine: %+v", eng)
	}
	var samples SampleList
	f.do("GET", "/api/v1/engine/samples", readSecret, "").must(t, 200, &samples)
	if samples.Samples == nil {
		t.Fatal("samples: null, want a list")
	}
	var bars BarrierList
	f.do("GET", "/api/v1/barriers", readSecret, "").must(t, 200, &bars)
	if bars.Barriers == nil || len(bars.Barriers) != 0 {
		t.Fatalf("barriers without a coordinator: %+v", bars)
	}
	var types TypeList
	f.do("GET", "/api/v1/types", readSecret, "").must(t, 200, &types)
	if !slices.Equal(types.Types, []string{"finish", "parent", "ponr", "stuck"}) {
		t.Fatalf("types: %v", types.Types)
	}
	before := f.seq()
	for _, p := range []string{"locks", "waits", "nodes", "store", "engine", "engine/samples", "barriers", "types"} {
		f.do("GET", "/api/v1/"+p+"?x=1", readSecret, "").refused(t, 400, CodeBadRequest)
	}
	f.unchanged(t, before, "bad view requests")
}

// The audit log lists operators' aborts and bypasses, newest first, and
// pages with before; each procedure's detail shows its tree's entries.
func TestAudit(t *testing.T) {
	f := newFixture(t, nil)
	a := f.submit(t, f.stuck, job{})
	b := f.submit(t, f.stuck, job{})
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/abort", a), `{"why":"first"}`).must(t, 200, nil)
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/bypass", b), `{"why":"second"}`).must(t, 200, nil)
	f.finished(t, a)
	f.settle(t)
	before := f.seq()
	for _, q := range []string{"before=x", "before=0", "limit=0", "limit=1001", "bogus=1", "limit=1&limit=2"} {
		f.do("GET", "/api/v1/audit?"+q, readSecret, "").refused(t, 400, CodeBadRequest)
	}
	f.unchanged(t, before, "bad audit requests")
	var page AuditList
	f.do("GET", "/api/v1/audit?limit=1", readSecret, "").must(t, 200, &page)
	if len(page.Actions) != 1 || page.Next == "" || page.Actions[0].Kind != "bypass" || page.Actions[0].Target != b ||
		page.Actions[0].Who != "operator" || page.Actions[0].Why != "second" {
		t.Fatalf("first page: %+v", page)
	}
	f.do("GET", "/api/v1/audit?limit=1&before="+page.Next, readSecret, "").must(t, 200, &page)
	if len(page.Actions) != 1 || page.Actions[0].Kind != "abort" || page.Actions[0].Target != a || page.Actions[0].Why != "first" {
		t.Fatalf("second page: %+v", page)
	}
	var d ProcedureDetail
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", a), readSecret, "").must(t, 200, &d)
	if len(d.Audit) != 1 || d.Audit[0].Kind != "abort" || d.Audit[0].Who != "operator" {
		t.Fatalf("the detail's audit: %+v", d.Audit)
	}
}

func TestProbes(t *testing.T) {
	notReady := errors.New("recovering")
	ready := error(nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "things"}))
	f := newFixture(t, func(o *Options) {
		o.Ready = func() error { return ready }
		o.Gatherer = reg
		o.Pprof = true
	})
	if a := f.do("GET", "/healthz", "", ""); a.status != 200 || string(a.body) != "ok\n" {
		t.Fatalf("healthz: %d %q", a.status, a.body)
	}
	if a := f.do("GET", "/readyz", "", ""); a.status != 200 {
		t.Fatalf("readyz: %d %q", a.status, a.body)
	}
	ready = notReady
	if a := f.do("GET", "/readyz", "", ""); a.status != 503 || !strings.Contains(string(a.body), "recovering") {
		t.Fatalf("readyz while not ready: %d %q", a.status, a.body)
	}
	if a := f.do("GET", "/metrics", readSecret, ""); a.status != 200 || !strings.Contains(string(a.body), "test_things_total 0") {
		t.Fatalf("metrics: %d %q", a.status, a.body)
	}
	if a := f.do("GET", "/debug/pprof/", operateSecret, ""); a.status != 200 || !strings.Contains(string(a.body), "goroutine") {
		t.Fatalf("pprof: %d", a.status)
	}
	if a := f.do("GET", "/debug/pprof/cmdline", operateSecret, ""); a.status != 200 {
		t.Fatalf("pprof cmdline: %d", a.status)
	}
	// Without a gatherer, or pprof, they are not there.
	g := newFixture(t, nil)
	g.do("GET", "/metrics", readSecret, "").refused(t, 404, CodeNotFound)
	g.do("GET", "/debug/pprof/", operateSecret, "").refused(t, 404, CodeNotFound)
	// By default /readyz is Engine.Ready: ready while the engine runs,
	// not once it stopped (or before it started, or after it failed).
	if a := g.do("GET", "/readyz", "", ""); a.status != 200 {
		t.Fatalf("readyz of a running engine: %d %q", a.status, a.body)
	}
	g.e.Stop()
	if a := g.do("GET", "/healthz", "", ""); a.status != 200 {
		t.Fatalf("healthz after Stop: %d", a.status)
	}
	if a := g.do("GET", "/readyz", "", ""); a.status != 503 || !strings.Contains(string(a.body), "not running") {
		t.Fatalf("readyz after Stop: %d %q", a.status, a.body)
	}
	g.op("POST", "/api/v1/procedures", `{"type":"finish"}`).refused(t, 503, CodeUnavailable)
}

func TestUnknownRoutes(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{"/api/v1/", "/api/v1", "/api/v1/nope", "/api/v1/procedures/1/nope", "/api/v1/locks/x"} {
		f.do("GET", p, readSecret, "").refused(t, 404, CodeNotFound)
	}
	a := f.op("DELETE", "/api/v1/procedures/1", "")
	a.refused(t, 405, CodeMethodNotAllowed)
	if allow := a.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Fatalf("Allow: %q", allow)
	}
	f.op("PUT", "/api/v1/procedures", "{}").refused(t, 405, CodeMethodNotAllowed)
	f.op("POST", "/api/v1/locks", "{}").refused(t, 405, CodeMethodNotAllowed)
	f.op("POST", "/healthz", "").refused(t, 405, CodeMethodNotAllowed)
}
