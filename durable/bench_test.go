package durable

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkWrite measures durable transactions (one put of a 256-byte value
// each) on the OS file system, with concurrent writers sharing fsyncs.
// One op is one committed transaction.
func BenchmarkWrite(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchWrite(b, writers, 100_000, 256)
		})
	}
}

func openBenchStore(b *testing.B, keys, size int) (*Store, *Collection[string, []byte]) {
	s := New(Options{Dir: b.TempDir(), Logger: quiet(), SnapshotBytes: -1})
	kv := NewCollection[string, []byte](s, "kv", nil)
	if err := s.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, size)
	for i := 0; i < keys; i += 1000 {
		err := s.Write(context.Background(), func(tx *Tx) error {
			for j := i; j < min(i+1000, keys); j++ {
				kv.Put(tx, benchKey(j), val)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return s, kv
}

func benchKey(i int) string { return fmt.Sprintf("key%09d", i) }

func benchWrite(b *testing.B, writers, keys, size int) {
	s, kv := openBenchStore(b, keys, size)
	defer s.Close()
	val := make([]byte, size)
	// The keys, formatted before the clock starts (as procyon bench
	// durable does): the store's work is what is measured.
	names := make([]string, keys)
	for i := range names {
		names[i] = benchKey(i)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	per := (b.N + writers - 1) / writers
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := names[(g*per+i)*7919%keys]
				if err := s.Write(context.Background(), func(tx *Tx) error { return kv.Put(tx, k, val) }); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	// CPU per transaction (the process's user+system time): on two cores,
	// what bounds the rate once the disk is fast.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if wp, ok := s.p.(*walPersistence); ok {
		st := wp.w.Stats()
		b.ReportMetric(st.RecordsPerSync, "records/sync")
		b.ReportMetric(float64(st.SyncTime.Microseconds())/float64(max(st.Syncs, 1)), "µs/sync")
	}
}

// BenchmarkVsBbolt runs the same workload on durable and on bbolt side by
// side: 64 goroutines, each op one put of a 256-byte value in its own
// durable transaction (bbolt: one Update, one fsync'd commit, as bbolt
// does by default). Compare ns/op of the two sub-benchmarks.
func BenchmarkVsBbolt(b *testing.B) {
	const writers, keys, size = 64, 100_000, 256
	b.Run("durable", func(b *testing.B) { benchWrite(b, writers, keys, size) })
	b.Run("bbolt", func(b *testing.B) {
		db, err := bolt.Open(filepath.Join(b.TempDir(), "bolt.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		bucket := []byte("kv")
		val := make([]byte, size)
		for i := 0; i < keys; i += 10_000 {
			err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists(bucket)
				if err != nil {
					return err
				}
				for j := i; j < min(i+10_000, keys); j++ {
					if err := bk.Put([]byte(benchKey(j)), val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(size)
		b.ResetTimer()
		var wg sync.WaitGroup
		per := (b.N + writers - 1) / writers
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					k := []byte(benchKey((g*per + i) * 7919 % keys))
					if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, val) }); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
}

// BenchmarkGet measures point reads of the latest durable version.
func BenchmarkGet(b *testing.B) {
	s, kv := openBenchStore(b, 100_000, 256)
	defer s.Close()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok, _ := kv.Get(s.Latest(), benchKey(i*7919%100_000)); !ok {
				b.Error("missing")
				return
			}
			i++
		}
	})
}

// cpuTime returns the CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
