package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/server"
)

// The client verbs that show the server's tables other than procedures:
// locks, nodes, barriers in progress, the audit log.

func init() {
	register(command{path: "locks", summary: "show the lock table of a running server: each resource's holders and waiters, and since when", define: showLocks})
	register(command{path: "nodes", summary: "show the remote nodes of a running server: liveness, heartbeats, operations in flight", define: showNodes})
	register(command{path: "barriers", summary: "show the barrier procedures in progress on a running server: phase, elapsed time, each member's phase", define: showBarriers})
	register(command{path: "audit", usage: "[--before SEQ] [--all]", summary: "show the audit log of a running server: every abort and bypass, with who, when and why", define: showAudit})
}

func showLocks(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		rows, err := c.Locks(ctx)
		if err != nil {
			return apiFailure(err)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, server.LockList{Locks: rows})
		}
		now := time.Now()
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "RESOURCE\tROLE\tID\tTYPE\tMODE\tSINCE")
		for _, r := range rows {
			for _, set := range []struct {
				role string
				hs   []server.LockHolder
			}{{"holder", r.Holders}, {"waiter", r.Waiters}} {
				for _, h := range set.hs {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s ago\n", r.Resource, set.role, h.ID, orDash(h.Type), h.Mode, ago(h.Since, now))
				}
			}
		}
		return tw.Flush()
	})
}

func showNodes(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return apiFailure(err)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, server.NodeList{Nodes: nodes})
		}
		now := time.Now()
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "NAME\tADDR\tINCARNATION\tLIVE\tHEARTBEAT\tQUEUED\tIN FLIGHT\tFAILURES\tRTT P50/P99 MS")
		for _, n := range nodes {
			live := "yes"
			if !n.Live {
				live = "dead " + ago(n.Died, now) + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s ago\t%d\t%d\t%d\t%.1f/%.1f\n", n.Name, n.Addr, n.Incarnation, live,
				ago(n.LastHeartbeat, now), n.Queued, n.InFlight, n.Failures, n.RTTp50Ms, n.RTTp99Ms)
		}
		return tw.Flush()
	})
}

func showBarriers(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		bars, err := c.Barriers(ctx)
		if err != nil {
			return apiFailure(err)
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, server.BarrierList{Barriers: bars})
		}
		tw := newTable(e.stdout)
		fmt.Fprintln(tw, "NAME\tINSTANCE\tTYPE\tPHASE\tELAPSED\tMEMBERS")
		for _, b := range bars {
			elapsed := time.Duration(b.ElapsedMs * float64(time.Millisecond))
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", b.Name, b.Instance, b.Type, b.Phase, shortDuration(elapsed), barrierMembers(b.Members))
		}
		return tw.Flush()
	})
}

// barrierMembers formats members as name:phase ("-": not seen yet), a lost
// one marked "(lost)".
func barrierMembers(ms []server.BarrierMember) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name + ":" + orDash(m.Phase)
		if m.Lost {
			parts[i] += "(lost)"
		}
	}
	return strings.Join(parts, " ")
}

func showAudit(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	before := fs.Uint64("before", 0, "the page before this sequence number (the cursor the previous page printed; 0: the newest)")
	all := fs.Bool("all", false, "follow the cursor to the oldest entry")
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		var actions []server.Action
		var page server.AuditList
		var err error
		for cursor := *before; ; {
			if page, err = c.Audit(ctx, cursor); err != nil {
				return apiFailure(err)
			}
			actions = append(actions, page.Actions...)
			if !*all || page.Next == "" {
				break
			}
			if cursor, err = strconv.ParseUint(page.Next, 10, 64); err != nil {
				return fmt.Errorf("the server's audit cursor %q: %w", page.Next, err)
			}
		}
		if cf.jsonOut() {
			return printJSON(e.stdout, server.AuditList{Actions: actions, Next: page.Next})
		}
		printAudit(e.stdout, actions)
		if page.Next != "" {
			fmt.Fprintf(e.stderr, "more: --before %s\n", page.Next)
		}
		return nil
	})
}

// printAudit prints audit entries, newest first as the server gives them.
func printAudit(w io.Writer, actions []server.Action) {
	tw := newTable(w)
	fmt.Fprintln(tw, "SEQ\tAT\tKIND\tTARGET\tROOT\tWHO\tWHY")
	for _, a := range actions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", a.Seq, stamp(a.At), a.Kind, a.Target, a.Root, a.Who, clip(a.Why, 80))
	}
	tw.Flush()
}
