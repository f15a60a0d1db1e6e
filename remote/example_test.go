package remote_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

// shout is an operation a node runs: it upper-cases a word.
var shout = remote.OpType[string, string]{Name: "shout"}

// Greeting calls shout on node "n1", waits for its outcome without
// holding a worker, and keeps the result.
type Greeting struct {
	Word   string      `json:"word"`
	Op     remote.OpID `json:"op,omitempty"`
	Result string      `json:"result,omitempty"`
}

type greetSM struct{ d *remote.Dispatcher }

func (sm greetSM) Execute(ctx context.Context, env *procedure.Env, s int, g *Greeting) (procedure.Next, error) {
	switch s {
	case 0: // ask: the op is recorded with this step and sent once it is durable
		op, err := shout.Call(sm.d, env, "n1", g.Word)
		if err != nil {
			return procedure.Next{}, err
		}
		g.Op = op
		return remote.Await(1, op), nil
	default: // the outcome was committed with this procedure's wake-up
		res, err := shout.Outcome(sm.d, env, g.Op)
		if err != nil {
			return procedure.Next{}, err // *remote.OpError: ErrNodeDied, ErrRefused or ErrFailed
		}
		g.Result = res
		return procedure.Done(), nil
	}
}

func (greetSM) Rollback(context.Context, *procedure.Env, int, *Greeting) error { return nil }

// A master (engine + dispatcher) and a node in one process, on the Local
// transport; between processes, use remote.HTTP and serve
// remote.MasterHandler and remote.NodeHandler.
func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	tr := remote.NewLocal()

	// The master.
	store := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: quiet})
	eng := procedure.New(store, procedure.Options{Logger: quiet})
	d := remote.NewDispatcher(eng, tr, remote.Options{Logger: quiet})
	greet := procedure.Register[int, Greeting](eng, "greet", greetSM{d}, nil)
	if err := eng.Start(ctx); err != nil {
		panic(err)
	}
	defer eng.Stop()
	if err := d.Start(ctx); err != nil {
		panic(err)
	}
	defer d.Stop()
	tr.ServeMaster("master", d.Service())

	// A node.
	n, err := remote.NewNode(remote.NodeOptions{Name: "n1", Addr: "n1", Master: "master", Transport: tr, Logger: quiet})
	if err != nil {
		panic(err)
	}
	remote.Handle(n, shout, func(ctx context.Context, word string) (string, error) {
		return strings.ToUpper(word) + "!", nil
	})
	tr.ServeNode("n1", n.Service())
	if err := n.Start(ctx); err != nil { // registers with the master
		panic(err)
	}
	defer n.Stop()

	id, err := greet.Submit(ctx, Greeting{Word: "hello"}, procedure.SubmitOptions{})
	if err != nil {
		panic(err)
	}
	g, err := greet.Result(eng.Wait(ctx, id))
	if err != nil {
		panic(err)
	}
	fmt.Println(g.Result)
	// Output: HELLO!
}
