package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/server"
)

func init() {
	register(command{path: "proc list", usage: "[flags]", summary: "list procedures, newest first, with filters", define: procList})
	register(command{path: "proc show", usage: "ID", args: 1, summary: "show a procedure: its tree, history, locks, remote operations and audit", define: procShow})
	register(command{path: "proc submit", usage: "TYPE [--args JSON | --args-file F]", args: 1, summary: "submit a procedure of a submittable type and print its id", define: procSubmit})
	register(command{path: "proc abort", usage: "ID --why TEXT", args: 1, summary: "abort a procedure's tree (it rolls back)", define: procReasoned("abort")})
	register(command{path: "proc bypass", usage: "ID --why TEXT", args: 1, summary: "bypass a stuck procedure (it finishes without running its steps)", define: procReasoned("bypass")})
	register(command{path: "proc ack", usage: "ID", args: 1, summary: "acknowledge a finished root's result (the store may drop it)", define: procAck})
	register(command{path: "proc bulk-abort", usage: "--filter K=V,... --why TEXT [--dry-run]", summary: "abort every root a filter selects (try --dry-run first)", define: procBulkAbort})
}

// statusNames are the statuses the list filters on (procedure.Status).
var statusNames = []string{"runnable", "waiting", "suspended", "failed", "succeeded", "rolled-back"}

// filterKeys are the filters of proc list that bulk-abort's --filter
// takes.
var filterKeys = []string{"status", "type", "root", "parent", "error", "since", "until"}

func procList(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	status := fs.String("status", "", "comma-separated statuses: "+strings.Join(statusNames, ", "))
	typ := fs.String("type", "", "only this procedure type")
	root := fs.String("root", "", "only the procedures of this root's tree")
	parent := fs.String("parent", "", "only the children of this procedure")
	errText := fs.String("error", "", "only procedures whose error contains this text (case-insensitive)")
	since := fs.String("since", "", "only procedures created at or after this RFC 3339 time")
	until := fs.String("until", "", "only procedures created before this RFC 3339 time")
	before := fs.String("before", "", "the page after this id (the cursor the previous page printed)")
	limit := fs.Int("limit", 100, "procedures per page (1 to 1000)")
	all := fs.Bool("all", false, "follow the cursor to the last page")
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		q := url.Values{}
		for key, val := range map[string]string{"status": *status, "type": *typ, "root": *root, "parent": *parent,
			"error": *errText, "since": *since, "until": *until, "before": *before} {
			if val != "" {
				q.Set(key, val)
			}
		}
		if err := firstErr(checkFilter(q), intIn("limit", *limit, 1, 1000)); err != nil {
			return err
		}
		q.Set("limit", strconv.Itoa(*limit))
		var procs []server.Procedure
		var page server.ProcedureList
		for {
			var err error
			if page, err = c.List(ctx, q); err != nil {
				return apiFailure(err)
			}
			procs = append(procs, page.Procedures...)
			if !*all || page.Next == "" {
				break
			}
			q.Set("before", page.Next)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, server.ProcedureList{Procedures: procs, Next: page.Next})
		}
		printProcTable(e.stdout, procs, time.Now())
		if page.Next != "" {
			fmt.Fprintf(e.stderr, "more: --before %s\n", page.Next)
		}
		return nil
	})
}

// checkFilter checks the filter values a server would refuse: statuses,
// ids and times (a usage error names the first bad one).
func checkFilter(q url.Values) error {
	for key, vals := range q {
		val := vals[0]
		switch key {
		case "status":
			for _, s := range strings.Split(val, ",") {
				if !slices.Contains(statusNames, strings.TrimSpace(s)) {
					return usagef("status %q: not one of %s", s, strings.Join(statusNames, ", "))
				}
			}
		case "root", "parent", "before":
			if _, err := parseProcID(val); err != nil {
				return usagef("--%s: not a procedure id: %q", key, val)
			}
		case "since", "until":
			if _, err := time.Parse(time.RFC3339Nano, val); err != nil {
				return usagef("--%s: want an RFC 3339 time such as 2026-12-05T17:00:00Z, got %q", key, val)
			}
		}
	}
	return nil
}

