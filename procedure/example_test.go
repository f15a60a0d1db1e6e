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
