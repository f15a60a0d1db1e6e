package procedure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/internal/testseed"
	"github.com/procyon-dev/procyon/vfs"
)

// testSeed returns the seed for a randomized test and makes sure a failure
// prints it.
func testSeed(t *testing.T) uint64 { t.Helper(); return testseed.Seed(t) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// script is the data of the scripted test procedure: it walks states
// 0..States-1, each writing fx/<root>/<id>/<state> in its commit (and its
// rollback deleting it), and does what the fields say on the way.
type script struct {
	Name     string
	States   int
	FailAt   int // Execute of this state fails (-1: none)
	SpawnAt  int // this state spawns Children (-1: none)
	Children []script
	PollAt   int // this state runs Again Polls times (-1: none)
	Polls    int
	Polled   int
	Note     string // changed by steps, to see data persisted
	flowKeys int    // checkDurable: a flow's metadata keys (not stored)
}

func newScript(name string, states int) script {
	return script{Name: name, States: states, FailAt: -1, SpawnAt: -1, PollAt: -1}
}

// gates block steps until released: key "exec:<name>:<state>" or
// "rollback:<name>:<state>".
type gates struct {
	mu sync.Mutex
	m  map[string]chan struct{}
	at map[string]chan struct{} // closed when a step reaches the gate
	// causes: why a step's context ended while it waited at a gate.
	causes map[string]error
}

// cause returns context.Cause of the step context that ended while it
// waited at key (nil: none did).
func (g *gates) cause(key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.causes[key]
}

func (g *gates) set(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m, g.at = map[string]chan struct{}{}, map[string]chan struct{}{}
	}
	g.m[key] = make(chan struct{})
	g.at[key] = make(chan struct{})
}

func (g *gates) open(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch, ok := g.m[key]; ok {
		close(ch)
		delete(g.m, key)
	}
}

// reached returns a channel closed once a step waits at key.
func (g *gates) reached(key string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.at[key]
}

func (g *gates) wait(ctx context.Context, key string) error {
	g.mu.Lock()
	ch := g.m[key]
	at := g.at[key]
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-at:
	default:
		close(at)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		if g.causes == nil {
			g.causes = map[string]error{}
		}
		g.causes[key] = context.Cause(ctx)
		g.mu.Unlock()
		return ctx.Err()
	}
}

var errScripted = errors.New("scripted failure")

type scriptSM struct {
	w    *world
	self **Type[int, script]
	ponr int // states >= ponr are past the point of no return (0: none)
}

func fxKey(env *Env, state int) string {
	return fmt.Sprintf("fx/%d/%d/%d", env.Root(), env.ID(), state)
}

func (sm *scriptSM) Execute(ctx context.Context, env *Env, s int, d *script) (Next, error) {
	if sm.w.onExecute != nil {
		sm.w.onExecute(ctx, env.ID(), s)
	}
	if err := sm.w.gates.wait(ctx, fmt.Sprintf("exec:%s:%d", d.Name, s)); err != nil {
		return Next{}, err
	}
	if s == d.FailAt {
		return Next{}, fmt.Errorf("%w in %s at %d", errScripted, d.Name, s)
	}
	d.Note = fmt.Sprintf("%s after %d", d.Name, s)
	key, name, id := fxKey(env, s), d.Name, env.ID()
	env.Write(func(tx *durable.Tx) error {
		sm.w.logCommit(event{id, int64(s), false})
		return sm.w.kv.Put(tx, key, name)
	})
	if s == d.PollAt && d.Polled < d.Polls {
		d.Polled++
		return Again(), nil
	}
	if s == d.SpawnAt {
		var cs []Child
		for _, c := range d.Children {
			cs = append(cs, (*sm.self).Child(c))
		}
		return Spawn(s+1, cs...), nil
	}
	if s+1 >= d.States {
		return Done(), nil
	}
	return GoTo(s + 1), nil
}

func (sm *scriptSM) Rollback(ctx context.Context, env *Env, s int, d *script) error {
	if err := sm.w.gates.wait(ctx, fmt.Sprintf("rollback:%s:%d", d.Name, s)); err != nil {
		return err
	}
	key, id := fxKey(env, s), env.ID()
	env.Write(func(tx *durable.Tx) error {
		sm.w.logCommit(event{id, int64(s), true})
		return sm.w.kv.Delete(tx, key)
	})
	return nil
}

type ponrSM struct{ *scriptSM }

func (sm ponrSM) NoReturn(s int) bool { return s >= sm.ponr }

// event is one committed step, in commit order.
type event struct {
	id       ID
	state    int64
	rollback bool
}

func (ev event) String() string {
	if ev.rollback {
		return fmt.Sprintf("rb(%d:%d)", ev.id, ev.state)
	}
	return fmt.Sprintf("ex(%d:%d)", ev.id, ev.state)
}

// world is a store and an engine on a MemFS, with the test types.
type world struct {
	t       testing.TB
	fs      *vfs.MemFS
	opts    Options
	dopts   durable.Options
	store   *durable.Store
	e       *Engine
	kv      *durable.Collection[string, string]
	script  *Type[int, script]
	ponr    *Type[int, script]
	seq     *Type[SeqState, seqData]
	gates   *gates
	mu      sync.Mutex
	events  []event
	running map[ID]bool
	commits []event // appended by the script type's writes, in commit order
	noStart bool
	extra   func(w *world) // registers more types
	// onExecute, if set, is called as the test types' Execute starts.
	onExecute func(ctx context.Context, id ID, state int)
}

