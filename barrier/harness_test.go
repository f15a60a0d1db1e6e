package barrier_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

// waitLimit bounds every wait in these tests; nothing should take close to
// it, it only turns a hang into a failure.
const waitLimit = 60 * time.Second

// recorder records what every member's subprocedures did, in one global
// order, so tests can check the invariants across members.
type recorder struct {
	mu      sync.Mutex
	seq     int
	log     []string
	changed chan struct{} // closed and replaced on every record

	factory      map[string]int   // member -> factory calls
	acquireStart map[string]int   // member -> seq
	acquired     map[string]int   // member -> seq when Acquire returned nil
	insideStart  map[string]int   // member -> seq when Inside started
	insideDone   map[string]int   // member -> seq when Inside returned nil
	cleanup      map[string]error // member -> Cleanup's error
	cleanups     map[string]int   // member -> Cleanup calls
	finished     map[string]int   // member -> OnFinish calls
	outcome      map[string]error // member -> last OnFinish outcome
}

func newRecorder() *recorder {
	return &recorder{
		changed:      make(chan struct{}),
		factory:      map[string]int{},
		acquireStart: map[string]int{},
		acquired:     map[string]int{},
		insideStart:  map[string]int{},
		insideDone:   map[string]int{},
		cleanup:      map[string]error{},
		cleanups:     map[string]int{},
		finished:     map[string]int{},
		outcome:      map[string]error{},
	}
}

func (r *recorder) note(member, what string, f func(seq int)) {
	r.mu.Lock()
	r.seq++
	r.log = append(r.log, fmt.Sprintf("%d %s %s", r.seq, member, what))
	if f != nil {
		f(r.seq)
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// waitFor waits until cond (called with r.mu held) holds.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; log:\n%s", what, r.dump())
		}
	}
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := ""
	for _, l := range r.log {
		out += "  " + l + "\n"
	}
	return out
}

// behavior scripts one member's subprocedure. Nil funcs succeed at once.
type behavior struct {
	factoryErr error
	acquire    func(ctx context.Context) error
	inside     func(ctx context.Context) ([]byte, error)
}

// hang blocks until ctx ends and returns its cause.
func hang(ctx context.Context) error {
	<-ctx.Done()
	return context.Cause(ctx)
}

func hangInside(ctx context.Context) ([]byte, error) { return nil, hang(ctx) }

func failWith(err error) func(context.Context) error {
	return func(context.Context) error { return err }
}

type fakeSub struct {
	r      *recorder
	member string
	b      behavior
}

func (s *fakeSub) Acquire(ctx context.Context) error {
	s.r.note(s.member, "acquire-start", func(seq int) { s.r.acquireStart[s.member] = seq })
	var err error
	if s.b.acquire != nil {
		err = s.b.acquire(ctx)
	}
	if err != nil {
		s.r.note(s.member, "acquire-failed: "+err.Error(), nil)
		return err
	}
	s.r.note(s.member, "acquired", func(seq int) { s.r.acquired[s.member] = seq })
	return nil
}

func (s *fakeSub) Inside(ctx context.Context) ([]byte, error) {
	s.r.note(s.member, "inside-start", func(seq int) { s.r.insideStart[s.member] = seq })
	res := []byte("result of " + s.member)
	var err error
	if s.b.inside != nil {
		res, err = s.b.inside(ctx)
	}
	if err != nil {
		s.r.note(s.member, "inside-failed: "+err.Error(), nil)
		return nil, err
	}
	s.r.note(s.member, "inside-done", func(seq int) { s.r.insideDone[s.member] = seq })
	return res, nil
}

func (s *fakeSub) Cleanup(err error) {
	s.r.note(s.member, "cleanup: "+err.Error(), func(int) {
		s.r.cleanup[s.member] = err
		s.r.cleanups[s.member]++
	})
}

// env is one transport setup the scenarios run on.
type env interface {
	name() string
	// transport returns the transport a party uses; parties of one test
	// share state through it.
	transport(t testing.TB) barrier.Transport
	// expireMember ends member's session as a lost lease would.
	expireMember(t testing.TB, member string)
}

