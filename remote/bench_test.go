package remote

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// echoBench is the benchmark's operation: the node answers the payload.
var echoBench = OpType[[]byte, []byte]{Name: "echo"}

type echoData struct {
	Node string `json:"n"`
	Op   OpID   `json:"o,omitempty"`
}

type echoSM struct{ d *Dispatcher }

func (sm echoSM) Execute(ctx context.Context, env *procedure.Env, s int, d *echoData) (procedure.Next, error) {
	if s == 0 {
		op, err := echoBench.Call(sm.d, env, d.Node, make([]byte, 64))
		if err != nil {
			return procedure.Next{}, err
		}
		d.Op = op
		return Await(1, op), nil
	}
	if _, err := echoBench.Outcome(sm.d, env, d.Op); err != nil {
		return procedure.Next{}, err
	}
	return procedure.Done(), nil
}

func (echoSM) Rollback(context.Context, *procedure.Env, int, *echoData) error { return nil }

// BenchmarkDispatch is the CPU cost of one remote operation through the
// whole stack in one process, without a disk or a network: a procedure
// that calls, the record committed, the batch sent on the Local transport
// to one of three Nodes, the outcome reported and committed with the
// wake-up, and the step that reads it (the engine on MemPersistence).
// With 1 procedure in flight (latency) and 256 (throughput).
func BenchmarkDispatch(b *testing.B) {
	for _, c := range []int{1, 256} {
		b.Run(fmt.Sprintf("inflight=%d", c), func(b *testing.B) { benchDispatch(b, c) })
	}
}

func benchDispatch(b *testing.B, inflight int) {
	quiet := slog.New(slog.DiscardHandler)
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: quiet})
	e := procedure.New(s, procedure.Options{Logger: quiet, SweepInterval: -1})
	tr := NewLocal()
	d := NewDispatcher(e, tr, Options{Logger: quiet})
	typ := procedure.Register[int, echoData](e, "echo", echoSM{d}, nil)
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer e.Stop()
	if err := d.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer d.Stop()
	tr.ServeMaster("master", d.Service())
	names := []string{"n1", "n2", "n3"}
	for _, name := range names {
		n, err := NewNode(NodeOptions{Name: name, Addr: name, Master: "master", Transport: tr, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		Handle(n, echoBench, func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })
		tr.ServeNode(name, n.Service())
		if err := n.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer n.Stop()
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		live := 0
		for _, n := range d.Nodes() {
			if n.Live {
				live++
			}
		}
		if live == len(names) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d nodes live", live)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	for g := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				id, err := typ.Submit(ctx, echoData{Node: names[(g+int(i))%len(names)]}, procedure.SubmitOptions{})
				if err == nil {
					var r procedure.Result
					if r, err = e.Wait(ctx, id); err == nil {
						err = r.Err()
					}
				}
				if err != nil {
					errs <- fmt.Errorf("op %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, st := range d.Stats() {
		b.Logf("%s: %d ops in %d batches, rtt p50 %v p99 %v", st.Node, st.OpsSent, st.Batches, st.RTT.Quantile(0.5), st.RTT.Quantile(0.99))
	}
}
