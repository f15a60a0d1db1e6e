package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/barrier"
	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/server"
	"github.com/procyon-dev/procyon/vfs"
)

// The client verbs' tests run the CLI's command functions against a real
// server (package server) over HTTP, on an engine with a test type whose
// data says what each procedure does.

// jobState is the test type's states: prepare (spawn children or wait
// for an event), work (fail if asked), finish.
type jobState int

const (
	jobPrepare jobState = iota
	jobWork
	jobFinish
)

func (s jobState) String() string {
	return [...]string{"prepare", "work", "finish"}[s]
}

// jobData is what a test procedure does.
type jobData struct {
	Children   int    `json:"children,omitempty"`   // spawn this many children in prepare
	ChildEvent string `json:"childEvent,omitempty"` // the children wait for this event
	Event      string `json:"event,omitempty"`      // wait for this event after prepare
	Fail       string `json:"fail,omitempty"`       // fail in work with this message
	Lock       string `json:"lock,omitempty"`       // hold this lock exclusively
}

type jobSM struct {
	typ **procedure.Type[jobState, jobData]
}

func (sm jobSM) Execute(ctx context.Context, env *procedure.Env, s jobState, d *jobData) (procedure.Next, error) {
	switch s {
	case jobPrepare:
		if d.Children > 0 {
			kids := make([]procedure.Child, d.Children)
			for i := range kids {
				kids[i] = (*sm.typ).Child(jobData{Event: d.ChildEvent})
			}
			return procedure.Spawn(jobWork, kids...), nil
		}
		if d.Event != "" {
			return procedure.WaitEvent(jobWork, d.Event), nil
		}
		return procedure.GoTo(jobWork), nil
	case jobWork:
		if d.Fail != "" {
			return procedure.Next{}, errors.New(d.Fail)
		}
		return procedure.GoTo(jobFinish), nil
	}
	return procedure.Done(), nil
}

func (jobSM) Rollback(ctx context.Context, env *procedure.Env, s jobState, d *jobData) error {
	return nil
}

func (jobSM) Locks(s jobState, d *jobData) []procedure.Lock {
	if d.Lock == "" {
		return nil
	}
	return []procedure.Lock{procedure.ExclusiveLock(d.Lock)}
}

var _ procedure.Locker[jobState, jobData] = jobSM{}

// cliWorld is an engine with the job type, a dispatcher with one node, a
// barrier coordinator on the in-process transport (no members until a test
// starts them), and a server in front of them on a loopback HTTP listener.
type cliWorld struct {
	t        *testing.T
	e        *procedure.Engine
	job      *procedure.Type[jobState, jobData]
	barriers *barrier.InProc
	coord    *barrier.Coordinator
	url      string
}

func newCLIWorld(t *testing.T, tokens ...server.Token) *cliWorld {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	st := durable.New(durable.Options{Dir: "/data", FS: vfs.NewMem(), Logger: quiet})
	w := &cliWorld{t: t, e: procedure.New(st, procedure.Options{Logger: quiet, ResultTTL: time.Hour})}
	w.job = procedure.Register(w.e, "job", jobSM{&w.job}, &procedure.TypeOptions[jobData]{HoldLocks: true})
	d := remote.NewDispatcher(w.e, remote.NewLocal(), remote.Options{Lease: time.Hour, Logger: quiet})
	ctx := context.Background()
	if err := w.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Service().Register(ctx, &remote.RegisterRequest{Node: "rs1", Addr: "addr-rs1", Incarnation: 7}); err != nil {
		t.Fatal(err)
	}
	w.barriers = barrier.NewInProc()
	w.coord = barrier.NewCoordinator(w.barriers, barrier.CoordinatorOptions{})
	t.Cleanup(func() { w.coord.Close() })
	srv, err := server.New(server.Options{Engine: w.e, Dispatcher: d, Barriers: w.coord, Types: []server.SubmitType{server.JSONType(w.job)}, Tokens: tokens, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	w.url = hs.URL
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		d.Stop()
		w.e.Stop()
	})
	return w
}

