package wal

import (
	"fmt"
	"path/filepath"
)

// MarkFlushed says that stream no longer needs its records up to and
// including seq (HBase: the region flushed its memstore past seq). A sealed
// segment is deleted once every stream that wrote to it has been marked
// flushed past its last record there, and every older segment is deleted
// too: the log stays a contiguous run of segments. Marks live in memory;
// after a restart a stream must be marked again before its segments go.
func (w *WAL) MarkFlushed(stream uint32, seq uint64) error {
	if w.readOnly() {
		return ErrReadOnly
	}
	w.mu.Lock()
	if seq > w.mu.flushed[stream] {
		w.mu.flushed[stream] = seq
	}
	w.mu.Unlock()
	return w.deleteObsolete()
}

// TruncateFront says that no record before seq is needed by anyone: every
// sealed segment whose records all precede seq is deleted, and so is every
// file Open skipped (Options.NeedFrom) that holds only records before seq.
// The active segment is never deleted (Roll first to make its records
// deletable), so records before seq may still be read afterwards.
func (w *WAL) TruncateFront(seq uint64) error {
	if w.readOnly() {
		return ErrReadOnly
	}
	w.mu.Lock()
	if seq > w.mu.truncateFront {
		w.mu.truncateFront = seq
	}
	w.mu.Unlock()
	return w.deleteObsolete()
}

// obsoleteLocked reports whether no caller needs s any more.
func (w *WAL) obsoleteLocked(s *segment) bool {
	if !s.sealed.Load() {
		return false
	}
	if s.lastSeq < w.mu.truncateFront {
		return true
	}
	for stream, last := range s.streams {
		if w.mu.flushed[stream] < last {
			return false
		}
	}
	return true
}

// deleteObsolete deletes the longest prefix of obsolete segments, oldest
// first, syncing the directory after each removal so that a crash leaves a
// contiguous log. Files Open skipped go first: those TruncateFront passed,
// and all of them once a segment after them goes.
func (w *WAL) deleteObsolete() error {
	w.deleteMu.Lock()
	defer w.deleteMu.Unlock()
	w.mu.Lock()
	if w.mu.closed && w.mu.err != nil {
		w.mu.Unlock()
		return nil
	}
	n := 0
	for n < len(w.mu.segments)-1 && w.obsoleteLocked(w.mu.segments[n]) {
		n++
	}
	var doomed []string
	k := 0
	for k < len(w.mu.skipped) && (n > 0 || w.mu.skipped[k].bound <= w.mu.truncateFront) {
		doomed = append(doomed, w.mu.skipped[k].name)
		k++
	}
	w.mu.skipped = w.mu.skipped[k:]
	for _, s := range w.mu.segments[:n] {
		doomed = append(doomed, s.name)
	}
	w.mu.segments = w.mu.segments[n:]
	w.stats.segments.Store(int64(len(w.mu.segments)))
	w.mu.Unlock()
	for _, name := range doomed {
		if err := w.fs.Remove(filepath.Join(w.dir, name)); err != nil {
			return fmt.Errorf("wal: delete obsolete segment %s: %w", name, err)
		}
		if err := w.fs.SyncDir(w.dir); err != nil {
			return fmt.Errorf("wal: delete obsolete segment %s: sync dir: %w", name, err)
		}
	}
	return nil
}
