package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/vfs"
)

// The UI's handler tests, and the engine the browser tests drive too.

// stepData is a stepper's: Steps steps on table Name, each let through by
// the test (uiEnv.step); Fail, if set, fails the first step with it.
type stepData struct {
	Name  string `json:"name"`
	Steps int    `json:"steps"`
	Fail  string `json:"fail,omitempty"`
}

// stepper runs a step each time the test sends on gate, holding an
// exclusive lock on its table until it finishes (HoldLocks).
type stepper struct{ gate chan struct{} }

var _ procedure.Locker[int, stepData] = stepper{}

func (sm stepper) Execute(ctx context.Context, env *procedure.Env, st int, d *stepData) (procedure.Next, error) {
	if d.Fail != "" {
		return procedure.Next{}, errors.New(d.Fail)
	}
	if st >= d.Steps {
		return procedure.Done(), nil
	}
	select {
	case <-sm.gate:
	case <-ctx.Done():
		return procedure.Next{}, context.Cause(ctx)
	}
	return procedure.GoTo(st + 1), nil
}

func (stepper) Rollback(context.Context, *procedure.Env, int, *stepData) error { return nil }

func (stepper) Locks(st int, d *stepData) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock("table/" + d.Name)}
}

// waitData is a stuck procedure's, or a child's: it waits for Event.
type waitData struct {
	Event string `json:"event"`
}

func waitFor(ctx context.Context, env *procedure.Env, st int, d *waitData) (procedure.Next, error) {
	if st == 0 {
		return procedure.WaitEvent(1, d.Event), nil
	}
	return procedure.Done(), nil
}

// parentData is a parent's: it spawns Children children waiting for
// Event.
type parentData struct {
	Children int    `json:"children"`
	Event    string `json:"event"`
}

// opData is a remote caller's: it runs op "slow" on node Node.
type opData struct {
	Node string      `json:"node"`
	Op   remote.OpID `json:"op,omitempty"`
}

var slowOp = remote.OpType[string, string]{Name: "slow"}

// uiEnv is a server over a real engine (on an in-memory file system), a
// dispatcher with one node ("n1") on remote.Local, a barrier coordinator
// (without members until a test starts them), and the types the tests
// submit: stepper, stuck, parent (with children of type child), caller.
type uiEnv struct {
	e        *procedure.Engine
	barriers *barrierRig
	s        *Server
	ts       *httptest.Server
	gate     chan struct{} // a stepper's step runs per send
	opGate   chan struct{} // the node's "slow" op returns per send
	stepper  *procedure.Type[int, stepData]
	stuck    *procedure.Type[int, waitData]
	parent   *procedure.Type[int, parentData]
	caller   *procedure.Type[int, opData]
}

