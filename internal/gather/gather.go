// Package gather is the wait that the log's flusher (wal) and the store's
// committer (durable) use to let one write carry a whole group.
//
// With N writers each waiting for its write, a loop that starts the next
// write the moment the last one ends catches only the writers that arrived
// during that write: the ones it just released are still waking up. Groups
// then alternate between two halves of the writers, and each writer waits
// for two writes. So after a write that released several writers, the loop
// waits, for a fraction of an average write (Average.Wait), until they are
// back (Gate.Wait, which the writers end with Gate.Joined): the wait ends
// as soon as they are, so it is no fixed delay.
package gather

import (
	"sync"
	"sync/atomic"
	"time"
)

// Max bounds a gather's wait.
const Max = time.Millisecond

// Average is a moving average of how long a write takes: each sample
// moves it by an eighth of the difference; the first sample is taken as
// is. The zero value has no sample. Safe for concurrent use; it is meant
// for one writer of samples.
type Average struct {
	ns atomic.Int64
}

// Observe adds a sample.
func (a *Average) Observe(d time.Duration) {
	if avg := a.ns.Load(); avg == 0 {
		a.ns.Store(int64(d))
	} else {
		a.ns.Store(avg + (int64(d)-avg)/8)
	}
}

// Wait returns how long a gather may wait: half the average, at most Max;
// zero before the first sample (do not gather).
func (a *Average) Wait() time.Duration {
	return min(time.Duration(a.ns.Load()/2), Max)
}

// await waits until d has passed, ready receives, or quit is closed (a nil
// quit never is), and reports whether ready received.
func await(d time.Duration, ready, quit <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
		return false
	case <-quit:
		return false
	}
}

// Gate is where a loop waits for the group it is about to write to reach
// a size, and where the writers joining that group say when it has. Its
// methods are called with the lock that guards the group held (the
// caller's). The zero value is ready to use.
type Gate struct {
	target int           // the size a Wait waits for; 0: none does
	ready  chan struct{} // capacity 1; signalled once target is reached
}

// Joined tells a Wait under way that the group now has n members; the
// first call that reaches its target ends it.
func (g *Gate) Joined(n int) {
	if g.target > 0 && n >= g.target {
		g.target = 0
		g.ready <- struct{}{} // capacity 1, and only one send per Wait
	}
}

// Wait, called with l held, lets l go and waits until the group has
// target members (Joined), d has passed, or quit is closed (a nil quit
// never is); it takes l again before it returns, and reports whether the
// target was reached.
func (g *Gate) Wait(l sync.Locker, target int, d time.Duration, quit <-chan struct{}) bool {
	if g.ready == nil {
		g.ready = make(chan struct{}, 1)
	}
	g.target = target
	l.Unlock()
	hit := await(d, g.ready, quit)
	l.Lock()
	g.target = 0
	select {
	case <-g.ready: // reached after Await gave up, before l was taken
		hit = true
	default:
	}
	return hit
}
