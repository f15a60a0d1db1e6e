package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/procyon-dev/procyon/barrier"
	"github.com/procyon-dev/procyon/barrier/embedetcd"
)

func init() {
	register(command{path: "barrier demo", usage: "[flags]", summary: "run a barrier procedure across member processes on an embedded etcd and print its timeline", define: barrierDemo})
	register(command{path: "barrier member", usage: "-endpoints URLS -name NAME [flags]", summary: "run a barrier member (demo subprocedures) until interrupted", define: barrierMember})
	register(command{path: "barrier run", usage: "-endpoints URLS -members A,B,... [flags]", summary: "coordinate one barrier procedure on etcd; exit 0 only if every member completed", define: barrierRun})
}

// barrierDemoType is the procedure type of the demo subprocedure.
const barrierDemoType = "demo"

// demoSub is the demo's subprocedure: it "holds writes" in Acquire and
// "flushes" Inside, each for a set time, and can be told to fail a phase.
type demoSub struct {
	member string
	work   time.Duration
	failIn string // "", "acquire" or "inside"
	out    io.Writer
	outMu  *sync.Mutex
}

func (s *demoSub) say(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, "%s: "+format+"\n", append([]any{s.member}, args...)...)
}

func (s *demoSub) pause(ctx context.Context) error {
	t := time.NewTimer(s.work)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *demoSub) Acquire(ctx context.Context) error {
	s.say("acquiring: holding writes")
	if err := s.pause(ctx); err != nil {
		return err
	}
	if s.failIn == "acquire" {
		s.say("acquire fails (as told)")
		return errors.New("injected failure in acquire")
	}
	s.say("acquired")
	return nil
}

func (s *demoSub) Inside(ctx context.Context) ([]byte, error) {
	s.say("inside the barrier: flushing")
	if err := s.pause(ctx); err != nil {
		return nil, err
	}
	if s.failIn == "inside" {
		s.say("inside fails (as told)")
		return nil, errors.New("injected failure inside")
	}
	s.say("flushed; releasing writes")
	return []byte(fmt.Sprintf("%s flushed in %v", s.member, s.work)), nil
}

func (s *demoSub) Cleanup(err error) {
	s.say("cleanup: discarding the flush, releasing writes after: %v", err)
}

// etcdFlags are the flags every verb that talks to etcd shares.
type etcdFlags struct {
	endpoints string
	prefix    string
	ttl       time.Duration
}

func (f *etcdFlags) register(fs *flag.FlagSet, needEndpoints bool) {
	what := "comma-separated etcd client URLs"
	if !needEndpoints {
		what += " (default: start an embedded etcd in a temporary directory)"
	}
	fs.StringVar(&f.endpoints, "endpoints", "", what)
	fs.StringVar(&f.prefix, "prefix", "/procyon/barrier/", "etcd key prefix (must end in /)")
	fs.DurationVar(&f.ttl, "ttl", 10*time.Second, "session lease TTL: how soon a dead party's keys vanish")
}