type inprocEnv struct{ tr *barrier.InProc }

func (e *inprocEnv) name() string                           { return "inproc" }
func (e *inprocEnv) transport(testing.TB) barrier.Transport { return e.tr }
func (e *inprocEnv) expireMember(t testing.TB, member string) {
	if !e.tr.ExpireMember(member) {
		t.Fatalf("member %s has no session", member)
	}
}

// envs returns the environments the scenarios run on: in-process always,
// and etcd (an embedded server shared by the package's tests).
func envs(t *testing.T) []func(t *testing.T) env {
	return []func(t *testing.T) env{
		func(*testing.T) env { return &inprocEnv{tr: barrier.NewInProc()} },
		func(t *testing.T) env { return newEtcdEnv(t) },
	}
}

// forEachEnv runs f as a subtest on every environment.
func forEachEnv(t *testing.T, f func(t *testing.T, e env)) {
	for i, mk := range envs(t) {
		t.Run([]string{"inproc", "etcd"}[i], func(t *testing.T) {
			f(t, mk(t))
		})
	}
}

// cluster is a coordinator and running members on one environment.
type cluster struct {
	t     testing.TB
	e     env
	rec   *recorder
	coord *barrier.Coordinator

	mu      sync.Mutex
	members map[string]*runningMember
}

type runningMember struct {
	m      *barrier.Member
	cancel context.CancelFunc
	done   chan error
}

type clusterOptions struct {
	coord barrier.CoordinatorOptions
}

func newCluster(t testing.TB, e env, opts clusterOptions) *cluster {
	c := &cluster{t: t, e: e, rec: newRecorder(), members: map[string]*runningMember{}}
	c.coord = barrier.NewCoordinator(e.transport(t), opts.coord)
	t.Cleanup(func() {
		if err := c.coord.Close(); err != nil {
			t.Errorf("coordinator close: %v", err)
		}
		c.stopAll()
	})
	return c
}

