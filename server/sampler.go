package server

import (
	"sync"
	"time"

	"github.com/procyon-dev/procyon/internal/pow2hist"
	"github.com/procyon-dev/procyon/wal"
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
	stepLat  [pow2hist.Buckets]int64 // every type's step latency buckets, summed
	wal      wal.Stats               // zero without a log
	live     int
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
	c.live = st.Live
	for _, ts := range st.Types {
		c.steps += ts.Steps + ts.RollbackSteps
		c.finished += ts.Succeeded + ts.RolledBack
		for i, n := range ts.StepLatency.Buckets {
			c.stepLat[min(i, len(c.stepLat)-1)] += n
		}
	}
	ss := sp.s.e.Store().Stats()
	c.commits = ss.Commits
	if ss.WAL != nil {
		c.wal = *ss.WAL
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
		Live:     cur.live,
	}
	d := cur.stepLat
	for i := range d {
		d[i] -= prev.stepLat[i]
	}
	smp.StepP99Ms = ms(pow2hist.Quantile(d[:], 0.99))
	smp.FsyncP99Ms = syncP99(cur.wal, prev.wal)
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

// syncP99 is the 99th percentile of the fsyncs between two readings of
// the WAL's counters, in milliseconds (0: none).
func syncP99(cur, prev wal.Stats) float64 {
	d := cur
	for i := range d.SyncLatency {
		d.SyncLatency[i] -= prev.SyncLatency[i]
	}
	return ms(d.SyncQuantile(0.99))
}
