package procedure_test

import (
	"context"
	"errors"
	"log/slog"
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
