package procedure_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// Region is one region of a table, and the server it opened on.
type Region struct {
	Table  string
	Index  int
	Server string
}

// A parent spawns children, committed with its step, which run in
// parallel; it continues once all of them succeeded, and reads their
// results through the engine: its Info lists its children, and Wait
// returns a child's result (its final data) once the child succeeded.
func Example_children() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	openRegion := procedure.Register(e, "open-region", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, r *Region) ([]procedure.Child, error) {
			r.Server = fmt.Sprintf("rs-%d", r.Index%2) // the child's result
			return nil, nil
		}, nil), nil)
	type Table struct {
		Name    string
		Regions int
		Servers []string
	}
	createTable := procedure.Register[int, Table](e, "create-table", procedure.StateMachineFuncs[int, Table]{
		Exec: func(ctx context.Context, env *procedure.Env, state int, t *Table) (procedure.Next, error) {
			if state == 0 {
				var children []procedure.Child
				for i := range t.Regions {
					children = append(children, openRegion.Child(Region{Table: t.Name, Index: i}))
				}
				return procedure.Spawn(1, children...), nil
			}
			// State 1 runs once every region is open.
			in, err := e.Get(env.ID())
			if err != nil {
				return procedure.Next{}, err
			}
			t.Servers = make([]string, t.Regions)
			for _, child := range in.Children {
				r, err := openRegion.Result(e.Wait(ctx, child))
				if err != nil {
					return procedure.Next{}, err
				}
				t.Servers[r.Index] = r.Server
			}
			return procedure.Done(), nil
		},
	}, nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	id, _ := createTable.Submit(ctx, Table{Name: "users", Regions: 4}, procedure.SubmitOptions{})
	t, err := createTable.Result(e.Wait(ctx, id))
	fmt.Println(t.Name, "regions on", t.Servers, err)
	// Output: users regions on [rs-0 rs-1 rs-0 rs-1] <nil>
}
