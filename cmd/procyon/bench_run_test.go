package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBenchFlagChecks runs every bench command with one bad flag: each
// fails with exit 2 (a usage error) and the message naming the flag, and
// creates nothing.
func TestBenchFlagChecks(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "wal", "-writers", "0"}, "procyon bench wal: -writers must be between 1 and 100000, got 0\n"},
		{[]string{"bench", "wal", "-size", "16777217"}, "procyon bench wal: -size must be between 1 and 16 MiB, got 16777217\n"},
		{[]string{"bench", "wal", "-duration", "0s"}, "procyon bench wal: -duration must be positive, got 0s\n"},
		{[]string{"bench", "wal", "-sync-every", "0"}, "procyon bench wal: -sync-every must be at least 1, got 0\n"},
		{[]string{"bench", "wal", "-records", "-3"}, "procyon bench wal: -records must be at least 1, got -3\n"},
		{[]string{"bench", "durable", "-keys", "0"}, "procyon bench durable: -keys must be between 1 and 100000000, got 0\n"},
		{[]string{"bench", "durable", "-value-size", "-1"}, "procyon bench durable: -value-size must be between 0 and 1 MiB, got -1\n"},
		{[]string{"bench", "durable", "-snapshot-share", "1.5"}, "procyon bench durable: -snapshot-share must be in (0, 1], got 1.5\n"},
		{[]string{"bench", "durable", "-replay", "-1"}, "procyon bench durable: -replay must not be negative, got -1\n"},
		{[]string{"bench", "durable", "-rounds", "1001"}, "procyon bench durable: -rounds must be between 1 and 1000, got 1001\n"},
		// The first bad flag, in the command's order, is the one reported.
		{[]string{"bench", "durable", "-rounds", "0", "-writers", "0"}, "procyon bench durable: -writers must be between 1 and 100000, got 0\n"},
		{[]string{"bench", "procedures", "-concurrency", "0"}, "procyon bench procedures: -concurrency must be between 1 and 100000, got 0\n"},
		{[]string{"bench", "procedures", "-steps", "1001"}, "procyon bench procedures: -steps must be between 1 and 1000, got 1001\n"},
		{[]string{"bench", "procedures", "-workers", "0"}, "procyon bench procedures: -workers must be between 1 and 10000, got 0\n"},
		{[]string{"bench", "procedures", "-live", "0"}, "procyon bench procedures: -live must be between 1 and 20000000, got 0\n"},
		{[]string{"bench", "barrier", "-members", "0"}, "procyon bench barrier: -members must be between 1 and 1000, got 0\n"},
		{[]string{"bench", "barrier", "-warmup", "-1"}, "procyon bench barrier: -warmup must not be negative, got -1\n"},
		{[]string{"bench", "barrier", "-transport", "carrier-pigeon"}, "procyon bench barrier: -transport must be \"inproc\" or \"etcd\", got \"carrier-pigeon\"\n"},
	} {
		args := append(c.args, "-dir", parent)
		code, out, errOut := runCLI(t, args...)
		want := c.want + "Run 'procyon " + strings.Join(c.args[:2], " ") + " --help' for usage.\n"
		if code != 2 || out != "" || errOut != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", args, code, out, errOut, want)
		}
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("a refused bench created %s", parent)
	}
	// A stray argument is a usage error (exit 2), also for bench barrier.
	if code, _, errOut := runCLI(t, "bench", "barrier", "extra"); code != 2 {
		t.Fatalf("bench barrier extra: exit %d, %q", code, errOut)
	}
}

func TestStartWorkers(t *testing.T) {
	const workers, perWorker = 4, 100
	var calls [workers]atomic.Int64
	reached := make(chan struct{}, workers)
	run := startWorkers(context.Background(), workers, func(g int) worker {
		next := uint64(0) // i counts from 0, one by one, on each worker
		return func(i uint64) error {
			if i != next {
				t.Errorf("worker %d: i = %d, want %d", g, i, next)
			}
			next++
			if calls[g].Add(1) == perWorker {
				reached <- struct{}{}
			}
			return nil
		}
	})
	for range workers {
		<-reached
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	var total int64
	for g := range workers {
		if n := int64(len(run.spans[g])); n != calls[g].Load() {
			t.Errorf("worker %d: %d spans for %d calls", g, n, calls[g].Load())
		}
		total += calls[g].Load()
	}
	lat := run.latencies()
	if int64(len(lat)) != total {
		t.Fatalf("%d latencies for %d calls", len(lat), total)
	}
	for i := 1; i < len(lat); i++ {
		if lat[i] < lat[i-1] || lat[i-1] < 0 {
			t.Fatalf("latencies not sorted or negative at %d: %v, %v", i, lat[i-1], lat[i])
		}
	}
}

func TestStartWorkersErrorsAndContext(t *testing.T) {
	boom := errors.New("boom")
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan struct{})
	run := startWorkers(ctx, 2, func(g int) worker {
		return func(i uint64) error {
			if g == 1 && i == 3 {
				close(failed)
				return boom
			}
			return nil
		}
	})
	<-failed
	// Canceling ctx stops the other worker; stop returns the failure.
	cancel()
	if err := run.stop(); !errors.Is(err, boom) {
		t.Fatalf("stop = %v, want boom", err)
	}
	if len(run.spans[1]) != 0 {
		t.Fatalf("the failed worker kept %d spans", len(run.spans[1]))
	}
}

func TestRunEach(t *testing.T) {
	const n = 1000
	var mu sync.Mutex
	seen := make(map[int64]int)
	err := runEach(context.Background(), 8, n, func(int) func(int64) error {
		return func(i int64) error {
			mu.Lock()
			seen[i]++
			mu.Unlock()
			return nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(n) {
		if seen[i] != 1 {
			t.Fatalf("i = %d done %d times", i, seen[i])
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct i, want %d", len(seen), n)
	}

	boom := errors.New("boom")
	err = runEach(context.Background(), 4, n, func(int) func(int64) error {
		return func(i int64) error {
			if i == 10 {
				return boom
			}
			return nil
		}
	})
	if !errors.Is(err, boom) {
		t.Fatalf("runEach = %v, want boom", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = runEach(ctx, 4, n, func(int) func(int64) error {
		return func(int64) error { return nil }
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("runEach after cancel = %v, want context.Canceled", err)
	}
}
