package barrier_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

// after returns a hook that waits until every member in others reached
// the given recorder state, then runs f. It scripts "fail only once the
// others have acquired", so that Cleanup has something to clean.
func (c *cluster) after(state func(r *recorder) map[string]int, others []string, f func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c.rec.waitFor(c.t, "the other members", func() bool {
			for _, m := range others {
				if _, ok := state(c.rec)[m]; !ok {
					return false
				}
			}
			return true
		})
		return f(ctx)
	}
}

func acquiredState(r *recorder) map[string]int    { return r.acquired }
func insideDoneState(r *recorder) map[string]int  { return r.insideDone }
func insideStartState(r *recorder) map[string]int { return r.insideStart }

func TestAllSucceed(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{})
		members := names("m", 3)
		c.startMembers(members, nil, barrier.MemberOptions{})
		h := c.start(context.Background(), "flush", members)
		res, err := wait(t, h)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		for _, m := range members {
			if got, want := string(res[m]), "result of "+m; got != want {
				t.Errorf("result of %s = %q, want %q", m, got, want)
			}
		}
		c.settle(t, members)
		c.checkInvariants(t, members, nil)
		st := h.Stats()
		if !st.Finished || st.Err != nil || len(st.Members) != 3 || st.Acquire <= 0 || st.Total < st.Acquire+st.Inside {
			t.Errorf("stats: %+v", st)
		}
		for _, ms := range st.Members {
			if ms.Phase != barrier.PhaseDone || ms.Done < ms.Acquired || ms.Acquired < ms.Joined || ms.Lost {
				t.Errorf("member stats %+v", ms)
			}
		}
		if ee, ok := e.(*etcdEnv); ok {
			if keys := ee.procKeys(t); len(keys) != 0 {
				t.Errorf("keys left after the procedure: %q", keys)
			}
		}
		// The name is free again.
		c.restart(members, nil, barrier.MemberOptions{})
		if _, err := wait(t, c.start(context.Background(), "flush", members)); err != nil {
			t.Fatalf("second run: %v", err)
		}
		c.settle(t, members)
		c.checkInvariants(t, members, nil)
	})
}

func TestMemberFails(t *testing.T) {
	boom := errors.New("disk full")
	members := names("m", 3)
	others := []string{"m1", "m3"}
	for _, tc := range []struct {
		name    string
		b       func(c *cluster) behavior
		message string
	}{
		{"factory", func(*cluster) behavior { return behavior{factoryErr: boom} }, "member m2: create test subprocedure: disk full"},
		{"acquire", func(c *cluster) behavior {
			return behavior{acquire: c.after(acquiredState, others, failWith(boom))}
		}, "member m2: acquire: disk full"},
		{"inside", func(c *cluster) behavior {
			return behavior{inside: func(ctx context.Context) ([]byte, error) {
				return nil, c.after(insideDoneState, others, failWith(boom))(ctx)
			}}
		}, "member m2: inside: disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachEnv(t, func(t *testing.T, e env) {
				c := newCluster(t, e, clusterOptions{})
				c.startMembers(members, map[string]behavior{"m2": tc.b(c)}, barrier.MemberOptions{})
				_, err := wait(t, c.start(context.Background(), "snap", members))
				ae := abortOf(t, err)
				if ae.Source != "m2" || ae.Kind != barrier.KindFailed || ae.Message != tc.message || !errors.Is(err, barrier.ErrMemberFailed) {
					t.Fatalf("got %#v, want m2's failure %q", ae, tc.message)
				}
				c.settle(t, members)
				c.checkInvariants(t, members, err)
				if tc.name != "factory" {
					c.rec.mu.Lock()
					if n := len(c.rec.cleanups); n != 2 && tc.name == "acquire" || n != 3 && tc.name == "inside" {
						t.Errorf("cleanups on %v", c.rec.cleanups)
					}
					c.rec.mu.Unlock()
				}
			})
		})
	}
}

func TestFirstErrorWins(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{})
		members := names("m", 4)
		bs := map[string]behavior{}
		for _, m := range members {
			bs[m] = behavior{inside: func(ctx context.Context) ([]byte, error) {
				return nil, c.after(insideStartState, members, failWith(errors.New(m+" broke")))(ctx)
			}}
		}
		c.startMembers(members, bs, barrier.MemberOptions{})
		_, err := wait(t, c.start(context.Background(), "p", members))
		ae := abortOf(t, err)
		if !slices.Contains(members, ae.Source) || ae.Message != "member "+ae.Source+": inside: "+ae.Source+" broke" {
			t.Fatalf("got %v", ae)
		}
		c.settle(t, members)
		c.checkInvariants(t, members, err) // every member cleaned up with the same error
	})
}

