package durable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"
)

// recover builds the latest version from the persistence: the newest
// snapshot that reads back whole and that the log covers, then every
// record after it, through the one decoding path (applyRecord). It
// returns the damaged data it did without (see Damage).
func (s *Store) recover(ctx context.Context) (_ *version, damage []error, _ error) {
	start := time.Now()
	first, last, err := s.p.LogBounds()
	if err != nil {
		return nil, nil, fmt.Errorf("durable: recover: %w", err)
	}
	snaps, err := s.p.Snapshots()
	if err != nil {
		return nil, nil, fmt.Errorf("durable: recover: list snapshots: %w", err)
	}
	var logDamage []error
	if dr, ok := s.p.(DamageReporter); ok {
		logDamage = dr.Damage()
	}
	st, used, damaged, err := s.pickSnapshot(ctx, snaps, first, logDamage)
	if err != nil {
		return nil, nil, err
	}
	base := uint64(0)
	if used != nil {
		base = used.Seq
	}
	if last < base {
		return nil, nil, fmt.Errorf("%w: snapshot %s is at seq %d but the log ends at %d", ErrNoState, used.Name, base, last)
	}
	damage = append(damaged, logDamage...)
	if len(damage) > 0 {
		s.log.Error("durable: recovering without damaged data; recovery can no longer fall back past it: "+
			"run \"procyon verify\" and take a snapshot soon", "snapshot", snapNameOf(used), "damaged", errors.Join(damage...))
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
		return nil, nil, fmt.Errorf("durable: recover: replay: %w", err)
	}
	if seq != last {
		return nil, nil, fmt.Errorf("%w: replay ended at %d, the log at %d", ErrCorrupt, seq, last)
	}
	if used != nil {
		s.snap.seq, s.snap.have = used.Seq, true
		s.lastSnapSize.Store(used.Size)
	}
	s.w.logBytes = bytes
	v := &version{seq: seq, trees: st.trees, store: s}
	s.log.Info("durable: recovered", "snapshot", snapNameOf(used), "snapshot_seq", base, "replayed", replayed,
		"seq", seq, "took", time.Since(start))
	return v, damage, nil
}

// pickSnapshot loads the newest snapshot that reads back whole and that the
// log covers (first <= seq+1), skipping damaged ones, and returns it with
// the damage it skipped. Without a usable snapshot, a log that starts at 1
// holds everything, unless the store was restored (it has a snapshot at
// seq 0, which holds the state before its log: see prune): it returns
// fresh trees and a nil snapshot. When recovery needs what is damaged, the
// error names the damaged snapshots and the damaged log segments
// (logDamage) that keep it from falling back.
func (s *Store) pickSnapshot(ctx context.Context, snaps []SnapshotInfo, first uint64, logDamage []error) (*loadState, *SnapshotInfo, []error, error) {
	var damaged []error
	for i := range snaps {
		sn := snaps[i]
		if sn.Seq+1 < first {
			// The log no longer reaches back to this snapshot.
			return nil, nil, nil, cannotRecover(damaged, logDamage,
				fmt.Errorf("%w: snapshot %s is at seq %d but the log starts at %d", ErrNoState, sn.Name, sn.Seq, first))
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		ls, err := s.loadSnapshot(sn)
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				s.log.Error("durable: snapshot is damaged; trying the previous one", "snapshot", sn.Name, "err", err)
				damaged = append(damaged, err)
				continue
			}
			return nil, nil, nil, err
		}
		return ls, &snaps[i], damaged, nil
	}
	if len(damaged) > 0 && (first > 1 || restored(snaps)) {
		return nil, nil, nil, cannotRecover(damaged, logDamage, fmt.Errorf("%w: no usable snapshot", ErrCorrupt))
	}
	if first > 1 {
		return nil, nil, nil, cannotRecover(nil, logDamage,
			fmt.Errorf("%w: no snapshot, and the log starts at %d", ErrNoState, first))
	}
	st := &loadState{}
	for _, c := range s.colls {
		st.trees = append(st.trees, c.newTree())
	}
	return st, nil, damaged, nil
}

// restored reports whether the snapshots include a restored store's first
// one, at seq 0.
func restored(snaps []SnapshotInfo) bool {
	return len(snaps) > 0 && snaps[len(snaps)-1].Seq == 0
}

// cannotRecover is the error of a recovery that needs data that is damaged
// or gone: why (ErrNoState), the damaged snapshots it could not use, and
// the damaged log segments that would have let it fall back.
func cannotRecover(damaged, logDamage []error, why error) error {
	if len(damaged) == 0 && len(logDamage) == 0 {
		return why
	}
	var b strings.Builder
	b.WriteString("durable: recover: ")
	for _, d := range damaged {
		fmt.Fprintf(&b, "%v; ", d)
	}
	fmt.Fprintf(&b, "%v", why)
	for _, d := range logDamage {
		fmt.Fprintf(&b, "; the log before it is damaged: %v", d)
	}
	return &recoverError{msg: b.String(), causes: append(append([]error{why}, damaged...), logDamage...)}
}

// recoverError is a recovery failure with several causes (errors.Is and
// errors.As see each).
type recoverError struct {
	msg    string
	causes []error
}

func (e *recoverError) Error() string   { return e.msg }
func (e *recoverError) Unwrap() []error { return e.causes }

func snapNameOf(sn *SnapshotInfo) string {
	if sn == nil {
		return ""
	}
	return sn.Name
}

// loadSnapshot reads a snapshot into fresh trees.
func (s *Store) loadSnapshot(sn SnapshotInfo) (*loadState, error) {
	rc, err := s.p.ReadSnapshot(sn.Seq)
	if err != nil {
		return nil, snapshotErr(sn.Name, "open", err)
	}
	defer rc.Close()
	hb := make([]byte, snapHeaderSize)
	if _, err := io.ReadFull(rc, hb); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &CorruptionError{File: sn.Name, Reason: "truncated header"}
		}
		return nil, snapshotErr(sn.Name, "read", err)
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
		return nil, snapshotErr(sn.Name, "read", err)
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

// snapshotErr wraps an error opening or reading a snapshot file; a
// directory where the file belongs is damage (a *CorruptionError), not an
// I/O failure.
func snapshotErr(name, op string, err error) error {
	var ce *CorruptionError
	if errors.As(err, &ce) || errors.Is(err, ErrVersion) || errors.Is(err, ErrUnknownCollection) {
		return err
	}
	if errors.Is(err, syscall.EISDIR) {
		return &CorruptionError{File: name, Reason: "a directory, not a snapshot file"}
	}
	return fmt.Errorf("durable: %s snapshot %s: %w", op, name, err)
}