// printProcTable prints procedures one per line.
func printProcTable(w io.Writer, procs []server.Procedure, now time.Time) {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tPARENT\tTYPE\tSTATUS\tSTATE\tSTEPS\tAGE\tERROR")
	for _, p := range procs {
		parent := "-"
		if p.Parent != 0 {
			parent = strconv.FormatUint(uint64(p.Parent), 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, parent, p.Type, statusText(p), p.State, p.Steps,
			ago(p.Created, now), clip(errorText(p), 60))
	}
	tw.Flush()
}

// statusText is a procedure's status with what only memory knows.
func statusText(p server.Procedure) string {
	s := p.Status
	switch {
	case p.Quarantined != "":
		s += " (quarantined)"
	case p.Bypass != nil:
		s += " (bypassed)"
	case p.Aborted && p.Completed == nil:
		s += " (aborting)"
	case p.RollingBack:
		s += " (rolling back)"
	case p.WaitingForLocks:
		s += " (locks)"
	case p.Running:
		s += " (running)"
	case p.Event != "":
		s += " (event " + p.Event + ")"
	}
	return s
}

// errorText is why a procedure failed, or its last retried error.
func errorText(p server.Procedure) string {
	switch {
	case p.Error != nil:
		return p.Error.Message
	case p.Quarantined != "":
		return p.Quarantined
	}
	return p.LastError
}

func procShow(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	return withProc(cf, func(ctx context.Context, e *env, c *server.Client, id procedure.ID) error {
		d, err := c.Get(ctx, id)
		if err != nil {
			return apiFailure(err)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, d)
		}
		printDetail(e.stdout, d, time.Now())
		return nil
	})
}