func TestCancel(t *testing.T) {
	members := names("m", 3)
	for _, tc := range []struct {
		name    string
		reached bool // cancel once every member is inside the barrier
		viaCtx  bool // cancel the context given to Start instead of calling Cancel
	}{
		{"before-reached", false, false},
		{"after-reached", true, false},
		{"context-before-reached", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachEnv(t, func(t *testing.T, e env) {
				c := newCluster(t, e, clusterOptions{})
				bs := map[string]behavior{}
				if tc.reached {
					for _, m := range members {
						bs[m] = behavior{inside: hangInside}
					}
				} else {
					bs["m3"] = behavior{acquire: hang}
				}
				c.startMembers(members, bs, barrier.MemberOptions{})
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				h := c.start(ctx, "p", members)
				c.rec.waitFor(t, "the barrier's state", func() bool {
					if tc.reached {
						return len(c.rec.insideStart) == 3
					}
					_, hung := c.rec.acquireStart["m3"]
					return hung && len(c.rec.acquired) == 2
				})
				if tc.viaCtx {
					cancel(errors.New("caller gave up"))
				} else {
					h.Cancel("operator said stop")
				}
				_, err := wait(t, h)
				ae := abortOf(t, err)
				if ae.Source != barrier.CoordinatorSource || !errors.Is(err, barrier.ErrCanceled) {
					t.Fatalf("got %v, want the coordinator's cancel", err)
				}
				if want := "operator said stop"; !tc.viaCtx && ae.Message != want {
					t.Errorf("message %q, want %q", ae.Message, want)
				}
				if tc.viaCtx && !strings.Contains(ae.Message, "caller gave up") {
					t.Errorf("message %q does not carry the context's cause", ae.Message)
				}
				c.settle(t, members)
				c.checkInvariants(t, members, err)
				c.rec.mu.Lock()
				defer c.rec.mu.Unlock()
				if !tc.reached && len(c.rec.insideStart) != 0 {
					t.Errorf("Inside ran before the barrier: %v", c.rec.insideStart)
				}
			})
		})
	}
}

func TestMemberSessionLost(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{coord: barrier.CoordinatorOptions{Timeout: time.Minute}})
		members := names("m", 3)
		bs := map[string]behavior{}
		for _, m := range members {
			bs[m] = behavior{inside: hangInside}
		}
		c.startMembers(members, bs, barrier.MemberOptions{})
		h := c.start(context.Background(), "p", members)
		c.rec.waitFor(t, "every member inside", func() bool { return len(c.rec.insideStart) == 3 })
		c.mu.Lock()
		m2 := c.members["m2"]
		c.mu.Unlock()
		e.expireMember(t, "m2")
		_, err := wait(t, h)
		ae := abortOf(t, err)
		if ae.Source != "m2" || !errors.Is(err, barrier.ErrMemberLost) {
			t.Fatalf("got %v, want m2 lost", err)
		}
		select {
		case runErr := <-m2.done:
			if !errors.Is(runErr, barrier.ErrMemberLost) {
				t.Errorf("m2's Run returned %v, want ErrMemberLost", runErr)
			}
			m2.done <- runErr
		case <-time.After(waitLimit):
			t.Fatal("m2's Run did not return after its session was lost")
		}
		c.settle(t, members)
		c.checkInvariants(t, members, err)
	})
}

func TestLateJoiner(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{})
		members := names("m", 3)
		c.startMembers(members[:2], nil, barrier.MemberOptions{})
		h := c.start(context.Background(), "p", members)
		c.rec.waitFor(t, "m1 and m2 acquired", func() bool { return len(c.rec.acquired) == 2 })
		c.startMember("m3", behavior{}, barrier.MemberOptions{})
		res, err := wait(t, h)
		if err != nil || len(res) != 3 {
			t.Fatalf("Wait = %v, %v", res, err)
		}
		c.settle(t, members)
		c.checkInvariants(t, members, nil)
	})
}

// dupTransport delivers every member event twice and, after a procedure's
// outcome, its EventStarted once more, as a reconnecting transport may.
type dupTransport struct{ barrier.Transport }

