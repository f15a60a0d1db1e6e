package remote

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// e2e is a master (engine + dispatcher) and real Nodes on the Local
// transport, on the system clock with a short lease.
type e2e struct {
	t    *testing.T
	tr   *Local
	e    *procedure.Engine
	d    *Dispatcher
	typ  *procedure.Type[int, echoData]
	runs atomic.Int64 // handler runs
	hold chan struct{}
}

func newE2E(t *testing.T, opts Options) *e2e {
	quiet := slog.New(slog.DiscardHandler)
	w := &e2e{t: t, tr: NewLocal(), hold: make(chan struct{})}
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: quiet})
	w.e = procedure.New(s, procedure.Options{Logger: quiet, SweepInterval: -1})
	opts.Logger = quiet
	w.d = NewDispatcher(w.e, w.tr, opts)
	w.typ = procedure.Register[int, echoData](w.e, "echo", echoSM{w.d}, nil)
	ctx := context.Background()
	if err := w.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w.tr.ServeMaster("master", w.d.Service())
	t.Cleanup(func() {
		w.d.Stop()
		w.e.Stop()
	})
	return w
}

// node starts a node whose echo handler waits for w.hold when block is
// set.
func (w *e2e) node(name string, block bool) *Node {
	n, err := NewNode(NodeOptions{Name: name, Addr: name, Master: "master", Transport: w.tr, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		w.t.Fatal(err)
	}
	Handle(n, echoBench, func(ctx context.Context, req []byte) ([]byte, error) {
		w.runs.Add(1)
		if block {
			select {
			case <-w.hold:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return req, nil
	})
	w.tr.ServeNode(name, n.Service())
	if err := n.Start(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { n.Stop() })
	return n
}

func (w *e2e) result(id procedure.ID) error {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := w.e.Wait(ctx, id)
	if err != nil {
		w.t.Fatalf("procedure %d: %v", id, err)
	}
	return r.Err()
}

// A node killed with an operation running: the operation fails with
// ErrNodeDied once the lease expires (the procedure set no timeout).
func TestE2ENodeKilledFailsItsOps(t *testing.T) {
	w := newE2E(t, Options{Lease: 300 * time.Millisecond})
	w.node("n1", true)
	id, err := w.typ.Submit(context.Background(), echoData{Node: "n1"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the operation runs on the node", func() bool { return w.runs.Load() == 1 })
	w.tr.SetFault("master", Fault{Drop: true}) // the node goes silent: nothing it sends arrives
	w.tr.SetFault("n1", Fault{Drop: true})
	// The step after Await returned Outcome's error, which rolled the
	// procedure back with its message (the result keeps messages, not
	// error values).
	if err := w.result(id); err == nil || !strings.Contains(err.Error(), ErrNodeDied.Error()) {
		t.Fatalf("procedure ended with %v, want %v", err, ErrNodeDied)
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || nodes[0].Live {
		t.Fatalf("nodes %+v, want n1 dead", nodes)
	}
}

// A node that never answers (its requests hang): each request ends at
// RequestTimeout and is resent with backoff while the node lives (its
// heartbeats go on), the procedure waits, and once the node answers again
// the operation runs once and the procedure finishes.
func TestE2ESlowNodeNeverAnswers(t *testing.T) {
	w := newE2E(t, Options{Lease: time.Second, RequestTimeout: 50 * time.Millisecond,
		Retry: procedure.RetryPolicy{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, Jitter: -1}})
	w.node("n1", false)
	w.tr.SetFault("n1", Fault{Block: true})
	id, err := w.typ.Submit(context.Background(), echoData{Node: "n1"}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three timed-out requests", func() bool {
		for _, s := range w.d.Stats() {
			if s.Node == "n1" && s.Failures >= 3 {
				return true
			}
		}
		return false
	})
	if in, err := w.e.Get(id); err != nil || in.Status != procedure.Suspended {
		t.Fatalf("procedure %+v (%v), want it waiting", in, err)
	}
	if nodes := w.d.Nodes(); len(nodes) != 1 || !nodes[0].Live {
		t.Fatalf("nodes %+v: a slow node with heartbeats is not dead", nodes)
	}
	if w.runs.Load() != 0 {
		t.Fatalf("the operation ran %d times through a hung transport", w.runs.Load())
	}
	w.tr.SetFault("n1", Fault{})
	if err := w.result(id); err != nil {
		t.Fatalf("procedure: %v", err)
	}
	if n := w.runs.Load(); n != 1 {
		t.Fatalf("the operation ran %d times, want once", n)
	}
}