// cli runs procyon with args against the world's server.
func (w *cliWorld) cli(args ...string) (code int, stdout, stderr string) {
	w.t.Helper()
	return runCLI(w.t, append(args, "--endpoint", w.url)...)
}

// ok runs procyon with args and fails the test unless it exits 0.
func (w *cliWorld) ok(args ...string) string {
	w.t.Helper()
	code, out, errOut := w.cli(args...)
	if code != 0 {
		w.t.Fatalf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	return out
}

// submit submits a job through the CLI and returns its id.
func (w *cliWorld) submit(d jobData, extra ...string) procedure.ID {
	w.t.Helper()
	b, _ := json.Marshal(d)
	out := w.ok(append([]string{"proc", "submit", "job", "--args", string(b)}, extra...)...)
	n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		w.t.Fatalf("proc submit printed %q, not an id", out)
	}
	return procedure.ID(n)
}

// status returns id's status as the engine sees it.
func (w *cliWorld) status(id procedure.ID) procedure.Status {
	w.t.Helper()
	in, err := w.e.Get(id)
	if err != nil {
		w.t.Fatal(err)
	}
	return in.Status
}

// waitStatus waits (on the engine, not the CLI) until id has status st.
func (w *cliWorld) waitStatus(id procedure.ID, st procedure.Status) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == st }); err != nil {
		w.t.Fatalf("procedure %d never %v: %v", id, st, err)
	}
}

// waitTreeParked waits until parent waits for its n children and each
// child is suspended on its event with no step running (the parent turns
// waiting as soon as it spawns them, before they ran their first step).
func (w *cliWorld) waitTreeParked(parent procedure.ID, n int) {
	w.t.Helper()
	w.waitStatus(parent, procedure.Waiting)
	for i := 1; i <= n; i++ {
		kid := parent + procedure.ID(i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := w.e.WaitFor(ctx, kid, func(in procedure.Info) bool { return in.Status == procedure.Suspended && !in.Running })
		cancel()
		if err != nil {
			w.t.Fatalf("child %d never suspended: %v", kid, err)
		}
	}
}

func idStr(id procedure.ID) string { return strconv.FormatUint(uint64(id), 10) }

// listIDs runs proc list --output json with args and returns the ids.
func (w *cliWorld) listIDs(args ...string) []procedure.ID {
	w.t.Helper()
	out := w.ok(append([]string{"proc", "list", "--output", "json"}, args...)...)
	var l server.ProcedureList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		w.t.Fatalf("proc list --output json: %v\n%s", err, out)
	}
	var ids []procedure.ID
	for _, p := range l.Procedures {
		ids = append(ids, p.ID)
	}
	return ids
}

