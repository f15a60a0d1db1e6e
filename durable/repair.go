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
}

// RepairPlan says what Repair would change in a store's directory, every
// dropped transaction stated by sequence number.
type RepairPlan struct {
	Dir     string
	Actions []RepairAction
	// Kept lists damage Repair leaves alone (damaged snapshots, unless
	// RemoveDamagedSnapshots).
	Kept []string
	// Refusal, if not nil, wraps ErrNeedBackup (or says why the store
	// would not open in another way) and says what is lost: Repair will not
	// apply the plan.
	Refusal error
	opts    RepairOptions
	verify  *VerifyReport
}

// String describes the plan for an operator.
func (p *RepairPlan) String() string {
	var b strings.Builder
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "%s %s (%d bytes): ", a.Op, a.File, a.Bytes)
		switch {
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
	if p.Refusal != nil {
		fmt.Fprintf(&b, "REFUSED: %v\n", p.Refusal)
	}
	return b.String()
}

// PlanRepair verifies the store in dir (see Verify) and says what Repair
// would do, changing nothing. Damaged log segments holding only records
// the newest snapshot covers are removed; a torn log tail (unsynced writes
// of a crash) is truncated; damaged snapshots are reported, and removed only
// with RemoveDamagedSnapshots. Damage in the log that recovery needs makes
// a refusal (ErrNeedBackup): Repair never drops an intact later segment,
// nor a transaction that no snapshot holds.
func PlanRepair(dir string, opts RepairOptions) (*RepairPlan, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	rep, err := Verify(opts.FS, dir)
	if err != nil {
		return nil, err
	}
	p := &RepairPlan{Dir: dir, opts: opts, verify: rep}
	if rep.Log != nil && rep.Log.Corruption != nil {
		p.Refusal = needBackup(opts.FS, dir, rep)
		return p, nil
	}
	if rep.Err != nil {
		p.Refusal = fmt.Errorf("%w: %w", ErrNeedBackup, rep.Err)
		return p, nil
	}
	p.planSegments(rep)
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
				Why: fmt.Sprintf("damaged (%v); recovery uses %s", sc.Err, rep.Uses)})
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
