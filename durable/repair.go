package durable

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// ErrNeedBackup: a store's damage is in data recovery needs, and repairing
// it would drop acknowledged transactions that no snapshot holds. Repair
// refuses; restore from a backup.
var ErrNeedBackup = errors.New("durable: damage cannot be repaired without losing acknowledged transactions")

// RepairOptions configure PlanRepair.
type RepairOptions struct {
	// FS is the file system of the directory. Default vfs.OS.
	FS vfs.FS
	// RemoveDamagedSnapshots also removes damaged snapshots (recovery
	// never uses them). Default false: they are reported and kept, for a
	// closer look.
	RemoveDamagedSnapshots bool
	// AcceptLoss lets Repair cut the log recovery needs at its damage when
	// no intact segment holding records follows it, dropping the
	// transactions from the damage on (RepairPlan.Loss says which).
	// Default false: such a plan is a refusal (ErrNeedBackup) that says
	// what the cut would drop.
	AcceptLoss bool
}

// LogLoss is what cutting the log at its damage drops: the transactions
// from seq From on, up to To if that is known.
type LogLoss struct {
	From uint64 // the first transaction dropped; the log keeps all before it
	// To is the last transaction dropped, when Known (To < From: none):
	// the segment after the cut one says where the cut one ended.
	To    uint64
	Known bool
	How   string // how To is known
	// Recognised counts the whole records recognised after the damage,
	// and Last is the highest seq they (or a trailer) name, 0 if none:
	// when To is not known, the loss is at least From..Last.
	Recognised, Last uint64
}

// None reports whether the cut is known to drop no transaction.
func (l *LogLoss) None() bool { return l.Known && l.To < l.From }

func (l *LogLoss) String() string {
	switch {
	case l.None():
		return fmt.Sprintf("no transaction (%s)", l.How)
	case l.Known:
		return fmt.Sprintf("the transactions seq %d..%d (%d of them; %s)", l.From, l.To, l.To-l.From+1, l.How)
	case l.Last >= l.From:
		return fmt.Sprintf("every transaction from seq %d on: at least seq %d..%d (%d whole records, or a trailer, recognised "+
			"after the damage); how many more is unknown", l.From, l.From, l.Last, l.Recognised)
	}
	return fmt.Sprintf("every transaction from seq %d on, if there were any: nothing is recognised after the damage, "+
		"so how many is unknown", l.From)
}

// RepairAction is one change Repair makes.
type RepairAction struct {
	Op   string // "remove segment", "remove snapshot", "truncate torn tail"
	File string // relative to the store's directory
	// FirstSeq..LastSeq are the log records (one per transaction) the
	// change drops; none if LastSeq < FirstSeq.
	FirstSeq, LastSeq uint64
	Bytes             int64 // bytes dropped
	Why               string
	// Cut marks the cut at damage in the log recovery needs (truncating
	// or removing the damaged segment): RepairPlan.Loss says what it
	// drops, with what the removals after it drop.
	Cut bool
}

// RepairPlan says what Repair would change in a store's directory, every
// dropped transaction stated by sequence number.
type RepairPlan struct {
	Dir     string
	Actions []RepairAction
	// Kept lists damage Repair leaves alone (damaged snapshots, unless
	// RemoveDamagedSnapshots).
	Kept []string
	// Loss, if not nil, is what the plan drops of the log recovery needs:
	// it cuts the log at damage that no intact segment follows. Without
	// RepairOptions.AcceptLoss the plan is then a refusal.
	Loss *LogLoss
	// Refusal, if not nil, wraps ErrNeedBackup (or says why the store
	// would not open in another way) and says what is lost: Repair will not
	// apply the plan.
	Refusal error
	opts    RepairOptions
	verify  *VerifyReport
	cut     *wal.RepairPlan // the log's repair, when it cuts the log
}

