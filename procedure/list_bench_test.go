package procedure

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// BenchmarkList times one page of 100 procedures from List with 1M
// procedures in the store: 998,000 kept results (1% of them of a second
// type), 1,000 rolled back with an error, 1,000 live and suspended. One op
// is one page. The store is written directly (records in transactions of
// 10,000, then a snapshot) and loaded by Start; it reports how long that
// took and how long building the index alone takes (the part of the
// load the index adds), in its log. Skipped with -short.
//
//	go test ./procedure -run '^$' -bench BenchmarkList -benchtime 20x
func BenchmarkList(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	const n = 1_000_000
	e, s, setup, load := buildListStore(b, n)
	defer s.Close()
	defer e.Stop()
	b.Logf("%d procedures: setup %v, load (Start) %v, of which building the index about %v",
		n, setup.Round(time.Millisecond), load.Round(time.Millisecond), indexBuildTime(e).Round(time.Millisecond))
	for _, c := range []struct {
		name string
		q    Query
	}{
		{"status=rolled-back", Query{Status: []Status{RolledBack}}},
		{"status=suspended", Query{Status: []Status{Suspended}}},
		{"status=suspended,failed", Query{Status: []Status{Suspended, Failed}}},
		{"type=b", Query{Type: "bench-b"}},
		{"none", Query{}},
		{"none/before=500000", Query{Before: n / 2}},
		{"type=b/since", Query{Type: "bench-b", Since: time.Unix(0, listBenchCreated(n-5_000))}},
		{"error=disk(scan)", Query{Error: "disk full"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			got := 0
			for b.Loop() {
				got = 0
				for range e.List(c.q) {
					if got++; got == 100 {
						break
					}
				}
			}
			if got == 0 {
				b.Fatal("empty page")
			}
		})
	}
}

func listBenchCreated(id int) int64 {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() + int64(id)*int64(time.Millisecond)
}

// buildListStore writes n procedure records into a store in a temporary
// directory, snapshots it, and starts an engine on it.
func buildListStore(b *testing.B, n int) (*Engine, *durable.Store, time.Duration, time.Duration) {
	ctx := context.Background()
	dir := b.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	open := func() (*durable.Store, *Engine) {
		s := durable.New(durable.Options{Dir: dir, Logger: quiet})
		e := New(s, Options{Logger: quiet, Workers: 4, ResultTTL: 1000 * time.Hour, SweepInterval: -1})
		Register[int, uint64](e, "bench-a", liveSM{}, nil)
		Register[int, uint64](e, "bench-b", liveSM{}, nil)
		if err := s.Open(ctx); err != nil {
			b.Fatal(err)
		}
		return s, e
	}
	t0 := time.Now()
	s, e := open()
	const perTx = 10_000
	for lo := 1; lo <= n; lo += perTx {
		err := s.Write(ctx, func(tx *durable.Tx) error {
			var buf []byte
			for id := lo; id < lo+perTx && id <= n; id++ {
				r := listBenchRecord(id)
				buf = appendRecord(buf[:0], &r)
				if err := e.procsC.Put(tx, uint64(id), buf); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Snapshot(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s, e = open()
	setup := time.Since(t0)
	t1 := time.Now()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return e, s, setup, time.Since(t1)
}

// listBenchRecord is the record of procedure id in BenchmarkList's store.
func listBenchRecord(id int) record {
	at := listBenchCreated(id)
	r := record{status: Succeeded, typ: "bench-a", version: 1, steps: 2, root: ID(id), created: at,
		updated: at + int64(time.Second), completed: at + int64(time.Second), data: []byte("7")}
	if id%100 == 7 {
		r.typ = "bench-b"
	}
	switch id % 1000 {
	case 500:
		r.status = RolledBack
		r.err = &Error{Source: fmt.Sprintf("bench-a#%d", id), Message: fmt.Sprintf("disk full on node %d", id%17)}
	case 501:
		r.status, r.completed, r.steps, r.next = Suspended, 0, 1, 1
		r.entries = []entry{{state: 0, idx: 0}}
		r.wait = waitState{kind: waitEvent, event: "never"}
	}
	return r
}

// indexBuildTime returns how long entering e's records in a new index
// takes, in id order, as load does.
func indexBuildTime(e *Engine) time.Duration {
	e.mu.Lock()
	n := 0
	e.ix.byStatus[Succeeded].Descend(math.MaxUint64, func(id uint64) bool { n = int(id); return false })
	status, typ := make([]Status, n+1), make([]string, n+1)
	for st, s := range e.ix.byStatus {
		s.Descend(math.MaxUint64, func(id uint64) bool { status[id] = Status(st); return true })
	}
	for name, s := range e.ix.byType {
		s.Descend(math.MaxUint64, func(id uint64) bool { typ[id] = name; return true })
	}
	e.mu.Unlock()
	start := time.Now()
	ix := newProcIndex()
	for id := range typ {
		if typ[id] != "" {
			ix.add(ID(id), status[id], typ[id])
			ix.noteCreated(ID(id), int64(id))
		}
	}
	return time.Since(start)
}
