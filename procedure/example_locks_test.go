package procedure_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// compactTable rewrites a table's files: a long step that needs the
// table exclusively. Here the step says it started, then lasts until the
// example closes proceed.
type compactTable struct {
	started chan<- procedure.ID
	proceed <-chan struct{}
}

var _ procedure.Locker[int, string] = compactTable{}

func (compactTable) Locks(s int, table *string) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock("table/" + *table)}
}

func (c compactTable) Execute(ctx context.Context, env *procedure.Env, s int, table *string) (procedure.Next, error) {
	fmt.Printf("compact %s: procedure %d\n", *table, env.ID())
	c.started <- env.ID()
	<-c.proceed
	return procedure.Done(), nil
}

func (compactTable) Rollback(ctx context.Context, env *procedure.Env, s int, table *string) error {
	return nil
}

// A type that implements Locker gets the locks its step needs before the
// step runs. Once the first compaction holds the table, a second one
// waits, without a worker, until the first one's step committed and let
// the table go: WaitFor shows each in turn (Info.Locks, WaitingForLocks),
// and Engine.Locks who holds and who waits.
func Example_locks() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	started, proceed := make(chan procedure.ID, 2), make(chan struct{})
	compact := procedure.Register[int, string](e, "compact-table", compactTable{started, proceed}, nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	first, _ := compact.Submit(ctx, "users", procedure.SubmitOptions{})
	<-started // it holds the table and runs
	second, _ := compact.Submit(ctx, "users", procedure.SubmitOptions{})
	e.WaitFor(ctx, second, func(in procedure.Info) bool { return in.WaitingForLocks })
	for _, l := range e.Locks() {
		fmt.Printf("%s: held by %v, waiting %v\n", l.Resource, ids(l.Holders), ids(l.Waiters))
	}
	close(proceed)
	r1, _ := e.Wait(ctx, first)
	r2, _ := e.Wait(ctx, second)
	fmt.Println(r1.Status, r2.Status)
	// Output:
	// compact users: procedure 1
	// table/users: held by [1], waiting [2]
	// compact users: procedure 2
	// succeeded succeeded
}

// alterTable takes its table exclusively for its whole life (HoldLocks)
// and waits, holding it, until an operator approves.
type alterTable struct{}

var _ procedure.Locker[int, string] = alterTable{}

func (alterTable) Locks(s int, table *string) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock("table/" + *table)}
}

func (alterTable) Execute(ctx context.Context, env *procedure.Env, s int, table *string) (procedure.Next, error) {
	if s == 0 {
		return procedure.WaitEvent(1, "approved/"+*table), nil
	}
	return procedure.Done(), nil
}

func (alterTable) Rollback(ctx context.Context, env *procedure.Env, s int, table *string) error {
	return nil
}

// readRegion needs a region of the table: a lock on the region implies a
// shared lock on the table, so it waits while the table is altered.
type readRegion struct{}

var _ procedure.Locker[int, string] = readRegion{}

func (readRegion) Locks(s int, region *string) []procedure.Lock {
	return []procedure.Lock{procedure.SharedLock(*region)}
}

func (readRegion) Execute(ctx context.Context, env *procedure.Env, s int, region *string) (procedure.Next, error) {
	return procedure.Done(), nil
}

func (readRegion) Rollback(ctx context.Context, env *procedure.Env, s int, region *string) error {
	return nil
}

// With TypeOptions.HoldLocks a procedure keeps its locks across steps and
// suspensions: here it holds a table exclusively while it waits for an
// event, and a procedure that needs one of the table's regions (a lock on
// a resource implies a shared lock on its ancestors) waits, without a
// worker, until the event is signalled and the first one finished.
func Example_holdLocks() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Workers: 1, Logger: slog.New(slog.DiscardHandler)})
	alter := procedure.Register[int, string](e, "alter-table", alterTable{}, &procedure.TypeOptions[string]{HoldLocks: true})
	read := procedure.Register[int, string](e, "read-region", readRegion{}, nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	a, _ := alter.Submit(ctx, "users", procedure.SubmitOptions{})
	e.WaitFor(ctx, a, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
	r, _ := read.Submit(ctx, "table/users/region/7", procedure.SubmitOptions{})
	e.WaitFor(ctx, r, func(in procedure.Info) bool { return in.WaitingForLocks })
	for _, l := range e.Locks() {
		fmt.Printf("%s: held by %v, waiting %v\n", l.Resource, ids(l.Holders), ids(l.Waiters))
	}
	e.Signal(ctx, "approved/users")
	_, err1 := alter.Result(e.Wait(ctx, a))
	_, err2 := read.Result(e.Wait(ctx, r))
	fmt.Println(err1, err2)
	// Output:
	// table/users: held by [1], waiting []
	// table/users/region/7: held by [], waiting [2]
	// <nil> <nil>
}

func ids(hs []procedure.LockHolder) []procedure.ID {
	out := []procedure.ID{}
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}
