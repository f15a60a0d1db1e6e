package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/procyon-dev/procyon/barrier"
)

func init() {
	register(command{path: "bench barrier", usage: "[flags]", summary: "measure barrier round-trip latency (start to outcome) for N members, in-process or on etcd", define: benchBarrier})
}

type barrierBenchResult struct {
	Transport string  `json:"transport"`
	Etcd      string  `json:"etcd,omitempty"` // "embedded" or the endpoints
	Fsync     *bool   `json:"fsync,omitempty"`
	Members   int     `json:"members"`
	Rounds    int     `json:"rounds"`
	P50ms     float64 `json:"p50_ms"`
	P90ms     float64 `json:"p90_ms"`
	P99ms     float64 `json:"p99_ms"`
	MeanMs    float64 `json:"mean_ms"`
	MinMs     float64 `json:"min_ms"`
	MaxMs     float64 `json:"max_ms"`
	PerSec    float64 `json:"rounds_per_sec"`
}

// noopSub is the benchmark's subprocedure: the round trip is all protocol.
type noopSub struct{}

func (noopSub) Acquire(context.Context) error                  { return nil }
func (noopSub) Inside(context.Context) ([]byte, error)         { return nil, nil }
func (noopSub) Cleanup(error)                                  {}
func noopFactory(string, []byte) (barrier.Subprocedure, error) { return noopSub{}, nil }

func benchBarrier(fs *flag.FlagSet) runFunc {
	n := fs.Int("members", 1, "members taking part in every procedure (in this process)")
	transport := fs.String("transport", "inproc", `"inproc" or "etcd"`)
	rounds := fs.Int("rounds", 200, "procedures to time, one after another")
	warmup := fs.Int("warmup", 5, "untimed procedures first")
	endpoints := fs.String("endpoints", "", "etcd client URLs (default: start an embedded etcd in a temporary directory, removed after)")
	fsync := fs.Bool("fsync", true, "with the embedded etcd: fsync its log as a real deployment does")
	dir := fs.String("dir", "", "with the embedded etcd: parent of its temporary data directory (default: the system's)")
	timeout := fs.Duration("timeout", 30*time.Second, "per-procedure timeout")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	return func(ctx context.Context, e *env, args []string) error {
		if err := firstErr(
			intIn("members", *n, 1, 1000),
			intIn("rounds", *rounds, 1, 1_000_000),
			atLeast("warmup", *warmup, 0),
		); err != nil {
			return err
		}
		if *transport != "inproc" && *transport != "etcd" {
			return usagef(`-transport must be "inproc" or "etcd", got %q`, *transport)
		}
		res := barrierBenchResult{Transport: *transport, Members: *n, Rounds: *rounds}

		var tr barrier.Transport
		if *transport == "inproc" {
			tr = barrier.NewInProc()
		} else {
			ef := etcdFlags{endpoints: *endpoints, prefix: fmt.Sprintf("/procyon/bench/%d/", time.Now().UnixNano()), ttl: 10 * time.Second}
			res.Etcd = *endpoints
			if ef.endpoints == "" {
				srv, stop, err := startEmbeddedEtcd(*dir, *fsync)
				if err != nil {
					return err
				}
				defer stop()
				ef.endpoints = strings.Join(srv.Endpoints(), ",")
				res.Etcd, res.Fsync = "embedded", fsync
			}
			cli, err := ef.client(ctx)
			if err != nil {
				return err
			}
			defer cli.Close()
			et, err := ef.transport(cli)
			if err != nil {
				return err
			}
			if *n > et.MaxMembers() {
				return usagef("-members %d: one etcd transaction checks at most %d members", *n, et.MaxMembers())
			}
			tr = et
		}

		mctx, stopMembers := context.WithCancel(ctx)
		var wg sync.WaitGroup
		memberErrs := make(chan error, *n)
		members := make([]string, *n)
		for i := range members {
			members[i] = fmt.Sprintf("m%03d", i+1)
			m := barrier.NewMember(tr, members[i], barrier.MemberOptions{Timeout: *timeout})
			m.Register("bench", noopFactory)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.Run(mctx); err != nil && mctx.Err() == nil {
					memberErrs <- err
				}
			}()
		}
		defer func() {
			stopMembers()
			wg.Wait()
		}()

		c := barrier.NewCoordinator(tr, barrier.CoordinatorOptions{Timeout: *timeout})
		defer c.Close()
		lat := make([]time.Duration, 0, *rounds)
		start := time.Now()
		for i := range *warmup + *rounds {
			if i == *warmup {
				start = time.Now()
			}
			t0 := time.Now()
			h, err := c.Start(ctx, fmt.Sprintf("bench-%d", i), "bench", nil, members)
			if err != nil {
				return err
			}
			if _, err := h.Wait(ctx); err != nil {
				return fmt.Errorf("round %d: %w", i, err)
			}
			if i >= *warmup {
				lat = append(lat, time.Since(t0))
			}
			select {
			case err := <-memberErrs:
				return fmt.Errorf("a member stopped: %w", err)
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		elapsed := time.Since(start)
		if len(lat) == 0 {
			return errors.New("no rounds measured")
		}
		slices.Sort(lat)
		q := func(p float64) float64 {
			i := int(p * float64(len(lat)))
			if i >= len(lat) {
				i = len(lat) - 1
			}
			return msf(lat[i])
		}
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		res.P50ms, res.P90ms, res.P99ms = q(0.50), q(0.90), q(0.99)
		res.MinMs, res.MaxMs = msf(lat[0]), msf(lat[len(lat)-1])
		res.MeanMs = msf(sum / time.Duration(len(lat)))
		res.PerSec = float64(len(lat)) / elapsed.Seconds()

		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(res)
		}
		where := res.Transport
		if res.Etcd != "" {
			where += " (" + res.Etcd
			if res.Fsync != nil && !*res.Fsync {
				where += ", no fsync"
			}
			where += ")"
		}
		fmt.Fprintf(e.stdout, "barrier round trip, %d members, %s, %d rounds (%.0f/s)\n", res.Members, where, res.Rounds, res.PerSec)
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "p50\tp90\tp99\tmean\tmin\tmax\t")
		fmt.Fprintf(tw, "%.2fms\t%.2fms\t%.2fms\t%.2fms\t%.2fms\t%.2fms\t\n", res.P50ms, res.P90ms, res.P99ms, res.MeanMs, res.MinMs, res.MaxMs)
		return tw.Flush()
	}
}
