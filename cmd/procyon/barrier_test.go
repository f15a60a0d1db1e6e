package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// barrierExecEnv makes this test binary act as the procyon binary, so that
// "procyon barrier demo" can start its member processes from it: the demo
// runs os.Executable() with "barrier member ..." and this environment.
const barrierExecEnv = "PROCYON_TEST_EXEC_CLI"

// Test files' init functions run after those of the package's other
// files, so every verb is registered by now.
func init() {
	if os.Getenv(barrierExecEnv) != "1" || len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-test.") {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func runBarrierCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv(barrierExecEnv, "1")
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, &env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestBarrierDemo(t *testing.T) {
	code, out, errOut := runBarrierCLI(t, "barrier", "demo", "-members", "3")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"complete in", "every member completed", "acquire ", "inside ", "m1 ", "m2 ", "m3 "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		if !strings.Contains(out, "member "+m+": pid ") {
			t.Errorf("member %s was not a process of its own:\n%s", m, out)
		}
	}
}

func TestBarrierDemoFailure(t *testing.T) {
	code, out, errOut := runBarrierCLI(t, "barrier", "demo", "-members", "2", "-fail", "m2:acquire")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "aborted by m2 (failed)") || !strings.Contains(out, "[m1] m1: cleanup") && !strings.Contains(out, "[m1] m1: procedure") {
		t.Errorf("the abort and m1's end are not shown\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

func TestBenchBarrierJSON(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "barrier", "-members", "3", "-transport", "inproc", "-rounds", "20", "-json"},
		{"bench", "barrier", "-members", "3", "-transport", "etcd", "-rounds", "5", "-fsync=false", "-json"},
	} {
		code, out, errOut := runBarrierCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: not one JSON object: %v\n%s", args, err, out)
		}
		for _, k := range []string{"members", "transport", "rounds", "p50_ms", "p99_ms"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%v: no %q in %s", args, k, out)
			}
		}
		if m["members"] != 3.0 || m["p50_ms"].(float64) <= 0 {
			t.Errorf("%v: %s", args, out)
		}
	}
	if code, _, _ := runBarrierCLI(t, "bench", "barrier", "-transport", "carrier-pigeon"); code == 0 {
		t.Error("unknown transport accepted")
	}
}

func TestBarrierRunNeedsFlags(t *testing.T) {
	for _, args := range [][]string{
		{"barrier", "run", "-members", "m1"},
		{"barrier", "run", "-endpoints", "http://127.0.0.1:1"},
		{"barrier", "member", "-endpoints", "http://127.0.0.1:1"},
		{"barrier", "member", "-name", "m1"},
	} {
		if code, _, _ := runBarrierCLI(t, args...); code == 0 {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestBarrierRunAndMember runs "procyon barrier run" as the coordinator
// against two "procyon barrier member" processes on an etcd of the test's.
func TestBarrierRunAndMember(t *testing.T) {
	srv, stop, err := startEmbeddedEtcd(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop) // after the members' cleanups, which run first
	endpoints := strings.Join(srv.Endpoints(), ",")
	t.Setenv(barrierExecEnv, "1")
	for _, name := range []string{"a", "b"} {
		cmd := exec.Command(os.Args[0], "barrier", "member", "-endpoints", endpoints, "-name", name, "-ttl", "2s", "-work", "1ms")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Errorf("member %s: %v\n%s", name, err, out.String())
			}
		})
	}
	code, out, errOut := runBarrierCLI(t, "barrier", "run", "-endpoints", endpoints, "-members", "a,b", "-name", "flush-1", "-json")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var tl timeline
	if err := json.Unmarshal([]byte(out), &tl); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !tl.Complete || tl.Name != "flush-1" || len(tl.Members) != 2 || tl.Members[0].Phase != "done" || tl.Members[1].InsideTookMs <= 0 {
		t.Errorf("timeline %+v", tl)
	}
}
