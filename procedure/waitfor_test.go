package procedure_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// WaitFor waits for a condition on a procedure's Info: it returns the
// Info that met it, ErrFinished once the tree completed without it,
// ErrNotFound for an unknown procedure, and the context's error.
func TestWaitFor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	gated := procedure.Register[int, string](e, "gated", procedure.StateMachineFuncs[int, string]{
		Exec: func(ctx context.Context, env *procedure.Env, state int, event *string) (procedure.Next, error) {
			if state == 0 {
				return procedure.WaitEvent(1, *event), nil
			}
			return procedure.Done(), nil
		},
	}, nil)
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()

	id, err := gated.Submit(ctx, "go", procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	suspended := func(in procedure.Info) bool { return in.Status == procedure.Suspended }
	in, err := e.WaitFor(ctx, id, suspended)
	if err != nil || in.Status != procedure.Suspended || in.Event != "go" {
		t.Fatalf("WaitFor suspended: %+v %v", in, err)
	}

	short, stop := context.WithCancel(ctx)
	stop()
	if _, err := e.WaitFor(short, id, func(procedure.Info) bool { return false }); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor on a cancelled context: %v", err)
	}
	if _, err := e.WaitFor(ctx, id+100, suspended); !errors.Is(err, procedure.ErrNotFound) {
		t.Fatalf("WaitFor on an unknown procedure: %v", err)
	}

	if err := e.Signal(ctx, "go"); err != nil {
		t.Fatal(err)
	}
	if _, err := gated.Result(e.Wait(ctx, id)); err != nil {
		t.Fatal(err)
	}
	in, err = e.WaitFor(ctx, id, suspended)
	if !errors.Is(err, procedure.ErrFinished) || in.Status != procedure.Succeeded {
		t.Fatalf("WaitFor a status a finished procedure never reaches again: %+v %v", in, err)
	}
	if in, err := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Succeeded }); err != nil || in.ID != id {
		t.Fatalf("WaitFor succeeded: %+v %v", in, err)
	}
}

// lockTable runs one step under an exclusive lock on its table; the step
// lasts until proceed is closed.
type lockTable struct{ proceed <-chan struct{} }

func (lockTable) Locks(s int, table *string) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock("table/" + *table)}
}

func (l lockTable) Execute(ctx context.Context, env *procedure.Env, s int, table *string) (procedure.Next, error) {
	<-l.proceed
	return procedure.Done(), nil
}

func (lockTable) Rollback(ctx context.Context, env *procedure.Env, s int, table *string) error {
	return nil
}

// WaitFor is told when a step is granted its locks: a condition on
// Info.Locks holds as soon as the step holds them. The StepStart hook
// holds the step after it started (which WaitFor is told of) and before
// it takes its locks, until WaitFor has seen the Info without them.
func TestWaitForLocksGranted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started, locking, proceed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler), Hooks: procedure.Hooks{
		StepStart: func(procedure.StepInfo) { close(started); <-locking },
	}})
	typ := procedure.Register[int, string](e, "lock-table", lockTable{proceed}, nil)
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	defer close(proceed)

	id, err := typ.Submit(ctx, "t", procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	checked := make(chan struct{})
	go func() {
		<-checked
		close(locking)
	}()
	var once sync.Once
	in, err := e.WaitFor(ctx, id, func(in procedure.Info) bool {
		once.Do(func() { close(checked) })
		return len(in.Locks) > 0
	})
	if err != nil || len(in.Locks) != 1 || in.Locks[0] != procedure.ExclusiveLock("table/t") {
		t.Fatalf("WaitFor the step's locks: %+v %v", in, err)
	}
}