type seqData struct {
	Key, Val string
	Kids     int
	Fail     bool
}

func (w *world) record(info StepInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, event{info.ID, info.State, info.Rollback})
}

// logCommit is called from the commit function of a script step: under
// the store's write lock, so in commit order.
func (w *world) logCommit(ev event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.commits = append(w.commits, ev)
}

func (w *world) commitLog() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.commits)
}

func (w *world) eventsSince(n int) []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events[n:]...)
}

func newWorld(t testing.TB, opts Options) *world {
	w := &world{t: t, fs: vfs.NewMem(), opts: opts, gates: &gates{}, running: map[ID]bool{}}
	w.open()
	return w
}

// open makes a store and an engine on w.fs and starts them.
func (w *world) open() {
	w.t.Helper()
	dopts := w.dopts
	dopts.Dir, dopts.FS, dopts.Logger = "/data", w.fs, quiet()
	w.store = durable.New(dopts)
	opts := w.opts
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	user := opts.Hooks
	opts.Hooks.AfterCommit = func(info StepInfo) {
		w.record(info)
		if user.AfterCommit != nil {
			user.AfterCommit(info)
		}
	}
	opts.Hooks.StepStart = func(info StepInfo) {
		w.mu.Lock()
		if w.running[info.ID] {
			w.mu.Unlock()
			w.t.Errorf("procedure %d started on two workers at once", info.ID)
		} else {
			w.running[info.ID] = true
			w.mu.Unlock()
		}
		if user.StepStart != nil {
			user.StepStart(info)
		}
	}
	opts.Hooks.StepEnd = func(info StepInfo) {
		w.mu.Lock()
		delete(w.running, info.ID)
		w.mu.Unlock()
		if user.StepEnd != nil {
			user.StepEnd(info)
		}
	}
	w.e = New(w.store, opts)
	w.kv = durable.NewCollection[string, string](w.store, "kv", nil)
	sm := &scriptSM{w: w}
	sm.self = &w.script
	w.script = Register[int, script](w.e, "script", sm, nil)
	psm := &scriptSM{w: w, ponr: 3}
	psm.self = &w.ponr
	w.ponr = Register[int, script](w.e, "ponr", ponrSM{psm}, nil)
	seqT := &w.seq
	w.seq = Register(w.e, "seq", Sequential(func(ctx context.Context, env *Env, d *seqData) ([]Child, error) {
		if d.Fail {
			return nil, errors.New("seq failed")
		}
		k, v := d.Key, d.Val
		env.Write(func(tx *durable.Tx) error { return w.kv.Put(tx, k, v) })
		var kids []Child
		for i := range d.Kids {
			kids = append(kids, (*seqT).Child(seqData{Key: fmt.Sprintf("%s/%d", d.Key, i), Val: v}))
		}
		return kids, nil
	}, func(ctx context.Context, env *Env, d *seqData) error {
		k := d.Key
		env.Write(func(tx *durable.Tx) error { return w.kv.Delete(tx, k) })
		return nil
	}), nil)
	if w.extra != nil {
		w.extra(w)
	}
	if err := w.store.Open(context.Background()); err != nil {
		w.t.Fatalf("open store: %v", err)
	}
	if w.noStart {
		return
	}
	if err := w.e.Start(context.Background()); err != nil {
		w.t.Fatalf("start engine: %v", err)
	}
}

// restart stops the engine, closes the store and opens both again on the
// same files (a clean restart).
func (w *world) restart() {
	w.t.Helper()
	w.close()
	w.open()
}

func (w *world) close() {
	w.e.Stop()
	w.store.Close()
	w.mu.Lock()
	clear(w.running)
	w.mu.Unlock()
}

func (w *world) submit(d script) ID {
	w.t.Helper()
	id, err := w.script.Submit(context.Background(), d, SubmitOptions{Submitter: "test"})
	if err != nil {
		w.t.Fatalf("submit: %v", err)
	}
	return id
}

func (w *world) wait(id ID) Result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := w.e.Wait(ctx, id)
	if err != nil {
		w.t.Fatalf("wait %d: %v", id, err)
	}
	return r
}

// fx returns the fx keys under root.
func (w *world) fx(root ID) []string {
	var out []string
	prefix := fmt.Sprintf("fx/%d/", root)
	for k := range w.kv.From(w.store.Latest(), prefix) {
		if !strings.HasPrefix(k, prefix) {
			break
		}
		out = append(out, k)
	}
	return out
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func reach(t testing.TB, g *gates, key string) {
	t.Helper()
	select {
	case <-g.reached(key):
	case <-time.After(20 * time.Second):
		t.Fatalf("no step reached gate %s", key)
	}
}

func newMemFS() *vfs.MemFS { return vfs.NewMem() }

// failAtState1 is an Exec that runs state 0 and fails in state 1, for
// types whose rollback is under test.
func failAtState1(ctx context.Context, env *Env, s int, d *script) (Next, error) {
	if s == 1 {
		return Next{}, errors.New("boom")
	}
	return GoTo(s + 1), nil
}
