package server

import (
	"sync"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// Samples the engine page's charts keep: ten minutes, one a second.
const (
	sampleEvery = time.Second
	sampleKeep  = 600
)

// sampler reads the engine's and the store's counters every second and
// keeps the rates and latencies of the last sampleKeep seconds.
type sampler struct {
	s    *Server
	done chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	ring []Sample // oldest first
	prev counters
}

// counters are the cumulative values a sample is the difference of.
type counters struct {
	at       time.Time
	steps    int64
	finished int64
	commits  int64
	stepLat  procedure.Histogram
	syncs    [64]int64
	nsyncs   int
}

func newSampler(s *Server) *sampler {
	sp := &sampler{s: s, done: make(chan struct{})}
	sp.prev = sp.read()
	sp.wg.Add(1)
	go sp.loop()
	return sp
}

func (sp *sampler) loop() {
	defer sp.wg.Done()
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-sp.done:
			return
		case <-t.C:
			sp.sample()
		}
	}
}

func (sp *sampler) stop() {
	select {
	case <-sp.done:
	default:
		close(sp.done)
	}
	sp.wg.Wait()
}

// read takes the cumulative counters now.
func (sp *sampler) read() counters {
	c := counters{at: time.Now()}
	st := sp.s.e.Stats()
	for _, ts := range st.Types {
		c.steps += ts.Steps + ts.RollbackSteps
		c.finished += ts.Succeeded + ts.RolledBack
		c.stepLat = addHist(c.stepLat, ts.StepLatency)
	}
	ss := sp.s.e.Store().Stats()
	c.commits = ss.Commits
	if w := ss.WAL; w != nil {
		c.nsyncs = copy(c.syncs[:], w.SyncLatency[:])
	}
	return c
}

// sample appends the difference between now and the previous reading.
func (sp *sampler) sample() {
	cur := sp.read()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	prev := sp.prev
	sp.prev = cur
	secs := cur.at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return
	}
	smp := Sample{
		At:       cur.at.UTC(),
		Steps:    float64(cur.steps-prev.steps) / secs,
		Finished: float64(cur.finished-prev.finished) / secs,
		Commits:  float64(cur.commits-prev.commits) / secs,
		Live:     sp.s.e.Stats().Live,
	}
	if d := subHist(cur.stepLat, prev.stepLat); d.Count > 0 {
		smp.StepP99Ms = ms(d.Quantile(0.99))
	}
	smp.FsyncP99Ms = syncP99(cur.syncs[:cur.nsyncs], prev.syncs[:prev.nsyncs])
	sp.ring = append(sp.ring, smp)
	if len(sp.ring) > sampleKeep {
		sp.ring = sp.ring[len(sp.ring)-sampleKeep:]
	}
}

// samples returns the kept samples, oldest first.
func (sp *sampler) samples() []Sample {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]Sample{}, sp.ring...)
}

// addHist returns a+b (b's bounds; a may be empty).
func addHist(a, b procedure.Histogram) procedure.Histogram {
	if a.Buckets == nil {
		a = procedure.Histogram{Bounds: b.Bounds, Buckets: make([]int64, len(b.Buckets))}
	}
	a.Count += b.Count
	a.Sum += b.Sum
	for i := range b.Buckets {
		if i < len(a.Buckets) {
			a.Buckets[i] += b.Buckets[i]
		}
	}
	return a
}

// subHist returns the observations of cur not in prev.
func subHist(cur, prev procedure.Histogram) procedure.Histogram {
	d := procedure.Histogram{Count: cur.Count - prev.Count, Sum: cur.Sum - prev.Sum, Bounds: cur.Bounds,
		Buckets: make([]int64, len(cur.Buckets))}
	for i := range cur.Buckets {
		d.Buckets[i] = cur.Buckets[i]
		if i < len(prev.Buckets) {
			d.Buckets[i] -= prev.Buckets[i]
		}
	}
	return d
}

// syncP99 is the 99th percentile of the fsyncs between two readings of
// the WAL's histogram (bucket i: under 2^i µs), as the bucket's bound.
func syncP99(cur, prev []int64) float64 {
	var total int64
	d := make([]int64, len(cur))
	for i := range cur {
		d[i] = cur[i]
		if i < len(prev) {
			d[i] -= prev[i]
		}
		total += d[i]
	}
	if total == 0 {
		return 0
	}
	need := (total*99 + 99) / 100
	var seen int64
	for i, n := range d {
		seen += n
		if seen >= need {
			return float64(int64(1)<<i) / 1000
		}
	}
	return 0
}
