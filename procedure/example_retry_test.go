package procedure_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// A step that returns a Retryable error runs again after its type's
// RetryPolicy backoff (1 s, then twice the previous delay), on the
// engine's clock: a ManualClock here, so that the backoff passes without
// waiting. Nothing is committed per attempt; the attempts show in Info
// (Retries, LastError) meanwhile, and the clock's next timer is the retry.
func ExampleRetryable() {
	ctx := context.Background()
	clock := procedure.NewManualClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	e := procedure.New(s, procedure.Options{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	attempts := 0
	call := procedure.Register(e, "call-server", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, server *string) ([]procedure.Child, error) {
			if attempts++; attempts < 3 {
				return nil, procedure.Retryable(fmt.Errorf("%s: connection refused", *server))
			}
			return nil, nil
		}, nil),
		&procedure.TypeOptions[string]{Retry: procedure.RetryPolicy{Initial: time.Second, Jitter: -1, Attempts: 5}})
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	id, _ := call.Submit(ctx, "rs-3", procedure.SubmitOptions{})
	for retry := 1; retry <= 2; retry++ {
		in, _ := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Retries == retry })
		at, _ := clock.Next()
		fmt.Printf("retry %d after %v: %s\n", in.Retries, at.Sub(clock.Now()), in.LastError)
		clock.Set(at)
	}
	_, err := call.Result(e.Wait(ctx, id))
	fmt.Println(attempts, "attempts:", err)
	// Output:
	// retry 1 after 1s: rs-3: connection refused
	// retry 2 after 2s: rs-3: connection refused
	// 3 attempts: <nil>
}
