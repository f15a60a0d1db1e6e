package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

// barrierRig is a barrier coordinator on the in-process transport, and
// members of type "gated" whose Acquire and Inside wait until the test
// opens their gates.
type barrierRig struct {
	t     *testing.T
	tr    *barrier.InProc
	coord *barrier.Coordinator
}

// gates hold one member's Acquire and Inside until closed.
type gates struct{ acquire, inside chan struct{} }

func newBarrierRig(t *testing.T) *barrierRig {
	r := &barrierRig{t: t, tr: barrier.NewInProc()}
	r.coord = barrier.NewCoordinator(r.tr, barrier.CoordinatorOptions{})
	t.Cleanup(func() { r.coord.Close() })
	return r
}

// member starts member name and returns its gates; it stops at the end
// of the test.
func (r *barrierRig) member(name string) gates {
	g := gates{make(chan struct{}), make(chan struct{})}
	m := barrier.NewMember(r.tr, name, barrier.MemberOptions{})
	m.Register("gated", func(string, []byte) (barrier.Subprocedure, error) { return gatedSub(g), nil })
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		m.Run(ctx)
	}()
	r.t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return g
}

// start starts procedure name of type gated on members.
func (r *barrierRig) start(name string, members ...string) *barrier.Handle {
	r.t.Helper()
	h, err := r.coord.Start(context.Background(), name, "gated", nil, members)
	if err != nil {
		r.t.Fatalf("start %s: %v", name, err)
	}
	return h
}

// until waits until the coordinator's view of h satisfies cond.
func (r *barrierRig) until(h *barrier.Handle, what string, cond func(barrier.Stats) bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s, err := h.WaitFor(ctx, cond); err != nil {
		r.t.Fatalf("%s: waiting until %s: %v; stats %+v", h.Name(), what, err, s)
	}
}

// finish waits for h's outcome, which must be success.
func (r *barrierRig) finish(h *barrier.Handle) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.Wait(ctx); err != nil {
		r.t.Fatalf("%s: %v", h.Name(), err)
	}
}

// phases is a condition: the members are at these phases, in name order.
func phases(want ...barrier.Phase) func(barrier.Stats) bool {
	return func(s barrier.Stats) bool {
		got := make([]barrier.Phase, len(s.Members))
		for i, m := range s.Members {
			got[i] = m.Phase
		}
		return slices.Equal(got, want)
	}
}

func reached(s barrier.Stats) bool { return s.Acquire > 0 }

type gatedSub gates

func (g gatedSub) Acquire(ctx context.Context) error { return pass(ctx, g.acquire) }

func (g gatedSub) Inside(ctx context.Context) ([]byte, error) { return nil, pass(ctx, g.inside) }

func (gatedSub) Cleanup(error) {}