func (f *etcdFlags) client(ctx context.Context) (*clientv3.Client, error) {
	if f.endpoints == "" {
		return nil, usagef("-endpoints is required")
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(f.endpoints, ","),
		DialTimeout: 10 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
}

func (f *etcdFlags) transport(cli *clientv3.Client) (*barrier.Etcd, error) {
	return barrier.NewEtcd(cli, barrier.EtcdOptions{Prefix: f.prefix, TTL: f.ttl})
}

func barrierMember(fs *flag.FlagSet) runFunc {
	var ef etcdFlags
	ef.register(fs, true)
	name := fs.String("name", "", "member name (required)")
	work := fs.Duration("work", 20*time.Millisecond, "how long the demo Acquire and Inside each take")
	failIn := fs.String("fail-in", "", `make the demo subprocedure fail in "acquire" or "inside"`)
	timeout := fs.Duration("timeout", time.Minute, "this member's timeout per procedure")
	return func(ctx context.Context, e *env, args []string) error {
		switch {
		case *name == "":
			return usagef("-name is required")
		case *failIn != "" && *failIn != "acquire" && *failIn != "inside":
			return usagef(`-fail-in must be "acquire" or "inside", got %q`, *failIn)
		case *work < 0:
			return usagef("-work must not be negative, got %v", *work)
		}
		cli, err := ef.client(ctx)
		if err != nil {
			return err
		}
		defer cli.Close()
		tr, err := ef.transport(cli)
		if err != nil {
			return err
		}
		var outMu sync.Mutex
		m := barrier.NewMember(tr, *name, barrier.MemberOptions{
			Timeout: *timeout,
			OnFinish: func(ref barrier.Ref, outcome error) {
				outMu.Lock()
				defer outMu.Unlock()
				if outcome == nil {
					fmt.Fprintf(e.stdout, "%s: procedure %s complete\n", *name, ref.Name)
				} else {
					fmt.Fprintf(e.stdout, "%s: procedure %s aborted: %v\n", *name, ref.Name, outcome)
				}
			},
		})
		m.Register(barrierDemoType, func(proc string, _ []byte) (barrier.Subprocedure, error) {
			return &demoSub{member: *name, work: *work, failIn: *failIn, out: e.stdout, outMu: &outMu}, nil
		})
		fmt.Fprintf(e.stdout, "%s: member running (pid %d), waiting for procedures\n", *name, os.Getpid())
		err = m.Run(ctx)
		if ctx.Err() != nil {
			return nil // interrupted: the normal way to stop
		}
		return err
	}
}

func barrierRun(fs *flag.FlagSet) runFunc {
	var ef etcdFlags
	ef.register(fs, true)
	members := fs.String("members", "", "comma-separated member names (required)")
	name := fs.String("name", "", "procedure name (default: run-<unix time>)")
	procType := fs.String("type", barrierDemoType, "procedure type (selects the members' subprocedure)")
	procArgs := fs.String("args", "", "argument bytes handed to every member")
	timeout := fs.Duration("timeout", time.Minute, "whole-procedure timeout")
	asJSON := fs.Bool("json", false, "print the timeline as one JSON object")
	return func(ctx context.Context, e *env, args []string) error {
		if *members == "" {
			return usagef("-members is required")
		}
		if *name == "" {
			*name = fmt.Sprintf("run-%d", time.Now().Unix())
		}
		cli, err := ef.client(ctx)
		if err != nil {
			return err
		}
		defer cli.Close()
		tr, err := ef.transport(cli)
		if err != nil {
			return err
		}
		_, st, err := coordinate(ctx, tr, *name, *procType, []byte(*procArgs), strings.Split(*members, ","), *timeout)
		if st != nil {
			if *asJSON {
				json.NewEncoder(e.stdout).Encode(timelineJSON(*st))
			} else {
				printTimeline(e.stdout, *st)
			}
		}
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		return nil
	}
}

// coordinate runs one procedure to its outcome and returns its results
// and timeline.
func coordinate(ctx context.Context, tr barrier.Transport, name, procType string, args []byte, members []string, timeout time.Duration) (map[string][]byte, *barrier.Stats, error) {
	c := barrier.NewCoordinator(tr, barrier.CoordinatorOptions{Timeout: timeout})
	defer c.Close()
	h, err := c.Start(ctx, name, procType, args, members)
	if err != nil {
		return nil, nil, err
	}
	res, err := h.Wait(context.WithoutCancel(ctx)) // ctx aborts the procedure itself; Wait for its outcome
	st := h.Stats()
	return res, &st, err
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// since formats an offset from the start; "-" if there is none.
func since(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return "+" + ms(d)
}

// printTimeline prints a procedure's phases and each member's markers.
func printTimeline(w io.Writer, st barrier.Stats) {
	outcome := "complete"
	if st.Err != nil {
		outcome = "aborted: " + st.Err.Error()
	}
	fmt.Fprintf(w, "procedure %s (type %s, %d members): %s in %s\n\n", st.Name, st.Type, len(st.Members), outcome, ms(st.Total))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tduration\t")
	fmt.Fprintf(tw, "acquire\t%s\tstart until every member acquired and the barrier was recorded\n", ms(st.Acquire))
	fmt.Fprintf(tw, "inside\t%s\tbarrier until the last member reported done\n", ms(st.Inside))
	fmt.Fprintf(tw, "complete\t%s\trecording the completion\n", ms(st.Complete))
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "member\tjoined\tacquired\t(acquire took)\tdone\t(inside took)\tstate")
	for _, m := range st.Members {
		state := "pending"
		if m.Phase != 0 {
			state = m.Phase.String()
		}
		if m.Lost {
			state += ", lost"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t(%s)\t%s\t(%s)\t%s\n", m.Name, since(m.Joined), since(m.Acquired), ms(m.AcquireTook), since(m.Done), ms(m.InsideTook), state)
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(+ times are since the start, as the coordinator saw each marker; \"took\" was measured by the member)")
}

type timelineMember struct {
	Name          string  `json:"name"`
	Phase         string  `json:"phase"`
	Lost          bool    `json:"lost,omitempty"`
	JoinedMs      float64 `json:"joined_ms"`
	AcquiredMs    float64 `json:"acquired_ms"`
	DoneMs        float64 `json:"done_ms"`
	AcquireTookMs float64 `json:"acquire_took_ms"`
	InsideTookMs  float64 `json:"inside_took_ms"`
}

type timeline struct {
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Complete   bool             `json:"complete"`
	Error      string           `json:"error,omitempty"`
	TotalMs    float64          `json:"total_ms"`
	AcquireMs  float64          `json:"acquire_ms"`
	InsideMs   float64          `json:"inside_ms"`
	CompleteMs float64          `json:"complete_ms"`
	Members    []timelineMember `json:"members"`
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func timelineJSON(st barrier.Stats) timeline {
	tl := timeline{Name: st.Name, Type: st.Type, Complete: st.Err == nil && st.Finished,
		TotalMs: msf(st.Total), AcquireMs: msf(st.Acquire), InsideMs: msf(st.Inside), CompleteMs: msf(st.Complete)}
	if st.Err != nil {
		tl.Error = st.Err.Error()
	}
	for _, m := range st.Members {
		phase := "pending"
		if m.Phase != 0 {
			phase = m.Phase.String()
		}
		tl.Members = append(tl.Members, timelineMember{Name: m.Name, Phase: phase, Lost: m.Lost,
			JoinedMs: msf(m.Joined), AcquiredMs: msf(m.Acquired), DoneMs: msf(m.Done),
			AcquireTookMs: msf(m.AcquireTook), InsideTookMs: msf(m.InsideTook)})
	}
	return tl
}

// startEmbeddedEtcd starts an etcd for a demo or benchmark in a fresh
// temporary directory under parent and returns it with a function that
// stops it and removes the directory.
func startEmbeddedEtcd(parent string, fsync bool) (*embedetcd.Server, func(), error) {
	dir, err := os.MkdirTemp(parent, "procyon-etcd-")
	if err != nil {
		return nil, nil, fmt.Errorf("embedded etcd: %w", err)
	}
	srv, err := embedetcd.Start(embedetcd.Options{Dir: dir, NoFsync: !fsync})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return srv, func() {
		srv.Close()
		os.RemoveAll(dir)
	}, nil
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func barrierDemo(fs *flag.FlagSet) runFunc {
	n := fs.Int("members", 3, "member processes to start")
	work := fs.Duration("work", 20*time.Millisecond, "how long each member's Acquire and Inside take")
	fail := fs.String("fail", "", `make one member fail a phase, e.g. "m2:inside" or "m1:acquire"`)
	ttl := fs.Duration("ttl", 2*time.Second, "session lease TTL")
	timeout := fs.Duration("timeout", 30*time.Second, "whole-procedure timeout")
	verbose := fs.Bool("v", false, "show the member processes' output as it comes (it is shown on failure anyway)")
	return func(ctx context.Context, e *env, args []string) error {
		if *n < 1 || *n > 32 {
			return usagef("-members must be between 1 and 32, got %d", *n)
		}
		failMember, failPhase, _ := strings.Cut(*fail, ":")
		if *fail != "" && failPhase != "acquire" && failPhase != "inside" {
			return usagef(`-fail must be MEMBER:acquire or MEMBER:inside, got %q`, *fail)
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}

		srv, stopEtcd, err := startEmbeddedEtcd("", false)
		if err != nil {
			return err
		}
		defer stopEtcd()
		endpoints := strings.Join(srv.Endpoints(), ",")
		fmt.Fprintf(e.stdout, "embedded etcd at %s\n", endpoints)

		// The members are separate processes of this same binary.
		var members []string
		var procs []*exec.Cmd
		var outputs []*lockedBuffer
		defer func() {
			for _, p := range procs {
				if p.ProcessState == nil {
					p.Process.Kill()
					p.Wait()
				}
			}
		}()
		for i := range *n {
			name := fmt.Sprintf("m%d", i+1)
			margs := []string{"barrier", "member", "-endpoints", endpoints, "-name", name, "-ttl", ttl.String(), "-work", work.String()}
			if name == failMember {
				margs = append(margs, "-fail-in", failPhase)
			}
			cmd := exec.Command(self, margs...)
			out := &lockedBuffer{}
			var w io.Writer = out
			if *verbose {
				w = io.MultiWriter(out, e.stdout)
			}
			cmd.Stdout, cmd.Stderr = w, w
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("start member %s: %w", name, err)
			}
			members, procs, outputs = append(members, name), append(procs, cmd), append(outputs, out)
			fmt.Fprintf(e.stdout, "member %s: pid %d\n", name, cmd.Process.Pid)
		}

		cli, err := srv.Client(ctx)
		if err != nil {
			return err
		}
		defer cli.Close()
		tr, err := barrier.NewEtcd(cli, barrier.EtcdOptions{TTL: *ttl})
		if err != nil {
			return err
		}
		// Start once every member's session is open, so that each hears of the
		// procedure even if it is aborted at once. (A member that starts late
		// would join late: the procedure waits for it within its timeout.)
		for deadline := time.Now().Add(*timeout); ; time.Sleep(10 * time.Millisecond) {
			live, err := tr.LiveMembers(ctx)
			if err != nil {
				return fmt.Errorf("list live members: %w", err)
			}
			if !slices.ContainsFunc(members, func(m string) bool { return !slices.Contains(live, m) }) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("members did not connect within %v (connected: %v)", *timeout, live)
			}
		}
		procName := fmt.Sprintf("demo-%d", time.Now().Unix())
		_, st, runErr := coordinate(ctx, tr, procName, barrierDemoType, nil, members, *timeout)
		fmt.Fprintln(e.stdout)
		if st != nil {
			printTimeline(e.stdout, *st)
		}

		// Let every member tell how the procedure ended for it (it learns of
		// an abort through its watch, a moment after the coordinator) before
		// stopping them; a member that never heard of it is shown as such.
		ended := func(out *lockedBuffer) bool {
			o := out.String()
			return strings.Contains(o, "procedure "+procName+" complete") || strings.Contains(o, "procedure "+procName+" aborted")
		}
		for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			if !slices.ContainsFunc(outputs, func(o *lockedBuffer) bool { return !ended(o) }) {
				break
			}
		}

		// Stop the members and check that each one exited cleanly.
		var memberErrs []error
		for i, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					memberErrs = append(memberErrs, fmt.Errorf("member %s: %w", members[i], err))
				}
			case <-time.After(10 * time.Second):
				p.Process.Kill()
				<-done
				memberErrs = append(memberErrs, fmt.Errorf("member %s did not stop on SIGTERM", members[i]))
			}
		}
		if runErr != nil || len(memberErrs) > 0 || *verbose {
			if !*verbose {
				fmt.Fprintln(e.stdout, "\nmember output:")
				for i, out := range outputs {
					for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
						fmt.Fprintf(e.stdout, "  [%s] %s\n", members[i], line)
					}
				}
			}
		}
		if runErr != nil {
			return &exitError{code: 1, err: runErr}
		}
		if err := errors.Join(memberErrs...); err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(e.stdout, "\nevery member completed\n")
		return nil
	}
}
