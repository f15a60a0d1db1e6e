// Command hello runs one two-step procedure on a store in ./hello-data:
// run it twice and the second run finds the first one's result by its nonce.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

type Deploy struct{ Service, Version string }

type DeployState int

const (
	Drain DeployState = iota
	Upgrade
)

// deploy drains a service, then upgrades it; a failure in Upgrade rolls Drain back.
type deploy struct {
	versions *durable.Collection[string, string]
}

func (d deploy) Execute(ctx context.Context, env *procedure.Env, s DeployState, p *Deploy) (procedure.Next, error) {
	if s == Drain {
		return procedure.GoTo(Upgrade), nil // … drain the service's instances
	}
	env.Write(func(tx *durable.Tx) error { return d.versions.Put(tx, p.Service, p.Version) })
	return procedure.Done(), nil
}

func (d deploy) Rollback(ctx context.Context, env *procedure.Env, s DeployState, p *Deploy) error {
	return nil // … put the drained instances back in service
}

func main() {
	ctx := context.Background()
	store := durable.New(durable.Options{Dir: "hello-data"})
	d := deploy{durable.NewCollection[string, string](store, "versions", nil)}
	e := procedure.New(store, procedure.Options{})
	deploys := procedure.Register[DeployState, Deploy](e, "deploy", d, nil)
	if err := e.Start(ctx); err != nil { // opens the store, recovers, resumes what was running
		log.Fatal(err)
	}
	defer e.Stop() // stops the engine, closes the store

	id, err := deploys.Submit(ctx, Deploy{"web", "v42"}, procedure.SubmitOptions{Nonce: "web-v42"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := deploys.Result(e.Wait(ctx, id))
	v, _, _ := d.versions.Get(store.Latest(), "web")
	fmt.Printf("procedure %d: %+v, err %v; web runs %s\n", id, res, err, v)
}
