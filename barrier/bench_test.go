package barrier_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/barrier"
)

type noopSub struct{}

func (noopSub) Acquire(context.Context) error          { return nil }
func (noopSub) Inside(context.Context) ([]byte, error) { return nil, nil }
func (noopSub) Cleanup(error)                          {}

// BenchmarkRoundTrip measures one procedure from Start to Wait's return,
// with members whose subprocedures do nothing, on both transports. The etcd
// server is the tests' embedded one (no fsync); "procyon bench barrier"
// measures with fsync.
func BenchmarkRoundTrip(b *testing.B) {
	for _, transport := range []string{"inproc", "etcd"} {
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/members=%d", transport, n), func(b *testing.B) {
				var e env = &inprocEnv{tr: barrier.NewInProc()}
				if transport == "etcd" {
					e = newEtcdEnv(b)
				}
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				members := names("m", n)
				for _, name := range members {
					m := barrier.NewMember(e.transport(b), name, barrier.MemberOptions{})
					m.Register("noop", func(string, []byte) (barrier.Subprocedure, error) { return noopSub{}, nil })
					wg.Add(1)
					go func() {
						defer wg.Done()
						m.Run(ctx)
					}()
				}
				c := barrier.NewCoordinator(e.transport(b), barrier.CoordinatorOptions{})
				defer func() {
					c.Close()
					cancel()
					wg.Wait()
				}()
				i := 0
				for b.Loop() {
					h, err := c.Start(ctx, fmt.Sprintf("b%d", i), "noop", nil, members)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := h.Wait(ctx); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}
