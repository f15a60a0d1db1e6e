package procedure

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/durable"
)

type capState int

type capData struct{ Table string }

// capable has every optional capability, asserted at compile time as a
// user would.
type capable struct{ base }

var (
	_ Initialer[capState]               = (*capable)(nil)
	_ NoReturner[capState]              = (*capable)(nil)
	_ AfterReplayer[capState, capData]  = (*capable)(nil)
	_ Locker[capState, capData]         = (*capable)(nil)
	_ TimeoutHandler[capState, capData] = (*capable)(nil)
)

func (*capable) Initial() capState                         { return 7 }
func (*capable) NoReturn(s capState) bool                  { return s == 9 }
func (*capable) AfterReplay(id ID, s capState, d *capData) {}
func (*capable) Locks(s capState, d *capData) []Lock {
	return []Lock{ExclusiveLock("table/" + d.Table)}
}
func (*capable) OnTimeout(ctx context.Context, env *Env, s capState, d *capData) (Next, error) {
	return Done(), nil
}

// base is a state machine with no optional capability.
type base struct{}

func (base) Execute(ctx context.Context, env *Env, s capState, d *capData) (Next, error) {
	return Done(), nil
}
func (base) Rollback(ctx context.Context, env *Env, s capState, d *capData) error { return nil }

func newCapEngine() *Engine {
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	return New(s, Options{Logger: slog.New(slog.DiscardHandler)})
}

// What Register wires is exactly what the named interfaces declare: a type
// implementing them gets each hook, one implementing none gets none.
func TestCapabilitiesAreTheNamedInterfaces(t *testing.T) {
	e := newCapEngine()
	full := Register[capState, capData](e, "full", &capable{}, nil).info
	if full.initial != 7 {
		t.Errorf("initial state %d, want Initial's 7", full.initial)
	}
	if full.noReturn == nil || !full.noReturn(9) || full.noReturn(8) {
		t.Errorf("NoReturn not wired")
	}
	if full.afterReplay == nil || full.onTimeout == nil {
		t.Errorf("AfterReplay or OnTimeout not wired")
	}
	if full.locks == nil {
		t.Fatalf("Locks not wired")
	}
	if ls := full.locks(1, &capData{Table: "t1"}); len(ls) != 1 || ls[0] != ExclusiveLock("table/t1") {
		t.Errorf("locks %v", ls)
	}
	none := Register[capState, capData](e, "none", base{}, nil).info
	if none.initial != 0 || none.noReturn != nil || none.afterReplay != nil || none.locks != nil || none.onTimeout != nil {
		t.Errorf("a type without capabilities got some: %+v", none)
	}
}

type wrongInitial struct{ base }

func (wrongInitial) Initial() int { return 1 }

type wrongNoReturn struct{ base }

func (wrongNoReturn) NoReturn(s int) bool { return false }

type wrongAfterReplay struct{ base }

func (wrongAfterReplay) AfterReplay(id ID, s capState, d capData) {}

type wrongLocks struct{ base }

func (wrongLocks) Locks(s capState, d *capData) []string { return nil }

type wrongOnTimeout struct{ base }

func (wrongOnTimeout) OnTimeout(ctx context.Context, env *Env, s capState, d *capData) error {
	return nil
}

type pointerLocks struct{ base }

func (*pointerLocks) Locks(s capState, d *capData) []Lock { return nil }

// A method named as a capability with another signature would be ignored
// silently: Register refuses it, naming the method and what it should be.
func TestRegisterRefusesAWrongCapability(t *testing.T) {
	for _, c := range []struct {
		sm   StateMachine[capState, capData]
		want []string
	}{
		{wrongInitial{}, []string{"Initial() int", "Initialer[S]"}},
		{wrongNoReturn{}, []string{"NoReturn(int) bool", "NoReturner[S]"}},
		{wrongAfterReplay{}, []string{"AfterReplay(procedure.ID, procedure.capState, procedure.capData)", "AfterReplayer[S, D]"}},
		{wrongLocks{}, []string{"Locks(procedure.capState, *procedure.capData) []string", "Locker[S, D]"}},
		{wrongOnTimeout{}, []string{"OnTimeout(context.Context, *procedure.Env, procedure.capState, *procedure.capData) error", "TimeoutHandler[S, D]"}},
		{pointerLocks{}, []string{"Locks is a method of *procedure.pointerLocks", "register a pointer"}},
	} {
		e := newCapEngine()
		msg := func() (msg string) {
			defer func() {
				if r := recover(); r != nil {
					msg, _ = r.(string)
				}
			}()
			Register(e, "t", c.sm, nil)
			return ""
		}()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%T: panic %q, want it to say %q", c.sm, msg, w)
			}
		}
		if len(e.types) != 0 {
			t.Errorf("%T: registered although refused", c.sm)
		}
	}
	// The same method with the right signature registers.
	Register(newCapEngine(), "t", &pointerLocks{}, nil)
}
