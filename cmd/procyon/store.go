package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/internal/seqname"
	"github.com/procyon-dev/procyon/vfs"
)

// Exit codes of the store tools (verify, repair, backup), for scripts.
const (
	exitDamaged = 1 // verify: the store opens, but damage was found; repair: a repair is needed and was not applied
	exitUsage   = 2 // usage, or the directory is not a store
	exitNoOpen  = 3 // verify: the store would not open; repair: refused, it would lose acknowledged transactions
)

const (
	verifyHelp = "check every snapshot and log segment of the durable store in DIR, and say what recovery would use " +
		"and could fall back to; exit 0 clean, 1 damage found (the store opens; recovery can no longer fall back past it), " +
		"3 the store would not open, 2 usage or not a store"
	repairHelp = "say what repairing the durable store in DIR drops, in transactions and sequence numbers (damaged log " +
		"segments no snapshot needs, a torn tail; damaged snapshots with -remove-damaged-snapshots); with -yes, do it; " +
		"exit 3, changing nothing, if it would lose acknowledged transactions: damage in the log recovery needs is cut " +
		"off only with -accept-loss too (which drops the transactions from the damage on, as the plan states), and " +
		"never if an intact segment follows it"
)

func init() {
	register(command{path: "verify", usage: "[-json] DIR", summary: verifyHelp, define: verifyCmd, args: 1})
	register(command{path: "repair", usage: "[-yes] [-accept-loss] [-remove-damaged-snapshots] DIR", summary: repairHelp, define: repairCmd, args: 1})
}

