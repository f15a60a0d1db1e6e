package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/procyon-dev/procyon/procedure"
)

// The UI in a real browser: headless Chromium driven with chromedp. The
// tests skip when no browser is installed (.ci/run installs Debian's
// chromium). Screenshots of each page go to $PROCYON_SCREENSHOTS, else to
// the test's temporary directory.

// findBrowser returns the path of a Chromium, or "".
func findBrowser() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserT drives one headless browser tab against env's server.
type browserT struct {
	t     *testing.T
	ctx   context.Context // the test's timeout, on the browser's context
	env   *uiEnv
	shots string
}

func newBrowser(t *testing.T, env *uiEnv) *browserT {
	t.Helper()
	path := findBrowser()
	if path == "" && os.Getenv("CI") != "" {
		t.Fatal("no Chromium found and CI is set: .ci/run installs Debian's chromium; the browser tests must run in CI")
	}
	if path == "" {
		t.Skip("no Chromium found (/usr/bin/chromium, or chromium, chromium-browser, google-chrome on PATH): " +
			"install Debian's chromium to run the browser tests (.ci/run does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil { // starts the browser: no timeout on this one
		t.Fatalf("starting %s: %v", path, err)
	}
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(cancel)
	dir := os.Getenv("PROCYON_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browserT{t: t, ctx: ctx, env: env, shots: dir}
}

// do runs steps, failing the test with what was being done.
func (b *browserT) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open navigates to path and waits until sel is visible.
func (b *browserT) open(path, sel string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.env.ts.URL+path), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// text returns the visible text of sel.
func (b *browserT) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// poll waits until the JavaScript expression js is truthy in the page (as
// htmx refreshes it, or an action's answer loads).
func (b *browserT) poll(what, js string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool]("!!("+js+")", chromedp.WithPollingTimeout(40*time.Second))); err != nil {
		b.t.Fatalf("waiting until %s: %v", what, err)
	}
}