// String describes the plan for an operator.
func (p *RepairPlan) String() string {
	var b strings.Builder
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "%s %s (%d bytes): ", a.Op, a.File, a.Bytes)
		switch {
		case a.Cut && p.Loss != nil:
			fmt.Fprintf(&b, "drops %v; ", p.Loss)
		case a.LastSeq >= a.FirstSeq:
			fmt.Fprintf(&b, "drops %d transactions, seq %d..%d; ", a.LastSeq-a.FirstSeq+1, a.FirstSeq, a.LastSeq)
		default:
			b.WriteString("drops no acknowledged transaction; ")
		}
		b.WriteString(a.Why + "\n")
	}
	for _, k := range p.Kept {
		b.WriteString("kept: " + k + "\n")
	}
	if p.Loss != nil {
		fmt.Fprintf(&b, "LOSS: in all, the repair drops %v\n", p.Loss)
	}
	if p.Refusal != nil {
		fmt.Fprintf(&b, "REFUSED: %v\n", p.Refusal)
	}
	return b.String()
}

// PlanRepair verifies the store in dir (see Verify) and says what Repair
// would do, changing nothing. Damaged log segments holding only records
// the newest snapshot covers are removed; a torn log tail (unsynced writes
// of a crash) is truncated; damaged snapshots are reported, and removed only
// with RemoveDamagedSnapshots. Damage in the log that recovery needs is
// refused (ErrNeedBackup) if an intact segment holding records follows it:
// Repair never drops an intact later segment. Otherwise the log can be
// cut at the damage, dropping the transactions from it on (Loss says
// which), but only with AcceptLoss; and not before a snapshot's seq, which
// the log must reach.
func PlanRepair(dir string, opts RepairOptions) (*RepairPlan, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	rep, err := Verify(opts.FS, dir)
	if err != nil {
		return nil, err
	}
	p := &RepairPlan{Dir: dir, opts: opts, verify: rep}
	switch {
	case rep.Log != nil && rep.Log.Corruption != nil:
		if p.planCut(rep); p.Refusal != nil {
			return p, nil
		}
	case rep.Err != nil:
		p.Refusal = fmt.Errorf("%w: %w", ErrNeedBackup, rep.Err)
		return p, nil
	default:
		p.planSegments(rep)
	}
	if t := rep.Log; t != nil && t.TornTail != nil {
		tt := t.TornTail
		p.Actions = append(p.Actions, RepairAction{Op: "truncate torn tail", File: filepath.Join(walSubdir, tt.Segment),
			FirstSeq: tt.Seq, LastSeq: tt.Seq - 1, Bytes: tt.Bytes,
			Why: fmt.Sprintf("the start of record %d at offset %d, whose write a crash cut before it was acknowledged: %s", tt.Seq, tt.Offset, tt.Reason)})
	}
	for _, sc := range rep.Snapshots {
		if sc.Err == nil {
			continue
		}
		if opts.RemoveDamagedSnapshots {
			p.Actions = append(p.Actions, RepairAction{Op: "remove snapshot", File: sc.Name, FirstSeq: 1, LastSeq: 0, Bytes: sc.Size,
				Why: fmt.Sprintf("damaged (%v); recovery never uses it", sc.Err)})
		} else {
			p.Kept = append(p.Kept, fmt.Sprintf("damaged snapshot %s: %v (remove it with -remove-damaged-snapshots)", sc.Name, sc.Err))
		}
	}
	return p, nil
}

// planSegments plans the removal of the damaged log segments recovery sets
// aside: they hold only records the snapshot it uses covers.
func (p *RepairPlan) planSegments(rep *VerifyReport) {
	end := rep.Log.FirstSeq
	for i, name := range rep.SetAside {
		first, _ := parseSegName(name)
		last := end - 1
		if i+1 < len(rep.SetAside) {
			next, _ := parseSegName(rep.SetAside[i+1])
			last = next - 1
		}
		size, _ := p.opts.FS.Stat(filepath.Join(p.Dir, walSubdir, name))
		why := fmt.Sprintf("all older than snapshot %s, which recovery uses", rep.Uses)
		for _, d := range rep.LogDamage {
			if d.Segment == name {
				why = fmt.Sprintf("damaged at offset %d (%s); %s", d.Offset, d.Reason, why)
			}
		}
		p.Actions = append(p.Actions, RepairAction{Op: "remove segment", File: filepath.Join(walSubdir, name),
			FirstSeq: first, LastSeq: last, Bytes: size, Why: why})
	}
}