// notStore turns durable.ErrNotStore into a usage exit.
func notStore(err error) error {
	if errors.Is(err, durable.ErrNotStore) {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

// storeVerifyJSON is verify's -json output.
type storeVerifyJSON struct {
	Dir        string              `json:"dir"`
	Opens      bool                `json:"opens"`
	Damaged    bool                `json:"damaged"`
	ExitCode   int                 `json:"exit_code"`
	Error      string              `json:"error,omitempty"`
	Uses       string              `json:"uses,omitempty"`
	ReplayFrom uint64              `json:"replay_from,omitempty"`
	ReplayTo   uint64              `json:"replay_to,omitempty"`
	Fallbacks  []string            `json:"fallbacks"`
	Snapshots  []storeSnapshotJSON `json:"snapshots"`
	Segments   []storeSegmentJSON  `json:"segments"`
	LogDamage  []string            `json:"log_damage,omitempty"`
	SetAside   []string            `json:"set_aside,omitempty"`
	TornTail   string              `json:"torn_tail,omitempty"`
	Unfinished []string            `json:"unfinished,omitempty"`
}

type storeSnapshotJSON struct {
	Name        string `json:"name"`
	Seq         uint64 `json:"seq"`
	Bytes       int64  `json:"bytes"`
	Collections int    `json:"collections"`
	Entries     int64  `json:"entries"`
	Error       string `json:"error,omitempty"`
}

type storeSegmentJSON struct {
	Name     string `json:"name"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Records  uint64 `json:"records"`
	Bytes    int64  `json:"bytes"`
	SetAside bool   `json:"set_aside,omitempty"`
	Damage   string `json:"damage,omitempty"`
}

func storeToJSON(r *durable.VerifyReport) storeVerifyJSON {
	j := storeVerifyJSON{Dir: r.Dir, Opens: r.Err == nil, Damaged: r.Damaged(), Uses: r.Uses, ReplayFrom: r.ReplayFrom,
		ReplayTo: r.ReplayTo, Fallbacks: r.Fallbacks, SetAside: r.SetAside, Unfinished: r.Unfinished,
		Snapshots: []storeSnapshotJSON{}, Segments: []storeSegmentJSON{}}
	if j.Fallbacks == nil {
		j.Fallbacks = []string{}
	}
	if r.Err != nil {
		j.Error = r.Err.Error()
	}
	for _, s := range r.Snapshots {
		sj := storeSnapshotJSON{Name: s.Name, Seq: s.Seq, Bytes: s.Size, Collections: s.Collections, Entries: s.Entries}
		if s.Err != nil {
			sj.Error = s.Err.Error()
		}
		j.Snapshots = append(j.Snapshots, sj)
	}
	for _, d := range r.LogDamage {
		j.LogDamage = append(j.LogDamage, d.Error())
	}
	if r.Log != nil {
		for _, s := range r.Log.Segments {
			sj := storeSegmentJSON{Name: s.Name, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Records: s.Records, Bytes: s.Size, SetAside: s.Skipped}
			if s.Damage != nil {
				sj.Damage = s.Damage.Error()
			}
			j.Segments = append(j.Segments, sj)
		}
		if t := r.Log.TornTail; t != nil {
			j.TornTail = fmt.Sprintf("%s at offset %d: %d bytes (%s)", t.Segment, t.Offset, t.Bytes, t.Reason)
		}
	}
	return j
}

func verifyCmd(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	return func(ctx context.Context, e *env, args []string) error {
		r, err := durable.Verify(vfs.OS, args[0])
		if err != nil {
			return notStore(err)
		}
		var verdict *exitError
		switch {
		case r.Err != nil:
			verdict = &exitError{code: exitNoOpen, err: fmt.Errorf("the store would not open: %w", r.Err)}
		case r.Damaged():
			verdict = &exitError{code: exitDamaged, err: errors.New("damage found: recovery can no longer fall back past it (see above; procyon repair)")}
		}
		if *asJSON {
			j := storeToJSON(r)
			if verdict != nil {
				j.ExitCode = verdict.code
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(j); err != nil {
				return err
			}
		} else {
			printVerify(e, r)
		}
		if verdict != nil {
			return verdict
		}
		return nil
	}
}

func printVerify(e *env, r *durable.VerifyReport) {
	w := e.stdout
	for _, s := range r.Snapshots {
		if s.Err != nil {
			fmt.Fprintf(w, "snapshot %s: seq %d, %d bytes: DAMAGED: %v\n", s.Name, s.Seq, s.Size, s.Err)
			continue
		}
		fmt.Fprintf(w, "snapshot %s: seq %d, %d bytes, %d collections, %d entries: ok\n", s.Name, s.Seq, s.Size, s.Collections, s.Entries)
	}
	if r.Log != nil {
		for _, s := range r.Log.Segments {
			status := "ok"
			switch {
			case s.Damage != nil && s.Skipped:
				status = fmt.Sprintf("DAMAGED, every record in it older than the newest snapshot: %v", s.Damage)
			case s.Damage != nil:
				status = fmt.Sprintf("DAMAGED: %v", s.Damage)
			case s.Skipped:
				status = "set aside with the damage after it"
			}
			span := fmt.Sprintf("seq %d..%d, %d records", s.FirstSeq, s.LastSeq, s.Records)
			switch {
			case s.Damage != nil:
				span = fmt.Sprintf("seq %d.., %d records readable before the damage", s.FirstSeq, s.Records)
			case s.Records == 0:
				span = fmt.Sprintf("empty, the next record is seq %d", s.FirstSeq)
			}
			fmt.Fprintf(w, "log segment %s: %s, %d bytes: %s\n", s.Name, span, s.Size, status)
		}
		if t := r.Log.TornTail; t != nil {
			fmt.Fprintf(w, "torn tail: segment %s at offset %d: %d bytes after the last whole record (%s); opening the store drops them\n",
				t.Segment, t.Offset, t.Bytes, t.Reason)
		}
	}
	if len(r.SetAside) > 0 {
		fmt.Fprintf(w, "recovery sets aside log segments %v; it can no longer fall back to a snapshot that needs them\n", r.SetAside)
	}
	for _, u := range r.Unfinished {
		fmt.Fprintf(w, "unfinished snapshot %s (a crash while writing it; the next snapshot removes it)\n", u)
	}
	if r.Err != nil {
		fmt.Fprintf(w, "WOULD NOT OPEN: %v\n", r.Err)
		return
	}
	uses := "no snapshot"
	if r.Uses != "" {
		uses = "snapshot " + r.Uses
	}
	fmt.Fprintf(w, "recovery uses %s, then replays log records %d..%d\n", uses, r.ReplayFrom, r.ReplayTo)
	if len(r.Fallbacks) > 0 {
		fmt.Fprintf(w, "it could fall back to %v\n", r.Fallbacks)
	} else {
		fmt.Fprintln(w, "it could fall back to no older snapshot")
	}
	if !r.Damaged() {
		fmt.Fprintln(w, "ok")
	}
}

func repairCmd(fs *flag.FlagSet) runFunc {
	yes := fs.Bool("yes", false, "apply the repair (without it, only say what it would drop)")
	acceptLoss := fs.Bool("accept-loss", false, "cut the log recovery needs at its damage when no intact segment follows it, "+
		"dropping the acknowledged transactions from the damage on (the plan says which)")
	rmSnaps := fs.Bool("remove-damaged-snapshots", false, "also remove damaged snapshots (kept by default)")
	return func(ctx context.Context, e *env, args []string) error {
		plan, err := durable.PlanRepair(args[0], durable.RepairOptions{RemoveDamagedSnapshots: *rmSnaps, AcceptLoss: *acceptLoss})
		if err != nil {
			return notStore(err)
		}
		fmt.Fprint(e.stdout, plan.String())
		if plan.Refusal != nil {
			msg := "repair refused: nothing changed"
			if plan.Loss != nil {
				msg += "; to cut the log there, dropping what LOSS says, run again with -accept-loss -yes"
			}
			return &exitError{code: exitNoOpen, err: errors.New(msg)}
		}
		if len(plan.Actions) == 0 {
			fmt.Fprintln(e.stdout, "nothing to repair")
			return nil
		}
		if !*yes {
			fmt.Fprintln(e.stdout, "\nnothing changed; run again with -yes to apply the above")
			return &exitError{code: exitDamaged, err: errors.New("repair not applied")}
		}
		if err := durable.Repair(plan); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "repaired")
		return nil
	}
}

// refuseStoreLog stops "procyon wal repair" on the log of a durable store
// (DIR/wal whose parent holds snapshots): truncating it alone can drop
// transactions that no snapshot holds, and segments recovery does not
// need; "procyon repair" knows which.
func refuseStoreLog(dir string) error {
	parent := filepath.Dir(filepath.Clean(dir))
	names, err := vfs.OS.List(parent)
	if err != nil {
		return nil
	}
	for _, n := range names {
		if _, ok := seqname.Parse(n, ".snap"); ok {
			return &exitError{code: exitUsage, err: fmt.Errorf("%s is the log of the durable store in %s (it holds snapshot %s): "+
				"repairing the log alone can drop transactions no snapshot holds; use \"procyon repair %s\"", dir, parent, n, parent)}
		}
	}
	return nil
}
