package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs "procyon demo" end to end: its engine processes are this
// test binary acting as the CLI (see barrierExecEnv), the first is killed
// with SIGKILL mid-way, the second recovers, and every check must hold.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, out, errOut := runBarrierCLI(t, "demo", "-dir", dir, "-step-delay", "20ms")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"** SIGKILL engine 1", "engine 2  recovered", "FAILED", "undone",
		"orders   #2   rolled back", "users    #1   succeeded", "none lost", "demo passed",
		"lock table/users held by 1:exclusive, waiting: 6:shared", "signal flushed/users", "snapshot #6   of users succeeded",
		"compaction #7   of metrics slept across the crash"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL ") {
		t.Errorf("a check failed:\n%s", out)
	}
	// -dir is kept, and a second demo refuses to reuse it.
	if ents, _ := os.ReadDir(dir); len(ents) == 0 {
		t.Fatal("-dir was emptied")
	}
	if code, _, errOut := runBarrierCLI(t, "demo", "-dir", dir); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("reused a data directory: exit %d, %q", code, errOut)
	}
}