// TestProcSubmitWaitList: submit, wait (with its exit codes), and list
// with each filter, in tables and JSON.
func TestProcSubmitWaitList(t *testing.T) {
	w := newCLIWorld(t)
	good := w.submit(jobData{})
	if out := w.ok("proc", "wait", idStr(good)); !strings.Contains(lastLine(out), "succeeded state finish") {
		t.Fatalf("proc wait of a good job:\n%s", out)
	}
	bad := w.submit(jobData{Fail: "disk on fire"})
	code, out, errOut := w.cli("proc", "wait", idStr(bad))
	if code != 1 || !strings.Contains(errOut, "procedure "+idStr(bad)+" rolled-back") || !strings.Contains(errOut, "disk on fire") {
		t.Fatalf("proc wait of a failing job: exit %d\n%s\n%s", code, out, errOut)
	}
	// A tree, listed by parent and root while it runs (a finished tree
	// keeps only its root's result).
	parent := w.submit(jobData{Children: 2, ChildEvent: "kids"})
	w.waitTreeParked(parent, 2)
	kids := w.listIDs("--parent", idStr(parent))
	if len(kids) != 2 || kids[0] < kids[1] || kids[1] <= parent {
		t.Fatalf("children of %d, newest first: %v", parent, kids)
	}
	if got := w.listIDs("--root", idStr(parent), "--status", "suspended"); !slices.Equal(got, kids) {
		t.Fatalf("suspended procedures of tree %d: %v, want %v", parent, got, kids)
	}
	if err := w.e.Signal(context.Background(), "kids"); err != nil {
		t.Fatal(err)
	}
	w.ok("proc", "wait", idStr(parent))
	// A nonce makes a submission idempotent.
	n1 := w.submit(jobData{}, "--nonce", "once")
	if n2 := w.submit(jobData{}, "--nonce", "once"); n1 != n2 {
		t.Fatalf("the same nonce gave %d and %d", n1, n2)
	}
	w.ok("proc", "wait", idStr(n1))
	all := []procedure.ID{n1, parent, bad, good}
	for _, c := range []struct {
		args []string
		want []procedure.ID
	}{
		{nil, all},
		{[]string{"--status", "rolled-back"}, []procedure.ID{bad}},
		{[]string{"--status", "rolled-back,succeeded", "--type", "job"}, all},
		{[]string{"--type", "other"}, nil},
		{[]string{"--error", "ON FIRE"}, []procedure.ID{bad}},
		{[]string{"--root", idStr(parent)}, []procedure.ID{parent}},
		{[]string{"--before", idStr(parent)}, []procedure.ID{bad, good}},
		{[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil},
		{[]string{"--until", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, all},
		{[]string{"--limit", "2", "--all"}, all},
		{[]string{"--limit", "2"}, all[:2]},
	} {
		if got := w.listIDs(c.args...); !slices.Equal(got, c.want) {
			t.Errorf("proc list %v: %v, want %v", c.args, got, c.want)
		}
	}
	// The table: a header, then one line per procedure; the cursor of the
	// next page goes to stderr.
	code, out, errOut = w.cli("proc", "list", "--limit", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], idStr(n1)+" ") ||
		errOut != "more: --before "+idStr(parent)+"\n" {
		t.Fatalf("proc list --limit 2: exit %d\n%s\nstderr %q", code, out, errOut)
	}
	out = w.ok("proc", "list", "--status", "rolled-back")
	if !regexp.MustCompile(idStr(bad) + ` +- +job +rolled-back +\S+ +\d+ +\S+ +.*disk on fire`).MatchString(out) {
		t.Fatalf("proc list --status rolled-back:\n%s", out)
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestProcWaitShowsProgress: proc wait prints a line when the procedure
// changes, and exits 0 once it succeeded.
func TestProcWaitShowsProgress(t *testing.T) {
	w := newCLIWorld(t)
	id := w.submit(jobData{Event: "go"})
	w.waitStatus(id, procedure.Suspended)
	stdout := &lineWriter{lines: make(chan string, 16)}
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), &env{stdout: stdout, stderr: stdout},
			[]string{"proc", "wait", idStr(id), "--poll", "100ms", "--endpoint", w.url})
	}()
	first := <-stdout.lines
	if !strings.Contains(first, "suspended (event go) state work, 1 steps") {
		t.Fatalf("first progress line %q", first)
	}
	if err := w.e.Signal(context.Background(), "go"); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("proc wait: exit %d\n%s", code, stdout.String())
	}
	out := stdout.String()
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 2 || !strings.Contains(lines[len(lines)-1], "succeeded state finish, 3 steps") {
		t.Fatalf("proc wait printed:\n%s", out)
	}
	// Still running at --timeout: exit 3.
	other := w.submit(jobData{Event: "never"})
	code, _, errOut := w.cli("proc", "wait", idStr(other), "--timeout", "300ms", "--poll", "100ms")
	if code != exitStillRunning || !strings.Contains(errOut, "still not finished after 300ms") {
		t.Fatalf("proc wait --timeout: exit %d, %q", code, errOut)
	}
}

// lineWriter sends each whole line written to it on lines (dropping
// lines once it is full) and keeps everything.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	part  string
	lines chan string
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.part += string(p)
	for {
		line, rest, ok := strings.Cut(l.part, "\n")
		if !ok {
			return len(p), nil
		}
		l.part = rest
		select {
		case l.lines <- line:
		default:
		}
	}
}

