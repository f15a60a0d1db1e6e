package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs "procyon demo" end to end: the master and the region
// servers are this test binary acting as the CLI (see barrierExecEnv); a
// region server and the master are SIGKILLed in the middle of the
// snapshot, and every check must hold.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	code, out, errOut := runBarrierCLI(t, "demo", "-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, re := range []string{
		`master pid \d+ serves on 127\.0\.0\.1:\d+ \(epoch \d+\)`,
		`region server rs3 pid \d+ serves on`,
		`create-table #\d+: table demo enabled, 8 regions`,
		`snapshot-table #\d+: snapshot demo-snap of demo submitted`,
		`\*\* SIGKILL region server rs\d \(pid \d+\) in the middle of the snapshot: \d of 8 region snapshots written; [1-8] of its regions not yet snapshotted \*\*`,
		`\*\* SIGKILL master \(pid \d+\); the snapshot is in state [a-z-]+ \*\*`,
		`master restarted: pid \d+`,
		`region server rs\d restarted: pid \d+`,
		`snapshot-table #\d+ succeeded`,
		`demo-clone cloned from snapshot demo-snap`,
		`ok   region server rs\d \(pid \d+\) was SIGKILLed in the middle of the snapshot`,
		`ok   the master \(pid \d+\) was SIGKILLed later, before the snapshot completed`,
		`ok   snapshot-table demo-snap #\d+ is done and succeeded`,
		`ok   each region of demo and demo-clone is open on exactly one live server`,
		`ok   region demo\.\d+\.0007: snapshot verifies`,
		`ok   clone demo-clone, read back from disk, equals demo at the snapshot point: [1-9]\d* rows`,
		`ok   table demo, read back from disk, holds every acknowledged row and no other`,
		`demo passed`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s", re)
		}
	}
	if strings.Contains(out, "FAIL ") {
		t.Errorf("a check failed")
	}
	if t.Failed() {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
	// The kills are in order: the region server, then the master, then
	// the restarts, then the snapshot's end.
	order := []string{"SIGKILL region server", "SIGKILL master", "master restarted", "succeeded\n"}
	at := 0
	for _, s := range order {
		i := strings.Index(out[at:], s)
		if i < 0 {
			t.Fatalf("%q not after the previous events:\n%s", s, out)
		}
		at += i
	}
	// -dir is kept, and a second demo refuses to reuse it.
	if ents, _ := os.ReadDir(dir); len(ents) == 0 {
		t.Fatal("-dir was emptied")
	}
	if code, _, errOut := runBarrierCLI(t, "demo", "-dir", dir); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("reused a data directory: exit %d, %q", code, errOut)
	}
}
