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

// committer appends groups and publishes their versions, one group at a
// time: while one group's records are on their way to the disk, the next
// group forms. It exits once the store is closed and nothing is left.
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

// gatherState decides whether the committer waits for a group to fill:
// after gatherMaxMisses gathers in a row that timed out, it waits only
// once every gatherProbe groups, until a gather fills again.
type gatherState struct {
	misses  int
	skipped int
}

const (
	gatherMaxMisses = 4
	gatherProbe     = 16
)

func (g *gatherState) try() bool {
	if g.misses < gatherMaxMisses {
		return true
	}
	g.skipped++
	return g.skipped%gatherProbe == 0
}

func (g *gatherState) record(hit bool) {
	if hit {
		g.misses, g.skipped = 0, 0
	} else {
		g.misses++
	}
}

// commitOne freezes the forming group (its layer too) and commits it, and
// returns its size (0: there was nothing to commit) and the size to expect
// of the next group: the writers it released and those that were already
// waiting in the next group when it did.
//
// When the last group released writers, it first waits, for at most half
// an average commit, until the forming group has expect of them: the
// writers just released are about to commit again, and without the
// wait each group would catch only the writers that arrived during the
// previous commit, alternating between halves of them, each waiting two
// commits (see package gather; the WAL's flusher gathers for the same
// reason). That holds for writers that commit again at once; writers that
// batch themselves (the procedure engine's committer, whose next batch
// comes only once the procedures released have run their next steps) do
// not come back within the wait, which then only delays every fsync. So
// once gathers keep missing their target, the committer stops waiting, and
// tries a gather again only now and then (gatherState).
func (s *Store) commitOne(expect int) (n, next int) {
	// Back-pressure: readers look at every layer not yet applied.
	for v := s.current(); len(v.layers) >= maxLayers || s.layerKeys(v.layers) >= maxUnapplied; v = s.current() {
		s.kickApplier()
		<-s.applied
	}
	s.sem <- struct{}{}
	if d := s.commitAvg.Wait(); expect > 1 && d > 0 && len(s.w.group.ends) < expect && s.state.Load() == stateOpen &&
		s.gather.try() {
		s.w.gatherTarget = expect
		<-s.sem
		hit := gather.Await(d, s.gathered, nil)
		s.sem <- struct{}{}
		s.w.gatherTarget = 0
		select {
		case <-s.gathered:
			hit = true
		default:
		}
		s.gather.record(hit)
	}
	g := s.w.group
	if len(g.ends) == 0 {
		s.w.committing = false
		<-s.sem
		return 0, 0
	}
	layers := s.w.forming
	for i, l := range layers {
		if l != nil {
			s.w.formHint[i] = s.colls[i].layerLen(l)
		}
	}
	s.formingN.Store(0)
	s.w.pending = append(s.w.pending, layers)
	s.w.forming = make([]any, len(layers))
	s.w.group = &group{buf: s.spare[:0], done: make(chan struct{})}
	s.spare = nil
	<-s.sem

	recs := make([][]byte, len(g.ends))
	start := 0
	for i, end := range g.ends {
		recs[i] = g.buf[start:end:end]
		start = end
	}
	var err error
	var seq uint64
	if err = s.Err(); err == nil {
		var p Pending
		start := time.Now()
		// While the records go to the disk (and the writers wait), the
		// applier applies the groups published before. (Woken first: the
		// log's flusher, woken next, is the one to run first.)
		s.kickApplier()
		p, err = s.p.Append(recs)
		if err == nil {
			if cap(g.buf) <= 4<<20 {
				s.spare = g.buf[:0]
			}
			err = p.Wait(context.Background())
			seq = p.Seq() + uint64(len(recs)) - 1
			took := time.Since(start)
			if err == nil {
				s.stats.groups.Add(1)
				s.stats.groupNs.Add(int64(took))
			}
			s.commitAvg.Observe(took)
		}
		if err != nil {
			err = s.setFailed(err)
		}
	}
	if err == nil {
		s.publish(seq, layers)
		s.stats.commits.Add(int64(len(recs)))
	} else {
		s.stats.aborts.Add(int64(len(recs)))
	}
	g.err = err
	next = len(recs) + int(s.formingN.Load())
	close(g.done)
	for _, r := range g.waiters {
		r.finish()
	}
	return len(recs), next
}

// maxLayers and maxUnapplied bound what readers look at before the
// trees (layers, and keys in them): past either, the committer waits for
// the applier.
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
	s.durable.Store(&View{seq: seq, trees: cur.trees, layers: append(cur.layers[:len(cur.layers):len(cur.layers)], layers), store: s})
	s.pubMu.Unlock()
}
