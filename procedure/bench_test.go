package procedure

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// benchSM is the benchmark's type: each step writes one small key; with
// locks, each procedure holds an exclusive region lock (under one of 16
// tables) from its first step to its end.
type benchSM struct {
	steps int
	locks bool
	meta  *durable.Collection[uint64, []byte]
}

func (sm *benchSM) Execute(ctx context.Context, env *Env, st int, d *uint64) (Next, error) {
	key, val := *d*uint64(sm.steps)+uint64(st), binary.AppendUvarint(nil, *d)
	env.Write(func(tx *durable.Tx) error { return sm.meta.Put(tx, key, val) })
	if st+1 >= sm.steps {
		return Done(), nil
	}
	return GoTo(st + 1), nil
}

func (sm *benchSM) Rollback(ctx context.Context, env *Env, st int, d *uint64) error { return nil }

func (sm *benchSM) Locks(st int, d *uint64) []Lock {
	if !sm.locks {
		return nil
	}
	return []Lock{ExclusiveLock("table/t" + strconv.FormatUint(*d%16, 10) + "/region/r" + strconv.FormatUint(*d, 10))}
}

// BenchmarkProcedures runs 1- and 3-step procedures, each step writing one
// small key, with 256 in flight, on the WAL in a temporary directory (real
// fsyncs), without locks and with an uncontended region lock per
// procedure. One op is one procedure, submission to result.
func BenchmarkProcedures(b *testing.B) {
	for _, bc := range []struct {
		steps int
		locks bool
	}{{1, false}, {3, false}, {3, true}} {
		name := fmt.Sprintf("steps=%d/locks=%v", bc.steps, bc.locks)
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			quiet := slog.New(slog.DiscardHandler)
			s := durable.New(durable.Options{Dir: b.TempDir(), Logger: quiet})
			e := New(s, Options{Logger: quiet, Workers: 8})
			sm := &benchSM{steps: bc.steps, locks: bc.locks, meta: durable.NewCollection[uint64, []byte](s, "meta", nil)}
			typ := Register[int, uint64](e, "bench", sm, &TypeOptions[uint64]{HoldLocks: true, Codec: durable.CodecFunc(
				func(v uint64) ([]byte, error) { return binary.AppendUvarint(nil, v), nil },
				func(b []byte) (uint64, error) { v, _ := binary.Uvarint(b); return v, nil })})
			if err := s.Open(ctx); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := e.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer e.Stop()
			const inflight = 256
			var next sync.WaitGroup
			work := make(chan int)
			for c := range inflight {
				next.Add(1)
				go func() {
					defer next.Done()
					for range work {
						id, err := typ.Submit(ctx, uint64(c), SubmitOptions{})
						if err == nil {
							_, err = e.Wait(ctx, id)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			b.ResetTimer()
			st0 := s.Stats()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				work <- i
			}
			close(work)
			next.Wait()
			// CPU per procedure (the process's user+system time): unlike the
			// wall time, not set by the disk's fsync latency.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			// Procedures per group commit (one fsync each), and store
			// transactions (the engine's batches) per group.
			st := s.Stats()
			groups := float64(max(st.Groups-st0.Groups, 1))
			b.ReportMetric(float64(b.N)/groups, "procs/group")
			b.ReportMetric(float64(st.Commits-st0.Commits)/groups, "batches/group")
		})
	}
}

// cpuTime returns the CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