// planCut plans the repair of damage in the log recovery needs: the log's
// own repair (package wal), which cuts the log at the damage and removes
// what follows, if no intact segment holding records follows it; else a
// refusal. Without AcceptLoss the plan is a refusal too, saying what the
// cut would drop.
func (p *RepairPlan) planCut(rep *VerifyReport) {
	fs := p.opts.FS
	needFrom := uint64(1)
	if len(rep.Snapshots) > 0 {
		needFrom = rep.Snapshots[0].Seq + 1
	}
	wp, err := wal.PlanRepair(fs, filepath.Join(p.Dir, walSubdir), wal.CheckOptions{NeedFrom: needFrom})
	if err != nil || wp == nil || (wp.Cut == nil && wp.Gap == nil) {
		p.Refusal = needBackup(fs, p.Dir, rep)
		return
	}
	loss := lossOf(rep.Log.Segments, wp)
	for _, sc := range rep.Snapshots {
		if sc.Seq >= loss.From {
			p.Refusal = fmt.Errorf("%w: the log recovery needs is damaged: %v; cutting it there would leave it ending at seq %d, "+
				"before snapshot %s (seq %d), which the log must reach. Restore from a backup (procyon restore)",
				ErrNeedBackup, rep.Log.Corruption, loss.From-1, sc.Name, sc.Seq)
			return
		}
	}
	p.cut, p.Loss = wp, loss
	p.Actions = append(p.Actions, cutActions(rep, wp)...)
	if !p.opts.AcceptLoss && !loss.None() {
		p.Refusal = fmt.Errorf("%w: the log recovery needs is damaged: %v; no intact segment holding records follows the damage, "+
			"so the log can be cut there, but that drops %v. Accept that loss with -accept-loss (RepairOptions.AcceptLoss), "+
			"or restore from a backup (procyon restore)", ErrNeedBackup, rep.Log.Corruption, loss)
	}
}

// lossOf says what the log's repair wp drops, given the log's segments:
// every transaction after the last one a kept segment holds.
func lossOf(segs []wal.SegmentInfo, wp *wal.RepairPlan) *LogLoss {
	removed := map[string]bool{}
	for _, d := range wp.Delete {
		removed[d.Name] = true
	}
	if c := wp.Cut; c != nil && c.Offset == 0 {
		removed[c.Segment] = true
	}
	kept := uint64(0)
	for _, s := range segs {
		if !removed[s.Name] {
			kept = max(kept, s.LastSeq)
		}
	}
	l := &LogLoss{From: kept + 1}
	if g := wp.Gap; g != nil {
		l.To, l.Known, l.How = g.LastSeq, true, fmt.Sprintf("no segment holds them: the next one starts at seq %d", g.LastSeq+1)
		return l
	}
	c := wp.Cut
	l.Recognised = c.Records
	if c.LastSeq >= c.FirstSeq {
		l.Last = c.LastSeq
	}
	// A segment after the cut one says where the cut one ended (it was
	// sealed, then the next one created).
	after := false
	for _, s := range segs {
		if after && s.Damage == nil {
			if end := s.FirstSeq - 1; end >= l.Last {
				l.To, l.Known = end, true
				l.How = fmt.Sprintf("the next segment, %s, starts at seq %d", s.Name, s.FirstSeq)
			}
			break
		}
		after = after || s.Name == c.Segment
	}
	return l
}

// cutActions describes the log's repair wp as actions on the store.
func cutActions(rep *VerifyReport, wp *wal.RepairPlan) []RepairAction {
	var out []RepairAction
	before := map[string]bool{}
	for _, s := range rep.Log.Segments {
		before[s.Name] = s.Skipped
	}
	for _, d := range wp.Delete {
		a := RepairAction{Op: "remove segment", File: filepath.Join(walSubdir, d.Name), FirstSeq: d.FirstSeq, LastSeq: d.LastSeq, Bytes: d.Size}
		switch {
		case before[d.Name]:
			a.Why = "all older than the newest snapshot; the damage after it keeps recovery from using it"
		default:
			a.Why = "after the cut; it holds no readable record"
		}
		if d.Damage != nil {
			a.Why = fmt.Sprintf("damaged (%v); %s", d.Damage, a.Why)
		}
		out = append(out, a)
	}
	if c := wp.Cut; c != nil {
		a := RepairAction{Op: "cut segment", File: filepath.Join(walSubdir, c.Segment), FirstSeq: c.FirstSeq, LastSeq: c.LastSeq, Bytes: c.Bytes,
			Why: fmt.Sprintf("at offset %d, the damage: %v", c.Offset, wp.Damage), Cut: true}
		if c.Offset == 0 {
			a.Op, a.Why = "remove segment", fmt.Sprintf("damaged from its header on: %v", wp.Damage)
		}
		out = append(out, a)
	}
	if g := wp.Gap; g != nil {
		out = append(out, RepairAction{Op: "end the log before a gap", File: walSubdir, FirstSeq: g.FirstSeq, LastSeq: g.LastSeq,
			Why: "no segment holds these records (one is missing)", Cut: true})
	}
	return out
}

