package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/server"
)

func init() {
	register(command{path: "bench api", usage: "[flags]",
		summary: "benchmark the operator's API over HTTP on a store of many procedures: list pages (filtered and not) and procedure details",
		define:  benchAPI})
}

// The store bench api builds: -procedures roots of two one-step types,
// submitted with many in flight and kept (a day's ResultTTL). One in
// every failEvery fails (rolled back, with an error naming it), one in
// every rareEvery is of the rare type, and one in every liveEvery stays
// live (suspended on an event that never comes), so that filters select
// a small share.
const (
	apiBenchFailEvery = 100
	apiBenchRareEvery = 10
	apiBenchLiveEvery = 1000
)

// apiBenchData is a bench procedure's data (binary codec: the store holds
// a million of them).
type apiBenchData struct {
	Seq  uint64
	Kind uint8 // apiOK, apiFail, apiLive
}

const (
	apiOK uint8 = iota
	apiFail
	apiLive
)

var apiBenchCodec = durable.CodecFunc(
	func(d apiBenchData) ([]byte, error) { return append(binary.AppendUvarint(nil, d.Seq), d.Kind), nil },
	func(b []byte) (apiBenchData, error) {
		s, n := binary.Uvarint(b)
		if n <= 0 || n+1 != len(b) {
			return apiBenchData{}, errors.New("bad api bench data")
		}
		return apiBenchData{Seq: s, Kind: b[n]}, nil
	})

type apiBenchSM struct{}

func (apiBenchSM) Execute(ctx context.Context, env *procedure.Env, s int, d *apiBenchData) (procedure.Next, error) {
	switch {
	case d.Kind == apiFail:
		return procedure.Next{}, fmt.Errorf("injected failure #%d", d.Seq)
	case d.Kind == apiLive && s == 0:
		return procedure.WaitEvent(1, "bench-api/never"), nil
	}
	return procedure.Done(), nil
}

func (apiBenchSM) Rollback(ctx context.Context, env *procedure.Env, s int, d *apiBenchData) error {
	return nil
}

