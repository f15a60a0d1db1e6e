package proctest_test

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/procedure/proctest"
)

// fakeT records a failure instead of failing the test, so that the kit's
// own failures can be checked.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msg    string
}

func (f *fakeT) Helper()             {}
func (f *fakeT) Logf(string, ...any) {}
func (f *fakeT) Log(...any)          {}
func (f *fakeT) fail(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failed {
		f.failed, f.msg = true, msg
	}
}
func (f *fakeT) Errorf(format string, args ...any) { f.fail(fmt.Sprintf(format, args...)) }
func (f *fakeT) Error(args ...any)                 { f.fail(fmt.Sprint(args...)) }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (f *fakeT) Fatal(args ...any) { f.fail(fmt.Sprint(args...)); runtime.Goexit() }
func (f *fakeT) FailNow()          { f.fail("FailNow"); runtime.Goexit() }
func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func runFake(t *testing.T, fn func(tb testing.TB)) (bool, string) {
	f := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.failed, f.msg
}

// service is an external system (a region server, a cloud API): it
// outlives the control plane's crashes.
type service struct {
	mu    sync.Mutex
	calls map[string]int
}

func (s *service) call(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[key]++
}

func (s *service) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

type world struct {
	s   *durable.Store
	kv  *durable.Collection[string, string]
	svc *service
	typ *procedure.Type[int, string]
}

type env struct {
	KV    map[string]string
	Calls map[string]int
}

// harness builds a three-state procedure: state 0 calls the service
// (idempotently, keyed by the procedure, unless sloppy) and writes x;
// state 1 writes y; state 2 finishes. Its rollback deletes x and, unless
// forgetful, y.
func harness(sloppy, forgetful bool) proctest.Harness[*world] {
	svc := &service{calls: map[string]int{}}
	return proctest.Harness[*world]{
		Setup: func(s *durable.Store, e *procedure.Engine) *world {
			w := &world{s: s, kv: durable.NewCollection[string, string](s, "kv", nil), svc: svc}
			w.typ = procedure.Register[int, string](e, "three", procedure.StateMachineFuncs[int, string]{
				Exec: func(ctx context.Context, env *procedure.Env, s int, d *string) (procedure.Next, error) {
					switch s {
					case 0:
						if sloppy {
							w.svc.call("create")
						} else {
							// Idempotent: the service keeps one result per key.
							w.svc.mu.Lock()
							w.svc.calls["create"] = 1
							w.svc.mu.Unlock()
						}
						env.Write(func(tx *durable.Tx) error { return w.kv.Put(tx, "x", *d) })
						return procedure.GoTo(1), nil
					case 1:
						env.Write(func(tx *durable.Tx) error { return w.kv.Put(tx, "y", *d) })
						return procedure.GoTo(2), nil
					}
					return procedure.Done(), nil
				},
				Undo: func(ctx context.Context, env *procedure.Env, s int, d *string) error {
					switch s {
					case 0:
						w.svc.mu.Lock()
						delete(w.svc.calls, "create")
						w.svc.mu.Unlock()
						env.Write(func(tx *durable.Tx) error { return w.kv.Delete(tx, "x") })
					case 1:
						if !forgetful {
							env.Write(func(tx *durable.Tx) error { return w.kv.Delete(tx, "y") })
						}
					}
					return nil
				},
			}, nil)
			return w
		},
		Reset: func() {
			svc.mu.Lock()
			clear(svc.calls) // a fresh external world for each scenario
			svc.mu.Unlock()
		},
		Submit: func(ctx context.Context, w *world) (procedure.ID, error) {
			return w.typ.Submit(ctx, "v", procedure.SubmitOptions{})
		},
		State: func(w *world) any {
			e := env{KV: map[string]string{}, Calls: w.svc.snapshot()}
			for k, v := range w.kv.All(w.s.Latest()) {
				e.KV[k] = v
			}
			return e
		},
	}
}

func TestCorrectProcedurePasses(t *testing.T) {
	proctest.RecoveryAndDoubleExecution(t, harness(false, false))
	proctest.RollbackAndDoubleExecution(t, harness(false, false))
}

// A step with a non-idempotent external call is caught by running it
// again after a crash before its commit.
func TestCatchesNonIdempotentStep(t *testing.T) {
	failed, msg := runFake(t, func(tb testing.TB) { proctest.RecoveryAndDoubleExecution(tb, harness(true, false)) })
	if !failed || !strings.Contains(msg, "environment") || !strings.Contains(msg, "create:2") {
		t.Fatalf("not caught: %v %q", failed, msg)
	}
}

// A rollback that forgets to undo a state is caught.
func TestCatchesIncompleteRollback(t *testing.T) {
	failed, msg := runFake(t, func(tb testing.TB) { proctest.RollbackAndDoubleExecution(tb, harness(false, true)) })
	if !failed || !strings.Contains(msg, "after the rollback the environment") || !strings.Contains(msg, "y:v") {
		t.Fatalf("not caught: %v %q", failed, msg)
	}
}
