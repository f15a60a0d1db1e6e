package procedure_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// TransferState is the state of a transfer.
type TransferState int

const (
	Debit TransferState = iota
	Credit
)

// Transfer is a transfer's data; its final value is the result.
type Transfer struct {
	From, To string
	Amount   int
	Receipt  string
}

type transfer struct {
	accounts *durable.Collection[string, int]
	// debits holds, by transfer, the amount debited and not yet
	// credited: what a rollback has to give back.
	debits *durable.Collection[procedure.ID, int]
}

// Each step records its writes with env.Write, and reads what they depend
// on inside, in the transaction (Get(tx, ...)): the engine commits them with the
// step, and no concurrent transfer can change a balance in between.
func (p *transfer) Execute(ctx context.Context, env *procedure.Env, s TransferState, d *Transfer) (procedure.Next, error) {
	id, from, to, amount := env.ID(), d.From, d.To, d.Amount
	switch s {
	case Debit:
		env.Write(func(tx *durable.Tx) error {
			bal, _, err := p.accounts.Get(tx, from)
			if err != nil {
				return err
			}
			if bal < amount {
				return fmt.Errorf("%s has %d, needs %d", from, bal, amount)
			}
			if err := p.debits.Put(tx, id, amount); err != nil {
				return err
			}
			return p.accounts.Put(tx, from, bal-amount)
		})
		return procedure.GoTo(Credit), nil
	default: // Credit
		env.Write(func(tx *durable.Tx) error {
			bal, _, err := p.accounts.Get(tx, to)
			if err != nil {
				return err
			}
			if err := p.debits.Delete(tx, id); err != nil {
				return err
			}
			return p.accounts.Put(tx, to, bal+amount)
		})
		d.Receipt = fmt.Sprintf("%d from %s to %s", amount, from, to)
		return procedure.Done(), nil
	}
}

// Rollback undoes one executed state. It runs for a state whose writes
// failed too (not enough money): the debit is given back only if its
// record says it committed.
func (p *transfer) Rollback(ctx context.Context, env *procedure.Env, s TransferState, d *Transfer) error {
	if s != Debit {
		return nil // a Credit that rolls back never committed: the tree completes with it
	}
	id, from := env.ID(), d.From
	env.Write(func(tx *durable.Tx) error {
		amount, ok, err := p.debits.Get(tx, id)
		if err != nil || !ok {
			return err
		}
		bal, _, err := p.accounts.Get(tx, from)
		if err != nil {
			return err
		}
		if err := p.debits.Delete(tx, id); err != nil {
			return err
		}
		return p.accounts.Put(tx, from, bal+amount)
	})
	return nil
}

// A state machine procedure whose steps read and write metadata in their
// commit, and Wait for its typed result.
func Example() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	accounts := durable.NewCollection[string, int](s, "accounts", nil)
	debits := durable.NewCollection[procedure.ID, int](s, "debits", nil)
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	transfers := procedure.Register[TransferState, Transfer](e, "transfer", &transfer{accounts, debits}, nil)
	if err := e.Start(ctx); err != nil { // opens the store, recovers, runs
		log.Fatal(err)
	}
	defer e.Stop() // stops, then closes the store
	s.Write(ctx, func(tx *durable.Tx) error { return accounts.Put(tx, "ann", 100) })

	id, err := transfers.Submit(ctx, Transfer{From: "ann", To: "bob", Amount: 30}, procedure.SubmitOptions{Nonce: "req-1"})
	if err != nil {
		log.Fatal(err)
	}
	result, err := transfers.Result(e.Wait(ctx, id))
	fmt.Println(result.Receipt, err)

	id, _ = transfers.Submit(ctx, Transfer{From: "ann", To: "bob", Amount: 500}, procedure.SubmitOptions{})
	_, err = transfers.Result(e.Wait(ctx, id))
	fmt.Println(errors.Is(err, procedure.ErrRolledBack), err)
	v := s.Latest()
	ann, _, _ := accounts.Get(v, "ann")
	bob, _, _ := accounts.Get(v, "bob")
	fmt.Println("ann", ann, "bob", bob)
	// Output:
	// 30 from ann to bob <nil>
	// true transfer#2: procedure: recorded write: ann has 70, needs 500
	// ann 70 bob 30
}

