package barrier_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

// flush is a member's part of a "flush" procedure: block writes to the
// table, flush it, let writes go.
type flush struct {
	server, table string
	fail          error // makes Acquire fail, for the abort example
}

func (f *flush) Acquire(ctx context.Context) error {
	// Block writes to f.table here; undo that if anything else fails.
	return f.fail
}

func (f *flush) Inside(ctx context.Context) ([]byte, error) {
	// Every server holds its writes: flush, then let writes go.
	return []byte(fmt.Sprintf("%s flushed %s", f.server, f.table)), nil
}

func (f *flush) Cleanup(err error) {
	// The procedure failed after Acquire: let writes go, discard the flush.
}

// startServers runs one member per name on t until ctx ends; failing
// names fail their Acquire.
func startServers(ctx context.Context, t barrier.Transport, names []string, failing string) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, name := range names {
		m := barrier.NewMember(t, name, barrier.MemberOptions{Timeout: 30 * time.Second})
		m.Register("flush", func(proc string, args []byte) (barrier.Subprocedure, error) {
			f := &flush{server: name, table: string(args)}
			if name == failing {
				f.fail = errors.New("region server is closing")
			}
			return f, nil
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Run(ctx)
		}()
	}
	return &wg
}

// Example runs a procedure across three members on the in-process
// transport and collects their results.
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	t := barrier.NewInProc()
	servers := []string{"rs1", "rs2", "rs3"}
	running := startServers(ctx, t, servers, "")
	c := barrier.NewCoordinator(t, barrier.CoordinatorOptions{Timeout: 30 * time.Second})
	defer func() {
		c.Close()
		stop()
		running.Wait()
	}()

	h, err := c.Start(ctx, "flush-orders-1", "flush", []byte("orders"), servers)
	if err != nil {
		fmt.Println(err)
		return
	}
	results, err := h.Wait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, server := range slices.Sorted(maps.Keys(results)) {
		fmt.Printf("%s: %s\n", server, results[server])
	}
	st := h.Stats()
	fmt.Println("phases:", st.Finished, st.Err, len(st.Members))
	// Output:
	// rs1: rs1 flushed orders
	// rs2: rs2 flushed orders
	// rs3: rs3 flushed orders
	// phases: true <nil> 3
}

// ExampleAbortError shows the first error reaching the coordinator with
// its source: a member failed to acquire its piece of the barrier.
func ExampleAbortError() {
	ctx, stop := context.WithCancel(context.Background())
	t := barrier.NewInProc()
	servers := []string{"rs1", "rs2", "rs3"}
	running := startServers(ctx, t, servers, "rs2")
	c := barrier.NewCoordinator(t, barrier.CoordinatorOptions{Timeout: 30 * time.Second})
	defer func() {
		c.Close()
		stop()
		running.Wait()
	}()

	h, err := c.Start(ctx, "flush-orders-2", "flush", []byte("orders"), servers)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = h.Wait(ctx)
	var ae *barrier.AbortError
	if errors.As(err, &ae) {
		fmt.Println("source:", ae.Source)
		fmt.Println("kind:", ae.Kind)
		fmt.Println("message:", ae.Message)
		fmt.Println("member failure:", errors.Is(err, barrier.ErrMemberFailed))
	}
	// Output:
	// source: rs2
	// kind: failed
	// message: member rs2: acquire: region server is closing
	// member failure: true
}

// ExampleHandle_Cancel aborts a procedure from the coordinator; the
// members that acquired clean up with the coordinator's reason.
func ExampleHandle_Cancel() {
	ctx, stop := context.WithCancel(context.Background())
	t := barrier.NewInProc()
	// No member runs, so the procedure waits in its acquire phase.
	c := barrier.NewCoordinator(t, barrier.CoordinatorOptions{Timeout: 30 * time.Second})
	defer func() {
		c.Close()
		stop()
	}()

	h, err := c.Start(ctx, "snapshot-1", "snapshot", nil, []string{"rs1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	h.Cancel("operator request")
	_, err = h.Wait(ctx)
	fmt.Println(err)
	fmt.Println(errors.Is(err, barrier.ErrCanceled))
	// Output:
	// barrier: aborted by coordinator (canceled): operator request
	// true
}
