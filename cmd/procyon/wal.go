package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// Exit codes of "wal verify" and "wal dump" besides 0 for a clean log (2 is
// also every usage error).
const (
	exitWALDamage = 1 // damage: Open fails, or (with -need-from) skips it
	exitWALNotLog = 2 // DIR is not a log (or a usage error)
	exitWALTorn   = 3 // a torn tail that Open would cut off
)

func init() {
	register(command{path: "wal dump", usage: "DIR [-need-from N]",
		summary: "list a log's segments and records (sequence, size, type, checksum status); exit codes as wal verify", define: walDump, args: 1})
	register(command{path: "wal verify", usage: "DIR [-json] [-need-from N]",
		summary: "check a log, read-only; exit 0 clean, 1 damage (naming file and offset), 2 usage error or not a log, 3 torn tail Open would cut", define: walVerify, args: 1})
	register(command{path: "wal repair", usage: "[-yes] [-need-from N] DIR",
		summary: "say exactly what repairing a damaged log would drop (refused if it would drop an intact later segment); with -yes, do it", define: walRepair, args: 1})
}

// needFromFlag adds the -need-from flag shared by the wal verbs.
func needFromFlag(fs *flag.FlagSet) *uint64 {
	return fs.Uint64("need-from", 0, "records before this sequence number are held elsewhere (the store's snapshot): damage wholly before it does not make the log unopenable, and repair deletes the segments holding it")
}

// notLog turns wal.ErrNotLog into exit code 2 with a message saying what
// was expected at dir.
func notLog(dir string, err error) error {
	if !errors.Is(err, wal.ErrNotLog) {
		return err
	}
	fi, serr := os.Stat(dir)
	var msg string
	switch {
	case serr != nil:
		msg = fmt.Sprintf("%s is not a procyon log: %v", dir, serr)
	case !fi.IsDir():
		msg = fmt.Sprintf("%s is not a procyon log: it is a file, not a directory of <20 digits>.wal segment files", dir)
	default:
		msg = fmt.Sprintf("%s is not a procyon log: no <20 digits>.wal segment files", dir)
		if sub, err := os.Stat(filepath.Join(dir, "wal")); err == nil && sub.IsDir() {
			msg += fmt.Sprintf(" (is it the store's directory? the log is %s)", filepath.Join(dir, "wal"))
		}
	}
	return &exitError{code: exitWALNotLog, err: errors.New(msg)}
}

func walDump(fs *flag.FlagSet) runFunc {
	needFrom := needFromFlag(fs)
	return func(ctx context.Context, e *env, args []string) error {
		dir := args[0]
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "SEGMENT\tOFFSET\tTYPE\tSEQ\tSTREAM\tSIZE\tCHECKSUM")
		rep, err := wal.Dump(vfs.OS, dir, wal.CheckOptions{NeedFrom: *needFrom}, func(d wal.DumpFrame) {
			if d.Type == "bad" {
				fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t%s\n", d.Segment, d.Offset, d.Type, d.Status)
				return
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\n", d.Segment, d.Offset, d.Type, d.Seq, d.Stream, d.Size, d.Status)
		})
		tw.Flush()
		if err != nil {
			return notLog(dir, err)
		}
		fmt.Fprintln(e.stdout)
		printReport(e, rep)
		return verdictError(rep)
	}
}

// verdictError maps a report to the documented exit codes.
func verdictError(rep *wal.Report) error {
	switch rep.Verdict() {
	case wal.Corrupt:
		return &exitError{code: exitWALDamage, err: rep.Corruption}
	case wal.Skipped:
		return &exitError{code: exitWALDamage, err: fmt.Errorf("damage before -need-from (Open skips it): %v", rep.Skipped[0])}
	case wal.Torn:
		t := rep.TornTail
		return &exitError{code: exitWALTorn, err: fmt.Errorf("torn tail: opening the log cuts %d bytes off %s at offset %d", t.Bytes, t.Segment, t.Offset)}
	}
	return nil
}

func printReport(e *env, rep *wal.Report) {
	for _, s := range rep.Segments {
		state := "unsealed"
		if s.Sealed {
			state = "sealed"
		}
		span := fmt.Sprintf("seq %d..%d, %d records", s.FirstSeq, s.LastSeq, s.Records)
		if s.Records == 0 && s.Damage == nil {
			span = fmt.Sprintf("empty, the next record is seq %d", s.FirstSeq)
		}
		fmt.Fprintf(e.stdout, "segment %s: %s, %d bytes, %s", s.Name, span, s.Size, state)
		if s.Skipped {
			fmt.Fprint(e.stdout, ", before the log's start (skipped)")
		}
		if s.Damage != nil {
			fmt.Fprintf(e.stdout, ", DAMAGED: %v", s.Damage)
		}
		fmt.Fprintln(e.stdout)
	}
	if len(rep.Segments) == 0 {
		fmt.Fprintln(e.stdout, "no segment files, only a LOCK file: an empty log (opened once, nothing ever written)")
	}
	fmt.Fprintf(e.stdout, "%d segment files; the log opens with %d records (seq %d..%d)\n", len(rep.Segments), rep.Records, rep.FirstSeq, rep.LastSeq)
	if t := rep.TornTail; t != nil {
		fmt.Fprintf(e.stdout, "TORN TAIL: segment %s at offset %d (%s): opening the log drops these %d bytes, the unfinished write of record %d (no whole record)\n",
			t.Segment, t.Offset, t.Reason, t.Bytes, t.Seq)
	}
	for _, d := range rep.Skipped {
		fmt.Fprintf(e.stdout, "SKIPPED DAMAGE (before -need-from): %v\n", d)
	}
	if rep.Corruption != nil {
		fmt.Fprintf(e.stdout, "CORRUPT: %v\n", rep.Corruption)
	}
	fmt.Fprintln(e.stdout, rep.Verdict())
}

