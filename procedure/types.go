package procedure

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// ID identifies a procedure. Ids are never reused, across restarts too.
type ID uint64

// State is the constraint on a state machine's state type: an integer
// type, usually an enumeration declared with iota. States are stored as
// int64. If the type implements fmt.Stringer, Info and timelines show its
// names.
type State interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32
}

// StateMachine is a procedure type: a state machine over states S with
// user data D (HBase's StateMachineProcedure).
//
// Execute runs one step: the state the procedure is in, with its data. It
// returns what comes next (GoTo, Again, Done, Spawn, Yield) or an error,
// which fails the procedure and rolls back its whole tree. The step's
// metadata writes go through env.Write: they are committed together with
// the procedure's new state and data, in one transaction, after Execute
// returns. A write that depends on what it reads (a balance to debit)
// reads inside its env.Write function, with the collection's Get(tx, ...):
// that read is the transaction's and cannot go stale, and an error it
// returns fails the step. A read outside (in Store.Latest()) sees the
// latest durable state, every earlier step of this procedure included,
// but other procedures may change it before this step commits: use it
// only for what no write depends on.
//
// Rollback undoes one executed state. When a tree rolls back, Rollback is
// called for every state of every procedure of the tree that executed,
// in exactly the reverse order of execution, including the state whose
// Execute failed (it may have done part of its work), except the states
// of children that succeeded and whose type sets
// TypeOptions.KeepSucceeded (their parent compensates). Each Rollback is a
// step too: its env.Write writes commit with the popped state.
//
// Steps are at-least-once: after a crash, the last step whose commit was
// not durable runs again. Both methods must therefore tolerate being
// called again for the same state, and Rollback must tolerate a state
// whose Execute did only part of its work or none.
//
// Execute's ctx ends when the engine stops, and when an operator aborts
// the procedure's tree (context.Cause(ctx) is ErrAborted: the state is
// rolled back with the tree, whatever the step returns) or bypasses the
// procedure (ErrBypassed: the step's outcome is discarded) while the step
// runs: a long step should watch it. Rollback's ctx ends only when the
// engine stops.
//
// Optional capabilities: a state machine may also implement any of these
// interfaces (see each), and should assert at compile time those it means
// to, as in var _ procedure.Locker[S, D] = (*mine)(nil):
//
//	Initialer[S]          Initial() S                                 the first state
//	NoReturner[S]         NoReturn(S) bool                            the point of no return
//	AfterReplayer[S, D]   AfterReplay(ID, S, *D)                      rebuild transient state after a restart
//	Locker[S, D]          Locks(S, *D) []Lock                         the locks a step needs
//	TimeoutHandler[S, D]  OnTimeout(ctx, *Env, S, *D) (Next, error)   handles a timeout
//
// Register panics if the value has a method of one of their names with
// another signature (or a pointer method, and a value was registered):
// the engine would ignore it.
type StateMachine[S State, D any] interface {
	Execute(ctx context.Context, env *Env, state S, data *D) (Next, error)
	Rollback(ctx context.Context, env *Env, state S, data *D) error
}

type nextKind uint8

const (
	nextGoTo nextKind = iota + 1
	nextAgain
	nextDone
	nextYield
	nextSpawn
	nextEvent
	nextSleep
)

// Next says what a step leads to. Make one with GoTo, Again, Done, Yield,
// Spawn, WaitEvent, Sleep or SleepUntil.
type Next struct {
	kind     nextKind
	state    int64
	children []Child
	event    string
	sleep    time.Duration // nextSleep: relative to the step's end, if until is zero
	until    time.Time
}

// GoTo moves the procedure to state s; it runs next.
func GoTo[S State](s S) Next { return Next{kind: nextGoTo, state: int64(s)} }

// Again runs the same state again (for example to poll). Running a state
// again does not add it to the rollback stack a second time: its Rollback
// is called once.
func Again() Next { return Next{kind: nextAgain} }

// Done finishes the procedure successfully. For a root, its data is the
// result Wait returns.
func Done() Next { return Next{kind: nextDone} }

// Yield puts the procedure at the back of the run queue to run the same
// state again later, and persists nothing: the step's env.Write writes are
// dropped and its data is reloaded as last committed.
func Yield() Next { return Next{kind: nextYield} }

// Spawn creates children, committed together with this step, and makes
// the procedure wait: the children run in parallel, and when all have
// succeeded the procedure continues at state next. If one fails, the whole
// tree rolls back. Spawn without children is GoTo(next).
func Spawn[S State](next S, children ...Child) Next {
	return Next{kind: nextSpawn, state: int64(next), children: children}
}