// printDetail prints a procedure as sections: its fields, the tree drawn
// with indentation, the history with each step's duration, locks, remote
// operations, audit and result.
func printDetail(w io.Writer, d server.ProcedureDetail, now time.Time) {
	p := d.Procedure
	tw := newTable(w)
	field := func(name, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, a...)...) }
	field("id", "%d", p.ID)
	field("type", "%s", p.Type)
	field("status", "%s", statusText(p))
	field("state", "%s (%d steps)", p.State, p.Steps)
	if p.Parent != 0 {
		field("parent", "%d (root %d)", p.Parent, p.Root)
	}
	if p.Submitter != "" {
		field("submitter", "%s", p.Submitter)
	}
	if p.Nonce != "" {
		field("nonce", "%q", p.Nonce)
	}
	field("created", "%s (%s ago)", stamp(p.Created), ago(p.Created, now))
	field("updated", "%s (%s ago)", stamp(p.Updated), ago(p.Updated, now))
	if p.Completed != nil {
		field("completed", "%s (took %s)", stamp(*p.Completed), shortDuration(p.Completed.Sub(p.Created)))
	}
	if p.Acked != nil {
		field("acked", "%s", stamp(*p.Acked))
	}
	for _, t := range []struct {
		name string
		at   *time.Time
	}{{"wakes at", p.WakeAt}, {"deadline", p.Deadline}, {"step deadline", p.StepDeadline}} {
		if t.at != nil {
			field(t.name, "%s", stamp(*t.at))
		}
	}
	if p.Event != "" {
		field("waits for event", "%s", p.Event)
	}
	if p.Retries > 0 || p.LastError != "" {
		field("retries", "%d (last error: %s)", p.Retries, clip(p.LastError, 200))
	}
	if p.Error != nil {
		field("error", "%s: %s", p.Error.Source, clip(p.Error.Message, 500))
	}
	if b := p.Bypass; b != nil {
		field("bypassed", "by %s at %s (%s of %d): %s", b.Who, stamp(b.At), b.Role, b.Target, b.Why)
	}
	if p.Quarantined != "" {
		field("quarantined", "%s", p.Quarantined)
	}
	tw.Flush()
	printTree(w, d)
	printHistory(w, d)
	printLocksOf(w, d)
	printRemoteOps(w, d.RemoteOps)
	if len(d.Audit) > 0 {
		fmt.Fprintln(w, "\naudit:")
		printAudit(w, d.Audit)
	}
	if len(d.Result) > 0 {
		var b bytes.Buffer
		if json.Compact(&b, d.Result) != nil {
			b.Reset()
			b.Write(d.Result)
		}
		fmt.Fprintf(w, "\nresult: %s\n", b.Bytes())
	} else if len(d.ResultBytes) > 0 {
		fmt.Fprintf(w, "\nresult: %d bytes (not JSON)\n", len(d.ResultBytes))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printTree draws the tree with two spaces of indentation per level; the
// procedure shown is marked with "*".
func printTree(w io.Writer, d server.ProcedureDetail) {
	if len(d.Tree) <= 1 {
		return
	}
	fmt.Fprintln(w, "\ntree:")
	tw := newTable(w)
	for _, n := range d.Tree {
		mark := " "
		if n.ID == d.ID {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s %s%d %s\t%s\t%s\t%s\n", mark, strings.Repeat("  ", n.Depth), n.ID, n.Type,
			statusText(n.Procedure), n.State, clip(errorText(n.Procedure), 60))
	}
	tw.Flush()
}

// printHistory prints the steps it committed, executed states and then
// rollbacks, each with how long it took from the previous step (the
// first: from the submission).
func printHistory(w io.Writer, d server.ProcedureDetail) {
	if len(d.History) == 0 {
		return
	}
	fmt.Fprintln(w, "\nhistory:")
	tw := newTable(w)
	prev := d.Created
	for _, h := range server.Events(d.History) {
		what := h.State
		if h.Rollback {
			what = "rollback of " + h.State
		}
		fmt.Fprintf(tw, "  %s\t%s\t+%s\n", stamp(h.At), what, shortDuration(h.At.Sub(prev)))
		prev = h.At
	}
	tw.Flush()
}

func printLocksOf(w io.Writer, d server.ProcedureDetail) {
	if len(d.Locks)+len(d.Waits) == 0 {
		return
	}
	fmt.Fprintln(w, "\nlocks:")
	tw := newTable(w)
	for _, l := range d.Locks {
		fmt.Fprintf(tw, "  holds\t%s\t%s\n", l.Resource, l.Mode)
	}
	for _, l := range d.Waits {
		fmt.Fprintf(tw, "  waits for\t%s\t%s\n", l.Resource, l.Mode)
	}
	tw.Flush()
}

func printRemoteOps(w io.Writer, ops []server.RemoteOp) {
	if len(ops) == 0 {
		return
	}
	fmt.Fprintln(w, "\nremote operations:")
	tw := newTable(w)
	fmt.Fprintln(tw, "  ID\tNODE\tTYPE\tSTATE\tOUTCOME\tMESSAGE")
	for _, op := range ops {
		fmt.Fprintf(tw, "  %s\t%s#%d\t%s\t%s\t%s\t%s\n", op.ID, op.Node, op.Incarnation, op.Type, op.State,
			orDash(op.Outcome), clip(op.Message, 60))
	}
	tw.Flush()
}

func procSubmit(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	argsJSON := fs.String("args", "", "the procedure's data as JSON (default: its type's zero data)")
	argsFile := fs.String("args-file", "", "file holding the procedure's data as JSON")
	nonce := fs.String("nonce", "", "makes the submission idempotent: the same nonce again returns the same id")
	timeout := fs.Duration("timeout", 0, "the procedure's deadline, from now (0: none)")
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		if *timeout < 0 {
			return usagef("--timeout must not be negative, got %v", *timeout)
		}
		data, err := submitArgs(*argsJSON, *argsFile)
		if err != nil {
			return err
		}
		req := server.SubmitRequest{Type: args[0], Args: data, Nonce: *nonce}
		if *timeout > 0 {
			req.Timeout = timeout.String()
		}
		id, err := c.Submit(ctx, req)
		if err != nil {
			return apiFailure(err)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, server.SubmitResponse{ID: id})
		}
		_, err = fmt.Fprintln(e.stdout, id)
		return err
	})
}