// verifyJSON is wal verify -json's output.
type verifyJSON struct {
	Dir        string        `json:"dir"`
	Verdict    string        `json:"verdict"`
	ExitCode   int           `json:"exit_code"`
	FirstSeq   uint64        `json:"first_seq"`
	LastSeq    uint64        `json:"last_seq"`
	Records    uint64        `json:"records"`
	Segments   []segmentJSON `json:"segments"`
	TornTail   *tornJSON     `json:"torn_tail,omitempty"`
	Skipped    []damageJSON  `json:"skipped,omitempty"`
	Corruption *damageJSON   `json:"corruption,omitempty"`
	Error      string        `json:"error,omitempty"`
}

type segmentJSON struct {
	Name     string      `json:"name"`
	FirstSeq uint64      `json:"first_seq"`
	LastSeq  uint64      `json:"last_seq"`
	Records  uint64      `json:"records"`
	Size     int64       `json:"size"`
	Sealed   bool        `json:"sealed"`
	Skipped  bool        `json:"skipped,omitempty"`
	Damage   *damageJSON `json:"damage,omitempty"`
}

type tornJSON struct {
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
	Bytes   int64  `json:"bytes"`
	Seq     uint64 `json:"seq"`
	Reason  string `json:"reason"`
}

type damageJSON struct {
	Segment string `json:"segment,omitempty"`
	Offset  int64  `json:"offset"`
	Reason  string `json:"reason"`
}

func damageOf(err error) *damageJSON {
	if err == nil {
		return nil
	}
	var ce *wal.CorruptionError
	if errors.As(err, &ce) {
		return &damageJSON{Segment: ce.Segment, Offset: ce.Offset, Reason: ce.Reason}
	}
	return &damageJSON{Reason: err.Error()}
}

func reportJSON(rep *wal.Report, code int) verifyJSON {
	v := verifyJSON{Dir: rep.Dir, Verdict: rep.Verdict().String(), ExitCode: code, FirstSeq: rep.FirstSeq, LastSeq: rep.LastSeq,
		Records: rep.Records, Corruption: damageOf(rep.Corruption), Segments: []segmentJSON{}}
	if t := rep.TornTail; t != nil {
		v.TornTail = &tornJSON{Segment: t.Segment, Offset: t.Offset, Bytes: t.Bytes, Seq: t.Seq, Reason: t.Reason}
	}
	for _, s := range rep.Segments {
		v.Segments = append(v.Segments, segmentJSON{Name: s.Name, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Records: s.Records,
			Size: s.Size, Sealed: s.Sealed, Skipped: s.Skipped, Damage: damageOf(s.Damage)})
	}
	for _, d := range rep.Skipped {
		v.Skipped = append(v.Skipped, *damageOf(d))
	}
	return v
}

func walVerify(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	needFrom := needFromFlag(fs)
	return func(ctx context.Context, e *env, args []string) error {
		dir := args[0]
		rep, err := wal.Verify(vfs.OS, dir, wal.CheckOptions{NeedFrom: *needFrom})
		if err != nil {
			err = notLog(dir, err)
			if *asJSON {
				code := 1
				var ee *exitError
				if errors.As(err, &ee) {
					code = ee.code
				}
				writeJSON(e.stdout, verifyJSON{Dir: dir, Verdict: "error", ExitCode: code, Error: err.Error(), Segments: []segmentJSON{}})
			}
			return err
		}
		verr := verdictError(rep)
		if *asJSON {
			code := 0
			var ee *exitError
			if errors.As(verr, &ee) {
				code = ee.code
			}
			writeJSON(e.stdout, reportJSON(rep, code))
			return verr
		}
		printReport(e, rep)
		return verr
	}
}

func walRepair(fs *flag.FlagSet) runFunc {
	yes := fs.Bool("yes", false, "apply the repair (without it, only say what would be dropped)")
	needFrom := needFromFlag(fs)
	return func(ctx context.Context, e *env, args []string) error {
		dir := args[0]
		if err := refuseStoreLog(dir); err != nil { // a store's log: see store.go
			return err
		}
		opts := wal.CheckOptions{NeedFrom: *needFrom}
		plan, err := wal.PlanRepair(vfs.OS, dir, opts)
		if err != nil {
			return notLog(dir, err)
		}
		if plan == nil {
			fmt.Fprintln(e.stdout, "no damage: nothing to repair (a torn tail, if any, is cut when the log opens)")
			return nil
		}
		fmt.Fprint(e.stdout, plan.String())
		if !*yes {
			fmt.Fprintln(e.stdout, "\nnothing changed; run again with -yes to drop the above")
			return &exitError{code: 1, err: errors.New("log is damaged; repair not applied")}
		}
		if err := wal.Repair(vfs.OS, dir, plan); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "repaired")
		return nil
	}
}