func (l *lineWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestProcShowAbortBypassAck: show draws the tree and the history; abort
// and bypass record why; ack acknowledges; bulk-abort's dry run changes
// nothing.
func TestProcShowAbortBypassAck(t *testing.T) {
	w := newCLIWorld(t)
	parent := w.submit(jobData{Children: 2, ChildEvent: "kids"})
	w.waitTreeParked(parent, 2)
	out := w.ok("proc", "show", idStr(parent))
	for _, re := range []string{
		`(?m)^status +waiting$`,
		`(?m)^\* ` + idStr(parent) + ` job +waiting +work +-$`,
		`(?m)^    ` + idStr(parent+1) + ` job +suspended \(event kids\) +work +-$`,
		`(?m)^    ` + idStr(parent+2) + ` job +suspended \(event kids\) +work +-$`,
		`(?m)^history:\n  \S+ \S+ +prepare +\+\S+$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("proc show %d does not match %s:\n%s", parent, re, out)
		}
	}
	var d server.ProcedureDetail
	if err := json.Unmarshal([]byte(w.ok("proc", "show", idStr(parent), "--output", "json")), &d); err != nil || d.ID != parent || len(d.Tree) != 3 {
		t.Fatalf("proc show --output json: %v, %+v", err, d)
	}
	if err := w.e.Signal(context.Background(), "kids"); err != nil {
		t.Fatal(err)
	}
	w.ok("proc", "wait", idStr(parent))
	if out := w.ok("proc", "show", idStr(parent)); !regexp.MustCompile(`(?m)^result: {"children":2,"childEvent":"kids"}$`).MatchString(out) {
		t.Errorf("proc show of a finished root has no result:\n%s", out)
	}

	// Abort a waiting job: it rolls back, and the audit says who and why.
	victim := w.submit(jobData{Event: "never"})
	w.waitStatus(victim, procedure.Suspended)
	w.ok("proc", "abort", idStr(victim), "--why", "INC-42 stuck")
	w.waitStatus(victim, procedure.RolledBack)
	if code, _, errOut := w.cli("proc", "wait", idStr(victim)); code != 1 || !strings.Contains(errOut, "rolled-back") {
		t.Fatalf("proc wait of an aborted job: exit %d %q", code, errOut)
	}
	if !regexp.MustCompile(`(?m)^\d+ +\S+ \S+ +abort +` + idStr(victim) + ` +` + idStr(victim) + ` +local +INC-42 stuck$`).MatchString(w.ok("audit")) {
		t.Errorf("audit:\n%s", w.ok("audit"))
	}
	victimShow := w.ok("proc", "show", idStr(victim))
	if !regexp.MustCompile(`(?m)^history:\n(.*\n)*  \S+ \S+ +rollback of \S+ +\+\S+$`).MatchString(victimShow) {
		t.Errorf("proc show of an aborted job has no rollback in its history:\n%s", victimShow)
	}
	if !strings.Contains(victimShow, "INC-42 stuck") {
		t.Errorf("proc show of an aborted job has no audit entry")
	}

	// Bypass a stuck one: it succeeds, bypassed, and wait says so.
	stuck := w.submit(jobData{Event: "never"})
	w.waitStatus(stuck, procedure.Suspended)
	out = w.ok("proc", "bypass", idStr(stuck), "--why", "node gone for good")
	if !strings.Contains(out, "succeeded (bypassed)") {
		t.Fatalf("proc bypass printed:\n%s", out)
	}
	code, _, errOut := w.cli("proc", "wait", idStr(stuck))
	if code != 1 || !strings.Contains(errOut, "bypassed by local: node gone for good") {
		t.Fatalf("proc wait of a bypassed job: exit %d %q", code, errOut)
	}

	// Ack a finished root.
	var p server.Procedure
	if err := json.Unmarshal([]byte(w.ok("proc", "ack", idStr(parent), "--output", "json")), &p); err != nil || p.Acked == nil {
		t.Fatalf("proc ack: %v, %+v", err, p)
	}
	if in, _ := w.e.Get(parent); in.Acked.IsZero() {
		t.Fatal("the engine has no ack")
	}
}

// TestProcBulkAbort: a dry run lists what would be aborted and aborts
// nothing; the real run aborts each, and only, what the filter selects.
func TestProcBulkAbort(t *testing.T) {
	w := newCLIWorld(t)
	var waiting []procedure.ID
	for range 3 {
		waiting = append(waiting, w.submit(jobData{Event: "never"}))
	}
	done := w.submit(jobData{})
	w.ok("proc", "wait", idStr(done))
	for _, id := range waiting {
		w.waitStatus(id, procedure.Suspended)
	}
	out := w.ok("proc", "bulk-abort", "--filter", "status=suspended,runnable,type=job", "--why", "drain", "--dry-run")
	for _, id := range waiting {
		if !regexp.MustCompile(`(?m)^` + idStr(id) + ` +job +would abort`).MatchString(out) {
			t.Errorf("dry run does not list %d:\n%s", id, out)
		}
		if st := w.status(id); st != procedure.Suspended {
			t.Errorf("the dry run changed %d to %v", id, st)
		}
	}
	if !strings.Contains(out, "3 of 3 matching roots would abort (dry run") || strings.Contains(out, idStr(done)+" ") {
		t.Fatalf("dry run:\n%s", out)
	}
	var res server.BulkAbortResponse
	out = w.ok("proc", "bulk-abort", "--filter", "status=suspended", "--why", "drain", "--limit", "2", "--output", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.DryRun || len(res.Results) != 2 || !res.More {
		t.Fatalf("bulk-abort --limit 2: %v\n%s", err, out)
	}
	for _, r := range res.Results {
		if r.Outcome != "aborted" {
			t.Errorf("bulk-abort: %+v", r)
		}
		w.waitStatus(r.ID, procedure.RolledBack)
	}
	if st := w.status(done); st != procedure.Succeeded {
		t.Fatalf("bulk-abort touched %d: %v", done, st)
	}
}

// TestLocksAndNodes: the lock table shows holder and waiter; the nodes
// table shows the registered node.
func TestLocksAndNodes(t *testing.T) {
	w := newCLIWorld(t)
	holder := w.submit(jobData{Event: "never", Lock: "table/t1"})
	w.waitStatus(holder, procedure.Suspended)
	waiter := w.submit(jobData{Lock: "table/t1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.e.WaitFor(ctx, waiter, func(in procedure.Info) bool { return in.WaitingForLocks }); err != nil {
		t.Fatal(err)
	}
	out := w.ok("locks")
	for _, re := range []string{
		`(?m)^table/t1 +holder +` + idStr(holder) + ` +job +exclusive +\S+ ago$`,
		`(?m)^table/t1 +waiter +` + idStr(waiter) + ` +job +exclusive +\S+ ago$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("locks does not match %s:\n%s", re, out)
		}
	}
	var ll server.LockList
	if err := json.Unmarshal([]byte(w.ok("locks", "--output", "json")), &ll); err != nil || len(ll.Locks) != 1 || len(ll.Locks[0].Waiters) != 1 {
		t.Fatalf("locks --output json: %v %+v", err, ll)
	}
	if out := w.ok("proc", "show", idStr(waiter)); !regexp.MustCompile(`(?m)^  waits for +table/t1 +exclusive$`).MatchString(out) {
		t.Errorf("proc show of a lock waiter:\n%s", out)
	}
	out = w.ok("nodes")
	if !regexp.MustCompile(`(?m)^rs1 +addr-rs1 +7 +yes `).MatchString(out) {
		t.Errorf("nodes:\n%s", out)
	}
	var nl server.NodeList
	if err := json.Unmarshal([]byte(w.ok("nodes", "--output", "json")), &nl); err != nil || len(nl.Nodes) != 1 || nl.Nodes[0].Name != "rs1" {
		t.Fatalf("nodes --output json: %v %+v", err, nl)
	}
}