func (d dupTransport) OpenMember(ctx context.Context, name string) (barrier.MemberConn, error) {
	conn, err := d.Transport.OpenMember(ctx, name)
	if err != nil {
		return nil, err
	}
	dc := &dupConn{MemberConn: conn, out: make(chan barrier.Event)}
	go dc.pump()
	return dc, nil
}

type dupConn struct {
	barrier.MemberConn
	out chan barrier.Event
}

func (d *dupConn) Events() <-chan barrier.Event { return d.out }

func (d *dupConn) pump() {
	defer close(d.out)
	started := map[barrier.Ref]barrier.Event{}
	for ev := range d.MemberConn.Events() {
		d.out <- ev
		d.out <- ev
		switch ev.Kind {
		case barrier.EventStarted:
			started[ev.Ref] = ev
		case barrier.EventCompleted, barrier.EventAborted, barrier.EventGone:
			if s, ok := started[ev.Ref]; ok {
				d.out <- s
			}
		}
	}
}

func TestNeverRunTwice(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{})
		c.e = wrapEnv{e, func(tr barrier.Transport) barrier.Transport { return dupTransport{tr} }}
		members := names("m", 3)
		c.startMembers(members, nil, barrier.MemberOptions{})
		for _, name := range []string{"a", "b"} {
			if _, err := wait(t, c.start(context.Background(), name, members)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		c.settle(t, members)
		c.rec.mu.Lock()
		defer c.rec.mu.Unlock()
		for _, m := range members {
			if c.rec.factory[m] != 2 || c.rec.finished[m] != 2 {
				t.Errorf("member %s: %d factory calls, %d finished; want 2 each (one per procedure)", m, c.rec.factory[m], c.rec.finished[m])
			}
		}
	})
}

type wrapEnv struct {
	env
	wrap func(barrier.Transport) barrier.Transport
}

func (w wrapEnv) transport(t testing.TB) barrier.Transport { return w.wrap(w.env.transport(t)) }

func TestDuplicateName(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{})
		members := names("m", 2)
		c.startMembers(members, map[string]behavior{"m1": {acquire: hang}}, barrier.MemberOptions{})
		h := c.start(context.Background(), "snap", members)
		if _, err := c.coord.Start(context.Background(), "snap", "test", nil, members); !errors.Is(err, barrier.ErrDuplicate) {
			t.Fatalf("second Start = %v, want ErrDuplicate", err)
		}
		h.Cancel("done with this test")
		if _, err := wait(t, h); !errors.Is(err, barrier.ErrCanceled) {
			t.Fatalf("Wait = %v", err)
		}
		c.settle(t, members)
	})
}

// TestTransportRefusesDuplicate checks the transport's own check, which
// protects a name across coordinator sessions.
func TestTransportRefusesDuplicate(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		ctx := context.Background()
		conn, err := e.transport(t).OpenCoordinator(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		spec := barrier.Spec{Name: "x", Type: "test", Members: []string{"m1"}}
		ref, _, err := conn.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := conn.Create(ctx, spec); !errors.Is(err, barrier.ErrDuplicate) {
			t.Fatalf("second Create = %v, want ErrDuplicate", err)
		}
		if err := conn.Remove(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if _, _, err := conn.Create(ctx, spec); err != nil {
			t.Fatalf("Create after Remove: %v", err)
		}
	})
}

func TestTimeouts(t *testing.T) {
	members := names("m", 3)
	t.Run("coordinator", func(t *testing.T) {
		forEachEnv(t, func(t *testing.T, e env) {
			c := newCluster(t, e, clusterOptions{coord: barrier.CoordinatorOptions{Timeout: 300 * time.Millisecond}})
			c.startMembers(members, map[string]behavior{"m2": {acquire: hang}}, barrier.MemberOptions{})
			_, err := wait(t, c.start(context.Background(), "p", members))
			if ae := abortOf(t, err); ae.Source != barrier.CoordinatorSource || !errors.Is(err, barrier.ErrTimeout) {
				t.Fatalf("got %v, want the coordinator's timeout", err)
			}
			c.settle(t, members)
			c.checkInvariants(t, members, err)
		})
	})
	t.Run("member", func(t *testing.T) {
		forEachEnv(t, func(t *testing.T, e env) {
			c := newCluster(t, e, clusterOptions{coord: barrier.CoordinatorOptions{Timeout: time.Minute}})
			// m3 hangs inside; m1 gives up waiting for the outcome.
			c.startMember("m1", behavior{}, barrier.MemberOptions{Timeout: 300 * time.Millisecond})
			c.startMember("m2", behavior{}, barrier.MemberOptions{})
			c.startMember("m3", behavior{inside: hangInside}, barrier.MemberOptions{})
			_, err := wait(t, c.start(context.Background(), "p", members))
			if ae := abortOf(t, err); ae.Source != "m1" || !errors.Is(err, barrier.ErrTimeout) {
				t.Fatalf("got %v, want m1's timeout", err)
			}
			c.settle(t, members)
			c.checkInvariants(t, members, err)
		})
	})
}

