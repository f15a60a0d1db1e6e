package wal

import (
	"errors"

	"github.com/procyon-dev/procyon/vfs"
)

// CheckOptions configure Verify, Dump and PlanRepair. The zero value is
// usable.
type CheckOptions struct {
	// NeedFrom is Options.NeedFrom: damage wholly before it is reported
	// (Report.Skipped) but does not make the log unopenable, and
	// PlanRepair deletes the segments that hold it. Default 0: every
	// record is needed.
	NeedFrom uint64
}

// Verdict sums up a Report, from best to worst.
type Verdict int

const (
	// Clean: Open keeps every record on disk; nothing but preallocated
	// zeros follows the last one. A cleanly closed log, or a crashed one
	// whose last segment ends in whole records or zeros.
	Clean Verdict = iota
	// Torn: Open succeeds but cuts a torn tail (Report.TornTail) off the
	// unsealed last segment: the bytes of a write a crash interrupted.
	Torn
	// Skipped: Open succeeds but passes over damage wholly before
	// CheckOptions.NeedFrom (Report.Skipped); it may also cut a torn tail.
	Skipped
	// Corrupt: Open fails with Report.Corruption.
	Corrupt
)

func (v Verdict) String() string {
	switch v {
	case Clean:
		return "clean"
	case Torn:
		return "torn tail"
	case Skipped:
		return "damage skipped"
	case Corrupt:
		return "corrupt"
	}
	return "unknown"
}

// Report is what Verify or Dump found in a log directory. It describes
// what Open (with the same NeedFrom) would do, without doing it.
type Report struct {
	Dir string
	// Segments lists every file with a segment's name, oldest first:
	// intact ones, damaged ones, and those before the log's start.
	Segments []SegmentInfo
	// FirstSeq and LastSeq bound the records Open would return (LastSeq <
	// FirstSeq: none); Records counts them. Zero if Open would fail.
	FirstSeq, LastSeq, Records uint64
	// TornTail, if not nil, is a torn tail of the unsealed last segment
	// that Open would cut off. Not corruption, but a finding.
	TornTail *TornTail
	// Skipped is the damage Open would pass over because it lies wholly
	// before NeedFrom, oldest first.
	Skipped []*CorruptionError
	// Corruption is the damage Open would fail on (errors.Is ErrCorrupt,
	// or ErrVersion); nil if Open would succeed.
	Corruption error
}

// SegmentInfo describes one file with a segment's name.
type SegmentInfo struct {
	Name     string
	FirstSeq uint64 // from the name
	LastSeq  uint64 // last readable record; FirstSeq-1 if none
	Records  uint64 // readable records (before any damage)
	Size     int64
	Sealed   bool  // a valid trailer ends its records
	Damage   error // the first damage reported on this file; nil if none
	Skipped  bool  // before the log's start: Open passes over it
}

// TornTail is a torn tail of the unsealed last segment: bytes after its
// last whole record that are neither a whole record nor zeros, with no
// valid record after them (else it is corruption). It holds no whole
// record; at most the start of record Seq, whose write a crash interrupted
// before its sync returned, so it was never acknowledged.
type TornTail struct {
	Segment string
	Offset  int64  // where Open cuts
	Bytes   int64  // bytes Open drops
	Seq     uint64 // the record the torn bytes would have been
	Reason  string // why the bytes at Offset do not decode
}

// Verdict sums the report up.
func (r *Report) Verdict() Verdict {
	switch {
	case r.Corruption != nil:
		return Corrupt
	case len(r.Skipped) > 0:
		return Skipped
	case r.TornTail != nil:
		return Torn
	}
	return Clean
}

// Verify checks every file with a segment's name in dir as Open would,
// changing nothing and taking no lock (it may run beside a live log; then
// the tail it sees may be torn only because a write is in progress). It
// fails with ErrNotLog if dir is not a log; other errors are failures to
// read. Damage is reported in the Report.
func Verify(fs vfs.FS, dir string, opts CheckOptions) (*Report, error) {
	res, err := scanDir(fs, dir, opts.NeedFrom, nil)
	if err != nil {
		return nil, err
	}
	return res.report(dir), nil
}

func (r *scanResult) report(dir string) *Report {
	rep := &Report{Dir: dir, Corruption: r.fatal, Skipped: r.skipped}
	firstDamage := map[int]error{}
	for _, d := range r.damage {
		if _, ok := firstDamage[d.index]; !ok {
			firstDamage[d.index] = d.err
		}
	}
	for i, f := range r.files {
		rep.Segments = append(rep.Segments, SegmentInfo{Name: f.name, FirstSeq: f.firstSeq, LastSeq: f.lastSeq,
			Records: f.count, Size: f.size, Sealed: f.sealed, Damage: firstDamage[i], Skipped: i < r.start})
	}
	if r.fatal != nil {
		return rep
	}
	if kept := r.kept(); len(kept) > 0 {
		rep.FirstSeq, rep.LastSeq = kept[0].firstSeq, kept[len(kept)-1].lastSeq
		rep.Records = rep.LastSeq + 1 - rep.FirstSeq
	}
	if t := r.tornTail(); t != nil {
		rep.TornTail = &TornTail{Segment: t.name, Offset: t.validEnd, Bytes: t.size - t.validEnd, Seq: t.lastSeq + 1, Reason: t.tear}
	}
	return rep
}

// DumpFrame is one frame as Dump sees it.
type DumpFrame struct {
	Segment string
	Offset  int64
	Type    string // "data", "trailer", or "bad"
	Seq     uint64
	Stream  uint32
	Size    int // payload bytes
	Status  string
}

// Dump calls fn for every frame of every file with a segment's name in
// dir, in order, up to and including the first damaged frame of each (a
// file that is not a segment gets one "bad" frame at offset 0), and
// returns the Verify report. It changes nothing.
func Dump(fs vfs.FS, dir string, opts CheckOptions, fn func(DumpFrame)) (*Report, error) {
	res, err := scanDir(fs, dir, opts.NeedFrom, func(seg string, off int64, f frame, p frameProblem) {
		d := DumpFrame{Segment: seg, Offset: off, Seq: f.seq, Stream: f.stream, Size: len(f.payload), Status: "ok"}
		switch {
		case p != frameOK:
			d.Type, d.Status = "bad", p.String()
		case f.typ == typeData:
			d.Type = "data"
		case f.typ == typeTrailer:
			d.Type = "trailer"
		}
		fn(d)
	})
	if err != nil {
		return nil, err
	}
	return res.report(dir), nil
}

// isVersion reports whether err is a newer-format segment.
func isVersion(err error) bool { return errors.Is(err, ErrVersion) }
