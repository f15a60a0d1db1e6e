package durable

import "slices"

// kickApplier wakes the applier.
func (s *Store) kickApplier() {
	select {
	case s.applyKick <- struct{}{}:
	default:
	}
}

// applier takes the layers of durable groups off the readers' way, in
// the background (see layer.go), with an apply worker. Once the layers not
// being applied have applyKeys keys, or the committer is idle, and the
// worker is free, it hands them all to the worker, which applies them to
// O(1) copy-on-write clones of the trees they touch, then swaps the new
// trees in for those layers. Meanwhile, once there are mergeAt layers
// beyond those being applied, it merges them into one, so that a read
// looks at a few layers at most however long an apply takes (with a
// million keys, a thousand keys take milliseconds). Each swap is made in
// the head and in the published version. The worker applies what piled
// up while it was busy in one go, and the cost per key falls as the batch
// grows, so it catches up. The applier exits once applyQuit is closed
// (after the committer exits).
func (s *Store) applier() {
	defer close(s.applierDone)
	work := make(chan [][]any)
	workerDone := make(chan struct{})
	go s.applyWorker(work, workerDone)
	defer func() {
		close(work)
		<-workerDone
	}()
	for {
		select {
		case <-s.applyKick:
			for s.arrangeLayers(work) {
			}
		case <-s.applyQuit:
			return
		}
	}
}

// applyKeys is the number of keys the layers gather before the applier
// applies them to the trees: copy-on-write copies about one node path per
// key, and keys applied together share the upper nodes.
const applyKeys = 1024

// mergeAt is the number of layers at which the applier merges them.
const mergeAt = 4

// arrangeLayers makes one pass of the applier; false: nothing to do.
func (s *Store) arrangeLayers(work chan<- [][]any) bool {
	s.pubMu.Lock()
	cur := s.durable.Load()
	claimed := s.applying
	free := cur.layers[claimed:]
	s.pubMu.Unlock()
	if len(free) == 0 {
		return false
	}
	flush := s.flushLayers.Load() || s.state.Load() != stateOpen
	if claimed == 0 && (flush || s.layerKeys(free) >= applyKeys) {
		// The worker is free (nothing claimed) and only this goroutine
		// claims: the first len(free) layers are still these.
		s.flushLayers.Store(false)
		s.pubMu.Lock()
		s.applying = len(free)
		s.pubMu.Unlock()
		work <- free
		return true
	}
	if len(free) < mergeAt {
		return false
	}
	m := make([]any, len(cur.trees))
	per := make([]any, len(free))
	for id := range m {
		for i, ls := range free {
			per[i] = ls[id]
		}
		m[id] = s.colls[id].mergeLayers(per)
	}
	s.swapLayers(nil, len(free), m)
	return true
}

// applyWorker applies the layers the applier hands it (the first ones of
// the published version, which only it drops) to the trees, and swaps the
// new trees in for them.
func (s *Store) applyWorker(work <-chan [][]any, done chan<- struct{}) {
	defer close(done)
	for layers := range work {
		if s.applyPause != nil {
			s.applyPause()
		}
		s.swapLayers(s.applyTo(s.current().trees, layers), len(layers), nil)
		s.kickApplier()
	}
}

// swapLayers makes a pass of the applier visible, in the head and in the
// published version, holding the write lock and pubMu. With trees (the
// apply worker's), they replace the trees and the n layers being applied
// are dropped; without (a merge), the n layers after those being applied
// (where they are now: the worker may have dropped its own meanwhile) are
// replaced by m.
func (s *Store) swapLayers(trees []any, n int, m []any) {
	s.sem.Lock()
	s.pubMu.Lock()
	cur := s.durable.Load()
	at := s.applying
	if trees != nil {
		at, s.applying = 0, 0
		s.w.trees = trees
	} else {
		trees = cur.trees
	}
	s.w.pending = replaceLayers(s.w.pending, at, at+n, m)
	s.durable.Store(&version{seq: cur.seq, trees: trees, layers: replaceLayers(cur.layers, at, at+n, m), store: s})
	s.pubMu.Unlock()
	s.sem.Unlock()
	s.signalApplied()
}

func (s *Store) signalApplied() {
	select {
	case s.applied <- struct{}{}:
	default:
	}
}

// layerKeys returns the number of keys in layers.
func (s *Store) layerKeys(layers [][]any) int {
	n := 0
	for _, ls := range layers {
		for id, l := range ls {
			if l != nil {
				n += s.colls[id].layerLen(l)
			}
		}
	}
	return n
}

// replaceLayers returns a new slice: layers with layers[i:j] replaced by
// m (nil: removed).
func replaceLayers(layers [][]any, i, j int, m []any) [][]any {
	out := make([][]any, 0, len(layers)-(j-i)+1)
	out = append(out, layers[:i]...)
	if m != nil {
		out = append(out, m)
	}
	return append(out, layers[j:]...)
}

// applyTo returns trees with layers (oldest first) applied: clones of the
// trees a layer touches, the others as they are. trees are not changed.
func (s *Store) applyTo(trees []any, layers [][]any) []any {
	out := slices.Clone(trees)
	cloned := make([]bool, len(out))
	for _, ls := range layers {
		for id, l := range ls {
			if l == nil {
				continue
			}
			if !cloned[id] {
				out[id] = s.colls[id].cloneTree(out[id])
				cloned[id] = true
			}
			s.colls[id].applyLayer(out[id], l)
		}
	}
	return out
}

// flatTrees returns v's trees with its layers applied, for a snapshot: a
// published version is immutable, so a snapshot locks nothing; its layers,
// if any, are applied to O(1) clones of the trees.
func (s *Store) flatTrees(v *version) []any {
	if len(v.layers) == 0 {
		return v.trees
	}
	return s.applyTo(v.trees, v.layers)
}