// submitArgs returns the data of --args or --args-file, checked to be
// one JSON value.
func submitArgs(inline, file string) (json.RawMessage, error) {
	data := []byte(inline)
	switch {
	case inline != "" && file != "":
		return nil, usagef("give --args or --args-file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		data = b
	}
	if len(data) == 0 {
		return nil, nil
	}
	if !json.Valid(data) {
		return nil, usagef("the arguments are not valid JSON")
	}
	return json.RawMessage(data), nil
}

// procReasoned is abort or bypass: an action that needs a reason.
func procReasoned(action string) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		cf := addClientFlags(fs)
		why := fs.String("why", "", "why (required; recorded in the audit log with who and when)")
		return withProc(cf, func(ctx context.Context, e *env, c *server.Client, id procedure.ID) error {
			if strings.TrimSpace(*why) == "" {
				return usagef("--why is required")
			}
			do := c.Abort
			if action == "bypass" {
				do = c.Bypass
			}
			p, err := do(ctx, id, *why)
			if err != nil {
				return apiFailure(err)
			}
			return printProc(e, cf, p)
		})
	}
}

// printProc prints the procedure an action answered with.
func printProc(e *env, cf *clientFlags, p server.Procedure) error {
	if cf.jsonOut() {
		return printJSON(e.stdout, p)
	}
	printProcTable(e.stdout, []server.Procedure{p}, time.Now())
	return nil
}

func procAck(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	return withProc(cf, func(ctx context.Context, e *env, c *server.Client, id procedure.ID) error {
		p, err := c.Ack(ctx, id)
		if err != nil {
			return apiFailure(err)
		}
		return printProc(e, cf, p)
	})
}

func procBulkAbort(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	filter := fs.String("filter", "", "which roots: comma-separated KEY=VALUE of "+strings.Join(filterKeys, ", ")+
		" (as proc list's flags; status takes several: status=runnable,waiting,type=X) (required)")
	why := fs.String("why", "", "why (required; recorded for each procedure aborted)")
	dryRun := fs.Bool("dry-run", false, "only list what would be aborted")
	limit := fs.Int("limit", 100, "abort at most this many roots (1 to 10000)")
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		f, err := parseFilter(*filter)
		if err != nil {
			return err
		}
		if err := firstErr(checkFilter(f), intIn("limit", *limit, 1, 10_000)); err != nil {
			return err
		}
		if strings.TrimSpace(*why) == "" {
			return usagef("--why is required")
		}
		req := server.BulkAbortRequest{Filter: map[string]string{}, Why: *why, Limit: *limit, DryRun: *dryRun}
		for k := range f {
			req.Filter[k] = f.Get(k)
		}
		res, err := c.BulkAbort(ctx, req)
		if err != nil {
			return apiFailure(err)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, res)
		}
		return printBulk(e.stdout, res)
	})
}

// parseFilter parses --filter: KEY=VALUE pairs separated by commas, where
// a piece without "=" continues the previous value (status=a,b).
func parseFilter(s string) (url.Values, error) {
	if strings.TrimSpace(s) == "" {
		return nil, usagef("--filter is required (an empty filter would select every root)")
	}
	q := url.Values{}
	last := ""
	for _, piece := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(piece, "=")
		if !ok {
			if last == "" {
				return nil, usagef("--filter: %q is not KEY=VALUE", piece)
			}
			q.Set(last, q.Get(last)+","+piece)
			continue
		}
		key = strings.TrimSpace(key)
		if !slices.Contains(filterKeys, key) {
			return nil, usagef("--filter: unknown key %q (%s)", key, strings.Join(filterKeys, ", "))
		}
		if q.Has(key) {
			return nil, usagef("--filter: %s given twice", key)
		}
		q.Set(key, val)
		last = key
	}
	return q, nil
}

func printBulk(w io.Writer, res server.BulkAbortResponse) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTYPE\tOUTCOME\tMESSAGE")
	for _, r := range res.Results {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.ID, r.Type, r.Outcome, clip(r.Message, 80))
	}
	tw.Flush()
	verb := "aborted"
	if res.DryRun {
		verb = "would abort (dry run: nothing was aborted)"
	}
	n := 0
	for _, r := range res.Results {
		if r.Outcome == "aborted" || r.Outcome == "would abort" {
			n++
		}
	}
	fmt.Fprintf(w, "%d of %d matching roots %s", n, len(res.Results), verb)
	if res.More {
		fmt.Fprint(w, "; more matched than --limit")
	}
	_, err := fmt.Fprintln(w)
	return err
}
