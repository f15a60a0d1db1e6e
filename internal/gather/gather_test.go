package gather

import (
	"sync"
	"testing"
	"time"
)

func TestAverage(t *testing.T) {
	var a Average
	if got := a.Wait(); got != 0 {
		t.Fatalf("Wait before any sample = %v, want 0", got)
	}
	a.Observe(800 * time.Microsecond) // the first sample is taken as is
	if got := a.Wait(); got != 400*time.Microsecond {
		t.Fatalf("Wait = %v, want 400µs", got)
	}
	a.Observe(0) // 800 - 800/8 = 700
	if got := a.Wait(); got != 350*time.Microsecond {
		t.Fatalf("Wait = %v, want 350µs", got)
	}
	a.Observe(700*time.Microsecond + 8*time.Millisecond) // 700 + 1000
	if got := a.Wait(); got != 850*time.Microsecond {
		t.Fatalf("Wait = %v, want 850µs", got)
	}
	for range 100 {
		a.Observe(time.Second)
	}
	if got := a.Wait(); got != Max {
		t.Fatalf("Wait = %v, want Max (%v)", got, Max)
	}
}

// hookLock is a mutex that runs a hook while a Wait does not hold it:
// onUnlock as a writer that joins during the wait, onLock as one that
// joins after the wait gave up, before it took the lock again.
type hookLock struct {
	sync.Mutex
	onUnlock, onLock func()
}

func (l *hookLock) Unlock() {
	l.Mutex.Unlock()
	if l.onUnlock != nil {
		l.onUnlock()
	}
}

func (l *hookLock) Lock() {
	if l.onLock != nil {
		l.onLock()
	}
	l.Mutex.Lock()
}

func TestGateTargetReached(t *testing.T) {
	var g Gate
	l := &hookLock{}
	quit := make(chan struct{})
	l.onUnlock = func() {
		l.onUnlock = nil
		l.Lock()
		g.Joined(1) // below the target
		g.Joined(2)
		l.Unlock()
		close(quit) // without the signal, Wait ends now and reports a miss
	}
	l.Lock()
	if !g.Wait(l, 2, time.Hour, quit) {
		t.Fatal("the target was reached, but Wait reported a timeout")
	}
	l.Unlock()
}

func TestGateTimeout(t *testing.T) {
	var g Gate
	l := &hookLock{}
	l.onUnlock = func() { g.Joined(1) } // below the target
	l.Lock()
	if g.Wait(l, 2, time.Nanosecond, nil) {
		t.Fatal("the target was not reached, but Wait reported it")
	}
	g.Joined(5) // no Wait under way: no signal left behind
	l.onUnlock = nil
	if g.Wait(l, 2, time.Nanosecond, nil) {
		t.Fatal("a Joined between waits ended the next one")
	}
	l.Unlock()
}

func TestGateReachedAfterTimeout(t *testing.T) {
	var g Gate
	l := &hookLock{}
	l.Lock()
	l.onLock = func() { l.onLock = nil; g.Joined(3) }
	if !g.Wait(l, 3, time.Nanosecond, nil) {
		t.Fatal("the target was reached before Wait took the lock again, but Wait missed it")
	}
	l.Unlock()
}

func TestGateQuit(t *testing.T) {
	var g Gate
	var l sync.Mutex
	quit := make(chan struct{})
	close(quit)
	l.Lock()
	if g.Wait(&l, 2, time.Hour, quit) {
		t.Fatal("quit, but Wait reported the target reached")
	}
	l.Unlock()
}
