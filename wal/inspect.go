package wal

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/procyon-dev/procyon/vfs"
)

// SegmentInfo describes one segment file, as Verify found it.
type SegmentInfo struct {
	Name     string
	FirstSeq uint64
	LastSeq  uint64 // FirstSeq-1 if it holds no records
	Records  uint64
	Size     int64
	Sealed   bool // ends with a trailer
}

// Report is what Verify found in a log directory.
type Report struct {
	Segments []SegmentInfo // the segments Open would keep, oldest first
	// TornTail, if not nil, is a torn tail of the last segment that Open
	// would truncate (not corruption: unsynced writes cut by a crash).
	TornTail *TornTail
	// TornCreate names a last segment whose header never landed; Open
	// removes it (it holds no records).
	TornCreate string
	// Corruption is the first damage found (errors.Is ErrCorrupt or
	// ErrVersion); Open would fail with it. Nil if the log is sound.
	Corruption error
}

// TornTail is a torn tail of the last segment.
type TornTail struct {
	Segment string
	Offset  int64
	Bytes   int64
	Reason  string
}

// Verify checks every segment of the log in dir, changing nothing and
// taking no lock (it may run beside a live log; then the tail it sees may
// be torn only because a write is in progress). The error is for failures
// to read; damage is reported in the Report.
func Verify(fs vfs.FS, dir string) (*Report, error) {
	res, err := scanDir(fs, dir, nil)
	if err != nil {
		return nil, err
	}
	return res.report(), nil
}

func (res *scanResult) report() *Report {
	r := &Report{TornCreate: res.tornCreate, Corruption: res.corrupt}
	for _, s := range res.segs {
		r.Segments = append(r.Segments, SegmentInfo{Name: s.name, FirstSeq: s.firstSeq, LastSeq: s.lastSeq,
			Records: s.count, Size: s.size, Sealed: s.sealed})
	}
	if res.tornTail {
		r.TornTail = &TornTail{Segment: r.Segments[len(r.Segments)-1].Name, Offset: res.tornOffset, Bytes: res.tornBytes, Reason: res.tornReason}
	}
	return r
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

// Dump calls fn for every frame of every segment in dir, in order, up to
// and including the first damaged one, and returns the Verify report.
func Dump(fs vfs.FS, dir string, fn func(DumpFrame)) (*Report, error) {
	res, err := scanDir(fs, dir, func(seg string, off int64, f frame, p frameProblem) {
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
	return res.report(), nil
}

// RepairPlan says what Repair will drop to make a corrupt log open again:
// everything from the first damaged frame on.
type RepairPlan struct {
	Segment        string   // the damaged segment
	Offset         int64    // it is cut here (0: removed whole)
	TruncatedBytes int64    // bytes cut from Segment
	RemoveSegments []string // later segments, removed whole
	RemovedBytes   int64    // their total size
	Reason         string   // the damage
}

func (p *RepairPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "damage: %s\n", p.Reason)
	if p.Offset <= 0 {
		fmt.Fprintf(&b, "remove segment %s (%d bytes)\n", p.Segment, p.TruncatedBytes)
	} else {
		fmt.Fprintf(&b, "truncate segment %s at offset %d, dropping %d bytes\n", p.Segment, p.Offset, p.TruncatedBytes)
	}
	for _, s := range p.RemoveSegments {
		fmt.Fprintf(&b, "remove segment %s\n", s)
	}
	if len(p.RemoveSegments) > 0 {
		fmt.Fprintf(&b, "(%d later segments, %d bytes)\n", len(p.RemoveSegments), p.RemovedBytes)
	}
	return b.String()
}

// PlanRepair returns what Repair would do to the log in dir, or nil if it
// holds no corruption (a torn tail is not corruption: Open repairs it). It
// changes nothing.
func PlanRepair(fs vfs.FS, dir string) (*RepairPlan, error) {
	res, err := scanDir(fs, dir, nil)
	if err != nil {
		return nil, err
	}
	return planFrom(fs, dir, res)
}

func planFrom(fs vfs.FS, dir string, res *scanResult) (*RepairPlan, error) {
	if res.corrupt == nil {
		return nil, nil
	}
	if errors.Is(res.corrupt, ErrVersion) {
		return nil, fmt.Errorf("wal: cannot repair: %w (use a newer build)", res.corrupt)
	}
	seg := res.files[res.corruptIndex]
	size, err := fs.Stat(filepath.Join(dir, seg))
	if err != nil {
		return nil, err
	}
	p := &RepairPlan{Segment: seg, Offset: res.corruptOffset, Reason: res.corrupt.Error()}
	if p.Offset < headerSize {
		p.Offset = 0
	}
	p.TruncatedBytes = size - p.Offset
	for _, later := range res.files[res.corruptIndex+1:] {
		sz, err := fs.Stat(filepath.Join(dir, later))
		if err != nil {
			return nil, err
		}
		p.RemoveSegments = append(p.RemoveSegments, later)
		p.RemovedBytes += sz
	}
	return p, nil
}

// Repair applies plan, which must come from PlanRepair on the same
// directory: it takes the directory's lock, checks the log still needs
// exactly that repair, then cuts the damaged segment and removes the later
// ones, newest first, syncing as it goes. Afterwards Open succeeds, with
// every record before the damage.
func Repair(fs vfs.FS, dir string, plan *RepairPlan) error {
	lock, err := fs.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	defer lock.Close()
	res, err := scanDir(fs, dir, nil)
	if err != nil {
		return err
	}
	now, err := planFrom(fs, dir, res)
	if err != nil {
		return err
	}
	if now == nil || now.String() != plan.String() {
		return errors.New("wal: repair: the log changed since the plan was made; plan again")
	}
	for i := len(plan.RemoveSegments) - 1; i >= 0; i-- {
		if err := fs.Remove(filepath.Join(dir, plan.RemoveSegments[i])); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		if err := fs.SyncDir(dir); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
	}
	path := filepath.Join(dir, plan.Segment)
	if plan.Offset == 0 {
		if err := fs.Remove(path); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		return fs.SyncDir(dir)
	}
	f, err := fs.OpenReadWrite(path)
	if err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
	err = f.Truncate(plan.Offset)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: repair: truncate %s: %w", plan.Segment, err)
	}
	return nil
}
