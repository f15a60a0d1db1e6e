package wal

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/procyon-dev/procyon/vfs"
)

// RepairPlan says exactly what Repair will do to make a damaged log open,
// and what that drops. Repair never drops an intact segment that holds
// records after the damage: PlanRepair refuses (ErrRepairRefused) instead.
type RepairPlan struct {
	// Damage is what the plan repairs: the damage Open fails on, or, when
	// Open would only skip damage before CheckOptions.NeedFrom, the first
	// such damage.
	Damage error
	// Delete lists whole files removed, in the order Repair removes them:
	// first the files before the log's start (damage wholly before
	// NeedFrom, and the segments before it), oldest first; then the files
	// after a cut, newest first.
	Delete []DroppedFile
	// Cut, if not nil, is the segment cut at the damage: it and
	// everything after it in that file is dropped.
	Cut *Cut
	// Gap, if not nil, is the range of sequence numbers no file holds
	// (a segment is missing): the repaired log ends before it.
	Gap *SeqRange

	needFrom uint64 // the CheckOptions it was planned with
}

// DroppedFile is a file Repair removes whole.
type DroppedFile struct {
	Name string
	Size int64
	// FirstSeq..LastSeq are the sequence numbers of the readable records
	// it holds (LastSeq < FirstSeq: none); Records counts them.
	FirstSeq, LastSeq, Records uint64
	Damage                     error // its damage, if any
}

// SeqRange is a range of sequence numbers, both ends included.
type SeqRange struct{ FirstSeq, LastSeq uint64 }

// Cut is a segment Repair truncates at the damage (removes whole, if the
// damage is in its header).
type Cut struct {
	Segment string
	Offset  int64 // 0: the file is removed
	Bytes   int64 // bytes dropped
	// FirstSeq..LastSeq are the sequence numbers of the records recognised
	// in the dropped bytes (a surviving trailer, or whole frames after the
	// damage; LastSeq < FirstSeq: none recognised); Records counts the
	// whole records among them. The damaged record itself may be one more.
	FirstSeq, LastSeq, Records uint64
}

// Records is the number of readable records the plan drops.
func (p *RepairPlan) Records() uint64 {
	var n uint64
	for _, d := range p.Delete {
		n += d.Records
	}
	if p.Cut != nil {
		n += p.Cut.Records
	}
	return n
}

func (p *RepairPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "damage: %v\n", p.Damage)
	if c := p.Cut; c != nil {
		if c.Offset == 0 {
			fmt.Fprintf(&b, "remove segment %s (%d bytes)", c.Segment, c.Bytes)
		} else {
			fmt.Fprintf(&b, "truncate segment %s at offset %d, dropping %d bytes", c.Segment, c.Offset, c.Bytes)
		}
		if c.LastSeq >= c.FirstSeq {
			fmt.Fprintf(&b, ": drops seq %d..%d (%d whole records recognised after the damage)", c.FirstSeq, c.LastSeq, c.Records)
		} else {
			b.WriteString(": no whole record recognised after the damage")
		}
		b.WriteString("\n")
	}
	if g := p.Gap; g != nil {
		fmt.Fprintf(&b, "records %d..%d are missing (a segment was removed): the log will end at %d\n", g.FirstSeq, g.LastSeq, g.FirstSeq-1)
	}
	for _, d := range p.Delete {
		fmt.Fprintf(&b, "remove %s (%d bytes", d.Name, d.Size)
		if d.Records > 0 {
			fmt.Fprintf(&b, ", %d records, seq %d..%d", d.Records, d.FirstSeq, d.LastSeq)
		} else {
			b.WriteString(", no readable records")
		}
		if d.Damage != nil {
			fmt.Fprintf(&b, "; damaged: %v", d.Damage)
		}
		b.WriteString(")\n")
	}
	fmt.Fprintf(&b, "drops %d readable records\n", p.Records())
	return b.String()
}

// PlanRepair returns what Repair would do to the log in dir, or nil if Open
// needs no repair (a torn tail is not damage: Open cuts it). It changes
// nothing. It fails with ErrRepairRefused if cutting at the damage would
// drop an intact later segment that holds records, with ErrVersion for a
// newer-format segment, and with ErrNotLog if dir is not a log.
//
// Damage wholly before opts.NeedFrom is repaired by deleting the segments
// before the log's start (nothing needs their records); other damage by
// cutting the log at it.
func PlanRepair(fs vfs.FS, dir string, opts CheckOptions) (*RepairPlan, error) {
	res, err := scanDir(fs, dir, opts.NeedFrom, nil)
	if err != nil {
		return nil, err
	}
	return planFrom(res, opts.NeedFrom)
}

