package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// The bench commands' flag checks: each returns the usage error of a flag
// whose value is out of bounds, or nil.

func intIn(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return usagef("-%s must be between %d and %d, got %d", name, lo, hi, v)
	}
	return nil
}

// sizeIn is intIn for a size in bytes whose bound hi is whole MiB.
func sizeIn(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return usagef("-%s must be between %d and %d MiB, got %d", name, lo, hi>>20, v)
	}
	return nil
}

func atLeast(name string, v, lo int) error {
	switch {
	case v >= lo:
		return nil
	case lo == 0:
		return usagef("-%s must not be negative, got %d", name, v)
	default:
		return usagef("-%s must be at least %d, got %d", name, lo, v)
	}
}

// fraction checks that v is in (0, 1].
func fraction(name string, v float64) error {
	if v <= 0 || v > 1 {
		return usagef("-%s must be in (0, 1], got %v", name, v)
	}
	return nil
}

func positive(name string, d time.Duration) error {
	if d <= 0 {
		return usagef("-%s must be positive, got %v", name, d)
	}
	return nil
}

// firstErr returns the first error that is not nil: the first flag check,
// in the order given, that failed.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// span is when one operation of a worker started and ended, as offsets
// from the start of its run.
type span struct{ start, end time.Duration }

// workerRun is a timed load: goroutines calling one operation over and
// over until stopped.
type workerRun struct {
	start   time.Time
	stopped atomic.Bool
	stopCtx func() bool
	wg      sync.WaitGroup
	spans   [][]span // per worker, set when it returns
	errs    []error  // per worker: the error that stopped it
}

// worker is one worker's operation; it is called with i = 0, 1, 2, ...
type worker func(i uint64) error

// startWorkers starts n workers. Worker g makes its operation with
// newWorker(g) (in its own goroutine: per-worker state goes there) and
// calls it over and over, timing each call, until stop is called or ctx is
// done; it stops at its first error.
func startWorkers(ctx context.Context, n int, newWorker func(g int) worker) *workerRun {
	r := &workerRun{start: time.Now(), spans: make([][]span, n), errs: make([]error, n)}
	// The workers read a flag, not ctx.Err(), which takes a mutex.
	r.stopCtx = context.AfterFunc(ctx, func() { r.stopped.Store(true) })
	for g := range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			op := newWorker(g)
			l := make([]span, 0, 1<<12)
			for i := uint64(0); !r.stopped.Load(); i++ {
				t0 := time.Since(r.start)
				err := op(i)
				l = append(l, span{t0, time.Since(r.start)})
				if err != nil {
					r.errs[g] = err
					return
				}
			}
			r.spans[g] = l
		}()
	}
	return r
}

// stop stops the workers, waits for them, and returns their errors joined.
func (r *workerRun) stop() error {
	r.stopped.Store(true)
	r.wg.Wait()
	r.stopCtx()
	return errors.Join(r.errs...)
}

// latencies returns every operation's latency, sorted. Call after stop.
func (r *workerRun) latencies() latencies {
	parts := make([]latencies, len(r.spans))
	for g, l := range r.spans {
		parts[g] = make(latencies, len(l))
		for i, s := range l {
			parts[g][i] = s.end - s.start
		}
	}
	return mergeSorted(parts)
}

// runEach calls an operation for i = 0 .. n-1, each i once, spread over
// workers goroutines; goroutine g makes its operation with newWorker(g).
// It returns their errors joined, or ctx's error if it ended first (the
// workers then stop early).
func runEach(ctx context.Context, workers int, n int64, newWorker func(g int) func(i int64) error) error {
	var next atomic.Int64
	var stopped atomic.Bool
	defer context.AfterFunc(ctx, func() { stopped.Store(true) })()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := newWorker(g)
			for i := next.Add(1) - 1; i < n && !stopped.Load(); i = next.Add(1) - 1 {
				if err := op(i); err != nil {
					errs[g] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
