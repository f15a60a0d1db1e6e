package barrier_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

// The tests in this file run parties as separate OS processes on the
// embedded etcd and SIGKILL them. The procedure timeout is a minute, far
// beyond the lease TTL, and each test checks by the error's Source and
// Kind that the abort came from the lost lease, not from a timeout.

func TestProcessesKillMember(t *testing.T) {
	for _, phase := range []string{"acquire", "inside"} {
		t.Run("during-"+phase, func(t *testing.T) {
			e := newEtcdEnv(t)
			c := newCluster(t, e, clusterOptions{coord: barrier.CoordinatorOptions{Timeout: time.Minute}})
			members := []string{"m1", "m2", "m3"}
			// m1 runs in this process (its recorder checks Cleanup); m2
			// and m3 are processes, and m2 is killed while it hangs.
			c.startMember("m1", behavior{}, barrier.MemberOptions{})
			victim := startHelper(t, e, "member", "m2", helperBehavior+"=hang-"+phase)
			survivor := startHelper(t, e, "member", "m3", helperBehavior+"=ok")
			h := c.start(context.Background(), "p", members)

			victim.waitEvent(phase + "-start")
			if phase == "inside" {
				survivor.waitEvent("inside-start")
			} else {
				survivor.waitEvent("acquired")
			}
			victim.kill()

			_, err := wait(t, h)
			ae := abortOf(t, err)
			if ae.Source != "m2" || !errors.Is(err, barrier.ErrMemberLost) {
				t.Fatalf("got %v, want m2's lost lease", err)
			}
			cl := survivor.waitEvent("cleanup")
			if cl.Err == nil || cl.Err.Source != "m2" || cl.Err.Kind != barrier.KindMemberLost || cl.Err.Message != ae.Message {
				t.Errorf("m3 cleaned up with %+v, want %v", cl.Err, ae)
			}
			c.settle(t, []string{"m1"})
			c.checkInvariants(t, []string{"m1"}, err)
			c.rec.mu.Lock()
			if c.rec.cleanups["m1"] != 1 {
				t.Errorf("m1 acquired but did not clean up")
			}
			c.rec.mu.Unlock()
			if phase == "acquire" && victim.reported("acquired") {
				t.Errorf("m2 acquired though it hung in Acquire")
			}
		})
	}
}

func TestProcessesKillCoordinator(t *testing.T) {
	e := newEtcdEnv(t)
	c := newCluster(t, e, clusterOptions{})
	members := []string{"m1", "m2"}
	c.startMembers(members, map[string]behavior{"m1": {inside: hangInside}, "m2": {inside: hangInside}}, barrier.MemberOptions{Timeout: time.Minute})
	coord := startHelper(t, e, "coordinator", "p", helperMembers+"="+strings.Join(members, ","))
	coord.waitEvent("started")
	c.rec.waitFor(t, "every member inside", func() bool { return len(c.rec.insideStart) == 2 })
	coord.kill()

	c.waitCleanups(t, members)
	c.settle(t, members)
	c.rec.mu.Lock()
	outcome := c.rec.cleanup["m1"]
	for _, m := range members {
		err := c.rec.cleanup[m]
		if ae := abortOf(t, err); ae.Source != barrier.CoordinatorSource || !errors.Is(err, barrier.ErrCoordinatorLost) {
			t.Errorf("member %s cleaned up with %v, want a lost coordinator", m, err)
		}
	}
	c.rec.mu.Unlock()
	c.checkInvariants(t, members, outcome)
	// The record and decisions died with the coordinator's lease; the
	// members swept their own markers.
	e.waitNoProcKeys(t)
}

// TestProcessesAllSucceed runs a barrier whose members are all processes.
func TestProcessesAllSucceed(t *testing.T) {
	e := newEtcdEnv(t)
	members := []string{"m1", "m2", "m3"}
	var hs []*helper
	for _, m := range members {
		hs = append(hs, startHelper(t, e, "member", m, helperBehavior+"=ok"))
	}
	c := newCluster(t, e, clusterOptions{})
	res, err := wait(t, c.start(context.Background(), "p", members))
	if err != nil || len(res) != 3 || string(res["m2"]) != "result of m2" {
		t.Fatalf("Wait = %q, %v", res, err)
	}
	for _, h := range hs {
		if l := h.waitEvent("finished"); l.Err != nil {
			t.Errorf("%s finished with %v", h.name, l.Err)
		}
		if h.reported("cleanup") {
			t.Errorf("%s cleaned up after a completed procedure", h.name)
		}
	}
}