// needBackup explains damage in the log recovery needs: which records are
// damaged, and which intact segments after them a truncation would drop.
func needBackup(fs vfs.FS, dir string, rep *VerifyReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: the log recovery needs is damaged: %v", ErrNeedBackup, rep.Log.Corruption)
	var ce *wal.CorruptionError
	if errors.As(rep.Log.Corruption, &ce) {
		files, _ := segmentFiles(fs, filepath.Join(dir, walSubdir))
		after := false
		var later []string
		for _, f := range files {
			if after {
				later = append(later, f)
			}
			after = after || f == ce.Segment
		}
		if len(later) > 0 {
			first, _ := parseSegName(later[0])
			fmt.Fprintf(&b, "; %d later segments (%s..%s, from seq %d on) follow it, and the transactions in them were acknowledged"+
				" and are in no snapshot: truncating the log there would lose them", len(later), later[0], later[len(later)-1], first)
		} else {
			fmt.Fprintf(&b, "; the transactions from the damage in %s on were acknowledged and are in no snapshot", ce.Segment)
		}
	}
	b.WriteString(". Restore from a backup (procyon restore), or keep a copy of the directory and repair it by hand")
	return &recoverError{msg: b.String(), causes: []error{ErrNeedBackup, rep.Log.Corruption}}
}

// Repair applies plan, which must come from PlanRepair on the same
// directory and must not be a refusal: it takes the log's lock, checks the
// store still needs exactly that repair, removes what the plan removes
// (oldest segment first, syncing the directory after each), opens the log
// to truncate a torn tail, and verifies the result.
func Repair(plan *RepairPlan) error {
	if plan.Refusal != nil {
		return plan.Refusal
	}
	fs := plan.opts.FS
	walDir := filepath.Join(plan.Dir, walSubdir)
	lock, err := fs.Lock(filepath.Join(walDir, "LOCK"))
	if err != nil {
		return fmt.Errorf("durable: repair: lock %s: %w", walDir, err)
	}
	now, err := PlanRepair(plan.Dir, plan.opts)
	if err != nil {
		lock.Close()
		return err
	}
	if now.String() != plan.String() {
		lock.Close()
		return errors.New("durable: repair: the store changed since the plan was made; plan again")
	}
	torn := false
	for _, a := range plan.Actions {
		if a.Op == "truncate torn tail" {
			torn = true
			continue
		}
		if plan.cut != nil && a.Op != "remove snapshot" {
			continue // the log's repair does it, below
		}
		path := filepath.Join(plan.Dir, a.File)
		if err := fs.Remove(path); err != nil {
			lock.Close()
			return fmt.Errorf("durable: repair: %w", err)
		}
		if err := fs.SyncDir(filepath.Dir(path)); err != nil {
			lock.Close()
			return fmt.Errorf("durable: repair: %w", err)
		}
	}
	if err := lock.Close(); err != nil {
		return fmt.Errorf("durable: repair: unlock: %w", err)
	}
	if plan.cut != nil {
		if err := wal.Repair(fs, walDir, plan.cut); err != nil {
			return fmt.Errorf("durable: repair: %w", err)
		}
	}
	if torn {
		w, err := wal.Open(walDir, wal.Options{FS: fs})
		if err != nil {
			return fmt.Errorf("durable: repair: truncate torn tail: %w", err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("durable: repair: truncate torn tail: %w", err)
		}
	}
	rep, err := Verify(fs, plan.Dir)
	if err != nil {
		return err
	}
	if rep.Err != nil {
		return fmt.Errorf("durable: repair: the store still would not open: %w", rep.Err)
	}
	return nil
}
