package procedure

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// liveSM is a one-step type whose step waits for its context: procedures
// stay live until the engine stops, and again after each restart.
type liveSM struct{}

func (liveSM) Execute(ctx context.Context, env *Env, st int, d *uint64) (Next, error) {
	<-ctx.Done()
	return Done(), nil
}

func (liveSM) Rollback(ctx context.Context, env *Env, st int, d *uint64) error { return nil }

// liveEngine makes an engine with liveSM registered, on a store in dir.
func liveEngine(dir string) (*durable.Store, *Engine, *Type[int, uint64]) {
	quiet := slog.New(slog.DiscardHandler)
	s := durable.New(durable.Options{Dir: dir, Logger: quiet})
	e := New(s, Options{Logger: quiet, Workers: 8})
	return s, e, Register[int, uint64](e, "live", liveSM{}, nil)
}

// BenchmarkLoad times a restart with live procedures on disk: the store's
// open (snapshot read) and the engine's load (Start), reported per
// restart as open-ms and load-ms. One op is one restart. The 1M case is
// skipped with -short.
//
//	go test ./procedure -run '^$' -bench 'Load/live=100000$' -benchtime 5x
func BenchmarkLoad(b *testing.B) {
	for _, live := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			if testing.Short() && live > 100_000 {
				b.Skip("-short")
			}
			dir := b.TempDir()
			buildLive(b, dir, live)
			ctx := context.Background()
			var open, load time.Duration
			b.ResetTimer()
			for range b.N {
				s, e, _ := liveEngine(dir)
				t0 := time.Now()
				if err := s.Open(ctx); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := e.Start(ctx); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				open, load = open+t1.Sub(t0), load+t2.Sub(t1)
				if got := e.Stats().Recovered; got != live {
					b.Fatalf("recovered %d procedures, want %d", got, live)
				}
				e.Stop()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "open-ms")
			b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-ms")
		})
	}
}

// buildLive leaves live procedures in a store in dir, snapshotted, so
// that a restart reads them from the snapshot.
func buildLive(b *testing.B, dir string, live int) {
	ctx := context.Background()
	s, e, typ := liveEngine(dir)
	if err := s.Open(ctx); err != nil {
		b.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	const submitters = 64
	errs := make(chan error, submitters)
	for g := range submitters {
		go func() {
			for i := g; i < live; i += submitters {
				if _, err := typ.Submit(ctx, uint64(i), SubmitOptions{}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range submitters {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	e.Stop()
	if _, err := s.Snapshot(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}
