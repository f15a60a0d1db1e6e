package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestHelpListsVerbs(t *testing.T) {
	code, out, _ := runCLI(t, "help")
	if code != 0 {
		t.Fatalf("help exit %d", code)
	}
	for _, verb := range []string{"bench wal", "wal dump", "wal verify", "wal repair"} {
		if !strings.Contains(out, verb) {
			t.Errorf("help does not list %q:\n%s", verb, out)
		}
	}
	if code, _, errOut := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown verb: exit %d, %q", code, errOut)
	}
	if code, _, _ := runCLI(t, "bench", "wal", "-writers", "0"); code == 0 {
		t.Fatal("-writers 0 accepted")
	}
	if code, _, _ := runCLI(t, "bench", "wal", "-nosuchflag"); code == 0 {
		t.Fatal("unknown flag accepted")
	}
}

func TestBenchWALJSON(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	for _, args := range [][]string{
		{"bench", "wal", "-dir", parent, "-duration", "200ms", "-writers", "4", "-json"},
		{"bench", "wal", "-dir", parent, "-duration", "200ms", "-sync=false", "-json"},
		{"bench", "wal", "-dir", parent, "-replay", "-records", "5000", "-json"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: not one JSON object: %v\n%s", args, err, out)
		}
		keys := []string{"appends_per_sec", "mb_per_sec", "syncs_per_sec", "records_per_sync", "p50_us", "p99_us", "raw_appends_per_sec"}
		if m["mode"] == "replay" {
			keys = []string{"records_per_sec", "records"}
			if m["records"].(float64) != 5000 {
				t.Fatalf("replay read %v records", m["records"])
			}
		}
		for _, k := range keys {
			if v, ok := m[k].(float64); !ok || v <= 0 {
				t.Errorf("%v: %s = %v", args, k, m[k])
			}
		}
	}
	// The benchmark removes what it wrote.
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("bench left %s behind", parent)
	}
}

func TestWALVerifyDumpRepair(t *testing.T) {
	dir := t.TempDir()
	w, err := wal.Open(dir, wal.Options{SegmentSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := w.Append([]byte(strings.Repeat("x", 20+i))); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if code, out, _ := runCLI(t, "wal", "verify", dir); code != 0 || !strings.Contains(out, "40 records") {
		t.Fatalf("verify healthy log: exit %d\n%s", code, out)
	}
	code, out, _ := runCLI(t, "wal", "dump", dir)
	if code != 0 || strings.Count(out, " data ") != 40 || !strings.Contains(out, "trailer") {
		t.Fatalf("dump: exit %d\n%s", code, out)
	}
	// Damage a record in the first (sealed) segment.
	names, _ := vfs.OS.List(dir)
	first := filepath.Join(dir, names[0])
	b, _ := os.ReadFile(first)
	b[100] ^= 0xff
	os.WriteFile(first, b, 0o644)

	code, out, errOut := runCLI(t, "wal", "verify", dir)
	if code != 1 || !strings.Contains(errOut, names[0]) || !strings.Contains(errOut, "offset") {
		t.Fatalf("verify damaged log: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "wal", "repair", dir)
	if code != 1 || !strings.Contains(out, "truncate segment "+names[0]) {
		t.Fatalf("repair without -yes: exit %d\n%s", code, out)
	}
	if after, _ := os.ReadFile(first); !bytes.Equal(after, b) {
		t.Fatal("repair without -yes changed the segment")
	}
	if code, out, errOut := runCLI(t, "wal", "repair", "-yes", dir); code != 0 {
		t.Fatalf("repair -yes: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "wal", "verify", dir); code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "wal", "verify"); code != 2 {
		t.Fatalf("verify without DIR: exit %d, want 2", code)
	}
}