// startMember starts member name running behavior b for type "test".
func (c *cluster) startMember(name string, b behavior, opts barrier.MemberOptions) *runningMember {
	opts.OnFinish = func(ref barrier.Ref, outcome error) {
		c.rec.note(name, fmt.Sprintf("finished %s: %v", ref, outcome), func(int) {
			c.rec.finished[name]++
			c.rec.outcome[name] = outcome
		})
	}
	m := barrier.NewMember(c.e.transport(c.t), name, opts)
	m.Register("test", func(proc string, args []byte) (barrier.Subprocedure, error) {
		c.rec.note(name, "factory "+proc, func(int) { c.rec.factory[name]++ })
		if b.factoryErr != nil {
			return nil, b.factoryErr
		}
		return &fakeSub{r: c.rec, member: name, b: b}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	rm := &runningMember{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { rm.done <- m.Run(ctx) }()
	c.mu.Lock()
	c.members[name] = rm
	c.mu.Unlock()
	return rm
}

// restart stops every member and starts members afresh with a new
// recorder.
func (c *cluster) restart(members []string, bs map[string]behavior, opts barrier.MemberOptions) {
	c.stopAll()
	c.rec = newRecorder()
	c.startMembers(members, bs, opts)
}

func (c *cluster) startMembers(names []string, bs map[string]behavior, opts barrier.MemberOptions) {
	for _, n := range names {
		c.startMember(n, bs[n], opts)
	}
}

// stop stops member name and returns Run's error.
func (c *cluster) stop(name string) error {
	c.mu.Lock()
	rm := c.members[name]
	delete(c.members, name)
	c.mu.Unlock()
	if rm == nil {
		return nil
	}
	rm.cancel()
	select {
	case err := <-rm.done:
		return err
	case <-time.After(waitLimit):
		c.t.Fatalf("member %s did not stop", name)
		return nil
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	names := slices.Collect(maps.Keys(c.members))
	c.mu.Unlock()
	for _, n := range names {
		c.stop(n)
	}
}

// start starts procedure name of type "test" on members.
func (c *cluster) start(ctx context.Context, name string, members []string) *barrier.Handle {
	c.t.Helper()
	h, err := c.coord.Start(ctx, name, "test", []byte("args"), members)
	if err != nil {
		c.t.Fatalf("Start(%s): %v", name, err)
	}
	return h
}

func wait(t testing.TB, h *barrier.Handle) (map[string][]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := h.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("procedure %s did not finish", h.Name())
	}
	return res, err
}

// checkInvariants checks, once every member's subprocedure finished, that
// no member ran Inside before every member had acquired, that Cleanup ran
// exactly once on exactly the members that acquired (unless the procedure
// completed, when it ran on none), each with the procedure's error, and
// that no factory ran twice.
func (c *cluster) checkInvariants(t testing.TB, members []string, outcome error) {
	t.Helper()
	r := c.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	lastAcquired := 0
	for _, m := range members {
		if r.factory[m] > 1 {
			t.Errorf("member %s: factory ran %d times", m, r.factory[m])
		}
		if s, ok := r.acquired[m]; ok && s > lastAcquired {
			lastAcquired = s
		}
	}
	for _, m := range members {
		if s, ok := r.insideStart[m]; ok {
			if len(r.acquired) != len(members) {
				t.Errorf("member %s ran Inside (seq %d) though only %d of %d members acquired", m, s, len(r.acquired), len(members))
			} else if s < lastAcquired {
				t.Errorf("member %s ran Inside (seq %d) before every member had acquired (last at %d)", m, s, lastAcquired)
			}
		}
		_, acq := r.acquired[m]
		n := r.cleanups[m]
		switch {
		case outcome == nil && n != 0:
			t.Errorf("member %s: Cleanup ran after the procedure completed", m)
		case outcome != nil && acq && n != 1:
			t.Errorf("member %s acquired; Cleanup ran %d times, want 1", m, n)
		case outcome != nil && !acq && n != 0:
			t.Errorf("member %s did not acquire; Cleanup ran %d times, want 0", m, n)
		}
		if err := r.cleanup[m]; err != nil && outcome != nil {
			var got, want *barrier.AbortError
			if !errors.As(err, &got) || !errors.As(outcome, &want) {
				t.Errorf("member %s: Cleanup(%v), outcome %v: want *AbortErrors", m, err, outcome)
			} else if got.Source != want.Source || got.Kind != want.Kind || (got.Message != want.Message && m != want.Source) {
				// The member the error is about may have raised its own
				// version of it (a member that lost its session does).
				t.Errorf("member %s: Cleanup(%v), want the procedure's error %v", m, got, want)
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", func() string {
			out := ""
			for _, l := range r.log {
				out += "  " + l + "\n"
			}
			return out
		}())
	}
}

// settle waits until every member that learned of the procedure (called
// its factory) has finished with it, then stops every member, so that the
// recorder holds the whole story.
func (c *cluster) settle(t testing.TB, members []string) {
	t.Helper()
	c.rec.waitFor(t, "members to finish", func() bool {
		for _, m := range members {
			if c.rec.finished[m] < c.rec.factory[m] {
				return false
			}
		}
		return true
	})
	c.stopAll()
}

// waitCleanups waits until every member that acquired has run Cleanup.
func (c *cluster) waitCleanups(t testing.TB, members []string) {
	t.Helper()
	c.rec.waitFor(t, "cleanups", func() bool {
		for _, m := range members {
			if _, acq := c.rec.acquired[m]; acq && c.rec.cleanups[m] == 0 {
				return false
			}
		}
		return true
	})
}

// abortOf returns err as an *AbortError or fails the test.
func abortOf(t testing.TB, err error) *barrier.AbortError {
	t.Helper()
	var ae *barrier.AbortError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v (%T), want an *AbortError", err, err)
	}
	return ae
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

func jsonRoundTrip(ae *barrier.AbortError) (*barrier.AbortError, error) {
	b, err := json.Marshal(ae)
	if err != nil {
		return nil, err
	}
	var out barrier.AbortError
	err = json.Unmarshal(b, &out)
	return &out, err
}
