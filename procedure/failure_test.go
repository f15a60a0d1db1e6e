package procedure

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// smallRecords is a persistence that takes records of at most 4 KiB.
type smallRecords struct{ *durable.MemPersistence }

func (smallRecords) MaxRecordSize() int { return 4 << 10 }

type failureWorld struct {
	s   *durable.Store
	e   *Engine
	mp  *durable.MemPersistence
	kv  *durable.Collection[string, string]
	big *Type[int, script]
}

func newFailureWorld(t *testing.T) *failureWorld {
	w := &failureWorld{mp: durable.NewMemPersistence()}
	w.s = durable.New(durable.Options{Persistence: smallRecords{w.mp}, Logger: quiet()})
	w.e = New(w.s, Options{Logger: quiet(), Workers: 4})
	w.kv = durable.NewCollection[string, string](w.s, "kv", nil)
	w.big = Register[int, script](w.e, "big", StateMachineFuncs[int, script]{
		Exec: func(ctx context.Context, env *Env, s int, d *script) (Next, error) {
			val := d.Name
			if s == 1 && d.FailAt == 1 {
				val = strings.Repeat("x", 8<<10) // a step whose commit is too large
			}
			key := fxKey(env, s)
			env.Write(func(tx *durable.Tx) error { return w.kv.Put(tx, key, val) })
			if s+1 >= d.States {
				return Done(), nil
			}
			return GoTo(s + 1), nil
		},
		Undo: func(ctx context.Context, env *Env, s int, d *script) error {
			key := fxKey(env, s)
			env.Write(func(tx *durable.Tx) error { return w.kv.Delete(tx, key) })
			return nil
		},
	}, nil)
	if err := w.s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.e.Stop(); w.s.Close() })
	return w
}

// A step whose commit the log refuses as too large fails (its tree rolls
// back); the steps batched with it commit, and memory stays consistent
// with the store.
func TestTooLargeStepFails(t *testing.T) {
	w := newFailureWorld(t)
	ctx := context.Background()
	var ids []ID
	for i := range 40 {
		s := newScript("p", 3)
		if i%10 == 0 {
			s.FailAt = 1 // marks the too-large step
		}
		id, err := w.big.Submit(ctx, s, SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		r, err := w.e.Wait(wctx, id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if r.Status != RolledBack || !errors.Is(r.Err(), ErrRolledBack) || !strings.Contains(r.Error.Message, "too large") {
				t.Fatalf("%d: %+v", id, r)
			}
		} else if r.Status != Succeeded {
			t.Fatalf("%d: %+v", id, r)
		}
	}
	if n := w.kv.Len(w.s.Latest()); n != 36*3 {
		t.Fatalf("%d metadata keys, want %d", n, 36*3)
	}
	// Wait returns once a result is durable; the engine lets go of the
	// finished trees just after.
	waitFor(t, "finished trees let go", func() bool { return w.e.Stats().Live == 0 })
	if s := w.e.Stats(); s.Quarantined != 0 || s.Live != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// When the store fails, the engine stops and says why; waiters get the
// error instead of hanging.
func TestStoreFailureStopsEngine(t *testing.T) {
	w := newFailureWorld(t)
	ctx := context.Background()
	w.mp.Fail(errors.New("disk on fire"))
	_, err := w.big.Submit(ctx, newScript("p", 3), SubmitOptions{})
	if !errors.Is(err, durable.ErrFailed) {
		t.Fatalf("submit on a failed store: %v", err)
	}
	if err := w.e.Err(); !errors.Is(err, ErrEngineFailed) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("engine error %v", err)
	}
	if _, err := w.big.Submit(ctx, newScript("q", 3), SubmitOptions{}); !errors.Is(err, ErrEngineFailed) {
		t.Fatalf("submit on a failed engine: %v", err)
	}
}
