package procedure_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// ErrNoSpace is a kind of failure that callers tell apart with errors.Is,
// also after a restart: its code is stored with the procedure's error.
var ErrNoSpace = procedure.NewErrorCode("example.no-space", "no space left")

// A failing step rolls its whole tree back: every state that ran, the
// child's too, is undone by its Rollback in exactly the reverse order,
// starting with the state that failed (its Execute may have done part of
// its work). Wait then returns an error that matches ErrRolledBack and the
// ErrorCode the step wrapped.
func Example_rollback() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	assign := procedure.Register(e, "assign-region", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, region *string) ([]procedure.Child, error) {
			fmt.Println("assign", *region)
			return nil, nil
		},
		func(ctx context.Context, env *procedure.Env, region *string) error {
			fmt.Println("undo: assign", *region)
			return nil
		}), nil)
	steps := []string{"create directory", "spawn region", "write schema"}
	create := procedure.Register[int, string](e, "create-table", procedure.StateMachineFuncs[int, string]{
		Exec: func(ctx context.Context, env *procedure.Env, state int, table *string) (procedure.Next, error) {
			fmt.Println(steps[state], *table)
			switch state {
			case 0:
				return procedure.GoTo(1), nil
			case 1:
				return procedure.Spawn(2, assign.Child(*table+"/r1")), nil
			}
			return procedure.Next{}, fmt.Errorf("schema of %s: %w", *table, ErrNoSpace)
		},
		Undo: func(ctx context.Context, env *procedure.Env, state int, table *string) error {
			fmt.Println("undo:", steps[state], *table)
			return nil
		},
	}, nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	id, _ := create.Submit(ctx, "users", procedure.SubmitOptions{})
	_, err := create.Result(e.Wait(ctx, id))
	fmt.Println(errors.Is(err, procedure.ErrRolledBack), errors.Is(err, ErrNoSpace), err)
	// Output:
	// create directory users
	// spawn region users
	// assign users/r1
	// write schema users
	// undo: write schema users
	// undo: assign users/r1
	// undo: spawn region users
	// undo: create directory users
	// true true create-table#1: schema of users: no space left
}

// Wait returns how a procedure finished; for one that rolled back,
// Result.Err says why, as an *Error kept with the result: a step that
// returns an *Error itself names where the failure came from (Source),
// here the server a call failed on.
func ExampleEngine_Wait() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	flaky := procedure.Register(e, "flaky", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, server *string) ([]procedure.Child, error) {
			return nil, &procedure.Error{Source: *server, Message: "disk full"}
		}, nil), nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	id, _ := flaky.Submit(ctx, "rs-7", procedure.SubmitOptions{})
	res, err := e.Wait(ctx, id)
	fmt.Println(res.Status, err)
	err = res.Err()
	var perr *procedure.Error
	fmt.Println(errors.Is(err, procedure.ErrRolledBack), errors.As(err, &perr), perr.Source)
	// Output:
	// rolled-back <nil>
	// true true rs-7
}
