package durable

import (
	"context"
	"time"

	"github.com/procyon-dev/procyon/internal/gather"
)

// group is the records of the transactions committed since the last
// freeze. They are appended as one batch, and their writers released
// together when it is durable (or failed).
type group struct {
	buf     []byte
	ends    []int // end offset of each record in buf
	done    chan struct{}
	err     error       // set before done is closed
	waiters []*writeReq // Write calls to finish once done is closed
}

// records returns g's records, each a slice of g.buf.
func (g *group) records() [][]byte {
	recs := make([][]byte, len(g.ends))
	start := 0
	for i, end := range g.ends {
		recs[i] = g.buf[start:end:end]
		start = end
	}
	return recs
}

// committer appends groups and publishes their versions, one group at a
// time: under the write lock it freezes the forming group (its layer is
// never changed again), then, without the lock, appends the group's
// records as one batch and waits for the fsync; then it publishes the
// version with the group's layer on top and releases the group's writers.
// While one group's records are on their way to the disk, the next group
// forms, so concurrent transactions share fsyncs. It exits once the store
// is closed and nothing is left.
func (s *Store) committer() {
	defer close(s.committerDone)
	for range s.kick {
		expect := 0
		for {
			n, next := s.commitOne(expect)
			if n == 0 {
				// Idle: apply what is left.
				s.flushLayers.Store(true)
				s.kickApplier()
				break
			}
			expect = next
		}
		if s.state.Load() == stateClosed {
			return
		}
	}
}

// groupGather is the committer's choice of whether, and how long, to wait
// for the forming group to fill before it freezes it (see package gather;
// the WAL's flusher gathers for the same reason). Committer only.
//
// When the last group released writers waiting in Write, those are about
// to commit again: without a wait each group would catch only the writers
// that arrived during the previous commit, alternating between halves of
// them, each waiting two commits. So the committer waits, for at most half
// an average commit, until the forming group has as many waiting writers
// as the last one released plus those already in it. WriteAsync callers
// are not counted and never waited for: they batch themselves (the
// procedure engine's committer applies its next batch while this one is
// on its way), and a wait for them only delays the fsync. The WAL's
// flusher does the same for Append and AppendAsync.
type groupGather struct {
	avg gather.Average // a group's time from append to durable
}

// wait returns how long to wait for the forming group, which has have of
// the expect waiting writers; 0: do not wait.
func (g *groupGather) wait(expect, have int) time.Duration {
	d := g.avg.Wait()
	if expect <= 1 || d <= 0 || have >= expect {
		return 0
	}
	return d
}

// commitOne freezes the forming group (its layer too) and commits it, and
// returns its size (0: there was nothing to commit) and the number of
// waiting writers (Write) to expect in the next group: those it released
// and those that were already waiting in the next group when it did.
func (s *Store) commitOne(expect int) (n, next int) {
	s.awaitApplier()
	s.sem.Lock()
	s.gatherLocked(expect)
	g, layers := s.freezeLocked()
	s.sem.Unlock()
	if g == nil {
		return 0, 0
	}
	n = len(g.ends)
	seq, err := s.appendGroup(g)
	if err == nil {
		s.publish(seq, layers)
		s.stats.commits.Add(int64(n))
	} else {
		s.stats.aborts.Add(int64(n))
	}
	g.err = err
	next = len(g.waiters) + int(s.formingWaiters.Load())
	close(g.done)
	for _, r := range g.waiters {
		r.finish()
	}
	return n, next
}

// awaitApplier is the committer's back-pressure: readers look at every
// layer not yet applied, so past maxLayers layers or maxUnapplied keys in
// them it waits for the applier.
func (s *Store) awaitApplier() {
	for v := s.current(); len(v.layers) >= maxLayers || s.layerKeys(v.layers) >= maxUnapplied; v = s.current() {
		s.kickApplier()
		<-s.applied
	}
}

// gatherLocked waits, holding the write lock on entry and exit (it lets
// it go while it waits), for the forming group to have expect waiting
// writers, if s.gather says so.
func (s *Store) gatherLocked(expect int) {
	if s.state.Load() != stateOpen {
		return
	}
	if d := s.gather.wait(expect, len(s.w.group.waiters)); d > 0 {
		s.stats.gathers.Add(1)
		s.w.gate.Wait(s.sem, expect, d, nil)
	}
}

// freezeLocked, holding the write lock, takes the forming group and its
// layer out of the head's way (the layer goes to pending, never to change
// again) and starts the next group. A nil group: there was nothing to
// commit, and the committer goes idle.
func (s *Store) freezeLocked() (*group, []any) {
	g := s.w.group
	if len(g.ends) == 0 {
		s.w.committing = false
		return nil, nil
	}
	layers := s.w.forming
	for i, l := range layers {
		if l != nil {
			s.w.formHint[i] = s.colls[i].layerLen(l)
		}
	}
	s.formingWaiters.Store(0)
	s.w.pending = append(s.w.pending, layers)
	s.w.forming = make([]any, len(layers))
	s.w.group = &group{buf: s.spare[:0], done: make(chan struct{})}
	s.spare = nil
	return g, layers
}

// appendGroup appends g's records as one batch and waits until they are
// durable, and returns the seq of the last one. An error wraps ErrFailed:
// the store refuses writes from now on.
func (s *Store) appendGroup(g *group) (uint64, error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	recs := g.records()
	start := time.Now()
	// While the records go to the disk (and the writers wait), the
	// applier applies the groups published before.
	s.kickApplier()
	p, err := s.p.Append(recs)
	if err != nil {
		return 0, s.setFailed(err)
	}
	if cap(g.buf) <= 4<<20 {
		s.spare = g.buf[:0]
	}
	err = p.Wait(context.Background())
	took := time.Since(start)
	s.gather.avg.Observe(took)
	if err != nil {
		return 0, s.setFailed(err)
	}
	s.stats.commitLatency.Observe(took)
	return p.Seq() + uint64(len(recs)) - 1, nil
}

// maxLayers and maxUnapplied bound what readers look at before the
// trees (layers, and keys in them): past either, the committer waits for
// the applier. maxUnapplied also bounds Len on a version with layers,
// which looks up, below each layer, whether each of its keys existed.
const (
	maxLayers    = 32
	maxUnapplied = 1 << 17
)

// publish makes the version that adds group layers, whose last record is
// seq, what readers see. Records become durable in sequence order, so
// when this group is durable, so are the earlier ones.
func (s *Store) publish(seq uint64, layers []any) {
	s.pubMu.Lock()
	cur := s.durable.Load()
	s.durable.Store(&version{seq: seq, trees: cur.trees, layers: append(cur.layers[:len(cur.layers):len(cur.layers)], layers), store: s})
	s.pubMu.Unlock()
}