// latencyStats summarizes one kind of request.
type latencyStats struct {
	Count int     `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

type apiBenchResult struct {
	Procedures int     `json:"procedures"`
	RolledBack int     `json:"rolled_back"`
	Rare       int     `json:"rare_type"`
	Live       int     `json:"live"`
	SetupSec   float64 `json:"setup_sec"` // submitting every procedure and waiting for it
	HeapMB     float64 `json:"heap_mb"`   // after setup, after GC: store, engine and index
	Seed       uint64  `json:"seed"`      // of the random ids and cursors
	// ListP99ms is the worse p99 of the filtered first pages (status,
	// type); ShowP99ms the detail's p99.
	ListP99ms float64 `json:"list_p99_ms"`
	ShowP99ms float64 `json:"show_p99_ms"`
	// Each kind of request, made one at a time over a kept-alive
	// connection.
	ListFirst  latencyStats `json:"list_first"`  // GET /api/v1/procedures?limit=100
	ListStatus latencyStats `json:"list_status"` // ...?status=rolled-back&limit=100
	ListType   latencyStats `json:"list_type"`   // ...?type=bench-api-rare&limit=100
	ListDeep   latencyStats `json:"list_deep"`   // ...?status=rolled-back&before=<a random id>&limit=100
	Show       latencyStats `json:"show"`        // GET /api/v1/procedures/<a random id>
}

func benchAPI(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "procyon-bench", "parent directory for the benchmark's data (a fresh subdirectory is made and removed)")
	procs := fs.Int("procedures", 100_000, "procedures in the store")
	requests := fs.Int("requests", 1000, "requests of each kind")
	concurrency := fs.Int("concurrency", 256, "procedures in flight while the store is built")
	workers := fs.Int("workers", 8, "engine workers")
	seed := fs.Uint64("seed", 0, "seed of the random ids and cursors (0: a fresh one, printed)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	return func(ctx context.Context, e *env, args []string) error {
		if err := firstErr(
			intIn("procedures", *procs, apiBenchLiveEvery, 20_000_000),
			intIn("requests", *requests, 1, 1_000_000),
			intIn("concurrency", *concurrency, 1, 100_000),
			intIn("workers", *workers, 1, 10_000),
		); err != nil {
			return err
		}
		root, cleanup, err := benchDir(*dir, "api-")
		if err != nil {
			return err
		}
		defer cleanup()
		s := *seed
		if s == 0 {
			s = uint64(time.Now().UnixNano())
		}
		res, err := runAPIBench(ctx, filepath.Join(root, "data"), *procs, *requests, *concurrency, *workers, s)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, res)
		}
		printAPIBench(e, res)
		return nil
	}
}

// apiBench is the bench's engine, served on loopback.
type apiBench struct {
	e    *procedure.Engine
	ok   *procedure.Type[int, apiBenchData]
	rare *procedure.Type[int, apiBenchData]
	c    *server.Client
	rng  *rand.Rand
	n    int // procedures submitted
}

func runAPIBench(ctx context.Context, dir string, n, requests, concurrency, workers int, seed uint64) (apiBenchResult, error) {
	res := apiBenchResult{Procedures: n, Seed: seed}
	quiet := slog.New(slog.DiscardHandler)
	st := durable.New(durable.Options{Dir: dir, Logger: quiet})
	b := &apiBench{e: procedure.New(st, procedure.Options{Workers: workers, Logger: quiet, ResultTTL: 24 * time.Hour}),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), n: n}
	opts := &procedure.TypeOptions[apiBenchData]{Codec: apiBenchCodec}
	b.ok = procedure.Register(b.e, "bench-api", apiBenchSM{}, opts)
	b.rare = procedure.Register(b.e, "bench-api-rare", apiBenchSM{}, opts)
	if err := b.e.Start(ctx); err != nil {
		return res, err
	}
	defer b.e.Stop()
	t0 := time.Now()
	if err := b.build(ctx, concurrency); err != nil {
		return res, err
	}
	res.SetupSec = time.Since(t0).Seconds()
	res.HeapMB = float64(procHeap()) / (1 << 20)
	res.RolledBack, res.Rare, res.Live = apiBenchCounts(n)

	srv, err := server.New(server.Options{Engine: b.e, Logger: quiet})
	if err != nil {
		return res, err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	hs := serveHTTP(ln, srv)
	defer hs.Close()
	b.c = &server.Client{Endpoint: "http://" + ln.Addr().String(), HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
	if err := b.measure(ctx, requests, &res); err != nil {
		return res, err
	}
	res.ListP99ms = max(res.ListStatus.P99ms, res.ListType.P99ms)
	res.ShowP99ms = res.Show.P99ms
	return res, nil
}

// apiBenchKind returns what bench procedure i (from 1) does, and whether
// it is of the rare type.
func apiBenchKind(i uint64) (kind uint8, rare bool) {
	switch {
	case i%apiBenchLiveEvery == 0:
		kind = apiLive
	case i%apiBenchFailEvery == 0:
		kind = apiFail
	}
	return kind, i%apiBenchRareEvery == 3
}

// apiBenchCounts returns how many of n bench procedures roll back, are of
// the rare type, and stay live.
func apiBenchCounts(n int) (rolledBack, rare, live int) {
	for i := uint64(1); i <= uint64(n); i++ {
		kind, r := apiBenchKind(i)
		if r {
			rare++
		}
		switch kind {
		case apiFail:
			rolledBack++
		case apiLive:
			live++
		}
	}
	return rolledBack, rare, live
}

// build submits the procedures (procedure i+1 has id i+1 in a fresh
// store), each worker waiting for one to finish before it submits the
// next, but for the live ones.
func (b *apiBench) build(ctx context.Context, concurrency int) error {
	return runEach(ctx, concurrency, int64(b.n), func(int) func(int64) error {
		return func(i int64) error {
			d := apiBenchData{Seq: uint64(i + 1)}
			kind, rare := apiBenchKind(d.Seq)
			d.Kind = kind
			typ := b.ok
			if rare {
				typ = b.rare
			}
			id, err := typ.Submit(ctx, d, procedure.SubmitOptions{})
			if err != nil || d.Kind == apiLive {
				return err
			}
			_, err = b.e.Wait(ctx, id)
			return err
		}
	})
}

// measure times each kind of request, one at a time, checking each
// answer.
func (b *apiBench) measure(ctx context.Context, requests int, res *apiBenchResult) error {
	page := func(q url.Values, check func(server.Procedure) bool) func() error {
		return func() error {
			if q.Has("before") {
				q.Set("before", strconv.Itoa(1+b.rng.IntN(b.n)))
			}
			l, err := b.c.List(ctx, q)
			if err != nil {
				return err
			}
			if len(l.Procedures) == 0 && !q.Has("before") {
				return fmt.Errorf("bench: an empty page for %s", q.Encode())
			}
			for _, p := range l.Procedures {
				if !check(p) {
					return fmt.Errorf("bench: %s answered procedure %d (%s, %s)", q.Encode(), p.ID, p.Type, p.Status)
				}
			}
			return nil
		}
	}
	anyProc := func(server.Procedure) bool { return true }
	rolledBack := func(p server.Procedure) bool { return p.Status == "rolled-back" }
	for _, m := range []struct {
		out *latencyStats
		op  func() error
	}{
		{&res.ListFirst, page(url.Values{"limit": {"100"}}, anyProc)},
		{&res.ListStatus, page(url.Values{"limit": {"100"}, "status": {"rolled-back"}}, rolledBack)},
		{&res.ListType, page(url.Values{"limit": {"100"}, "type": {"bench-api-rare"}}, func(p server.Procedure) bool { return p.Type == "bench-api-rare" })},
		{&res.ListDeep, page(url.Values{"limit": {"100"}, "status": {"rolled-back"}, "before": {""}}, rolledBack)},
		{&res.Show, b.show(ctx)},
	} {
		lat, err := timeEach(requests, m.op)
		if err != nil {
			return err
		}
		*m.out = lat
	}
	return nil
}

// show is GET /api/v1/procedures/{id} of a random id.
func (b *apiBench) show(ctx context.Context) func() error {
	return func() error {
		id := procedure.ID(1 + b.rng.IntN(b.n))
		d, err := b.c.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("bench: show %d: %w", id, err)
		}
		if d.ID != id {
			return fmt.Errorf("bench: show %d answered %d", id, d.ID)
		}
		return nil
	}
}

// timeEach calls op n times and summarizes how long each call took.
func timeEach(n int, op func() error) (latencyStats, error) {
	lat := make(latencies, 0, n)
	for range n {
		t0 := time.Now()
		if err := op(); err != nil {
			return latencyStats{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencyStats{Count: n, P50ms: ms(lat.quantile(0.5)), P99ms: ms(lat.quantile(0.99)), MaxMs: ms(lat[n-1])}, nil
}

func printAPIBench(e *env, r apiBenchResult) {
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%d procedures (%d rolled back, %d of the rare type, %d live), built in %.1f s, heap %.0f MiB\n",
		r.Procedures, r.RolledBack, r.Rare, r.Live, r.SetupSec, r.HeapMB)
	fmt.Fprintf(tw, "request\tcount\tp50 ms\tp99 ms\tmax ms\n")
	for _, row := range []struct {
		name string
		s    latencyStats
	}{
		{"list, first page", r.ListFirst},
		{"list, status=rolled-back", r.ListStatus},
		{"list, type=bench-api-rare", r.ListType},
		{"list, status=rolled-back, random cursor", r.ListDeep},
		{"show, random id", r.Show},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\n", row.name, row.s.Count, row.s.P50ms, row.s.P99ms, row.s.MaxMs)
	}
	fmt.Fprintf(tw, "seed\t%d\n", r.Seed)
	tw.Flush()
}
