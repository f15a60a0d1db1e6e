package durable

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// SnapshotCheck is what Verify found in one snapshot file.
type SnapshotCheck struct {
	SnapshotInfo
	Collections int   // sections in it
	Entries     int64 // entries in all of them
	// Err is the damage found (errors.Is ErrCorrupt, or ErrVersion), or
	// an error reading the file; nil if it is sound.
	Err error
}

// VerifyReport is what Verify found in a store's directory, and what
// recovery would do with it.
type VerifyReport struct {
	Dir       string
	Snapshots []SnapshotCheck // newest first, each read whole
	// Log is package wal's report on the log, checked needing the records
	// after the newest snapshot (by name); nil if the store has no log
	// segments.
	Log *wal.Report
	// LogDamage is corruption in log segments that hold only records the
	// newest snapshot covers: recovery opens without SetAside (those
	// segments and any before them), and can no longer fall back to a
	// snapshot that needs them.
	LogDamage []*wal.CorruptionError
	SetAside  []string
	// Unfinished lists snapshot files a crash left half-written
	// (<seq>.snap.tmp): not damage; the next snapshot removes them.
	Unfinished []string

	// What recovery would do (when Err is nil): load snapshot Uses
	// ("" for none: the log from seq 1 rebuilds everything), then replay
	// the log records ReplayFrom..ReplayTo.
	Uses                 string
	ReplayFrom, ReplayTo uint64
	// Fallbacks are the older sound snapshots that the log still covers:
	// what recovery could use if Uses were lost.
	Fallbacks []string
	// Err says why the store would not open; nil if it would. (Verify
	// cannot know the program's collections: a snapshot or record naming
	// an unknown one is not checked for.)
	Err error
}

// Damaged reports whether Verify found anything recovery would drop or do
// without: a damaged snapshot, damaged log segments, a torn log tail.
func (r *VerifyReport) Damaged() bool {
	for _, s := range r.Snapshots {
		if s.Err != nil {
			return true
		}
	}
	return r.Log != nil && r.Log.Verdict() != wal.Clean
}

// Verify checks a store's directory without changing it and without
// taking its lock: every snapshot read whole (structure and checksums),
// every log segment (package wal's Verify), and what recovery would use.
// It fails with ErrNotStore if dir holds no store; damage is reported in
// the VerifyReport, whose Err says whether Open would fail.
func Verify(fs vfs.FS, dir string) (*VerifyReport, error) {
	l, err := readLayout(fs, dir)
	if err != nil {
		return nil, err
	}
	if !l.isStore() {
		return nil, l.notStore()
	}
	r := &VerifyReport{Dir: dir}
	for _, sn := range l.snaps {
		r.Snapshots = append(r.Snapshots, checkSnapshot(fs, dir, sn))
	}
	for _, n := range l.entries {
		if strings.HasSuffix(n, snapSuffix+tmpSuffix) {
			r.Unfinished = append(r.Unfinished, n)
		}
	}
	if l.lockIsDir {
		r.Err = fmt.Errorf("durable: %s is a directory: the log cannot be locked", filepath.Join(dir, walSubdir, "LOCK"))
		return r, nil
	}
	first, last := uint64(1), uint64(0)
	if len(l.segments) > 0 {
		r.Log, err = wal.Verify(fs, filepath.Join(dir, walSubdir), wal.CheckOptions{NeedFrom: l.needFrom()})
		if err != nil {
			return nil, err
		}
		r.LogDamage = r.Log.Skipped
		for _, sg := range r.Log.Segments {
			if sg.Skipped {
				r.SetAside = append(r.SetAside, sg.Name)
			}
		}
		if r.Log.Corruption != nil {
			r.Err = fmt.Errorf("durable: open log: %w", r.Log.Corruption)
			return r, nil
		}
		if r.Log.Records > 0 {
			first, last = r.Log.FirstSeq, r.Log.LastSeq
		} else if r.Log.FirstSeq > 0 {
			first, last = r.Log.FirstSeq, r.Log.FirstSeq-1
		}
	} else if err := l.checkOpen(true); err != nil {
		r.Err = err
		return r, nil
	}
	r.plan(first, last)
	return r, nil
}

// plan works out, as recovery would, which snapshot and log range Open
// would use, given the log's bounds.
func (r *VerifyReport) plan(first, last uint64) {
	var damaged, logDamage []error
	for _, d := range r.LogDamage {
		logDamage = append(logDamage, &LogDamageError{Segment: filepath.Join(walSubdir, d.Segment), Err: d})
	}
	base := uint64(0)
	found := false
	for _, sn := range r.Snapshots {
		if sn.Seq+1 < first {
			if !found {
				r.Err = cannotRecover(damaged, logDamage,
					fmt.Errorf("%w: snapshot %s is at seq %d but the log starts at %d", ErrNoState, sn.Name, sn.Seq, first))
				return
			}
			break
		}
		switch {
		case sn.Err != nil && !found:
			damaged = append(damaged, sn.Err)
		case sn.Err != nil:
		case !found:
			r.Uses, base, found = sn.Name, sn.Seq, true
		default:
			r.Fallbacks = append(r.Fallbacks, sn.Name)
		}
	}
	switch {
	case !found && len(damaged) > 0 && (first > 1 || restored(r.infos())):
		r.Err = cannotRecover(damaged, logDamage, fmt.Errorf("%w: no usable snapshot", ErrCorrupt))
		return
	case !found && first > 1:
		r.Err = cannotRecover(nil, logDamage, fmt.Errorf("%w: no snapshot, and the log starts at %d", ErrNoState, first))
		return
	}
	if last < base {
		r.Err = fmt.Errorf("%w: snapshot %s is at seq %d but the log ends at %d", ErrNoState, r.Uses, base, last)
		return
	}
	r.ReplayFrom, r.ReplayTo = base+1, last
}

func (r *VerifyReport) infos() []SnapshotInfo {
	out := make([]SnapshotInfo, len(r.Snapshots))
	for i, s := range r.Snapshots {
		out[i] = s.SnapshotInfo
	}
	return out
}

// checkSnapshot reads a snapshot file whole and checks it.
func checkSnapshot(fs vfs.FS, dir string, sn SnapshotInfo) SnapshotCheck {
	c := SnapshotCheck{SnapshotInfo: sn}
	f, err := fs.Open(filepath.Join(dir, sn.Name))
	if err != nil {
		c.Err = snapshotErr(sn.Name, "open", err)
		return c
	}
	defer f.Close()
	r := io.NewSectionReader(f, 0, sn.Size)
	hb := make([]byte, snapHeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			c.Err = &CorruptionError{File: sn.Name, Reason: "truncated header"}
		} else {
			c.Err = snapshotErr(sn.Name, "read", err)
		}
		return c
	}
	h, err := decodeSnapHeader(hb, sn.Name)
	if err != nil {
		c.Err = err
		return c
	}
	if h.seq != sn.Seq {
		c.Err = &CorruptionError{File: sn.Name, Offset: 16, Reason: fmt.Sprintf("header says seq %d, the name %d", h.seq, sn.Seq)}
		return c
	}
	sink := &restoreSink{}
	if err := readSnapshotBody(newSnapReader(r, sn.Name), sink); err != nil {
		c.Err = snapshotErr(sn.Name, "read", err)
		return c
	}
	c.Collections, c.Entries = len(sink.names), sink.entries
	return c
}
