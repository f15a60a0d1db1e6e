package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/metrics"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// BenchmarkGather measures one scrape's collection (Registry.Gather, the
// work /metrics does before encoding) for an engine with live procedures
// suspended on an event, of 8 types, on a directory store: the CPU a
// scraper costs the process per scrape.
func BenchmarkGather(b *testing.B) {
	for _, live := range []int{256, 100_000} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			ctx := context.Background()
			quiet := slog.New(slog.DiscardHandler)
			store := durable.New(durable.Options{Dir: "/data", FS: vfs.NewMem(), Logger: quiet})
			eng := procedure.New(store, procedure.Options{Logger: quiet})
			var types []*procedure.Type[int, struct{}]
			for i := range 8 {
				types = append(types, procedure.Register[int, struct{}](eng, fmt.Sprint("waiter", i), waiterSM{}, nil))
			}
			if err := eng.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer eng.Stop()
			var last procedure.ID
			for i := range live {
				id, err := types[i%8].Submit(ctx, struct{}{}, procedure.SubmitOptions{})
				if err != nil {
					b.Fatal(err)
				}
				last = id
			}
			if _, err := eng.WaitFor(ctx, last, func(in procedure.Info) bool { return in.Status == procedure.Suspended }); err != nil {
				b.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(metrics.NewCollector(metrics.Options{Engine: eng, Store: store}))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
