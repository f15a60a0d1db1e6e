package durable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// recover builds the latest version from the persistence: the newest
// snapshot that reads back whole and that the log covers, then every
// record after it.
func (s *Store) recover(ctx context.Context) (*View, error) {
	start := time.Now()
	first, last, err := s.p.LogBounds()
	if err != nil {
		return nil, fmt.Errorf("durable: recover: %w", err)
	}
	snaps, err := s.p.Snapshots()
	if err != nil {
		return nil, fmt.Errorf("durable: recover: list snapshots: %w", err)
	}
	var (
		st      *loadState
		base    uint64
		used    *SnapshotInfo
		damaged []error
	)
	for i := range snaps {
		sn := snaps[i]
		if sn.Seq+1 < first {
			// The log no longer reaches back to this snapshot.
			if len(damaged) > 0 {
				return nil, fmt.Errorf("%w: %w; the previous snapshot %s (seq %d) cannot replace it: the log starts at %d",
					ErrNoState, damaged[0], sn.Name, sn.Seq, first)
			}
			return nil, fmt.Errorf("%w: snapshot %s is at seq %d but the log starts at %d", ErrNoState, sn.Name, sn.Seq, first)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ls, err := s.loadSnapshot(sn)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				s.log.Error("durable: snapshot is damaged; trying the previous one", "snapshot", sn.Name, "err", err)
				damaged = append(damaged, err)
				continue
			}
			return nil, err
		}
		st, base, used = ls, sn.Seq, &snaps[i]
		break
	}
	if st == nil {
		if len(damaged) > 0 {
			return nil, fmt.Errorf("durable: recover: no usable snapshot: %w", damaged[0])
		}
		if first > 1 {
			return nil, fmt.Errorf("%w: no snapshot, and the log starts at %d", ErrNoState, first)
		}
		st = &loadState{}
		for _, c := range s.colls {
			st.trees = append(st.trees, c.newTree())
		}
	}
	if last < base {
		return nil, fmt.Errorf("%w: snapshot %s is at seq %d but the log ends at %d", ErrNoState, used.Name, base, last)
	}
	if len(damaged) > 0 {
		s.log.Warn("durable: recovering from an older snapshot", "snapshot", used.Name, "damaged", len(damaged))
	}
	var replayed, bytes int64
	seq := base
	err = s.p.Replay(base+1, func(rs uint64, rec []byte) error {
		if rs != seq+1 {
			return fmt.Errorf("%w: log record %d follows %d", ErrCorrupt, rs, seq)
		}
		if replayed%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := s.applyRecord(st, rs, rec); err != nil {
			return err
		}
		seq = rs
		replayed++
		bytes += int64(len(rec))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("durable: recover: replay: %w", err)
	}
	if seq != last {
		return nil, fmt.Errorf("%w: replay ended at %d, the log at %d", ErrCorrupt, seq, last)
	}
	if used != nil {
		s.snap.seq, s.snap.have = used.Seq, true
		s.lastSnapSize.Store(used.Size)
	}
	s.w.logBytes = bytes
	v := &View{seq: seq, trees: st.trees, store: s}
	snapName := ""
	if used != nil {
		snapName = used.Name
	}
	s.log.Info("durable: recovered", "snapshot", snapName, "snapshot_seq", base, "replayed", replayed,
		"seq", seq, "took", time.Since(start))
	return v, nil
}

// loadSnapshot reads a snapshot into fresh trees.
func (s *Store) loadSnapshot(sn SnapshotInfo) (*loadState, error) {
	rc, err := s.p.ReadSnapshot(sn.Seq)
	if err != nil {
		return nil, fmt.Errorf("durable: open snapshot %s: %w", sn.Name, err)
	}
	defer rc.Close()
	hb := make([]byte, snapHeaderSize)
	if _, err := io.ReadFull(rc, hb); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &CorruptionError{File: sn.Name, Reason: "truncated header"}
		}
		return nil, fmt.Errorf("durable: read snapshot %s: %w", sn.Name, err)
	}
	h, err := decodeSnapHeader(hb, sn.Name)
	if err != nil {
		return nil, err
	}
	if h.seq != sn.Seq {
		return nil, &CorruptionError{File: sn.Name, Offset: 16, Reason: fmt.Sprintf("header says seq %d, the name %d", h.seq, sn.Seq)}
	}
	// Adopted collections from a damaged snapshot must not linger: work
	// on a copy of the registry and commit it only on success.
	ncolls := len(s.colls)
	st := &loadState{}
	for _, c := range s.colls {
		st.trees = append(st.trees, c.newTree())
	}
	sink := &storeSink{s: s, st: st, file: sn.Name}
	if err := readSnapshotBody(newSnapReader(rc, sn.Name), sink); err != nil {
		s.unadopt(ncolls)
		return nil, err
	}
	return st, nil
}

// unadopt forgets collections adopted (KeepUnknown) after the first n.
func (s *Store) unadopt(n int) {
	for id := n; id < len(s.colls); id++ {
		delete(s.byName, s.colls[id].collName())
		delete(s.raw, id)
	}
	s.colls = s.colls[:n]
}