// Region is one region of a table.
type Region struct {
	Table string
	Index int
}

// A parent spawns children that run in parallel; it continues once all
// of them succeeded.
func Example_children() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	regions := durable.NewCollection[string, Region](s, "regions", nil)
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	openRegion := procedure.Register(e, "open-region", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, r *Region) ([]procedure.Child, error) {
			key, r2 := fmt.Sprintf("%s/%d", r.Table, r.Index), *r
			env.Write(func(tx *durable.Tx) error { return regions.Put(tx, key, r2) })
			return nil, nil
		}, nil), nil)
	type Table struct {
		Name    string
		Regions int
		Opened  int
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
			t.Opened = regions.Len(s.Latest())
			return procedure.Done(), nil
		},
	}, nil)
	e.Start(ctx)
	defer e.Stop()

	id, _ := createTable.Submit(ctx, Table{Name: "users", Regions: 4}, procedure.SubmitOptions{})
	t, err := createTable.Result(e.Wait(ctx, id))
	fmt.Println(t.Name, "opened", t.Opened, "regions;", err)
	// Output: users opened 4 regions; <nil>
}

// Wait returns why a procedure rolled back, with its source, also after
// a restart.
func ExampleEngine_Wait() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	flaky := procedure.Register(e, "flaky", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, server *string) ([]procedure.Child, error) {
			return nil, &procedure.Error{Source: *server, Message: "disk full"}
		}, nil), nil)
	e.Start(ctx)
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

// Hierarchical locks and events: a procedure holding a table exclusively
// while suspended on an event keeps a procedure that needs one of the
// table's regions waiting, without a worker, until the event is signalled.
func Example_locksAndEvents() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Workers: 1, Logger: slog.New(slog.DiscardHandler)})
	alter := procedure.Register[int, string](e, "alter-table", alterTable{}, &procedure.TypeOptions[string]{HoldLocks: true})
	read := procedure.Register[int, string](e, "read-region", readRegion{}, nil)
	e.Start(ctx)
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

// Durable timers on an injectable clock: a procedure sleeps until a time
// stored with its step, here moved by hand.
func ExampleSleep() {
	ctx := context.Background()
	clock := procedure.NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	remind := procedure.Register[int, string](e, "remind", procedure.StateMachineFuncs[int, string]{
		Exec: func(ctx context.Context, env *procedure.Env, state int, note *string) (procedure.Next, error) {
			if state == 0 {
				return procedure.Sleep(1, time.Hour), nil
			}
			*note += " (reminded)"
			return procedure.Done(), nil
		},
	}, nil)
	e.Start(ctx)
	defer e.Stop()

	id, _ := remind.Submit(ctx, "renew the certificate", procedure.SubmitOptions{})
	in, _ := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
	fmt.Println(in.Status, "until", in.WakeAt.UTC().Format(time.Kitchen))
	clock.Advance(time.Hour)
	note, err := remind.Result(e.Wait(ctx, id))
	fmt.Println(note, err)
	// Output:
	// suspended until 1:00PM
	// renew the certificate (reminded) <nil>
}

// A step that returns a Retryable error runs again after a backoff,
// without a commit per attempt; the attempts show in Info meanwhile.
func ExampleRetryable() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	attempts := 0
	call := procedure.Register(e, "call-server", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, server *string) ([]procedure.Child, error) {
			if attempts++; attempts < 3 {
				return nil, procedure.Retryable(fmt.Errorf("%s: connection refused", *server))
			}
			return nil, nil
		}, nil), &procedure.TypeOptions[string]{Retry: procedure.RetryPolicy{Initial: time.Millisecond, Attempts: 5}})
	e.Start(ctx)
	defer e.Stop()

	id, _ := call.Submit(ctx, "rs-3", procedure.SubmitOptions{})
	_, err := call.Result(e.Wait(ctx, id))
	fmt.Println(attempts, "attempts;", err, e.Stats().Types["call-server"].Retries, "retries")
	// Output: 3 attempts; <nil> 2 retries
}