func TestNoFactory(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		c := newCluster(t, e, clusterOptions{})
		members := names("m", 2)
		c.startMembers(members, nil, barrier.MemberOptions{})
		h, err := c.coord.Start(context.Background(), "p", "unknown-type", nil, members)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wait(t, h)
		if ae := abortOf(t, err); ae.Kind != barrier.KindFailed || !strings.Contains(ae.Message, `no subprocedure for type "unknown-type"`) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestHundredMembersInProc(t *testing.T) {
	e := &inprocEnv{tr: barrier.NewInProc()}
	c := newCluster(t, e, clusterOptions{})
	members := names("m", 100)
	for _, name := range []string{"ok", "fail"} {
		if name == "ok" {
			c.startMembers(members, nil, barrier.MemberOptions{})
		}
		if name == "fail" {
			boom := errors.New("boom")
			c.restart(members, map[string]behavior{"m57": {inside: func(ctx context.Context) ([]byte, error) {
				return nil, c.after(insideStartState, members, failWith(boom))(ctx)
			}}}, barrier.MemberOptions{})
		}
		res, err := wait(t, c.start(context.Background(), name, members))
		if name == "ok" && (err != nil || len(res) != 100) {
			t.Fatalf("Wait: %d results, %v", len(res), err)
		}
		if name == "fail" && abortOf(t, err).Source != "m57" {
			t.Fatalf("Wait: %v", err)
		}
		c.settle(t, members)
		c.checkInvariants(t, members, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	c := barrier.NewCoordinator(barrier.NewInProc(), barrier.CoordinatorOptions{})
	defer c.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name, typ string
		members   []string
	}{
		{"", "t", []string{"m"}},
		{"a/b", "t", []string{"m"}},
		{"a", "", []string{"m"}},
		{"a", "t", nil},
		{"a", "t", []string{"m", "m"}},
		{"a", "t", []string{barrier.CoordinatorSource}},
		{strings.Repeat("x", 129), "t", []string{"m"}},
	} {
		if _, err := c.Start(ctx, tc.name, tc.typ, nil, tc.members); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("Start(%q, %q, %q) = %v, want ErrInvalid", tc.name, tc.typ, tc.members, err)
		}
	}
	m := barrier.NewMember(barrier.NewInProc(), "a/b", barrier.MemberOptions{})
	if err := m.Run(ctx); !errors.Is(err, barrier.ErrInvalid) {
		t.Errorf("Run with a bad name = %v", err)
	}
}

func TestDuplicateMember(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e env) {
		ctx := context.Background()
		conn, err := e.transport(t).OpenMember(ctx, "m1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.transport(t).OpenMember(ctx, "m1"); !errors.Is(err, barrier.ErrDuplicateMember) {
			t.Errorf("second OpenMember = %v, want ErrDuplicateMember", err)
		}
		conn.Close()
		conn, err = e.transport(t).OpenMember(ctx, "m1")
		if err != nil {
			t.Fatalf("OpenMember after Close: %v", err)
		}
		conn.Close()
	})
}

func TestAbortErrorJSON(t *testing.T) {
	ae := &barrier.AbortError{Source: "m2", Kind: barrier.KindMemberLost, Message: "gone"}
	b, err := jsonRoundTrip(ae)
	if err != nil {
		t.Fatal(err)
	}
	if *b != *ae || !errors.Is(b, barrier.ErrMemberLost) || !errors.Is(b, barrier.ErrAborted) || errors.Is(b, barrier.ErrTimeout) {
		t.Fatalf("round trip: %#v", b)
	}
	var target *barrier.AbortError
	if wrapped := errors.Join(errors.New("context"), b); !errors.As(wrapped, &target) || target.Source != "m2" {
		t.Fatalf("errors.As through a wrap: %v", target)
	}
	if got, want := ae.Error(), "barrier: aborted by m2 (member-lost): gone"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