// TestClientCredentials: against a server with tokens, a missing or
// unknown token and a read token acting are refused with one clear line
// and exit 1; the token comes from --token, --token-file or the
// environment, and is never printed.
func TestClientCredentials(t *testing.T) {
	const readSecret, opSecret = "read-secret-0123456789", "operate-secret-0123456789"
	w := newCLIWorld(t, server.Token{Name: "viewer", Secret: readSecret, Role: server.Read},
		server.Token{Name: "alice", Secret: opSecret, Role: server.Operate})
	t.Setenv(envToken, "")
	code, out, errOut := w.cli("proc", "list")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "procyon proc list: unauthorized: ") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("no token: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = w.cli("proc", "list", "--token", "not-a-token-at-all-xx")
	if code != 1 || !strings.Contains(errOut, "unauthorized: ") || strings.Contains(errOut, "not-a-token") {
		t.Fatalf("unknown token: exit %d, stderr %q", code, errOut)
	}
	w.ok("proc", "list", "--token", readSecret)
	code, _, errOut = w.cli("proc", "submit", "job", "--token", readSecret)
	if code != 1 || !strings.HasPrefix(errOut, "procyon proc submit: forbidden: ") || strings.Contains(errOut, readSecret) {
		t.Fatalf("read token submits: exit %d, stderr %q", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("# alice's\n\n  "+opSecret+"  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := w.submit(jobData{}, "--token-file", file)
	// The environment, and a flag winning over it.
	t.Setenv(envToken, opSecret)
	w.ok("proc", "wait", idStr(id))
	if code, _, _ := w.cli("proc", "submit", "job", "--token", readSecret); code != 1 {
		t.Fatalf("--token did not win over $%s: exit %d", envToken, code)
	}
	t.Setenv(envToken, "")
	if code, _, errOut := w.cli("proc", "list", "--token", opSecret, "--token-file", file); code != 2 || !strings.Contains(errOut, "not both") {
		t.Fatalf("--token and --token-file: exit %d %q", code, errOut)
	}
	// A server's error for bad input is one line too, and exit 1.
	code, _, errOut = w.cli("proc", "submit", "job", "--args", `{"nosuchfield": 1}`, "--token", opSecret)
	if code != 1 || !strings.HasPrefix(errOut, "procyon proc submit: bad_request: ") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("unknown field: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = w.cli("proc", "show", "999999", "--token", readSecret)
	if code != 1 || !strings.HasPrefix(errOut, "procyon proc show: not_found: ") {
		t.Fatalf("unknown id: exit %d, stderr %q", code, errOut)
	}
}

// TestClientUsageErrors: mistakes in a client verb's command line exit 2
// before any request (the endpoint here answers nothing).
func TestClientUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"proc", "show", "abc"}, `not a procedure id: "abc"`},
		{[]string{"proc", "show"}, "want 1 argument(s), got 0"},
		{[]string{"proc", "abort", "1"}, "--why is required"},
		{[]string{"proc", "bypass", "1", "--why", " "}, "--why is required"},
		{[]string{"proc", "list", "--since", "yesterday"}, "--since: want an RFC 3339 time"},
		{[]string{"proc", "list", "--status", "running"}, `status "running": not one of`},
		{[]string{"proc", "list", "--limit", "0"}, "-limit must be between 1 and 1000"},
		{[]string{"proc", "list", "--root", "-3"}, "--root: not a procedure id"},
		{[]string{"proc", "list", "--output", "yaml"}, "--output must be table or json"},
		{[]string{"proc", "list", "--endpoint", "127.0.0.1:1"}, "--endpoint must be an http:// or https:// URL"},
		{[]string{"proc", "submit", "job", "--args", "{"}, "not valid JSON"},
		{[]string{"proc", "submit", "job", "--args", "{}", "--args-file", "f"}, "not both"},
		{[]string{"proc", "bulk-abort", "--why", "x"}, "--filter is required"},
		{[]string{"proc", "bulk-abort", "--filter", "owner=me", "--why", "x"}, `unknown key "owner"`},
		{[]string{"proc", "bulk-abort", "--filter", "type=a,type=b", "--why", "x"}, "type given twice"},
		{[]string{"proc", "bulk-abort", "--filter", "type=a"}, "--why is required"},
		{[]string{"proc", "wait", "1", "--poll", "2m"}, "--poll must be at most 1m0s"},
		{[]string{"proc", "wait", "1", "--timeout", "0s"}, "-timeout must be positive"},
		{[]string{"locks", "--cert-file", "c.pem"}, "--cert-file and --key-file go together"},
		{[]string{"nodes", "extra"}, "want 0 argument(s), got 1"},
		{[]string{"audit", "--before", "x"}, `invalid argument "x"`},
	} {
		args := c.args
		if !slices.Contains(args, "--endpoint") {
			args = append(args, "--endpoint", "http://127.0.0.1:1")
		}
		code, out, errOut := runCLI(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, errOut, c.want)
		}
	}
	// The server unreachable is a failure, not a usage error.
	if code, _, errOut := runCLI(t, "locks", "--endpoint", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("unreachable: exit %d, %q", code, errOut)
	}
}

