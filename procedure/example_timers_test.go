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

// A procedure sleeps (Sleep for a duration, SleepUntil for a time) on the
// engine's clock, without a worker, and its wake time is stored with its
// step so that a restart keeps it. Here the clock is a ManualClock moved
// by hand, so the example does not wait: WaitFor shows the procedure
// suspended until its wake time, and it runs once the clock reaches it.
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
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	id, _ := remind.Submit(ctx, "renew the certificate", procedure.SubmitOptions{})
	in, _ := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
	fmt.Println(in.Status, "until", in.WakeAt.UTC().Format(time.Kitchen))
	clock.Advance(59 * time.Minute)
	in, _ = e.Get(id)
	fmt.Println(clock.Now().Format(time.Kitchen), in.Status)
	clock.Advance(time.Minute)
	note, err := remind.Result(e.Wait(ctx, id))
	fmt.Println(note, err)
	// Output:
	// suspended until 1:00PM
	// 12:59PM suspended
	// renew the certificate (reminded) <nil>
}
