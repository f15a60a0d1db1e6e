package procedure

import (
	"context"
	"fmt"
	"reflect"
	"strings"
)

// The optional capabilities of a StateMachine[S, D]: Register looks for
// each on the value registered. Assert the ones a type means to have at
// compile time:
//
//	var _ procedure.Locker[State, Data] = (*createTable)(nil)

// Initialer names the first state of a procedure (default: the zero S).
type Initialer[S State] interface {
	Initial() S
}

// NoReturner marks the states past the point of no return: once a
// procedure of a tree is runnable at (or has executed) such a state, Abort
// is refused and a failing step of the tree is retried instead of rolled
// back: nothing before that point is ever undone. A procedure that
// spawned children and continues at a NoReturn state gets there only when
// its children have all succeeded.
type NoReturner[S State] interface {
	NoReturn(state S) bool
}

// AfterReplayer rebuilds a procedure's transient (in-memory) state after a
// restart; AfterReplay runs once for each live procedure of the type,
// before anything runs. A panic quarantines its tree.
type AfterReplayer[S State, D any] interface {
	AfterReplay(id ID, state S, data *D)
}

// Locker returns the locks a procedure needs to run state (ExclusiveLock,
// SharedLock): the engine takes them all before the step runs, or none
// and parks the procedure without a worker until it can (see Lock). A
// Rollback step of the state takes them too. See TypeOptions.HoldLocks to
// keep them across steps.
type Locker[S State, D any] interface {
	Locks(state S, data *D) []Lock
}

// TimeoutHandler handles a procedure's timeout: OnTimeout runs, as a step
// in place of Execute, when the procedure's timeout (TypeOptions.Timeout,
// SubmitOptions.Timeout) or the one its last step set (Env.SetTimeout)
// passes (Env.StepTimedOut tells which). Without it a timeout fails the
// procedure and rolls its tree back (ErrTimeout).
type TimeoutHandler[S State, D any] interface {
	OnTimeout(ctx context.Context, env *Env, state S, data *D) (Next, error)
}

// capability is one optional method: its name, and the interface a state
// machine must implement for the engine to use it.
type capability struct {
	method string
	iface  string
	has    bool
}

// checkCapabilities panics if sm has a method named as a capability
// without implementing the capability's interface (a wrong signature, or
// a pointer method on a value registered): the engine would silently
// ignore it.
func checkCapabilities[S State, D any](name string, sm StateMachine[S, D]) {
	caps := []capability{
		{"Initial", "Initialer[S]: Initial() S", implements[Initialer[S]](sm)},
		{"NoReturn", "NoReturner[S]: NoReturn(S) bool", implements[NoReturner[S]](sm)},
		{"AfterReplay", "AfterReplayer[S, D]: AfterReplay(ID, S, *D)", implements[AfterReplayer[S, D]](sm)},
		{"Locks", "Locker[S, D]: Locks(S, *D) []Lock", implements[Locker[S, D]](sm)},
		{"OnTimeout", "TimeoutHandler[S, D]: OnTimeout(context.Context, *Env, S, *D) (Next, error)", implements[TimeoutHandler[S, D]](sm)},
	}
	t := reflect.TypeOf(sm)
	if t == nil {
		panic(fmt.Sprintf("procedure: Register %q: nil state machine", name))
	}
	for _, c := range caps {
		if c.has {
			continue
		}
		if m, ok := t.MethodByName(c.method); ok {
			panic(fmt.Sprintf("procedure: Register %q: %v has %s%s, which the engine would ignore: it is not procedure.%s (S = %v, D = %v)",
				name, t, c.method, signature(m.Type), c.iface, reflect.TypeFor[S](), reflect.TypeFor[D]()))
		}
		if t.Kind() != reflect.Pointer {
			if _, ok := reflect.PointerTo(t).MethodByName(c.method); ok {
				panic(fmt.Sprintf("procedure: Register %q: %s is a method of *%v, and a %v was registered: register a pointer", name, c.method, t, t))
			}
		}
	}
}

func implements[I any](sm any) bool {
	_, ok := sm.(I)
	return ok
}

// signature formats a method's type without its receiver.
func signature(m reflect.Type) string {
	var in, out []string
	for i := 1; i < m.NumIn(); i++ {
		in = append(in, m.In(i).String())
	}
	for i := range m.NumOut() {
		out = append(out, m.Out(i).String())
	}
	s := "(" + strings.Join(in, ", ") + ")"
	switch len(out) {
	case 0:
		return s
	case 1:
		return s + " " + out[0]
	}
	return s + " (" + strings.Join(out, ", ") + ")"
}
