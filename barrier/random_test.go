package barrier_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

// TestRandomizedInProc runs many random procedures on the in-process
// transport, in a synctest bubble so that timeouts and slow members cost no
// real time. Each member gets a random behavior (succeed, be slow, fail or
// hang in a phase, fail to build, never show up, show up late), the
// coordinator may cancel at a random moment, and timeouts are random. The
// outcome must follow from the behaviors, and the invariants must hold.
// Replay a failure with BARRIER_SEED=<seed>.
func TestRandomizedInProc(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BARRIER_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("BARRIER_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with BARRIER_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x62617272))
	rounds := 150
	if testing.Short() {
		rounds = 30
	}
	for round := range rounds {
		sc := newScenario(rng)
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { sc.run(t) })
		})
		if t.Failed() {
			t.Fatalf("round %d failed: %s (seed %d)", round, sc, seed)
		}
	}
}

type memberKind int

const (
	kindOK memberKind = iota
	kindSlow
	kindFactoryFail
	kindAcquireFail
	kindInsideFail
	kindAcquireHang
	kindInsideHang
	kindAbsent
	kindLate
)

var kindNames = [...]string{"ok", "slow", "factory-fail", "acquire-fail", "inside-fail", "acquire-hang", "inside-hang", "absent", "late"}

type scenario struct {
	members       []string
	kinds         map[string]memberKind
	delays        map[string]time.Duration // work time of slow members, arrival of late ones
	memberTimeout map[string]time.Duration
	coordTimeout  time.Duration
	cancelAfter   time.Duration // 0: no cancel
}

func newScenario(rng *rand.Rand) *scenario {
	n := 1 + rng.IntN(6)
	sc := &scenario{
		members:       names("m", n),
		kinds:         map[string]memberKind{},
		delays:        map[string]time.Duration{},
		memberTimeout: map[string]time.Duration{},
		coordTimeout:  time.Duration(5+rng.IntN(20)) * time.Second,
	}
	for _, m := range sc.members {
		k := kindOK
		if rng.IntN(3) == 0 { // a third of members misbehave somehow
			k = memberKind(1 + rng.IntN(len(kindNames)-1))
		}
		sc.kinds[m] = k
		sc.delays[m] = time.Duration(rng.IntN(2000)) * time.Millisecond
		sc.memberTimeout[m] = time.Duration(5+rng.IntN(30)) * time.Second
	}
	if rng.IntN(5) == 0 {
		sc.cancelAfter = time.Duration(1+rng.IntN(3000)) * time.Millisecond
	}
	return sc
}

func (sc *scenario) String() string {
	s := fmt.Sprintf("coordinator timeout %v, cancel after %v;", sc.coordTimeout, sc.cancelAfter)
	for _, m := range sc.members {
		s += fmt.Sprintf(" %s=%s(%v, timeout %v)", m, kindNames[sc.kinds[m]], sc.delays[m], sc.memberTimeout[m])
	}
	return s
}

func (sc *scenario) behavior(m string) behavior {
	d := sc.delays[m]
	sleep := func(ctx context.Context) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	boom := errors.New("boom")
	switch sc.kinds[m] {
	case kindSlow:
		return behavior{acquire: sleep, inside: func(ctx context.Context) ([]byte, error) { return []byte(m), sleep(ctx) }}
	case kindFactoryFail:
		return behavior{factoryErr: boom}
	case kindAcquireFail:
		return behavior{acquire: func(ctx context.Context) error { sleep(ctx); return boom }}
	case kindInsideFail:
		return behavior{inside: func(ctx context.Context) ([]byte, error) { sleep(ctx); return nil, boom }}
	case kindAcquireHang:
		return behavior{acquire: hang}
	case kindInsideHang:
		return behavior{inside: hangInside}
	}
	return behavior{}
}

func (sc *scenario) run(t *testing.T) {
	e := &inprocEnv{tr: barrier.NewInProc()}
	c := newCluster(t, e, clusterOptions{coord: barrier.CoordinatorOptions{Timeout: sc.coordTimeout}})
	var late []string
	for _, m := range sc.members {
		switch sc.kinds[m] {
		case kindAbsent:
		case kindLate:
			late = append(late, m)
		default:
			c.startMember(m, sc.behavior(m), barrier.MemberOptions{Timeout: sc.memberTimeout[m]})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := c.start(ctx, "p", sc.members)
	var arrived sync.WaitGroup
	for _, m := range late {
		arrived.Add(1)
		time.AfterFunc(sc.delays[m], func() {
			defer arrived.Done()
			c.startMember(m, behavior{}, barrier.MemberOptions{Timeout: sc.memberTimeout[m]})
		})
	}
	if sc.cancelAfter > 0 {
		time.AfterFunc(sc.cancelAfter, func() { h.Cancel("random cancel") })
	}
	res, err := wait(t, h)
	arrived.Wait() // so that settle sees the late members too
	c.settle(t, sc.members)
	c.checkInvariants(t, sc.members, err)

	behaved := true // every member can complete its part
	for _, m := range sc.members {
		if k := sc.kinds[m]; k != kindOK && k != kindSlow && k != kindLate {
			behaved = false
		}
	}
	if err == nil {
		if len(res) != len(sc.members) {
			t.Errorf("completed with %d results for %d members", len(res), len(sc.members))
		}
		if !behaved {
			t.Errorf("completed although a member misbehaved")
		}
	} else {
		ae := abortOf(t, err)
		if behaved && sc.cancelAfter == 0 {
			t.Errorf("aborted (%v) although every member behaved", err)
		}
		switch ae.Kind {
		case barrier.KindFailed:
			if k := sc.kinds[ae.Source]; k != kindFactoryFail && k != kindAcquireFail && k != kindInsideFail {
				t.Errorf("failure blamed on %s, which behaves %s", ae.Source, kindNames[k])
			}
		case barrier.KindCanceled:
			if sc.cancelAfter == 0 || ae.Source != barrier.CoordinatorSource {
				t.Errorf("canceled (%v) without a cancel", err)
			}
		case barrier.KindTimeout:
		default:
			t.Errorf("unexpected abort %v", err)
		}
	}
	// Every member that learned of the procedure agrees on its outcome.
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	for m, out := range c.rec.outcome {
		if (out == nil) != (err == nil) {
			t.Errorf("member %s finished with %v, the coordinator with %v", m, out, err)
		}
	}
}