func pass(ctx context.Context, gate chan struct{}) error {
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// memberPhases renders b's members as name:phase.
func memberPhases(b Barrier) string {
	var parts []string
	for _, m := range b.Members {
		p := m.Name + ":" + m.Phase
		if m.Lost {
			p += ":lost"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// TestBarriersView follows a barrier procedure on GET /api/v1/barriers as
// its members move: a member not yet seen, joined, acquired, inside, done;
// then it leaves the list.
func TestBarriersView(t *testing.T) {
	r := newBarrierRig(t)
	f := newFixture(t, func(o *Options) { o.Barriers = r.coord })
	get := func(step string, want ...string) []Barrier {
		t.Helper()
		a := f.do("GET", "/api/v1/barriers", readSecret, "")
		var raw map[string]json.RawMessage
		a.must(t, 200, &raw)
		var list BarrierList
		a.must(t, 200, &list)
		if list.Barriers == nil || len(raw) != 1 || raw["barriers"] == nil {
			t.Fatalf("%s: %s, want {\"barriers\": [...]}", step, a.body)
		}
		if len(list.Barriers) != len(want)/2 {
			t.Fatalf("%s: %+v, want %d barriers", step, list.Barriers, len(want)/2)
		}
		for i, b := range list.Barriers {
			if got := b.Phase + " " + memberPhases(b); got != want[2*i+1] || b.Name != want[2*i] {
				t.Errorf("%s: barrier %s: %q, want %s: %q", step, b.Name, got, want[2*i], want[2*i+1])
			}
		}
		return list.Barriers
	}
	get("no procedure")

	g1, g2 := r.member("m1"), r.member("m2")
	h := r.start("snap", "m1", "m2", "m3")
	r.until(h, "m1 and m2 joined", phases(barrier.PhaseJoined, barrier.PhaseJoined, 0))
	bs := get("m3 not running", "snap", "acquiring m1:joined m2:joined m3:")
	if b := bs[0]; b.Type != "gated" || b.Instance == 0 || b.Started.IsZero() || b.ElapsedMs <= 0 {
		t.Errorf("barrier: %+v", b)
	}
	a := f.do("GET", "/api/v1/barriers", readSecret, "")
	for _, key := range []string{`"name":"snap"`, `"type":"gated"`, `"instance":`, `"started":`, `"elapsedMs":`, `"phase":"acquiring"`, `"members":[{"name":"m1","phase":"joined"}`, `{"name":"m3","phase":""}`} {
		if !strings.Contains(string(a.body), key) {
			t.Errorf("no %s in %s", key, a.body)
		}
	}

	g3 := r.member("m3") // a late joiner learns of snap
	close(g1.acquire)
	r.until(h, "m1 acquired, m3 joined", phases(barrier.PhaseAcquired, barrier.PhaseJoined, barrier.PhaseJoined))
	get("m1 acquired", "snap", "acquiring m1:acquired m2:joined m3:joined")

	close(g2.acquire)
	close(g3.acquire)
	r.until(h, "the barrier reached", reached)
	get("inside", "snap", "inside m1:acquired m2:acquired m3:acquired")

	close(g1.inside)
	r.until(h, "m1 done", phases(barrier.PhaseDone, barrier.PhaseAcquired, barrier.PhaseAcquired))
	get("m1 done", "snap", "inside m1:done m2:acquired m3:acquired")

	close(g2.inside)
	close(g3.inside)
	r.finish(h)
	get("finished")
}

// TestBarrierPhase: the summary of every state a procedure's Stats can
// show.
func TestBarrierPhase(t *testing.T) {
	members := func(ps ...barrier.Phase) []barrier.MemberStats {
		out := make([]barrier.MemberStats, len(ps))
		for i, p := range ps {
			out[i] = barrier.MemberStats{Name: string(rune('a' + i)), Phase: p}
		}
		return out
	}
	lost := members(barrier.PhaseAcquired, barrier.PhaseJoined)
	lost[1].Lost = true
	for _, c := range []struct {
		st   barrier.Stats
		want string
	}{
		{barrier.Stats{Members: members(0, 0)}, "starting"},
		{barrier.Stats{Instance: 3, Members: members(0, barrier.PhaseJoined)}, "acquiring"},
		{barrier.Stats{Instance: 3, Members: members(barrier.PhaseAcquired, barrier.PhaseAcquired)}, "acquiring"},
		{barrier.Stats{Instance: 3, Acquire: time.Millisecond, Members: members(barrier.PhaseDone, barrier.PhaseAcquired)}, "inside"},
		{barrier.Stats{Instance: 3, Acquire: time.Millisecond, Members: members(barrier.PhaseDone, barrier.PhaseDone)}, "completing"},
		{barrier.Stats{Instance: 3, Members: lost}, "aborting"},
		{barrier.Stats{Instance: 3, Finished: true, Acquire: time.Millisecond, Members: members(barrier.PhaseDone, barrier.PhaseDone)}, "complete"},
		{barrier.Stats{Instance: 3, Finished: true, Err: barrier.ErrTimeout, Members: lost}, "aborted"},
	} {
		if got := barrierPhase(c.st); got != c.want {
			t.Errorf("barrierPhase(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
}

// TestUIBarriers: the nodes page shows the barriers in progress, each
// member's phase as it moves, names escaped, and "None in progress." when
// there is none.
func TestUIBarriers(t *testing.T) {
	env := newUIEnv(t)
	nodes := func(step string, want ...string) string {
		t.Helper()
		resp, body := env.req(t, "/ui/nodes", nil)
		wantStatus(t, step, resp, body, http.StatusOK)
		for _, w := range append([]string{`<h2>Barriers in progress</h2>`}, want...) {
			if !strings.Contains(body, w) {
				t.Errorf("%s: no %q in the page:\n%s", step, w, body)
			}
		}
		return body
	}
	nodes("none", `None in progress.`)

	const evil = `<img src=x onerror=alert(1)>`
	g1, g2 := env.barriers.member("m1"), env.barriers.member("<b>m2")
	h := env.barriers.start(evil, "m1", "<b>m2")
	env.barriers.until(h, "both joined", phases(barrier.PhaseJoined, barrier.PhaseJoined))
	body := nodes("acquiring", `<code>&lt;img src=x onerror=alert(1)&gt;</code>`, `<td>gated</td>`, `<span class="tag">acquiring</span>`,
		`<span class="chip ph-joined">&lt;b&gt;m2: joined</span>`, `<span class="chip ph-joined">m1: joined</span>`)
	if strings.Contains(body, "<img") || strings.Contains(body, "<b>") || strings.Contains(body, "None in progress") {
		t.Fatalf("the page shows a raw name, or no barrier:\n%s", body)
	}

	close(g2.acquire) // members sort by name: "<b>m2" before "m1"
	env.barriers.until(h, "<b>m2 acquired", phases(barrier.PhaseAcquired, barrier.PhaseJoined))
	nodes("one acquired", `<span class="tag">acquiring</span>`, `<span class="chip ph-acquired">&lt;b&gt;m2: acquired</span>`,
		`<span class="chip ph-joined">m1: joined</span>`)

	close(g1.acquire)
	env.barriers.until(h, "the barrier reached", reached)
	close(g1.inside)
	env.barriers.until(h, "m1 done", phases(barrier.PhaseAcquired, barrier.PhaseDone))
	nodes("inside", `<span class="tag">inside</span>`, `<span class="chip ph-done">m1: done</span>`)

	close(g2.inside)
	env.barriers.finish(h)
	nodes("finished", `None in progress.`)
}

// TestUIBarrierMembersMarked: a member not yet seen and a lost one are
// marked; a server without a coordinator says so.
func TestUIBarrierMembersMarked(t *testing.T) {
	env := newUIEnv(t)
	st := barrier.Stats{Name: "snap", Type: "flush", Instance: 4, Start: time.Now(), Total: 1500 * time.Millisecond,
		Members: []barrier.MemberStats{{Name: "a", Phase: barrier.PhaseAcquired}, {Name: "b", Phase: barrier.PhaseJoined, Lost: true}, {Name: "c"}}}
	for _, c := range []struct {
		data nodesData
		want []string
	}{
		{nodesData{Coordinator: true, Barriers: []Barrier{barrierOf(st)}}, []string{
			`<span class="tag">aborting</span>`, `>1.5s</td>`, `<span class="hint">#4</span>`,
			`<span class="chip ph-acquired">a: acquired</span>`,
			`<span class="chip ph-joined lost" title="its session was lost">b: joined (lost)</span>`,
			`<span class="chip">c: not seen</span>`}},
		{nodesData{}, []string{`This server has no barrier coordinator.`}},
	} {
		rec := httptest.NewRecorder()
		env.s.page(rec, http.StatusOK, "nodes", identity{Who: "t", Role: Read}, uiPage{Title: "Nodes", Nav: "nodes", Data: c.data})
		for _, w := range c.want {
			if !strings.Contains(rec.Body.String(), w) {
				t.Errorf("no %q in the page:\n%s", w, rec.Body)
			}
		}
	}
}