func planFrom(res *scanResult, needFrom uint64) (*RepairPlan, error) {
	if res.fatal == nil && len(res.skipped) == 0 {
		return nil, nil
	}
	if isVersion(res.fatal) {
		return nil, fmt.Errorf("wal: cannot repair: %w (use a newer build)", res.fatal)
	}
	p := &RepairPlan{needFrom: needFrom}
	for _, f := range res.files[:res.start] {
		p.Delete = append(p.Delete, droppedFile(f))
	}
	if res.fatal == nil {
		p.Damage = res.skipped[0]
		return p, nil
	}
	p.Damage = res.fatal
	if err := planCut(res, p); err != nil {
		return nil, err
	}
	return p, nil
}

func droppedFile(f *fileScan) DroppedFile {
	return DroppedFile{Name: f.name, Size: f.size, FirstSeq: f.firstSeq, LastSeq: f.lastSeq, Records: f.count, Damage: f.damage}
}

// planCut adds the cut at res.fatal and the removal of every file after
// it, or refuses if one of them is a segment holding records.
func planCut(res *scanResult, p *RepairPlan) error {
	i := res.fatalIndex
	var ce *CorruptionError
	errors.As(res.fatal, &ce)
	f := res.files[i]
	after := i + 1
	if res.fatal != f.damage {
		// A gap before file i (its own damage, if any, comes later): the
		// cut removes the files from it on.
		after = i
		p.Gap = &SeqRange{FirstSeq: res.files[i-1].lastSeq + 1, LastSeq: f.firstSeq - 1}
	} else {
		c := &Cut{Segment: f.name, Offset: ce.Offset, Bytes: f.size - ce.Offset, FirstSeq: f.lastSeq + 1,
			LastSeq: f.lastSeq, Records: f.lostRecords}
		if f.lostLast > f.lastSeq {
			c.LastSeq = f.lostLast
		}
		if c.Offset < headerSize {
			c.Offset, c.Bytes = 0, f.size
			c.FirstSeq, c.Records = f.firstSeq, f.count+f.lostRecords
		}
		p.Cut = c
	}
	var intact []string
	var later []DroppedFile
	for j := len(res.files) - 1; j >= after; j-- {
		g := res.files[j]
		if g.segment && g.count > 0 {
			intact = append([]string{fmt.Sprintf("%s (seq %d..%d, %d records)", g.name, g.firstSeq, g.lastSeq, g.count)}, intact...)
		}
		later = append(later, droppedFile(g))
	}
	if len(intact) > 0 {
		return fmt.Errorf("%w: %v; cutting the log there would drop the intact later segments %s. "+
			"Recover at the store level (procyon repair on the store directory, which knows which records its snapshots hold) or from a backup",
			ErrRepairRefused, res.fatal, strings.Join(intact, ", "))
	}
	p.Delete = append(p.Delete, later...)
	return nil
}

// Repair applies plan, which must come from PlanRepair on the same
// directory: it takes the directory's lock, checks the log still needs
// exactly that repair, then removes the files before the log's start
// (oldest first), removes the files after the cut (newest first) and cuts
// the damaged segment, syncing after each step. Afterwards Open (with the
// plan's NeedFrom) succeeds, with every record the plan did not list.
func Repair(fs vfs.FS, dir string, plan *RepairPlan) error {
	if plan == nil {
		return errors.New("wal: repair: no plan (PlanRepair found nothing to repair)")
	}
	lock, err := fs.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	defer lock.Close()
	res, err := scanDir(fs, dir, plan.needFrom, nil)
	if err != nil {
		return err
	}
	now, err := planFrom(res, plan.needFrom)
	if err != nil {
		return err
	}
	if now == nil || now.String() != plan.String() {
		return errors.New("wal: repair: the log changed since the plan was made; plan again")
	}
	for _, d := range plan.Delete {
		if err := fs.Remove(filepath.Join(dir, d.Name)); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		if err := fs.SyncDir(dir); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
	}
	if plan.Cut == nil {
		return nil
	}
	return applyCut(fs, dir, plan.Cut)
}

func applyCut(fs vfs.FS, dir string, c *Cut) error {
	path := filepath.Join(dir, c.Segment)
	if c.Offset == 0 {
		if err := fs.Remove(path); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		return fs.SyncDir(dir)
	}
	f, err := fs.OpenReadWrite(path)
	if err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
	err = f.Truncate(c.Offset)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: repair: truncate %s: %w", c.Segment, err)
	}
	return nil
}
