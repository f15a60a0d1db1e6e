package barrier_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/procyon-dev/procyon/barrier"
)

// Separate-process parties. The test binary re-executes itself with
// helperEnv set to "member" or "coordinator"; TestMain then runs
// helperMain instead of the tests. A helper connects to the embedded etcd
// of the parent test and reports what happens as JSON lines on stdout.
const (
	helperEnv       = "BARRIER_TEST_HELPER"
	helperEndpoints = "BARRIER_TEST_ENDPOINTS"
	helperPrefix    = "BARRIER_TEST_PREFIX"
	helperName      = "BARRIER_TEST_NAME"     // member name, or procedure name for a coordinator
	helperBehavior  = "BARRIER_TEST_BEHAVIOR" // member: "ok", "hang-acquire" or "hang-inside"
	helperMembers   = "BARRIER_TEST_MEMBERS"  // coordinator: comma-separated members
)

// helperLine is one report of a helper process.
type helperLine struct {
	Event  string              `json:"event"` // acquire-start, acquired, inside-start, cleanup, finished, started, outcome, exit
	Member string              `json:"member,omitempty"`
	Err    *barrier.AbortError `json:"err,omitempty"`
	Text   string              `json:"text,omitempty"`
}

func helperMain(role string) int {
	out := json.NewEncoder(os.Stdout)
	var outMu sync.Mutex
	report := func(l helperLine) {
		outMu.Lock()
		defer outMu.Unlock()
		out.Encode(l)
	}
	fail := func(err error) int {
		report(helperLine{Event: "exit", Text: err.Error()})
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(os.Getenv(helperEndpoints), ","),
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fail(err)
	}
	defer cli.Close()
	tr, err := barrier.NewEtcd(cli, barrier.EtcdOptions{Prefix: os.Getenv(helperPrefix), TTL: testTTL})
	if err != nil {
		return fail(err)
	}
	name := os.Getenv(helperName)
	switch role {
	case "member":
		behavior := os.Getenv(helperBehavior)
		m := barrier.NewMember(tr, name, barrier.MemberOptions{
			OnFinish: func(ref barrier.Ref, outcome error) {
				l := helperLine{Event: "finished", Member: name}
				errors.As(outcome, &l.Err)
				report(l)
			},
		})
		m.Register("test", func(string, []byte) (barrier.Subprocedure, error) {
			return &helperSub{name: name, behavior: behavior, report: report}, nil
		})
		err := m.Run(ctx)
		if ctx.Err() == nil {
			return fail(err)
		}
		return 0
	case "coordinator":
		c := barrier.NewCoordinator(tr, barrier.CoordinatorOptions{Timeout: time.Minute})
		defer c.Close()
		h, err := c.Start(ctx, name, "test", nil, strings.Split(os.Getenv(helperMembers), ","))
		if err != nil {
			return fail(err)
		}
		report(helperLine{Event: "started"})
		_, err = h.Wait(ctx)
		l := helperLine{Event: "outcome"}
		errors.As(err, &l.Err)
		report(l)
		return 0
	}
	return fail(errors.New("unknown helper role " + role))
}

type helperSub struct {
	name, behavior string
	report         func(helperLine)
}

func (s *helperSub) Acquire(ctx context.Context) error {
	s.report(helperLine{Event: "acquire-start", Member: s.name})
	if s.behavior == "hang-acquire" {
		return hang(ctx)
	}
	s.report(helperLine{Event: "acquired", Member: s.name})
	return nil
}

func (s *helperSub) Inside(ctx context.Context) ([]byte, error) {
	s.report(helperLine{Event: "inside-start", Member: s.name})
	if s.behavior == "hang-inside" {
		return nil, hang(ctx)
	}
	return []byte("result of " + s.name), nil
}

func (s *helperSub) Cleanup(err error) {
	l := helperLine{Event: "cleanup", Member: s.name}
	errors.As(err, &l.Err)
	s.report(l)
}

// helper is a running helper process.
type helper struct {
	t     testing.TB
	name  string
	cmd   *exec.Cmd
	lines chan helperLine // closed when stdout closes

	mu   sync.Mutex
	seen []helperLine
}

// startHelper starts a helper process in role with extra environment.
func startHelper(t testing.TB, e *etcdEnv, role, name string, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+role,
		helperEndpoints+"="+strings.Join(e.srv.Endpoints(), ","),
		helperPrefix+"="+e.prefix,
		helperName+"="+name,
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, name: name, cmd: cmd, lines: make(chan helperLine, 64)}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l helperLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l = helperLine{Event: "garbage", Text: sc.Text()}
			}
			h.lines <- l
		}
	}()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.cmd.Wait()
	})
	return h
}

// waitEvent waits for the helper to report event and returns the line.
func (h *helper) waitEvent(event string) helperLine {
	h.t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				h.t.Fatalf("helper %s exited before reporting %q; it reported %+v", h.name, event, h.seen)
			}
			h.mu.Lock()
			h.seen = append(h.seen, l)
			h.mu.Unlock()
			if l.Event == event {
				return l
			}
			if l.Event == "exit" || l.Event == "garbage" {
				h.t.Fatalf("helper %s: %+v", h.name, l)
			}
		case <-deadline.C:
			h.t.Fatalf("helper %s did not report %q; it reported %+v", h.name, event, h.seen)
		}
	}
}

// reported reports whether the helper reported event so far.
func (h *helper) reported(event string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.seen {
		if l.Event == event {
			return true
		}
	}
	return false
}

// kill SIGKILLs the helper and waits for it to die.
func (h *helper) kill() {
	h.t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		h.t.Fatal(err)
	}
	h.cmd.Wait()
}
