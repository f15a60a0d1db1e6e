package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/server"
)

func init() {
	register(command{path: "proc wait", usage: "ID [--timeout 10m]", args: 1,
		summary: "wait for a procedure to finish, printing its progress (exit 0 succeeded; 1 rolled back, failed or bypassed; 3 still running at --timeout)",
		define:  procWait})
}

// exitStillRunning is proc wait's exit code when --timeout passed first.
const exitStillRunning = 3

// maxPoll is the longest long poll the server allows.
const maxPoll = time.Minute

func procWait(fs *flag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "stop waiting after this long (exit 3)")
	poll := fs.Duration("poll", time.Second, "each long poll's timeout (at most 1m): a progress line is printed when a poll shows a change")
	return withProc(cf, func(ctx context.Context, e *env, c *server.Client, id procedure.ID) error {
		if err := firstErr(positive("timeout", *timeout), positive("poll", *poll)); err != nil {
			return err
		}
		if *poll > maxPoll {
			return usagef("--poll must be at most %v, got %v", maxPoll, *poll)
		}
		progress := e.stdout
		if cf.jsonOut() {
			progress = e.stderr // stdout is the final JSON only
		}
		w := waiter{c: c, id: id, progress: progress, poll: *poll, start: time.Now()}
		p, err := w.wait(ctx, *timeout)
		if err != nil {
			return err
		}
		if cf.jsonOut() {
			if err := printJSON(e.stdout, p); err != nil {
				return err
			}
		}
		return outcome(p)
	})
}

// waiter follows one procedure with long polls until it finishes.
type waiter struct {
	c        *server.Client
	id       procedure.ID
	progress io.Writer
	poll     time.Duration
	start    time.Time
	last     string // the last progress line printed
}

// wait polls until the procedure finished or timeout passed, printing a
// line each time its status, state or steps changed, and returns it as it
// was last seen.
func (w *waiter) wait(ctx context.Context, timeout time.Duration) (server.Procedure, error) {
	deadline := w.start.Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		r, err := w.c.Wait(ctx, w.id, min(w.poll, left))
		if err != nil {
			return server.Procedure{}, apiFailure(err)
		}
		w.report(r.Procedure)
		if r.Done {
			return r.Procedure, nil
		}
	}
	return server.Procedure{}, &exitError{code: exitStillRunning,
		err: fmt.Errorf("procedure %d still not finished after %v (%s)", w.id, timeout, w.last)}
}

// report prints p's progress if it changed since the last line.
func (w *waiter) report(p server.Procedure) {
	line := fmt.Sprintf("%s state %s, %d steps", statusText(p), p.State, p.Steps)
	if msg := errorText(p); msg != "" {
		line += ": " + clip(msg, 120)
	}
	if line == w.last {
		return
	}
	w.last = line
	fmt.Fprintf(w.progress, "%7s  %s\n", shortDuration(time.Since(w.start)), line)
}

// outcome is proc wait's result for finished procedure p: nil if it
// succeeded, else an exit 1 saying why.
func outcome(p server.Procedure) error {
	switch {
	case p.Bypass != nil:
		return &exitError{code: 1, err: fmt.Errorf("procedure %d %s: bypassed by %s: %s", p.ID, p.Status, p.Bypass.Who, p.Bypass.Why)}
	case p.Status == "succeeded":
		return nil
	case p.Error != nil:
		return &exitError{code: 1, err: fmt.Errorf("procedure %d %s: %s: %s", p.ID, p.Status, p.Error.Source, p.Error.Message)}
	}
	return &exitError{code: 1, err: errors.New("procedure " + fmt.Sprint(p.ID) + " " + p.Status)}
}