func newUIEnv(t *testing.T, tokens ...Token) *uiEnv {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	env := &uiEnv{gate: make(chan struct{}), opGate: make(chan struct{})}
	store := durable.New(durable.Options{Dir: "/data", FS: vfs.NewMem(), Logger: quiet})
	env.e = procedure.New(store, procedure.Options{Logger: quiet})
	tr := remote.NewLocal()
	d := remote.NewDispatcher(env.e, tr, remote.Options{Logger: quiet})
	env.stepper = procedure.Register[int, stepData](env.e, "stepper", stepper{env.gate}, &procedure.TypeOptions[stepData]{HoldLocks: true})
	env.stuck = procedure.Register[int, waitData](env.e, "stuck", procedure.StateMachineFuncs[int, waitData]{Exec: waitFor}, nil)
	child := procedure.Register[int, waitData](env.e, "child", procedure.StateMachineFuncs[int, waitData]{Exec: waitFor}, nil)
	env.parent = procedure.Register[int, parentData](env.e, "parent", procedure.StateMachineFuncs[int, parentData]{
		Exec: func(ctx context.Context, _ *procedure.Env, st int, p *parentData) (procedure.Next, error) {
			if st > 0 {
				return procedure.Done(), nil
			}
			var kids []procedure.Child
			for range p.Children {
				kids = append(kids, child.Child(waitData{Event: p.Event}))
			}
			return procedure.Spawn(1, kids...), nil
		}}, nil)
	env.caller = procedure.Register[int, opData](env.e, "caller", procedure.StateMachineFuncs[int, opData]{
		Exec: func(ctx context.Context, pe *procedure.Env, st int, o *opData) (procedure.Next, error) {
			if st == 0 {
				op, err := slowOp.Call(d, pe, o.Node, "x")
				if err != nil {
					return procedure.Next{}, err
				}
				o.Op = op
				return remote.Await(1, op), nil
			}
			_, err := slowOp.Outcome(d, pe, o.Op)
			return procedure.Done(), err
		}}, nil)
	if err := env.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.e.Stop() })
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	tr.ServeMaster("master", d.Service())
	n, err := remote.NewNode(remote.NodeOptions{Name: "n1", Addr: "n1", Master: "master", Transport: tr, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	remote.Handle(n, slowOp, func(ctx context.Context, in string) (string, error) {
		select {
		case <-env.opGate:
			return in, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	tr.ServeNode("n1", n.Service())
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Stop() })

	env.barriers = newBarrierRig(t)
	env.s, err = New(Options{Engine: env.e, Dispatcher: d, Barriers: env.barriers.coord, Tokens: tokens, Logger: quiet,
		Types: []SubmitType{JSONType(env.stepper), JSONType(env.stuck), JSONType(env.parent)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.s.Close() })
	env.ts = httptest.NewServer(env.s)
	t.Cleanup(env.ts.Close)
	return env
}

// step lets one stepper step run.
func (env *uiEnv) step(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case env.gate <- struct{}{}:
	case <-ctx.Done():
		t.Fatal("no stepper step took the gate:", ctx.Err())
	}
}

// until waits for procedure id's Info to satisfy cond.
func (env *uiEnv) until(t *testing.T, id procedure.ID, what string, cond func(procedure.Info) bool) procedure.Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := env.e.WaitFor(ctx, id, cond)
	if err != nil {
		t.Fatalf("procedure %d: waiting until %s: %v", id, what, err)
	}
	return in
}

func isStatus(st procedure.Status) func(procedure.Info) bool {
	return func(in procedure.Info) bool { return in.Status == st }
}

// submitStuck submits a procedure waiting for an event forever, and
// waits until it does.
func (env *uiEnv) submitStuck(t *testing.T) procedure.ID {
	t.Helper()
	id, err := env.stuck.Submit(context.Background(), waitData{Event: "never"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.until(t, id, "suspended", isStatus(procedure.Suspended))
	return id
}

// req sends a request to the UI: form values (nil: GET) and headers
// given as name, value pairs. Redirects are not followed.
func (env *uiEnv) req(t *testing.T, path string, form url.Values, headers ...string) (*http.Response, string) {
	t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, body = http.MethodPost, strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, env.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// wantStatus fails unless resp answered code.
func wantStatus(t *testing.T, what string, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, resp.StatusCode, code, body)
	}
}

func TestUIRootRedirects(t *testing.T) {
	env := newUIEnv(t)
	resp, body := env.req(t, "/", nil)
	wantStatus(t, "GET /", resp, body, http.StatusFound)
	if loc := resp.Header.Get("Location"); loc != "/ui/" {
		t.Fatalf("GET / redirects to %q, want /ui/", loc)
	}
}

func TestUIPagesRender(t *testing.T) {
	env := newUIEnv(t)
	id := env.submitStuck(t)
	for _, c := range []struct{ path, want string }{
		{"/ui/", `id="proc-` + strconv.FormatUint(uint64(id), 10) + `"`},
		{"/ui/procedures/list", `id="procs-table"`},
		{procURL(id), `waits for event`},
		{procURL(id) + "/live", `id="tree-` + strconv.FormatUint(uint64(id), 10) + `"`},
		{"/ui/locks", `never`},
		{"/ui/nodes", `id="node-n1"`},
		{"/ui/engine", `id="charts"`},
		{"/ui/engine/live", `<svg`},
		{"/ui/audit", `id="audit-log"`},
		{"/ui/signin", `name="token"`},
		{"/ui/static/htmx.min.js", `htmx`},
		{"/ui/static/style.css", `.st-succeeded`},
	} {
		resp, body := env.req(t, c.path, nil)
		wantStatus(t, c.path, resp, body, http.StatusOK)
		if !strings.Contains(body, c.want) {
			t.Errorf("%s: no %q in the page:\n%s", c.path, c.want, body)
		}
	}
}

func TestUIUnknownProcedure(t *testing.T) {
	env := newUIEnv(t)
	for _, p := range []string{"/ui/procedures/999", "/ui/procedures/abc", "/ui/procedures/0", "/ui/procedures/999/live"} {
		resp, body := env.req(t, p, nil)
		wantStatus(t, p, resp, body, http.StatusNotFound)
	}
	_, body := env.req(t, "/ui/procedures/999", nil)
	if !strings.Contains(body, "no procedure 999") {
		t.Fatalf("the 404 page does not say what is missing:\n%s", body)
	}
}

func TestUIBadFilterIsShown(t *testing.T) {
	env := newUIEnv(t)
	resp, body := env.req(t, "/ui/?status=sleepy&root=x", nil)
	wantStatus(t, "bad filter", resp, body, http.StatusBadRequest)
	if !strings.Contains(body, "Filter: ") || !strings.Contains(body, `id="error"`) {
		t.Fatalf("the filter's error is not shown:\n%s", body)
	}
}

// An error message is user-controlled text: it is shown escaped.
func TestUIEscapesErrorText(t *testing.T) {
	env := newUIEnv(t)
	const evil = `<script>alert("x")</script>`
	id, err := env.stepper.Submit(context.Background(), stepData{Name: "e", Fail: evil}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.until(t, id, "rolled back", isStatus(procedure.RolledBack))
	for _, p := range []string{"/ui/", "/ui/procedures/list", procURL(id), procURL(id) + "/live", "/ui/?error=" + url.QueryEscape(evil)} {
		_, body := env.req(t, p, nil)
		if strings.Contains(body, "<script>alert") {
			t.Fatalf("%s: the error is not escaped:\n%s", p, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Fatalf("%s: the escaped error is not shown:\n%s", p, body)
		}
	}
}

// procCount counts the procedures the engine holds.
func procCount(e *procedure.Engine) int {
	n := 0
	for range e.List(procedure.Query{}) {
		n++
	}
	return n
}

func TestUISubmit(t *testing.T) {
	env := newUIEnv(t)
	for _, c := range []struct {
		name string
		form url.Values
		want string
	}{
		{"bad JSON", url.Values{"type": {"stuck"}, "args": {`{"event":`}}, "not valid JSON"},
		{"unknown field", url.Values{"type": {"stuck"}, "args": {`{"evnt":"x"}`}}, "unknown field"},
		{"unknown type", url.Values{"type": {"child"}, "args": {`{}`}}, "type not submittable"},
		{"bad timeout", url.Values{"type": {"stuck"}, "args": {`{}`}, "timeout": {"soon"}}, "timeout: want a positive Go duration"},
	} {
		resp, body := env.req(t, "/ui/procedures", c.form)
		wantStatus(t, c.name, resp, body, http.StatusBadRequest)
		if !strings.Contains(body, c.want) || !strings.Contains(body, `id="error"`) {
			t.Fatalf("%s: the page does not say %q:\n%s", c.name, c.want, body)
		}
		if n := procCount(env.e); n != 0 {
			t.Fatalf("%s: a refused submission left %d procedures", c.name, n)
		}
	}
	_, body := env.req(t, "/ui/procedures", url.Values{"type": {"stuck"}, "args": {`{"evnt":"<b>kept</b>"}`}})
	if !strings.Contains(body, "&lt;b&gt;kept&lt;/b&gt;") {
		t.Fatalf("a refused form does not keep its arguments, escaped")
	}

	resp, body := env.req(t, "/ui/procedures", url.Values{"type": {"stuck"}, "args": {`{"event":"go"}`}, "nonce": {"n-1"}})
	wantStatus(t, "submit", resp, body, http.StatusSeeOther)
	m := regexp.MustCompile(`^/ui/procedures/(\d+)$`).FindStringSubmatch(resp.Header.Get("Location"))
	if m == nil {
		t.Fatalf("submit redirects to %q, want a procedure's page", resp.Header.Get("Location"))
	}
	id, _ := parseID(m[1])
	in := env.until(t, id, "suspended", isStatus(procedure.Suspended))
	if in.Event != "go" || in.Nonce != "n-1" || in.Submitter != "local" {
		t.Fatalf("submitted %+v, want event go, nonce n-1, submitter local", in)
	}
}

func TestUIAbortAndBypass(t *testing.T) {
	env := newUIEnv(t)
	id := env.submitStuck(t)
	path := procURL(id)

	resp, body := env.req(t, path+"/abort", url.Values{"why": {"  "}})
	wantStatus(t, "abort without a reason", resp, body, http.StatusBadRequest)
	if !strings.Contains(body, "A reason is required") {
		t.Fatalf("no reason: the page does not say so:\n%s", body)
	}
	if in, _ := env.e.Get(id); in.Status != procedure.Suspended || in.Aborted {
		t.Fatalf("an abort without a reason changed the procedure: %+v", in)
	}
	resp, body = env.req(t, "/ui/procedures/999/abort", url.Values{"why": {"x"}})
	wantStatus(t, "abort of an unknown procedure", resp, body, http.StatusNotFound)

	resp, body = env.req(t, path+"/abort", url.Values{"why": {"testing abort"}})
	wantStatus(t, "abort", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != path+"?done=abort" {
		t.Fatalf("abort redirects to %q", loc)
	}
	in := env.until(t, id, "rolled back", isStatus(procedure.RolledBack))
	if !in.Aborted || in.Err == nil || !strings.Contains(in.Err.Message+in.Err.Source, "abort") {
		t.Fatalf("after the abort: %+v", in)
	}
	resp, body = env.req(t, path+"/abort", url.Values{"why": {"again"}})
	wantStatus(t, "abort of a finished procedure", resp, body, http.StatusConflict)
	if !strings.Contains(body, "abort refused") {
		t.Fatalf("the conflict is not explained:\n%s", body)
	}

	resp, body = env.req(t, path+"/ack", url.Values{})
	wantStatus(t, "ack", resp, body, http.StatusSeeOther)
	if in, _ := env.e.Get(id); in.Acked.IsZero() {
		t.Fatal("ack did not ack")
	}

	stuck := env.submitStuck(t)
	resp, body = env.req(t, procURL(stuck)+"/bypass", url.Values{"why": {"stuck for good"}})
	wantStatus(t, "bypass", resp, body, http.StatusSeeOther)
	in = env.until(t, stuck, "finished", func(in procedure.Info) bool { return !in.Completed.IsZero() })
	if in.Bypass == nil || in.Bypass.Who != "local" || in.Bypass.Why != "stuck for good" {
		t.Fatalf("bypass recorded %+v", in.Bypass)
	}
	_, body = env.req(t, procURL(stuck), nil)
	if !strings.Contains(body, "stuck for good") || strings.Contains(body, `id="bypass-button"`) {
		t.Fatalf("the bypassed procedure's page does not show the bypass, or still offers one:\n%s", body)
	}
}

func TestUICrossOriginRefused(t *testing.T) {
	env := newUIEnv(t)
	id := env.submitStuck(t)
	for _, h := range [][]string{
		{"Origin", "http://evil.example"},
		{"Referer", "http://evil.example/page"},
		{"Origin", "null"},
	} {
		resp, body := env.req(t, procURL(id)+"/abort", url.Values{"why": {"csrf"}}, h...)
		wantStatus(t, "cross-origin "+h[0], resp, body, http.StatusForbidden)
		resp, body = env.req(t, "/ui/procedures", url.Values{"type": {"stuck"}}, h...)
		wantStatus(t, "cross-origin submit "+h[0], resp, body, http.StatusForbidden)
	}
	if in, _ := env.e.Get(id); in.Aborted || procCount(env.e) != 1 {
		t.Fatalf("a cross-origin post acted: %+v, %d procedures", in, procCount(env.e))
	}
	resp, body := env.req(t, procURL(id)+"/abort", url.Values{"why": {"same origin"}}, "Origin", env.ts.URL)
	wantStatus(t, "same-origin abort", resp, body, http.StatusSeeOther)
	resp, body = env.req(t, procURL(id)+"/abort", nil)
	wantStatus(t, "GET of an action", resp, body, http.StatusMethodNotAllowed)
}

// Tokens of the tests with credentials.
var (
	readToken    = Token{Name: "reader", Secret: "read-secret-0123456789", Role: Read}
	operateToken = Token{Name: "operator", Secret: "operate-secret-0123456789", Role: Operate}
)

func cookie(tok Token) string { return sessionCookie + "=" + tok.Secret }

func TestUISignin(t *testing.T) {
	env := newUIEnv(t, readToken, operateToken)
	resp, body := env.req(t, "/ui/locks", nil)
	wantStatus(t, "a page without credentials", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/ui/signin?next=%2Fui%2Flocks" {
		t.Fatalf("redirects to %q, want the sign-in form", loc)
	}
	resp, body = env.req(t, "/ui/procedures/list", nil, "HX-Request", "true")
	wantStatus(t, "a fragment without credentials", resp, body, http.StatusUnauthorized)
	if resp.Header.Get("HX-Redirect") == "" {
		t.Fatal("a fragment without credentials does not send the browser to sign in")
	}

	resp, body = env.req(t, "/ui/signin", url.Values{"token": {"wrong-token-0123456789"}, "next": {"/ui/locks"}})
	wantStatus(t, "a wrong token", resp, body, http.StatusUnauthorized)
	if len(resp.Cookies()) != 0 || !strings.Contains(body, "Unknown token") {
		t.Fatalf("a wrong token: cookies %v, page:\n%s", resp.Cookies(), body)
	}
	resp, body = env.req(t, "/ui/signin", url.Values{"token": {readToken.Secret}, "next": {"/ui/locks"}})
	wantStatus(t, "sign in", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/ui/locks" {
		t.Fatalf("sign-in redirects to %q, want /ui/locks", loc)
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != sessionCookie || cs[0].Value != readToken.Secret || !cs[0].HttpOnly ||
		cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" || cs[0].Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", cs)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/elsewhere"} {
		resp, _ = env.req(t, "/ui/signin", url.Values{"token": {readToken.Secret}, "next": {next}})
		if loc := resp.Header.Get("Location"); loc != "/ui/" {
			t.Fatalf("sign-in with next %q redirects to %q, want /ui/", next, loc)
		}
	}
}

func TestUIActionsNeedOperate(t *testing.T) {
	env := newUIEnv(t, readToken, operateToken)
	id := env.submitStuck(t)

	resp, body := env.req(t, procURL(id), nil, "Cookie", cookie(readToken))
	wantStatus(t, "a page for a read token", resp, body, http.StatusOK)
	for _, action := range []string{`id="abort-button"`, `id="bypass-button"`, `id="bulk"`, `id="submit"`} {
		if strings.Contains(body, action) {
			t.Fatalf("a read token is offered %s", action)
		}
	}
	_, body = env.req(t, "/ui/", nil, "Cookie", cookie(readToken))
	if strings.Contains(body, `id="abort-selected"`) || strings.Contains(body, `id="submit-button"`) || strings.Contains(body, `id="sel-`) {
		t.Fatal("the procedures page offers actions to a read token")
	}
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{procURL(id) + "/abort", url.Values{"why": {"no"}}},
		{procURL(id) + "/bypass", url.Values{"why": {"no"}}},
		{procURL(id) + "/ack", url.Values{}},
		{"/ui/procedures/abort", url.Values{"mode": {"matching"}, "why": {"no"}}},
		{"/ui/procedures", url.Values{"type": {"stuck"}, "args": {"{}"}}},
	} {
		resp, body := env.req(t, c.path, c.form, "Cookie", cookie(readToken))
		wantStatus(t, "read token: "+c.path, resp, body, http.StatusForbidden)
		resp, body = env.req(t, c.path, c.form)
		wantStatus(t, "no token: "+c.path, resp, body, http.StatusUnauthorized)
	}
	if in, _ := env.e.Get(id); in.Status != procedure.Suspended || procCount(env.e) != 1 {
		t.Fatalf("a refused action acted: %+v, %d procedures", in, procCount(env.e))
	}

	_, body = env.req(t, procURL(id), nil, "Cookie", cookie(operateToken))
	if !strings.Contains(body, `id="abort-button"`) {
		t.Fatal("an operate token is not offered abort")
	}
	resp, body = env.req(t, procURL(id)+"/abort", url.Values{"why": {"operator says"}}, "Cookie", cookie(operateToken))
	wantStatus(t, "operate token abort", resp, body, http.StatusSeeOther)
	in := env.until(t, id, "rolled back", isStatus(procedure.RolledBack))
	if in.Err == nil || !strings.Contains(in.Err.Message, "operator") {
		t.Fatalf("the abort does not name who: %+v", in.Err)
	}
}

func TestUIBulkAbort(t *testing.T) {
	env := newUIEnv(t)
	a, b, c := env.submitStuck(t), env.submitStuck(t), env.submitStuck(t)

	resp, body := env.req(t, "/ui/procedures/abort", url.Values{"mode": {"dry-run"}, "type": {"stuck"}})
	wantStatus(t, "dry run", resp, body, http.StatusOK)
	if strings.Count(body, "would abort") != 3 || !strings.Contains(body, `id="bulk-confirm"`) {
		t.Fatalf("the dry run does not list the 3 roots:\n%s", body)
	}
	for _, id := range []procedure.ID{a, b, c} {
		if in, _ := env.e.Get(id); in.Aborted {
			t.Fatalf("the dry run aborted %d", id)
		}
	}
	resp, body = env.req(t, "/ui/procedures/abort", url.Values{"mode": {"selected"}, "id": {"x"}, "why": {"w"}})
	wantStatus(t, "bad selection", resp, body, http.StatusBadRequest)
	resp, body = env.req(t, "/ui/procedures/abort", url.Values{"mode": {"selected"}, "id": {strconv.FormatUint(uint64(a), 10)}})
	wantStatus(t, "no reason", resp, body, http.StatusBadRequest)
	resp, body = env.req(t, "/ui/procedures/abort", url.Values{"mode": {"sideways"}, "why": {"w"}})
	wantStatus(t, "unknown mode", resp, body, http.StatusBadRequest)
	if in, _ := env.e.Get(a); in.Aborted {
		t.Fatal("a refused bulk abort aborted")
	}

	resp, body = env.req(t, "/ui/procedures/abort", url.Values{"mode": {"selected"}, "id": {strconv.FormatUint(uint64(a), 10)}, "why": {"one"}})
	wantStatus(t, "abort selected", resp, body, http.StatusOK)
	env.until(t, a, "rolled back", isStatus(procedure.RolledBack))
	if in, _ := env.e.Get(b); in.Aborted {
		t.Fatal("abort selected aborted one not selected")
	}
	resp, body = env.req(t, "/ui/procedures/abort", url.Values{"mode": {"matching"}, "type": {"stuck"}, "why": {"all"}})
	wantStatus(t, "abort matching", resp, body, http.StatusOK)
	if strings.Count(body, ">aborted<") != 2 {
		t.Fatalf("abort matching should abort the 2 unfinished roots left:\n%s", body)
	}
	env.until(t, b, "rolled back", isStatus(procedure.RolledBack))
	env.until(t, c, "rolled back", isStatus(procedure.RolledBack))
}

func TestNestTree(t *testing.T) {
	nodes := []TreeNode{{Depth: 0}, {Depth: 1}, {Depth: 2}, {Depth: 1}, {Depth: 2}, {Depth: 2}}
	for i := range nodes {
		nodes[i].ID = procedure.ID(i + 1)
	}
	roots := nestTree(nodes)
	if len(roots) != 1 || len(roots[0].Kids) != 2 || len(roots[0].Kids[0].Kids) != 1 || len(roots[0].Kids[1].Kids) != 2 ||
		roots[0].Kids[1].ID != 4 || roots[0].Kids[1].Kids[1].ID != 6 {
		t.Fatalf("nested wrongly: %+v", roots)
	}
}

func TestTimelineOf(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 17, 0, 0, 0, time.UTC)
	tl := timelineOf(t0, []HistoryStep{{State: "a", At: t0.Add(time.Second)}, {State: "b", At: t0.Add(4 * time.Second)}})
	if len(tl.Rows) != 2 || tl.Total != 4*time.Second {
		t.Fatalf("timeline %+v", tl)
	}
	a, b := tl.Rows[0], tl.Rows[1]
	if a.Dur != time.Second || b.Dur != 3*time.Second || a.X != tlLabel || a.W != tlBars/4 || b.X != a.X+a.W || b.W != 3*tlBars/4 {
		t.Fatalf("bars: %+v %+v", a, b)
	}
	if tl := timelineOf(t0, nil); len(tl.Rows) != 0 {
		t.Fatalf("no history: %+v", tl)
	}
	// Rolled back: b then c ran, and were undone c first; their rollbacks
	// come after the steps, in the order they committed.
	at := func(s float64) *time.Time { x := t0.Add(time.Duration(s * float64(time.Second))); return &x }
	tl = timelineOf(t0, []HistoryStep{{State: "a", At: *at(1)}, {State: "b", At: *at(4), RolledBack: at(6)}, {State: "c", At: *at(5), RolledBack: at(5.5)}})
	var got []string
	for _, r := range tl.Rows {
		s := r.State
		if r.Rollback {
			s = "undo " + s
		}
		got = append(got, s)
	}
	if !slices.Equal(got, []string{"a", "b", "c", "undo c", "undo b"}) || tl.Total != 6*time.Second || tl.Rows[4].Dur != time.Second/2 {
		t.Fatalf("rolled-back timeline: %v, total %v, rows %+v", got, tl.Total, tl.Rows)
	}
}

func TestCharts(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 17, 0, 0, 0, time.UTC)
	cs := charts([]Sample{{At: t0, Steps: 0}, {At: t0.Add(time.Second), Steps: 10}, {At: t0.Add(2 * time.Second), Steps: 5}})
	if len(cs) != 5 || cs[0].Title != "steps" {
		t.Fatalf("charts %+v", cs)
	}
	if cs[0].Points != "0.0,70.0 100.0,4.0 200.0,37.0" || cs[0].Max != 10 || cs[0].Last != 5 || cs[0].Span != 2*time.Second {
		t.Fatalf("steps chart %+v", cs[0])
	}
	if cs[1].Points != "0.0,70.0 100.0,70.0 200.0,70.0" {
		t.Fatalf("an all-zero chart is not flat at the bottom: %q", cs[1].Points)
	}
	if cs := charts(nil); cs[0].Points != "" {
		t.Fatalf("no samples: %+v", cs[0])
	}
}

func TestUIPaging(t *testing.T) {
	env := newUIEnv(t)
	a, b, c := env.submitStuck(t), env.submitStuck(t), env.submitStuck(t)
	row := func(id procedure.ID) string { return `id="proc-` + strconv.FormatUint(uint64(id), 10) + `"` }
	_, body := env.req(t, "/ui/?type=stuck&limit=2", nil)
	if !strings.Contains(body, row(c)) || !strings.Contains(body, row(b)) || strings.Contains(body, row(a)) {
		t.Fatalf("the first page should hold %d and %d only:\n%s", c, b, body)
	}
	m := regexp.MustCompile(`href="(/ui/\?[^"]*)" id="older"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no link to the older page:\n%s", body)
	}
	older := strings.ReplaceAll(m[1], "&amp;", "&")
	_, body = env.req(t, older, nil)
	if !strings.Contains(body, row(a)) || strings.Contains(body, row(b)) || strings.Contains(body, `id="older"`) {
		t.Fatalf("the older page (%s) should hold %d only, and be the last:\n%s", older, a, body)
	}
	if !strings.Contains(body, `hx-get="/ui/procedures/list?before=`) {
		t.Fatalf("the older page's refresh does not keep its cursor:\n%s", body)
	}
}
