package server_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/server"
)

// Greeting is the data of a greet procedure; its final value is the
// result.
type Greeting struct {
	Name    string `json:"name"`
	Message string `json:"message,omitempty"`
}

// Mount a server over an engine, let operators submit a type with JSON
// arguments, and drive it with the Go client (the CLI's verbs do the
// same). A real program serves it with http.ListenAndServe on loopback,
// or with tokens (CheckListen says which).
func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	store := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: quiet})
	e := procedure.New(store, procedure.Options{Logger: quiet})
	greet := procedure.Register(e, "greet", procedure.StateMachineFuncs[int, Greeting]{
		Exec: func(ctx context.Context, env *procedure.Env, _ int, g *Greeting) (procedure.Next, error) {
			g.Message = "hello, " + g.Name
			return procedure.Done(), nil
		},
	}, nil)
	if err := e.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()

	opts := server.Options{
		Engine: e,
		Types:  []server.SubmitType{server.JSONType(greet)},
		Tokens: []server.Token{{Name: "ops", Secret: "a-long-random-secret", Role: server.Operate}},
		Logger: quiet,
	}
	srv, err := server.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv) // or: http.ListenAndServe("127.0.0.1:7070", srv)
	defer hs.Close()

	c := &server.Client{Endpoint: hs.URL, Token: "a-long-random-secret"}
	id, err := c.Submit(ctx, server.SubmitRequest{Type: "greet", Args: []byte(`{"name":"ann"}`), Nonce: "greet-ann"})
	if err != nil {
		log.Fatal(err)
	}
	w, err := c.Wait(ctx, id, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	d, _ := c.Get(ctx, id)
	fmt.Println(w.Done, w.Procedure.Status, w.Procedure.Submitter, string(d.Result))
	_, err = c.Abort(ctx, id, "too late")
	fmt.Println(err)
	// Output:
	// true succeeded ops {"name":"ann","message":"hello, ann"}
	// conflict (409 Conflict): procedure: already finished: procedure 1
}
