package procedure_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// The package example's transfer, run 200 times at once out of one
// account: every debit counts and the total is kept, because each step
// reads the balance it writes inside its commit.
func TestConcurrentTransfersKeepTotal(t *testing.T) {
	const n, start = 200, 1000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	accounts := durable.NewCollection[string, int](s, "accounts", nil)
	debits := durable.NewCollection[procedure.ID, int](s, "debits", nil)
	e := procedure.New(s, procedure.Options{Workers: 16, Logger: slog.New(slog.DiscardHandler)})
	transfers := procedure.Register[TransferState, Transfer](e, "transfer", &transfer{accounts, debits}, nil)
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	to := []string{"bob", "carl", "dora", "eve"}
	if err := s.Write(ctx, func(tx *durable.Tx) error { return accounts.Put(tx, "ann", start) }); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id, err := transfers.Submit(ctx, Transfer{From: "ann", To: to[i%len(to)], Amount: 1}, procedure.SubmitOptions{})
			if err == nil {
				_, err = transfers.Result(e.Wait(ctx, id))
			}
			if err != nil {
				errs <- fmt.Errorf("transfer %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	total, got := 0, map[string]int{}
	for k, v := range accounts.All(s.Latest()) {
		got[k] = v
		total += v
	}
	if got["ann"] != start-n {
		t.Errorf("ann has %d after %d one-unit transfers out of %d, want %d", got["ann"], n, start, start-n)
	}
	if total != start {
		t.Errorf("the accounts hold %d in all, want %d: %v", total, start, got)
	}
	for _, name := range to {
		if got[name] != n/len(to) {
			t.Errorf("%s has %d, want %d", name, got[name], n/len(to))
		}
	}
	if l := debits.Len(s.Latest()); l != 0 {
		t.Errorf("%d debits left open", l)
	}
}