// WaitEvent suspends the procedure until the named event is signalled
// (Engine.Signal, Env.Signal), then it continues at state next. Events
// are level-triggered (HBase's ProcedureEvent): an event stays signalled
// until reset (Engine.ResetEvent), and waiting on a signalled event does
// not suspend. Whether the event is signalled is decided when the step
// commits, in the same transaction, so a signal is never lost between a
// step that decided to wait and its commit. The procedure holds no
// worker while suspended, and is suspended after a restart too.
func WaitEvent[S State](next S, event string) Next {
	return Next{kind: nextEvent, state: int64(next), event: event}
}

// Sleep suspends the procedure for d (measured from the end of the step,
// on the engine's Clock), then it continues at state next. The wake-up
// time is stored with the step: after a restart the procedure wakes at
// the same wall-clock time, not d after the restart, and never before it.
func Sleep[S State](next S, d time.Duration) Next {
	return Next{kind: nextSleep, state: int64(next), sleep: max(d, 0)}
}

// SleepUntil suspends the procedure until t (on the engine's Clock), then
// it continues at state next. See Sleep.
func SleepUntil[S State](next S, t time.Time) Next {
	return Next{kind: nextSleep, state: int64(next), until: t}
}

// Child is a child procedure to create with Spawn; make one with
// Type.Child.
type Child struct {
	t   *typeInfo
	enc []byte
	err error
}

// TypeOptions configure a registered type.
type TypeOptions[D any] struct {
	// Version of the data's encoding, stored with every procedure of the
	// type. Default 1. Data of an older version is passed through Upgrade
	// on load; data of a newer version quarantines the procedure.
	Version uint32
	// Codec encodes the data. Default durable.JSON[D](); any durable.Codec
	// (durable.CodecFunc for protobuf) works.
	Codec durable.Codec[D]
	// Upgrade turns data encoded by an older version from into the
	// current version's encoding. Nil: older data cannot be read (the
	// procedure is quarantined). An error quarantines the procedure.
	Upgrade func(from uint32, data []byte) ([]byte, error)
	// HoldLocks makes procedures of the type keep the locks they take
	// (the type's Locks method) from the first step that needs them until
	// they finish: across steps, while waiting for children, events and
	// timers, and through their tree's rollback (the snapshot procedure
	// does this). The locks are stored with the step that takes them and
	// held again after a restart, before anything runs. Locks is asked
	// once, for the first step for which it returns locks: later states
	// run under those. Children take what their parent holds freely; two
	// holding trees whose children each want a lock the other holds wait
	// for each other for good (as in HBase): a holding procedure's children
	// should lock only below what it holds. Without HoldLocks, a procedure
	// takes its locks for each step and lets them go once the step's
	// commit is durable.
	HoldLocks bool
	// Timeout, if positive, is the deadline of every procedure of the
	// type, counted from its creation (SubmitOptions.Timeout overrides it
	// for a root). See SubmitOptions.Timeout.
	Timeout time.Duration
	// Retry is how the type's failing steps are retried; zero fields take
	// the engine's (Options.Retry).
	Retry RetryPolicy
	// KeepSucceeded: a procedure of the type that finished successfully
	// is not rolled back when its tree later rolls back (HBase 2's rule):
	// its executed states, and those of its descendants, leave the
	// rollback stack without their Rollback being called, and its
	// parent's Rollback of the state that spawned it compensates. For
	// work that cannot be undone state by state, such as a region
	// assignment, or whose Rollback cannot succeed once it is complete.
	// An instance still running when the tree fails is rolled back as
	// usual. Default false: rolled back with the tree, state by state.
	// The default is the safe one: every type is written and tested
	// (proctest) to undo its own states, so nothing is left behind unless
	// a type says its parent compensates; and where a Rollback keeps
	// failing, the tree's rollback retries visibly (Info.Retries,
	// LastError) until an operator bypasses it, while a parent that does
	// not compensate would leave the child's work behind silently.
	KeepSucceeded bool
}

// Type is a registered procedure type, with its state and data types.
type Type[S State, D any] struct {
	e     *Engine
	info  *typeInfo
	codec durable.Codec[D]
}