// eval evaluates js, which yields a T.
func eval[T any](b *browserT, js string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// shot saves a screenshot of the whole page as name.png.
func (b *browserT) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// js quotes s for a JavaScript expression.
func js(s string) string { return strconv.Quote(s) }

func idStr(id procedure.ID) string { return strconv.FormatUint(uint64(id), 10) }

// rowIs is the expression: the procedures table shows id with status.
func rowIs(id procedure.ID, status string) string {
	return `document.querySelector('#proc-` + idStr(id) + `')?.dataset.status === ` + js(status)
}

// statusIs is the expression: the procedure page's header shows status.
func statusIs(status string) string {
	return `document.querySelector('#status .st')?.textContent === ` + js(status)
}

func TestUIBrowserScenario(t *testing.T) {
	env := newUIEnv(t)
	b := newBrowser(t, env)

	// Submit through the form and land on the new procedure's page.
	b.open("/ui/", "#procs-table")
	b.shot("01-procedures-empty")
	b.do("fill the submit form",
		chromedp.SetValue(chromedp.CSS("#submit-type"), "stepper"),
		chromedp.SetValue(chromedp.CSS("#submit-args"), `{"name":"t1","steps":3}`),
		chromedp.Click(chromedp.CSS("#submit-button")),
		chromedp.WaitVisible(chromedp.CSS("#status")))
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`/ui/procedures/(\d+)$`).FindStringSubmatch(loc)
	if m == nil {
		t.Fatalf("the submission landed on %s, not a procedure's page", loc)
	}
	first, _ := parseID(m[1])
	env.until(t, first, "running its first step", func(in procedure.Info) bool { return in.Running })
	b.poll("the page shows it running", `document.querySelector('#status')?.textContent.includes('running')`)
	if s := b.text("#header"); !strings.Contains(s, "stepper") || !strings.Contains(s, "local") {
		t.Fatalf("the header does not show the type and submitter:\n%s", s)
	}
	b.shot("02-procedure-running")

	// A second one on the same table waits for the first's lock.
	second, err := env.stepper.Submit(b.ctx, stepData{Name: "t1", Steps: 3}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.until(t, second, "waiting for the lock", func(in procedure.Info) bool { return in.WaitingForLocks })
	b.open("/ui/locks", "#lock-table table")
	if s := b.text("#lock-table"); !strings.Contains(s, "table/t1") || !strings.Contains(s, idStr(first)+" stepper exclusive") ||
		!strings.Contains(s, idStr(second)+" stepper exclusive") {
		t.Fatalf("the locks page does not show %d holding and %d waiting for table/t1:\n%s", first, second, s)
	}
	b.shot("03-locks")

	// Watch both progress to success on the live list.
	b.open("/ui/", "#proc-"+idStr(second))
	b.poll("the list shows the first at state 0", `document.querySelector('#proc-`+idStr(first)+`')?.dataset.state === '0'`)
	env.step(t, b.ctx)
	b.poll("the list refreshes to state 1", `document.querySelector('#proc-`+idStr(first)+`')?.dataset.state === '1'`)
	env.step(t, b.ctx)
	in := env.until(t, first, "at state 2", func(in procedure.Info) bool { return in.State == 2 })
	b.open("/ui/procedures/"+idStr(first), "#timeline")
	if len(in.History) == 0 {
		t.Fatalf("procedure %d at state 2 has no History", first)
	}
	b.poll("the timeline has a bar per step", `document.querySelectorAll('#timeline rect.bar').length === `+strconv.Itoa(len(in.History)))
	b.shot("04-procedure-timeline")
	b.open("/ui/", "#proc-"+idStr(second))
	for range 4 {
		env.step(t, b.ctx)
	}
	b.poll("the list shows both succeeded", rowIs(first, "succeeded")+" && "+rowIs(second, "succeeded"))
	b.open("/ui/procedures/"+idStr(first), "#status")
	if s := b.text("#status"); s != "succeeded" {
		t.Fatalf("status %q, want succeeded", s)
	}
	// Its result keeps its timeline: a bar per state it ran.
	done, err := env.e.Get(first)
	if err != nil || done.Status != procedure.Succeeded || len(done.History) <= len(in.History) {
		t.Fatalf("succeeded procedure %d: history %+v (at state 2: %d steps), %v", first, done.History, len(in.History), err)
	}
	if n := eval[int](b, `document.querySelectorAll('#timeline rect.bar').length`); n != len(done.History) {
		t.Fatalf("the succeeded procedure's timeline has %d bars, want %d", n, len(done.History))
	}
	b.shot("05-procedure-succeeded")

	// A parent with two children: its tree, then abort it.
	b.open("/ui/", "#submit-type")
	b.do("submit a parent",
		chromedp.SetValue(chromedp.CSS("#submit-type"), "parent"),
		chromedp.SetValue(chromedp.CSS("#submit-args"), `{"children":2,"event":"release"}`),
		chromedp.Click(chromedp.CSS("#submit-button")),
		chromedp.WaitVisible(chromedp.CSS("#status")))
	loc, _ = chromedp.Run(b.ctx, chromedp.Location())
	parent, err := parseID(loc[strings.LastIndex(loc, "/")+1:])
	if err != nil {
		t.Fatalf("the parent landed on %s: %v", loc, err)
	}
	pin := env.until(t, parent, "waiting for its children", func(in procedure.Info) bool {
		return in.Status == procedure.Waiting && len(in.Children) == 2
	})
	for _, c := range pin.Children {
		env.until(t, c, "suspended", isStatus(procedure.Suspended))
	}
	b.poll("the tree shows two suspended children", `document.querySelectorAll('#tree ul.tree > li > ul > li .st-suspended').length === 2`)
	for _, c := range pin.Children {
		if s := b.text("#tree-" + idStr(c)); !strings.Contains(s, "child") || !strings.Contains(s, "suspended") {
			t.Fatalf("child %d in the tree: %q", c, s)
		}
	}
	if s := b.text("#tree-" + idStr(parent)); !strings.Contains(s, "waiting") {
		t.Fatalf("the root in the tree: %q", s)
	}
	b.shot("06-procedure-tree")
	const reason = "browser test: abort the parent"
	b.do("abort with a reason",
		chromedp.SetValue(chromedp.CSS("#abort-why"), reason),
		chromedp.Click(chromedp.CSS("#abort-button")),
		chromedp.WaitVisible(chromedp.CSS("#notice")))
	b.poll("the page shows it rolled back", statusIs("rolled-back"))
	if s := b.text("#proc-error"); !strings.Contains(s, reason) || !strings.Contains(s, "local") {
		t.Fatalf("the error does not say who aborted and why: %q", s)
	}
	audited := false
	for a := range env.e.Audit(0) {
		audited = audited || a.Why == reason
	}
	if !audited {
		t.Fatalf("the engine's audit log has no entry for the abort %q", reason)
	}
	b.poll("the page's audit shows the abort", `document.querySelector('#audit')?.textContent.includes(`+js(reason)+`)`)
	// Its timeline: the steps it ran, then a rollback bar for each.
	rb, err := env.e.Get(parent)
	if err != nil || rb.Status != procedure.RolledBack || len(rb.History) == 0 {
		t.Fatalf("rolled-back parent %d: %+v, %v", parent, rb.History, err)
	}
	if n, u := eval[int](b, `document.querySelectorAll('#timeline rect.bar').length`), eval[int](b, `document.querySelectorAll('#timeline rect.bar.undo').length`); n != 2*len(rb.History) || u != len(rb.History) {
		t.Fatalf("the rolled-back timeline has %d bars, %d of them rollbacks; want %d and %d", n, u, 2*len(rb.History), len(rb.History))
	}
	b.shot("07-procedure-aborted")

	// Bypass a stuck one.
	stuck := env.submitStuck(t)
	b.open("/ui/procedures/"+idStr(stuck), "#bypass-button")
	b.do("bypass with a reason",
		chromedp.SetValue(chromedp.CSS("#bypass-why"), "stuck for good"),
		chromedp.Click(chromedp.CSS("#bypass-button")),
		chromedp.WaitVisible(chromedp.CSS("#notice")))
	b.poll("the page shows it bypassed", statusIs("succeeded")+` && document.querySelector('#bypass-info')?.textContent.includes('stuck for good')`)
	if eval[bool](b, `document.querySelector('#bypass-button') === null`) == false {
		t.Fatal("a finished procedure still offers bypass")
	}
	b.shot("08-procedure-bypassed")

	// A remote operation on node n1.
	caller, err := env.caller.Submit(b.ctx, opData{Node: "n1"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.until(t, caller, "awaiting its operation", isStatus(procedure.Suspended))
	b.open("/ui/procedures/"+idStr(caller), "#remote")
	b.poll("the page shows the operation on n1", `[...document.querySelectorAll('#remote td')].some(td => td.textContent.startsWith('n1'))`)
	if s := b.text("#remote"); !strings.Contains(s, "slow") || !strings.Contains(s, "pending") {
		t.Fatalf("the remote operations: %q", s)
	}
	b.shot("09-procedure-remote")
	select {
	case env.opGate <- struct{}{}:
	case <-b.ctx.Done():
		t.Fatal("the node never ran the operation")
	}
	b.poll("the caller succeeds", statusIs("succeeded"))

	b.open("/ui/nodes", "#node-n1")
	if s := b.text("#node-n1"); !strings.Contains(s, "live") || !strings.Contains(s, "n1") {
		t.Fatalf("the nodes page's n1: %q", s)
	}
	b.shot("10-nodes")

	// The charts: the sampler adds a point a second; wait for three.
	b.open("/ui/engine", "#charts svg")
	b.poll("five charts with three points or more", `document.querySelectorAll('#charts polyline').length === 5 &&
		document.querySelector('#charts polyline').getAttribute('points').split(' ').length >= 3`)
	if s := b.text("#types"); !strings.Contains(s, "stepper") {
		t.Fatalf("the engine page's types: %q", s)
	}
	b.shot("11-engine")

	b.open("/ui/audit", "#audit-log")
	b.shot("12-audit")

	// Bulk: tick one (the tick survives the list's refresh), abort it;
	// then a dry run of all matching, confirmed.
	s1, s2, s3 := env.submitStuck(t), env.submitStuck(t), env.submitStuck(t)
	b.open("/ui/?type=stuck&status=suspended", "#sel-"+idStr(s1))
	eval[bool](b, `window.swaps = 0; document.body.addEventListener('htmx:afterSwap', () => window.swaps++); true`)
	b.do("tick one", chromedp.Click(chromedp.CSS("#sel-"+idStr(s1))))
	b.poll("the list refreshed", `window.swaps >= 1`)
	if !eval[bool](b, `document.querySelector('#sel-`+idStr(s1)+`').checked`) {
		t.Fatal("the list's refresh lost the tick")
	}
	b.shot("13-procedures-filtered")
	b.do("abort the ticked one",
		chromedp.SetValue(chromedp.CSS("#bulk-why"), "bulk: one"),
		chromedp.Click(chromedp.CSS("#abort-selected")),
		chromedp.WaitVisible(chromedp.CSS("#bulk-done")))
	if s := b.text("#bulk-result"); !strings.Contains(s, idStr(s1)) || !strings.Contains(s, "aborted") {
		t.Fatalf("abort selected: %q", s)
	}
	env.until(t, s1, "rolled back", isStatus(procedure.RolledBack))
	b.open("/ui/?type=stuck&status=suspended", "#abort-matching-dry")
	b.do("dry run", chromedp.Click(chromedp.CSS("#abort-matching-dry")), chromedp.WaitVisible(chromedp.CSS("#bulk-confirm")))
	if s := b.text("#bulk-result"); strings.Count(s, "would abort") != 2 || !strings.Contains(s, "Dry run") {
		t.Fatalf("the dry run: %q", s)
	}
	if in, _ := env.e.Get(s2); in.Aborted {
		t.Fatal("the dry run aborted")
	}
	b.shot("14-bulk-dry-run")
	b.do("confirm",
		chromedp.SetValue(chromedp.CSS("#bulk-confirm-why"), "bulk: all stuck"),
		chromedp.Click(chromedp.CSS("#bulk-confirm-button")),
		chromedp.WaitVisible(chromedp.CSS("#bulk-done")))
	b.poll("the result lists two aborted", `[...document.querySelectorAll('#bulk-result td')].filter(td => td.textContent === 'aborted').length === 2`)
	env.until(t, s2, "rolled back", isStatus(procedure.RolledBack))
	env.until(t, s3, "rolled back", isStatus(procedure.RolledBack))

	b.open("/ui/", "#procs-table")
	b.shot("15-procedures")
}

func TestUIBrowserReadToken(t *testing.T) {
	env := newUIEnv(t, readToken, operateToken)
	b := newBrowser(t, env)
	stuck := env.submitStuck(t)

	b.open("/ui/procedures/"+idStr(stuck), "#token")
	b.shot("20-signin")
	b.do("sign in with the read token",
		chromedp.SetValue(chromedp.CSS("#token"), readToken.Secret),
		chromedp.Click(chromedp.CSS("#signin-button")),
		chromedp.WaitVisible(chromedp.CSS("#status")))
	if s := b.text("#who"); s != "reader" {
		t.Fatalf("signed in as %q, want reader", s)
	}
	if !eval[bool](b, `document.querySelector('#abort-button') === null && document.querySelector('#bypass-button') === null`) {
		t.Fatal("a read token sees the abort or bypass button")
	}
	b.shot("21-procedure-read-only")
	b.open("/ui/", "#procs-table")
	if !eval[bool](b, `document.querySelector('#bulk') === null && document.querySelector('#submit') === null && document.querySelector('input[name=id]') === null`) {
		t.Fatal("a read token sees the bulk or submit forms")
	}
	status := eval[int](b, `fetch('/ui/procedures/`+idStr(stuck)+`/abort', {method: 'POST', body: new URLSearchParams({why: 'x'})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise)
	if status != 403 {
		t.Fatalf("the read token's POST of an abort answered %d, want 403", status)
	}
	if in, _ := env.e.Get(stuck); in.Aborted || in.Status != procedure.Suspended {
		t.Fatalf("the refused abort acted: %+v", in)
	}
}

// The procedure page drawn from made-up data with a history, a deep tree,
// locks, remote operations and audit entries (the engine of these tests
// records no history on every build): its timeline has a bar per step,
// as wide as the step took.
func TestUIBrowserProcedurePage(t *testing.T) {
	env := newUIEnv(t)
	t0 := time.Now().Add(-time.Minute).UTC()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	proc := func(id, parent procedure.ID, typ, status string) Procedure {
		return Procedure{ID: id, Parent: parent, Root: 41, Type: typ, Status: status, State: "snapshot-regions", Created: t0, Updated: at(9000)}
	}
	d := ProcedureDetail{Procedure: proc(41, 0, "snapshot-table", "waiting"),
		Tree: []TreeNode{{Procedure: proc(41, 0, "snapshot-table", "waiting")},
			{Procedure: proc(42, 41, "snapshot-region", "succeeded"), Depth: 1},
			{Procedure: proc(43, 41, "snapshot-region", "runnable"), Depth: 1},
			{Procedure: proc(45, 43, "flush-region", "suspended"), Depth: 2},
			{Procedure: proc(44, 41, "snapshot-region", "failed"), Depth: 1}},
		Executed: []string{"prepare", "lock-table", "snapshot-regions"},
		History: []HistoryStep{{State: "prepare", At: at(120)}, {State: "lock-table", At: at(400)},
			{State: "write-manifest", At: at(2400)}, {State: "snapshot-regions", At: at(9000)}},
		Locks:     []Lock{{Resource: "table/users", Mode: "exclusive"}},
		RemoteOps: []RemoteOp{{ID: "17", Node: "rs1", Type: "snapshot-region", State: "pending"}},
		Audit:     []Action{{Seq: 3, Kind: "bypass", Target: 44, Root: 41, Who: "alice", Why: "region <gone>", At: at(8000)}},
	}
	d.Submitter, d.LastError, d.Retries = "bob", `flush failed: <script>alert(1)</script>`, 2
	d.Tree[4].Error = &ProcError{Source: "step", Message: "disk full"}
	page := detailData{ProcedureDetail: d, Tree: nestTree(d.Tree), Timeline: timelineOf(d.Created, d.History)}
	mux := http.NewServeMux()
	mux.Handle("/", env.s)
	mux.HandleFunc("GET /made-up", func(w http.ResponseWriter, r *http.Request) {
		env.s.page(w, http.StatusOK, "procedure", identity{Who: "local", Role: Operate}, uiPage{Title: "Procedure 41", Nav: "procedures", Data: page})
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	env.ts = ts
	b := newBrowser(t, env)
	b.open("/made-up", "#timeline svg")
	widths := eval[[]float64](b, `[...document.querySelectorAll('#timeline rect.bar')].map(r => r.getBBox().width)`)
	if len(widths) != 4 || !(widths[3] > widths[2] && widths[2] > widths[1] && widths[1] > widths[0]) {
		t.Fatalf("the timeline's bars: widths %v, want 4 growing as the steps took longer", widths)
	}
	if s := b.text("#timeline"); !strings.Contains(s, "write-manifest") || !strings.Contains(s, "6.6s") {
		t.Fatalf("the timeline's labels: %q", s)
	}
	if n := eval[int](b, `document.querySelectorAll('#tree ul.tree > li > ul > li > ul > li').length`); n != 1 {
		t.Fatalf("the tree has %d grandchildren, want 1 (45 under 43)", n)
	}
	if s := b.text("#header"); !strings.Contains(s, "<script>alert(1)</script>") {
		t.Fatalf("the last error is not shown as text: %q", s)
	}
	b.shot("30-procedure-made-up")
}