func TestParseFilter(t *testing.T) {
	q, err := parseFilter("status=runnable,waiting,type=create-table,error=a=b")
	if err != nil || q.Get("status") != "runnable,waiting" || q.Get("type") != "create-table" || q.Get("error") != "a=b" || len(q) != 3 {
		t.Fatalf("parseFilter: %v %v", q, err)
	}
	if _, err := parseFilter("runnable,type=x"); err == nil {
		t.Fatal("a value without a key accepted")
	}
}

// gatedSub is a barrier subprocedure whose Acquire waits until its gate
// is closed.
type gatedSub struct{ gate chan struct{} }

func (g gatedSub) Acquire(ctx context.Context) error {
	select {
	case <-g.gate:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (gatedSub) Inside(context.Context) ([]byte, error) { return nil, nil }
func (gatedSub) Cleanup(error)                          {}

// barrierMember runs member name of the world's barrier coordinator
// until the test ends; its Acquire waits until gate is closed.
func (w *cliWorld) barrierMember(name string, gate chan struct{}) {
	m := barrier.NewMember(w.barriers, name, barrier.MemberOptions{})
	m.Register("gated", func(string, []byte) (barrier.Subprocedure, error) { return gatedSub{gate}, nil })
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		m.Run(ctx)
	}()
	w.t.Cleanup(func() {
		cancel()
		<-stopped
	})
}

// TestBarriers: procyon barriers prints the header alone when nothing
// runs, then a row per barrier in progress with each member's phase, in
// table and JSON.
func TestBarriers(t *testing.T) {
	w := newCLIWorld(t)
	const header = "NAME  INSTANCE  TYPE  PHASE  ELAPSED  MEMBERS\n"
	if out := w.ok("barriers"); out != header {
		t.Fatalf("barriers with none running:\n%q, want the header %q", out, header)
	}
	if out := w.ok("barriers", "--output", "json"); strings.Join(strings.Fields(out), "") != `{"barriers":[]}` {
		t.Fatalf("barriers --output json with none running: %s", out)
	}

	gate := make(chan struct{})
	w.barrierMember("m1", gate)
	h, err := w.coord.Start(context.Background(), "snap", "gated", nil, []string{"m1", "m2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.WaitFor(ctx, func(s barrier.Stats) bool { return s.Members[0].Phase == barrier.PhaseJoined }); err != nil {
		t.Fatal(err)
	}
	if out := w.ok("barriers"); !regexp.MustCompile(`(?m)^snap +[1-9]\d* +gated +acquiring +\S+ +m1:joined m2:-$`).MatchString(out) {
		t.Errorf("barriers:\n%s", out)
	}
	var bl server.BarrierList
	if err := json.Unmarshal([]byte(w.ok("barriers", "--output", "json")), &bl); err != nil || len(bl.Barriers) != 1 ||
		bl.Barriers[0].Name != "snap" || len(bl.Barriers[0].Members) != 2 || bl.Barriers[0].Members[0].Phase != "joined" {
		t.Fatalf("barriers --output json: %v %+v", err, bl)
	}

	w.barrierMember("m2", gate) // a late joiner learns of snap
	close(gate)
	if _, err := h.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if out := w.ok("barriers"); out != header {
		t.Fatalf("barriers after the procedure finished:\n%s", out)
	}
}