// typeInfo is the engine's type-erased view of a registered type; data
// values are *D.
type typeInfo struct {
	name        string
	version     uint32
	initial     int64
	dataType    reflect.Type // D
	decode      func([]byte) (any, error)
	encode      func(any) ([]byte, error)
	upgrade     func(uint32, []byte) ([]byte, error)
	execute     func(ctx context.Context, env *Env, state int64, data any) (Next, error)
	rollback    func(ctx context.Context, env *Env, state int64, data any) error
	noReturn    func(int64) bool // nil: no such state
	afterReplay func(id ID, state int64, data any)
	locks       func(state int64, data any) []Lock // nil: the type takes no locks
	onTimeout   func(ctx context.Context, env *Env, state int64, data any) (Next, error)
	holdLocks   bool
	keep        bool // TypeOptions.KeepSucceeded
	timeout     time.Duration
	retry       RetryPolicy // merged with the engine's at Register
	stateName   func(int64) string
	stats       typeStats
}

// Register registers a procedure type named name on e: the state machine
// sm and how its data is stored (opts; nil takes every default). Register
// every type before Start: recovery must know every type, and quarantines
// procedures of unknown ones. It panics if e was started, if name is taken
// or empty, or if sm has a method named as an optional capability
// (Initialer, NoReturner, AfterReplayer, Locker, TimeoutHandler) whose
// signature is not the capability's: types are part of the program, like
// flags.
func Register[S State, D any](e *Engine, name string, sm StateMachine[S, D], opts *TypeOptions[D]) *Type[S, D] {
	var o TypeOptions[D]
	if opts != nil {
		o = *opts
	}
	if o.Version == 0 {
		o.Version = 1
	}
	if o.Codec == nil {
		o.Codec = durable.JSON[D]()
	}
	if name == "" || len(name) > 255 {
		panic(fmt.Sprintf("procedure: bad type name %q", name))
	}
	checkCapabilities(name, sm)
	codec := o.Codec
	ti := &typeInfo{
		name:     name,
		version:  o.Version,
		dataType: reflect.TypeFor[D](),
		upgrade:  o.Upgrade,
		decode: func(b []byte) (any, error) {
			d, err := codec.Decode(b)
			if err != nil {
				return nil, err
			}
			return &d, nil
		},
		encode: func(d any) ([]byte, error) { return codec.Encode(*d.(*D)) },
		execute: func(ctx context.Context, env *Env, state int64, data any) (Next, error) {
			return sm.Execute(ctx, env, S(state), data.(*D))
		},
		rollback: func(ctx context.Context, env *Env, state int64, data any) error {
			return sm.Rollback(ctx, env, S(state), data.(*D))
		},
		stateName: func(s int64) string {
			if st, ok := any(S(s)).(fmt.Stringer); ok {
				return st.String()
			}
			return strconv.FormatInt(s, 10)
		},
	}
	if i, ok := sm.(Initialer[S]); ok {
		ti.initial = int64(i.Initial())
	}
	if nr, ok := sm.(NoReturner[S]); ok {
		ti.noReturn = func(s int64) bool { return nr.NoReturn(S(s)) }
	}
	if ar, ok := sm.(AfterReplayer[S, D]); ok {
		ti.afterReplay = func(id ID, s int64, d any) { ar.AfterReplay(id, S(s), d.(*D)) }
	}
	if l, ok := sm.(Locker[S, D]); ok {
		ti.locks = func(s int64, d any) []Lock { return l.Locks(S(s), d.(*D)) }
	}
	if ot, ok := sm.(TimeoutHandler[S, D]); ok {
		ti.onTimeout = func(ctx context.Context, env *Env, s int64, d any) (Next, error) {
			return ot.OnTimeout(ctx, env, S(s), d.(*D))
		}
	}
	ti.holdLocks, ti.keep, ti.timeout = o.HoldLocks, o.KeepSucceeded, max(o.Timeout, 0)
	ti.retry = o.Retry.withDefaults(e.opts.Retry)
	e.register(ti)
	return &Type[S, D]{e: e, info: ti, codec: codec}
}

// Name returns the type's name.
func (t *Type[S, D]) Name() string { return t.info.name }

// Submit starts a procedure of this type with data as a new root and
// returns its id once the submission is durable. With opts.Nonce set, a
// repeated Submit (also after a restart) returns the first one's id, for
// as long as its result is kept.
func (t *Type[S, D]) Submit(ctx context.Context, data D, opts SubmitOptions) (ID, error) {
	b, err := t.codec.Encode(data)
	if err != nil {
		return 0, fmt.Errorf("procedure: encode data of %s: %w", t.info.name, err)
	}
	return t.e.submit(ctx, t.info, b, opts)
}

