package master

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/remote"
)

func liveNodes(names ...string) []remote.NodeInfo {
	var out []remote.NodeInfo
	for _, n := range names {
		out = append(out, remote.NodeInfo{Name: n, Live: true})
	}
	return out
}

// records is a fake catalog: the regions per server its records place,
// and how often the balancer read them.
type records struct {
	load  map[string]int
	reads int
}

func (r *records) read() map[string]int { r.reads++; return maps.Clone(r.load) }

// Picks made together spread over the servers from where the records left
// them, and read the records once per loadRefresh, not once a pick.
func TestBalancerSpreadsAndReadsOnce(t *testing.T) {
	var b balancer
	recs := &records{load: map[string]int{"rs1": 2}}
	live := liveNodes("rs1", "rs2", "rs3")
	now := time.Unix(1000, 0)
	got := map[string]int{}
	var releases []func()
	for range 9 {
		n, release, err := b.pick(live, now, recs.read)
		if err != nil {
			t.Fatal(err)
		}
		got[n.Name]++
		releases = append(releases, release)
	}
	if recs.reads != 1 {
		t.Fatalf("9 picks within %v read the records %d times, want 1", loadRefresh, recs.reads)
	}
	if got["rs1"]+2 != 3 && got["rs1"]+2 != 4 || got["rs2"] < 3 || got["rs3"] < 3 {
		t.Fatalf("9 picks onto rs1:2 rs2:0 rs3:0 went %v, want 11 regions as 3 or 4 a server", got)
	}
	// Their records are written and released: the next read counts them,
	// and they are not counted twice.
	for s, n := range got {
		recs.load[s] += n
	}
	for _, release := range releases {
		release()
		release() // a second call does nothing
	}
	now = now.Add(loadRefresh)
	n, release, err := b.pick(live, now, recs.read)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if recs.reads != 2 || len(b.pending) != 1 || b.since[n.Name] != 1 || len(b.since) != 1 {
		t.Fatalf("after a refresh: reads %d, pending %v, since %v", recs.reads, b.pending, b.since)
	}
	if recs.load[n.Name] != 3 {
		t.Fatalf("picked %s with %d regions; loads %v", n.Name, recs.load[n.Name], recs.load)
	}
}

// A pick still pending when the records are read again counts on (its
// record may not be written yet), until it is released and read.
func TestBalancerPendingAcrossRefresh(t *testing.T) {
	var b balancer
	recs := &records{load: map[string]int{}}
	live := liveNodes("rs1", "rs2")
	now := time.Unix(1000, 0)
	first, release, err := b.pick(live, now, recs.read)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * loadRefresh) // its record is still not written
	second, release2, err := b.pick(live, now, recs.read)
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	want := map[string]int{first.Name: 1}
	want[second.Name]++
	for s, n := range want {
		if got := b.load(s); got != n {
			t.Fatalf("after the refresh %s's load is %d, want %d (picks %s then %s; the pending one forgotten?)", s, got, n, first.Name, second.Name)
		}
	}
	release()
	if b.pending[first.Name] != 0 || b.pending[second.Name] != 1 {
		t.Fatalf("pending %v", b.pending)
	}
}

func TestBalancerNoLiveServer(t *testing.T) {
	var b balancer
	recs := &records{}
	if _, _, err := b.pick(nil, time.Unix(1000, 0), recs.read); err == nil {
		t.Fatal("a pick among no servers succeeded")
	}
}

// BenchmarkRegionLoads reads the loads of 1,000 regions on 3 servers from
// the catalog: what every pick cost before the balancer read them at most
// once a second.
func BenchmarkRegionLoads(b *testing.B) {
	ctx := context.Background()
	m := &Master{store: durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})}
	m.cat = newCatalog(m.store)
	if err := m.store.Open(ctx); err != nil {
		b.Fatal(err)
	}
	defer m.store.Close()
	err := m.store.Write(ctx, func(tx *durable.Tx) error {
		for i := range 1000 {
			id := fmt.Sprintf("t-%04d", i)
			r := Region{RegionDesc: tablestore.RegionDesc{ID: id, Table: "t"}, State: RegionOpen, Server: fmt.Sprintf("rs%d", i%3+1), Incarnation: 1}
			if err := m.cat.regions.Put(tx, id, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if l := m.regionLoads(); l["rs1"] != 334 {
			b.Fatalf("loads %v", l)
		}
	}
}
