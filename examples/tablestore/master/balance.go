package master

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/remote"
)

// loadRefresh is how often the balancer reads the region records again.
const loadRefresh = time.Second

// balancer picks the server an assignment opens its region on: the live
// server with the fewest regions, ties broken round-robin, so that
// assignments running together (a table's regions, a dead server's) spread
// over the servers.
//
// A server's load is the regions its records count (opening, open,
// closing), read at most once per loadRefresh (reading every record for
// every pick made a table's creation quadratic in its regions), plus the
// picks that read does not count: those made since, and those still
// pending at it (their records were not yet written). A region that left
// a server is seen at the next read.
type balancer struct {
	mu      sync.Mutex
	rr      int
	readAt  time.Time      // when base was read (zero: never)
	base    map[string]int // regions per server in the records read at readAt
	since   map[string]int // picks base does not count
	pending map[string]int // picks whose records are not yet written
}

// pick returns the least loaded of live, reading the records' loads with
// read when the last read is older than loadRefresh. The pick counts as
// pending until release is called (once its record is durable).
func (b *balancer) pick(live []remote.NodeInfo, now time.Time, read func() map[string]int) (remote.NodeInfo, func(), error) {
	if len(live) == 0 {
		return remote.NodeInfo{}, nil, fmt.Errorf("no live region server")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.readAt.IsZero() || now.Sub(b.readAt) >= loadRefresh || now.Before(b.readAt) {
		b.base, b.readAt = read(), now
		b.since = maps.Clone(b.pending)
	}
	if b.since == nil {
		b.since = map[string]int{}
	}
	if b.pending == nil {
		b.pending = map[string]int{}
	}
	b.rr++
	best := live[b.rr%len(live)]
	for i := range live {
		if n := live[(b.rr+i)%len(live)]; b.load(n.Name) < b.load(best.Name) {
			best = n
		}
	}
	b.since[best.Name]++
	b.pending[best.Name]++
	var once sync.Once
	return best, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.pending[best.Name]--; b.pending[best.Name] <= 0 {
				delete(b.pending, best.Name)
			}
		})
	}, nil
}

// load is server's load as the balancer counts it (b.mu held).
func (b *balancer) load(server string) int { return b.base[server] + b.since[server] }

// pickServer picks the server for an assignment (see balancer).
func (m *Master) pickServer() (server remote.NodeInfo, release func(), err error) {
	nodes, err := m.nodes()
	if err != nil {
		return remote.NodeInfo{}, nil, err
	}
	live := slices.DeleteFunc(nodes, func(n remote.NodeInfo) bool { return !n.Live })
	return m.bal.pick(live, time.Now(), m.regionLoads)
}

// regionLoads counts the regions each server's records place on it
// (opening, open or closing).
func (m *Master) regionLoads() map[string]int {
	load := map[string]int{}
	for _, r := range m.cat.regions.All(m.store.Latest()) {
		if r.State != RegionOffline && r.Server != "" {
			load[r.Server]++
		}
	}
	return load
}
