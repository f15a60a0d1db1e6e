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
}

// Each step reads the latest durable state and records its writes; the
// engine commits them with the step.
func (p *transfer) Execute(ctx context.Context, env *procedure.Env, s TransferState, d *Transfer) (procedure.Next, error) {
	switch s {
	case Debit:
		bal, _, _ := p.accounts.Get(d.From)
		if bal < d.Amount {
			return procedure.Next{}, fmt.Errorf("%s has %d, needs %d", d.From, bal, d.Amount)
		}
		from, amount := d.From, d.Amount
		env.Write(func(tx *durable.Tx) error { return p.accounts.Put(tx, from, bal-amount) })
		return procedure.GoTo(Credit), nil
	default: // Credit
		bal, _, _ := p.accounts.Get(d.To)
		to, amount := d.To, d.Amount
		env.Write(func(tx *durable.Tx) error { return p.accounts.Put(tx, to, bal+amount) })
		d.Receipt = fmt.Sprintf("%d from %s to %s", d.Amount, d.From, d.To)
		return procedure.Done(), nil
	}
}

// Rollback undoes one executed state.
func (p *transfer) Rollback(ctx context.Context, env *procedure.Env, s TransferState, d *Transfer) error {
	if s == Debit {
		from, amount := d.From, d.Amount
		env.Write(func(tx *durable.Tx) error {
			bal, _, err := p.accounts.GetIn(tx, from)
			if err != nil {
				return err
			}
			return p.accounts.Put(tx, from, bal+amount)
		})
	}
	return nil
}

// A state machine procedure whose steps write metadata, and Wait for its
// typed result.
func Example() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	accounts := durable.NewCollection[string, int](s, "accounts", nil)
	e := procedure.New(s, procedure.Options{Logger: slog.New(slog.DiscardHandler)})
	transfers := procedure.Register[TransferState, Transfer](e, "transfer", &transfer{accounts})
	if err := s.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()
	s.Write(ctx, func(tx *durable.Tx) error { return accounts.Put(tx, "ann", 100) })

	id, err := transfers.Submit(ctx, Transfer{From: "ann", To: "bob", Amount: 30}, procedure.SubmitOptions{Nonce: "req-1"})
	if err != nil {
		log.Fatal(err)
	}
	result, err := transfers.Wait(ctx, id)
	fmt.Println(result.Receipt, err)
	ann, _, _ := accounts.Get("ann")
	bob, _, _ := accounts.Get("bob")
	fmt.Println("ann", ann, "bob", bob)
	// Output:
	// 30 from ann to bob <nil>
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
		}, nil))
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
			t.Opened = regions.Len()
			return procedure.Done(), nil
		},
	})
	if err := s.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	e.Start(ctx)
	defer e.Stop()

	id, _ := createTable.Submit(ctx, Table{Name: "users", Regions: 4}, procedure.SubmitOptions{})
	t, err := createTable.Wait(ctx, id)
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
		}, nil))
	s.Open(ctx)
	defer s.Close()
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
