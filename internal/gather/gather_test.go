package gather

import (
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

func TestAwait(t *testing.T) {
	ready := make(chan struct{}, 1)
	ready <- struct{}{}
	if !Await(time.Hour, ready, nil) {
		t.Fatal("a ready signal was not seen")
	}
	if Await(time.Nanosecond, ready, nil) {
		t.Fatal("no signal, but Await reported one")
	}
	quit := make(chan struct{})
	close(quit)
	if Await(time.Hour, ready, quit) {
		t.Fatal("quit, but Await reported a signal")
	}
}
