package barrier_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/procyon-dev/procyon/barrier"
)

// TestEtcdStaleKeysSwept leaves behind what a crashed run of a name would
// (a member marker that outlived its coordinator, a decision) and checks
// that a new run of the name is not confused by them and removes them.
func TestEtcdStaleKeysSwept(t *testing.T) {
	e := newEtcdEnv(t)
	ctx := context.Background()
	for _, k := range []string{"run/p/7/m1/acquired", "run/p/7/m2/acquired", "proc/p/reached", "proc/p/abort"} {
		if _, err := e.cli.Put(ctx, e.prefix+k, `{"instance":7,"source":"m1","kind":"failed"}`); err != nil {
			t.Fatal(err)
		}
	}
	c := newCluster(t, e, clusterOptions{})
	members := names("m", 2)
	c.startMembers(members, nil, barrier.MemberOptions{})
	if _, err := wait(t, c.start(ctx, "p", members)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	c.settle(t, members)
	c.checkInvariants(t, members, nil)
	if keys := e.procKeys(t); len(keys) != 0 {
		t.Errorf("keys left: %q", keys)
	}
}

// TestEtcdFencing takes the coordinator's election key away before the
// barrier is reached: the reached transaction must refuse, and no member
// may run Inside.
func TestEtcdFencing(t *testing.T) {
	e := newEtcdEnv(t)
	c := newCluster(t, e, clusterOptions{})
	members := names("m", 3)
	gate := make(chan struct{})
	c.startMembers(members, map[string]behavior{"m3": {acquire: func(ctx context.Context) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}}}, barrier.MemberOptions{})
	h := c.start(context.Background(), "p", members)
	c.rec.waitFor(t, "m1 and m2 acquired", func() bool { return len(c.rec.acquired) == 2 })
	if _, err := e.cli.Delete(context.Background(), e.prefix+"coord/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	close(gate)
	_, err := wait(t, h)
	if ae := abortOf(t, err); ae.Source != barrier.CoordinatorSource || !errors.Is(err, barrier.ErrCoordinatorLost) {
		t.Fatalf("got %v, want a fenced coordinator", err)
	}
	c.settle(t, members)
	c.checkInvariants(t, members, err)
	if len(c.rec.insideStart) != 0 {
		t.Errorf("Inside ran without a barrier: %v", c.rec.insideStart)
	}
}

// compactingWatcher makes the watches whose key contains match fail as if
// the revision they follow had been compacted, once trigger is closed.
type compactingWatcher struct {
	clientv3.Watcher
	match   string
	trigger chan struct{}
}

func (w *compactingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	if !strings.Contains(key, w.match) {
		return in
	}
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for {
			select {
			case r, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- r:
				case <-ctx.Done():
					return
				}
			case <-w.trigger:
				select {
				case out <- clientv3.WatchResponse{CompactRevision: 1, Canceled: true}:
				case <-ctx.Done():
				}
				for range in { // until the watcher's ctx ends, as a dead watch would
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// TestEtcdWatchCompacted checks that a watch failing with ErrCompacted
// aborts the procedure instead of leaving it hanging, on either side.
func TestEtcdWatchCompacted(t *testing.T) {
	for _, side := range []string{"coordinator", "member"} {
		t.Run(side, func(t *testing.T) {
			e := newEtcdEnv(t)
			trigger := make(chan struct{})
			cli, err := e.srv.Client(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() }) // after the parties using it are closed
			match := "/run/"
			if side == "member" {
				match = "/proc/"
			}
			cli.Watcher = &compactingWatcher{Watcher: cli.Watcher, match: match, trigger: trigger}
			faulty, err := barrier.NewEtcd(cli, e.options())
			if err != nil {
				t.Fatal(err)
			}

			members := names("m", 2)
			c := &cluster{t: t, e: e, rec: newRecorder(), members: map[string]*runningMember{}}
			coordTr := e.transport(t)
			if side == "coordinator" {
				coordTr = faulty
			}
			c.coord = barrier.NewCoordinator(coordTr, barrier.CoordinatorOptions{Timeout: time.Minute})
			t.Cleanup(func() { c.coord.Close(); c.stopAll() })
			bs := map[string]behavior{"m1": {inside: hangInside}, "m2": {inside: hangInside}}
			if side == "member" {
				c.e = wrapEnv{e, func(barrier.Transport) barrier.Transport { return faulty }}
				c.startMember("m2", bs["m2"], barrier.MemberOptions{})
				c.e = e
				c.startMember("m1", bs["m1"], barrier.MemberOptions{})
			} else {
				c.startMembers(members, bs, barrier.MemberOptions{})
			}
			h := c.start(context.Background(), "p", members)
			c.rec.waitFor(t, "every member inside", func() bool { return len(c.rec.insideStart) == 2 })
			close(trigger)
			_, err = wait(t, h)
			ae := abortOf(t, err)
			wantSource := barrier.CoordinatorSource
			if side == "member" {
				wantSource = "m2"
			}
			if ae.Source != wantSource || !errors.Is(err, barrier.ErrTransport) || !strings.Contains(ae.Message, "compacted") {
				t.Fatalf("got %v, want %s's compacted watch", err, wantSource)
			}
			c.settle(t, members)
			c.checkInvariants(t, members, err)
		})
	}
}

func TestEtcdTooManyMembers(t *testing.T) {
	e := newEtcdEnv(t)
	c := barrier.NewCoordinator(e.transport(t), barrier.CoordinatorOptions{})
	defer c.Close()
	_, err := c.Start(context.Background(), "big", "test", nil, names("m", 126))
	if !errors.Is(err, barrier.ErrInvalid) || !strings.Contains(err.Error(), "at most 125") {
		t.Fatalf("Start with 126 members = %v, want ErrInvalid", err)
	}
}

// TestEtcdLiveMembers: a member shows in LiveMembers while its session is
// open, and not after it closed.
func TestEtcdLiveMembers(t *testing.T) {
	e := newEtcdEnv(t)
	ctx := context.Background()
	tr, err := barrier.NewEtcd(e.cli, e.options())
	if err != nil {
		t.Fatal(err)
	}
	live := func() string {
		t.Helper()
		names, err := tr.LiveMembers(ctx)
		if err != nil {
			t.Fatalf("LiveMembers: %v", err)
		}
		return strings.Join(names, ",")
	}
	if got := live(); got != "" {
		t.Fatalf("no member open, LiveMembers = %q", got)
	}
	m2, err := tr.OpenMember(ctx, "m2")
	if err != nil {
		t.Fatal(err)
	}
	m1, err := tr.OpenMember(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if got := live(); got != "m1,m2" {
		t.Fatalf("m1 and m2 open, LiveMembers = %q", got)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := live(); got != "m1" {
		t.Fatalf("m2 closed, LiveMembers = %q", got)
	}
	m1.Close()
}
