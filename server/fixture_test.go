package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// The test fixture: a real engine on an in-memory store with four types,
// and a server with a read and an operate token.

// job is the data of every test type.
type job struct {
	N   int    `json:"n"`
	Out string `json:"out,omitempty"`
}

const (
	readSecret    = "read-secret-0123456789abcdef"
	operateSecret = "operate-secret-0123456789abcdef"
	stuckEvent    = "test/never"
)

// ponr is stuck past its point of no return: state 1 is NoReturn, and it
// waits there for an event nobody signals, holding a shared lock on
// table/N.
type ponr struct{}

func (ponr) Execute(ctx context.Context, env *procedure.Env, s int, d *job) (procedure.Next, error) {
	switch s {
	case 0:
		return procedure.GoTo(1), nil
	case 1:
		return procedure.WaitEvent(2, stuckEvent), nil
	}
	return procedure.Done(), nil
}

func (ponr) Rollback(ctx context.Context, env *procedure.Env, s int, d *job) error { return nil }
func (ponr) Locks(s int, d *job) []procedure.Lock {
	return []procedure.Lock{procedure.SharedLock(fmt.Sprintf("table/%d", d.N))}
}
func (ponr) NoReturn(s int) bool { return s >= 1 }

// small bounds the work a test type's N asks for (FuzzAPI submits any).
func small(n int) int { return min(max(n, 0), 8) }

type fixture struct {
	e      *procedure.Engine
	srv    *Server
	log    *syncBuffer
	finish *procedure.Type[int, job] // doubles N into Out and succeeds
	stuck  *procedure.Type[int, job] // waits for stuckEvent forever
	ponr   *procedure.Type[int, job] // stuck past its point of no return
	parent *procedure.Type[int, job] // spawns N stuck children
}

// newFixture starts an engine and a server over it; edit adjusts the
// server's options (Engine, Types, Tokens and Logger are set).
func newFixture(t testing.TB, edit func(*Options)) *fixture {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	st := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: quiet})
	e := procedure.New(st, procedure.Options{Logger: quiet, Workers: 4})
	f := &fixture{e: e, log: &syncBuffer{}}
	f.finish = procedure.Register(e, "finish", procedure.StateMachineFuncs[int, job]{
		Exec: func(ctx context.Context, env *procedure.Env, s int, d *job) (procedure.Next, error) {
			d.Out = strings.Repeat("x", small(d.N))
			return procedure.Done(), nil
		}}, nil)
	f.stuck = procedure.Register(e, "stuck", procedure.StateMachineFuncs[int, job]{
		Exec: func(ctx context.Context, env *procedure.Env, s int, d *job) (procedure.Next, error) {
			if s == 0 {
				return procedure.WaitEvent(1, stuckEvent), nil
			}
			return procedure.Done(), nil
		}}, nil)
	f.ponr = procedure.Register[int, job](e, "ponr", ponr{}, &procedure.TypeOptions[job]{HoldLocks: true})
	f.parent = procedure.Register(e, "parent", procedure.StateMachineFuncs[int, job]{
		Exec: func(ctx context.Context, env *procedure.Env, s int, d *job) (procedure.Next, error) {
			if s == 0 {
				var kids []procedure.Child
				for range small(d.N) {
					kids = append(kids, f.stuck.Child(job{}))
				}
				return procedure.Spawn(1, kids...), nil
			}
			return procedure.Done(), nil
		}}, nil)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop() })
	opts := Options{Engine: e,
		Types:  []SubmitType{JSONType(f.finish), JSONType(f.stuck), JSONType(f.ponr), JSONType(f.parent)},
		Tokens: []Token{{Name: "reader", Secret: readSecret, Role: Read}, {Name: "operator", Secret: operateSecret, Role: Operate}},
		Logger: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f.srv = srv
	return f
}

// syncBuffer is a log destination tests read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// answer is a response the handler wrote.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do serves one request with the bearer token secret ("": none).
func (f *fixture) do(method, path, secret, body string) answer {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// op serves a request as the operator.
func (f *fixture) op(method, path, body string) answer {
	return f.do(method, path, operateSecret, body)
}

// must checks the status and decodes the JSON body into out (nil: not).
func (a answer) must(t testing.TB, status int, out any) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
	}
	if out == nil {
		return
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
}

// refused checks a JSON error answer of status and code.
func (a answer) refused(t testing.TB, status int, code string) Error {
	t.Helper()
	var e Error
	a.must(t, status, &e)
	if e.Code != code || e.Message == "" {
		t.Fatalf("error %+v, want code %s and a message", e, code)
	}
	return e
}

func (f *fixture) seq() uint64 { return f.e.Store().Stats().Seq }

// unchanged fails t if the store's Seq moved from before.
func (f *fixture) unchanged(t testing.TB, before uint64, what string) {
	t.Helper()
	if got := f.seq(); got != before {
		t.Fatalf("%s changed the store: Seq %d -> %d", what, before, got)
	}
}

// submit submits a procedure of typ and waits until it is quiet.
func (f *fixture) submit(t testing.TB, typ *procedure.Type[int, job], d job) procedure.ID {
	t.Helper()
	id, err := typ.Submit(context.Background(), d, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	return id
}

// quiet reports whether in will not change unless someone acts:
// suspended, waiting for its children or finished, and not running or
// rolling back.
func quiet(in procedure.Info) bool {
	switch in.Status {
	case procedure.Suspended, procedure.Waiting, procedure.Succeeded, procedure.RolledBack:
		return !in.Running && !in.RollingBack
	}
	return false
}

// settle waits until every unfinished procedure is quiet, so that the
// engine writes nothing more by itself: pass after pass, as a step may
// spawn children the pass before did not see.
func (f *fixture) settle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a bound against a hang, not an assertion
	defer cancel()
	for pass := 0; pass < 100; pass++ {
		waited := false
		for in := range f.e.List(procedure.Query{}) {
			if (in.Parent == 0 && !in.Completed.IsZero()) || quiet(in) {
				continue
			}
			waited = true
			_, err := f.e.WaitFor(ctx, in.ID, quiet)
			if err != nil && !errors.Is(err, procedure.ErrFinished) && !errors.Is(err, procedure.ErrNotFound) {
				t.Fatalf("settling procedure %d: %v", in.ID, err)
			}
		}
		if !waited {
			return
		}
	}
	t.Fatal("the engine does not settle")
}

// finished waits for procedure id's result.
func (f *fixture) finished(t testing.TB, id procedure.ID) procedure.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := f.e.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
