package procedure_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// A procedure waits for a named event (WaitEvent) suspended, without a
// worker, until someone signals it: a client or an operator with
// Engine.Signal, or another procedure's step with Env.Signal. The signal
// is durable when Signal returns; the procedure then continues at the
// state WaitEvent named.
func Example_events() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	drop := procedure.Register[int, string](e, "drop-table", procedure.StateMachineFuncs[int, string]{
		Exec: func(ctx context.Context, env *procedure.Env, state int, table *string) (procedure.Next, error) {
			if state == 0 {
				return procedure.WaitEvent(1, "approved/drop/"+*table), nil
			}
			fmt.Println("dropping", *table)
			return procedure.Done(), nil
		},
	}, nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	id, _ := drop.Submit(ctx, "users", procedure.SubmitOptions{})
	in, _ := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
	fmt.Println(in.Status, "on", in.Event)
	if err := e.Signal(ctx, "approved/drop/users"); err != nil {
		log.Fatal(err)
	}
	res, _ := e.Wait(ctx, id)
	fmt.Println(res.Status)
	// Output:
	// suspended on approved/drop/users
	// dropping users
	// succeeded
}