// Child returns a child procedure of this type with data, for Spawn. An
// encoding error fails the spawning step.
func (t *Type[S, D]) Child(data D) Child {
	b, err := t.codec.Encode(data)
	if err != nil {
		err = fmt.Errorf("procedure: encode data of child %s: %w", t.info.name, err)
	}
	return Child{t: t.info, enc: b, err: err}
}

// Result returns the data of res, the result of a procedure of a type
// whose data is a D, decoded: the procedure's final data. If err is not
// nil, Result returns it; if the procedure did not succeed, it returns
// res.Err() (an *Error matching ErrRolledBack if its tree rolled back,
// ErrBypassed if it was bypassed). Its arguments are Engine.Wait's
// results, so that waiting for a typed result is one line:
//
//	table, err := createTable.Result(e.Wait(ctx, id))
//
// A result whose type's data is not a D is ErrTypeMismatch.
func (t *Type[S, D]) Result(res Result, err error) (D, error) {
	var zero D
	if err != nil {
		return zero, err
	}
	if err := res.Err(); err != nil {
		return zero, err
	}
	e := t.e
	ti := e.types[res.Type]
	if ti == nil {
		return zero, fmt.Errorf("%w %q (procedure %d)", ErrUnknownType, res.Type, res.ID)
	}
	if ti.dataType != reflect.TypeFor[D]() {
		return zero, fmt.Errorf("%w: procedure %d of type %s holds %v, not %v", ErrTypeMismatch, res.ID, res.Type, ti.dataType, reflect.TypeFor[D]())
	}
	d, err := e.decodeData(ti, res.Version, res.Data)
	if err != nil {
		return zero, fmt.Errorf("procedure: result of %d: %w", res.ID, err)
	}
	return *d.(*D), nil
}

// SeqState is the state type of Sequential procedures.
type SeqState int8

const (
	// SeqRun runs the procedure's function.
	SeqRun SeqState = iota
	// SeqChildrenDone finishes it once its children have.
	SeqChildrenDone
)

func (s SeqState) String() string {
	switch s {
	case SeqRun:
		return "run"
	case SeqChildrenDone:
		return "children-done"
	}
	return "SeqState(" + strconv.Itoa(int(s)) + ")"
}

// Sequential makes a one-shot procedure (HBase's SequentialProcedure) out
// of two functions: run executes once and may return children, which run
// in parallel; the procedure finishes when they have. rollback (nil: none
// needed) undoes run. It is a two-state machine, so everything said of
// state machines holds for it.
func Sequential[D any](run func(ctx context.Context, env *Env, data *D) ([]Child, error),
	rollback func(ctx context.Context, env *Env, data *D) error) StateMachine[SeqState, D] {
	return &sequential[D]{run: run, rollback: rollback}
}

type sequential[D any] struct {
	run      func(ctx context.Context, env *Env, data *D) ([]Child, error)
	rollback func(ctx context.Context, env *Env, data *D) error
}

func (s *sequential[D]) Execute(ctx context.Context, env *Env, state SeqState, data *D) (Next, error) {
	if state != SeqRun {
		return Done(), nil
	}
	children, err := s.run(ctx, env, data)
	if err != nil {
		return Next{}, err
	}
	if len(children) == 0 {
		return Done(), nil
	}
	return Spawn(SeqChildrenDone, children...), nil
}

func (s *sequential[D]) Rollback(ctx context.Context, env *Env, state SeqState, data *D) error {
	if state != SeqRun || s.rollback == nil {
		return nil
	}
	return s.rollback(ctx, env, data)
}

// StateMachineFuncs makes a StateMachine of two functions, for small
// types and tests. A nil Undo has nothing to roll back.
type StateMachineFuncs[S State, D any] struct {
	Exec func(ctx context.Context, env *Env, state S, data *D) (Next, error)
	Undo func(ctx context.Context, env *Env, state S, data *D) error
}

// Execute calls f.Exec.
func (f StateMachineFuncs[S, D]) Execute(ctx context.Context, env *Env, state S, data *D) (Next, error) {
	return f.Exec(ctx, env, state, data)
}

// Rollback calls f.Undo, if set.
func (f StateMachineFuncs[S, D]) Rollback(ctx context.Context, env *Env, state S, data *D) error {
	if f.Undo == nil {
		return nil
	}
	return f.Undo(ctx, env, state, data)
}
