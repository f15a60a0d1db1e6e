package remote

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/internal/testseed"
	"github.com/procyon-dev/procyon/procedure"
)

// A crash at every FS operation of a remote step's life (submit, the
// Call's commit, the send, the report's commit, the step that consumes
// the outcome), then a restart on what survived (random unsynced data
// kept, by the seed): the procedure, if its submission survived,
// finishes with the node's result, and no op record is left behind.
func TestCrashAtEveryWrite(t *testing.T) {
	seed := testseed.Seed(t)
	for k := 1; ; k++ {
		w := newWorld(t, Options{})
		var cur atomic.Pointer[Dispatcher] // the node reports to the master of the moment
		cur.Store(w.d)
		w.onOpen = cur.Store // the restarted master, before it sends
		master := func() MasterService { return cur.Load().Service() }
		n := w.node("rs1", 1)
		n.mu.Lock()
		n.auto = master
		n.mu.Unlock()
		w.fs.SetCrashAfter(k)
		id, err := w.caller.Submit(context.Background(), callData{Node: "rs1", Type: "echo"}, procedure.SubmitOptions{})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err = w.e.Wait(ctx, id)
			cancel()
		}
		if !w.fs.Crashed() {
			if err != nil {
				t.Fatalf("no crash, yet: %v", err)
			}
			t.Logf("crashed at each of the first %d FS operations", k-1)
			return
		}
		w.reopen(w.fs.CrashClone(int64(seed) + int64(k)))
		if id != 0 {
			checkFinished(t, w, id, k)
		}
		if ops := w.d.ops.Len(w.store.Latest()); ops != 0 {
			t.Fatalf("crash at %d: %d op records left behind", k, ops)
		}
		w.close()
	}
}

func checkFinished(t *testing.T, w *world, id procedure.ID, k int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := w.caller.Result(w.e.Wait(ctx, id))
	if errors.Is(err, procedure.ErrNotFound) {
		return // its submission was not durable
	}
	if err != nil || c.Kind != "" || string(c.Result) != "ok" {
		t.Fatalf("crash at %d: after the restart: %+v, %v", k, c, err)
	}
	if ok, _ := w.e.Signalled(eventOf(c.Op)); ok {
		t.Fatalf("crash at %d: the consumed op's event is still signalled", k)
	}
}
