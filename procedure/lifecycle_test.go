package procedure_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// lifecycleWorld is an engine with one type that writes a key, on store
// s, neither open.
type lifecycleWorld struct {
	s    *durable.Store
	e    *procedure.Engine
	keys *durable.Collection[string, int]
	put  *procedure.Type[procedure.SeqState, string]
}

func newLifecycleWorld(opts durable.Options) *lifecycleWorld {
	opts.Logger = slog.New(slog.DiscardHandler)
	w := &lifecycleWorld{s: durable.New(opts)}
	w.keys = durable.NewCollection[string, int](w.s, "keys", nil)
	w.e = procedure.New(w.s, procedure.Options{Logger: opts.Logger})
	w.put = procedure.Register(w.e, "put", procedure.Sequential(
		func(ctx context.Context, env *procedure.Env, key *string) ([]procedure.Child, error) {
			k := *key
			env.Write(func(tx *durable.Tx) error { return w.keys.Put(tx, k, 1) })
			return nil, nil
		}, nil), nil)
	return w
}

// runOne submits one procedure and waits for its result.
func (w *lifecycleWorld) runOne(t *testing.T, ctx context.Context, key string) {
	t.Helper()
	id, err := w.put.Submit(ctx, key, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := w.e.Wait(ctx, id); err != nil || res.Err() != nil {
		t.Fatalf("wait: %+v %v", res, err)
	}
}

// storeWrite writes a key directly to the store.
func (w *lifecycleWorld) storeWrite(ctx context.Context) error {
	return w.s.Write(ctx, func(tx *durable.Tx) error { return w.keys.Put(tx, "direct", 1) })
}

// Start opens a store the program did not open; Stop then closes it.
func TestStartOpensStoreStopClosesIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := newLifecycleWorld(durable.Options{Persistence: durable.NewMemPersistence()})
	if err := w.e.Ready(); !errors.Is(err, procedure.ErrNotStarted) {
		t.Fatalf("Ready before Start: %v, want ErrNotStarted", err)
	}
	if err := w.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.e.Ready(); err != nil {
		t.Fatalf("Ready after Start: %v", err)
	}
	w.runOne(t, ctx, "a")
	if err := w.storeWrite(ctx); err != nil {
		t.Fatalf("store not open after Start: %v", err)
	}
	if err := w.e.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := w.e.Ready(); !errors.Is(err, procedure.ErrNotStarted) {
		t.Fatalf("Ready after Stop: %v, want ErrNotStarted", err)
	}
	if err := w.storeWrite(ctx); !errors.Is(err, durable.ErrClosed) {
		t.Fatalf("write after Stop: %v, want ErrClosed", err)
	}
	if err := w.e.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// A store the program opened stays open after Stop, for the program to
// close.
func TestStopLeavesProgramsStoreOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := newLifecycleWorld(durable.Options{Persistence: durable.NewMemPersistence()})
	if err := w.s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w.runOne(t, ctx, "a")
	if err := w.e.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := w.storeWrite(ctx); err != nil {
		t.Fatalf("write after Stop: %v, want the store still open", err)
	}
	if err := w.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// A Start whose store cannot open returns the store's error and leaves
// nothing running: no engine to submit to or stop, no store open.
func TestStartStoreOpenFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fs := vfs.NewMem()
	if err := fs.MkdirAll("data"); err != nil {
		t.Fatal(err)
	}
	if err := fs.WriteFile("data/notes.txt", []byte("not a store")); err != nil {
		t.Fatal(err)
	}
	w := newLifecycleWorld(durable.Options{Dir: "data", FS: fs})
	if err := w.e.Start(ctx); !errors.Is(err, durable.ErrNotStore) {
		t.Fatalf("Start: %v, want ErrNotStore", err)
	}
	if _, err := w.put.Submit(ctx, "a", procedure.SubmitOptions{}); !errors.Is(err, procedure.ErrNotStarted) {
		t.Fatalf("Submit after a failed Start: %v, want ErrNotStarted", err)
	}
	if err := w.storeWrite(ctx); !errors.Is(err, durable.ErrClosed) {
		t.Fatalf("store write after a failed Start: %v, want ErrClosed", err)
	}
	if err := w.e.Start(ctx); err == nil {
		t.Fatal("a second Start succeeded")
	}
	if err := w.e.Stop(); err != nil {
		t.Fatalf("Stop after a failed Start: %v", err)
	}
}

// A Start that opened the store and then fails to load closes the store
// again.
func TestStartLoadFailsClosesStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := durable.NewMemPersistence()
	// The engine's id high-water mark, damaged: load cannot read it.
	s := durable.New(durable.Options{Persistence: p, Logger: slog.New(slog.DiscardHandler)})
	meta := durable.NewCollection[string, []byte](s, "procedure.meta", durable.Bytes())
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(tx *durable.Tx) error { return meta.Put(tx, "next-id", []byte{0xff}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	w := newLifecycleWorld(durable.Options{Persistence: p})
	if err := w.e.Start(ctx); err == nil {
		t.Fatal("Start succeeded on a damaged high-water mark")
	}
	if err := w.storeWrite(ctx); !errors.Is(err, durable.ErrClosed) {
		t.Fatalf("store write after a failed Start: %v, want ErrClosed", err)
	}
	if err := w.e.Stop(); err != nil {
		t.Fatalf("Stop after a failed Start: %v", err)
	}
}
