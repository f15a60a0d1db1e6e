package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

func init() {
	register(command{path: "wal dump", usage: "DIR", summary: "list a log's segments and records (sequence, size, type, checksum status)", run: walDump})
	register(command{path: "wal verify", usage: "DIR", summary: "check a log; exit 1 on corruption, naming segment and offset", run: walVerify})
	register(command{path: "wal repair", usage: "[-yes] DIR", summary: "say what repairing a corrupt log would drop; with -yes, do it", run: walRepair})
}

func walDump(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "wal dump", "DIR")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	dir := fs.Arg(0)
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SEGMENT\tOFFSET\tTYPE\tSEQ\tSTREAM\tSIZE\tCHECKSUM")
	rep, err := wal.Dump(vfs.OS, dir, func(d wal.DumpFrame) {
		if d.Type == "bad" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t%s\n", d.Segment, d.Offset, d.Type, d.Status)
			return
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\n", d.Segment, d.Offset, d.Type, d.Seq, d.Stream, d.Size, d.Status)
	})
	tw.Flush()
	if err != nil {
		return err
	}
	printReport(e, rep)
	if rep.Corruption != nil {
		return &exitError{code: 1, err: rep.Corruption}
	}
	return nil
}

func printReport(e *env, rep *wal.Report) {
	fmt.Fprintln(e.stdout)
	var records uint64
	for _, s := range rep.Segments {
		state := "active"
		if s.Sealed {
			state = "sealed"
		}
		fmt.Fprintf(e.stdout, "segment %s: seq %d..%d, %d records, %d bytes, %s\n", s.Name, s.FirstSeq, s.LastSeq, s.Records, s.Size, state)
		records += s.Records
	}
	fmt.Fprintf(e.stdout, "%d segments, %d records\n", len(rep.Segments), records)
	if rep.TornCreate != "" {
		fmt.Fprintf(e.stdout, "torn segment creation: %s holds no records; opening the log removes it\n", rep.TornCreate)
	}
	if t := rep.TornTail; t != nil {
		fmt.Fprintf(e.stdout, "torn tail: segment %s at offset %d (%s); opening the log drops these %d unsynced bytes\n", t.Segment, t.Offset, t.Reason, t.Bytes)
	}
	if rep.Corruption != nil {
		fmt.Fprintf(e.stdout, "CORRUPT: %v\n", rep.Corruption)
	}
}

func walVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "wal verify", "DIR")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	rep, err := wal.Verify(vfs.OS, fs.Arg(0))
	if err != nil {
		return err
	}
	printReport(e, rep)
	if rep.Corruption != nil {
		return &exitError{code: 1, err: rep.Corruption}
	}
	fmt.Fprintln(e.stdout, "ok")
	return nil
}

func walRepair(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "wal repair", "[-yes] DIR")
	yes := fs.Bool("yes", false, "apply the repair (without it, only say what would be dropped)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	dir := fs.Arg(0)
	if err := refuseStoreLog(dir); err != nil { // a store's log: see store.go
		return err
	}
	plan, err := wal.PlanRepair(vfs.OS, dir)
	if err != nil {
		return err
	}
	if plan == nil {
		fmt.Fprintln(e.stdout, "no corruption: nothing to repair (a torn tail, if any, is truncated when the log opens)")
		return nil
	}
	fmt.Fprint(e.stdout, plan.String())
	if !*yes {
		fmt.Fprintln(e.stdout, "\nnothing changed; run again with -yes to drop the above")
		return &exitError{code: 1, err: errors.New("log is corrupt; repair not applied")}
	}
	if err := wal.Repair(vfs.OS, dir, plan); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "repaired")
	return nil
}
