package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	for _, c := range []struct {
		args  []string
		verbs []string
	}{
		{[]string{"help"}, []string{"bench", "wal", "demo", "verify"}},
		{[]string{"help", "bench"}, []string{"wal", "procedures"}},
		{[]string{"help", "wal"}, []string{"dump", "verify", "repair"}},
	} {
		code, out, _ := runCLI(t, c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d", c.args, code)
		}
		for _, verb := range c.verbs {
			if !strings.Contains(out, "  "+verb+" ") {
				t.Errorf("%v does not list %q:\n%s", c.args, verb, out)
			}
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
		keys := []string{"appends_per_sec", "mb_per_sec", "syncs_per_sec", "records_per_sync", "p50_us", "p99_us",
			"raw_appends_per_sec", "raw_sync_us", "sync_busy", "raw_sync_busy", "ratio_to_raw"}
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
		if m["mode"] == "replay" {
			continue
		}
		// The baseline is one write of k records (k = writers, or
		// -sync-every), each as many bytes as the log writes for it.
		k := 4.0
		if m["sync"] == false {
			k = 4096
		}
		if m["raw_k"] != k || m["raw_write_bytes"] != k*(256+walFrameHeader) || m["baseline"] != rawBaseline {
			t.Errorf("%v: raw_k %v, raw_write_bytes %v, baseline %q; want %v, %v, %q",
				args, m["raw_k"], m["raw_write_bytes"], m["baseline"], k, k*(256+walFrameHeader), rawBaseline)
		}
		// The skeleton runs the same writers when each append waits.
		if m["sync"] == true {
			for _, key := range []string{"skeleton_appends_per_sec", "skeleton_sync_us", "skeleton_ratio_to_raw", "ratio_to_skeleton"} {
				if v, ok := m[key].(float64); !ok || v <= 0 {
					t.Errorf("%v: %s = %v", args, key, m[key])
				}
			}
			if m["skeleton"] != skeletonBaseline {
				t.Errorf("%v: skeleton %q", args, m["skeleton"])
			}
		} else if _, ok := m["skeleton_appends_per_sec"]; ok {
			t.Errorf("%v: a skeleton run with non-waiting appends", args)
		}
	}
	// The benchmark removes what it wrote.
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("bench left %s behind", parent)
	}
}

// TestRawWriteIsTheLogsBytes checks that the raw baseline writes per
// record the bytes the log writes: the record and its frame header.
func TestRawWriteIsTheLogsBytes(t *testing.T) {
	w, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Append(wal.Entry{Data: make([]byte, 100)}); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().Bytes; got != 100+walFrameHeader {
		t.Fatalf("the log wrote %d bytes for a 100-byte record; walFrameHeader says %d", got, 100+walFrameHeader)
	}
}

func TestWALVerifyDumpRepair(t *testing.T) {
	dir := t.TempDir()
	w, err := wal.Open(dir, wal.Options{SegmentSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := w.Append(wal.Entry{Data: []byte(strings.Repeat("x", 20+i))}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if code, out, _ := runCLI(t, "wal", "verify", dir); code != 0 || !strings.Contains(out, "40 records") || !strings.Contains(out, "clean") {
		t.Fatalf("verify healthy log: exit %d\n%s", code, out)
	}
	code, out, _ := runCLI(t, "wal", "verify", dir, "-json")
	var v struct {
		Verdict  string `json:"verdict"`
		Records  int    `json:"records"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Verdict != "clean" || v.Records != 40 {
		t.Fatalf("verify -json: exit %d, %v\n%s", code, err, out)
	}
	code, out, _ = runCLI(t, "wal", "dump", dir)
	if code != 0 || strings.Count(out, " data ") != 40 || !strings.Contains(out, "trailer") {
		t.Fatalf("dump: exit %d\n%s", code, out)
	}
	names, _ := vfs.OS.List(dir)
	segs := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !strings.HasSuffix(n, ".wal") })
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments: %v", names)
	}

	// Damage a record in the first segment: later segments hold records,
	// so repair refuses and changes nothing.
	first := filepath.Join(dir, segs[0])
	orig, _ := os.ReadFile(first)
	b := bytes.Clone(orig)
	b[100] ^= 0xff
	os.WriteFile(first, b, 0o644)
	code, out, errOut := runCLI(t, "wal", "verify", dir)
	if code != 1 || !strings.Contains(errOut, segs[0]) || !strings.Contains(errOut, "offset") {
		t.Fatalf("verify damaged log: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "wal", "repair", "-yes", dir)
	if code != 1 || !strings.Contains(errOut, "repair refused") || !strings.Contains(errOut, segs[1]) {
		t.Fatalf("repair of damage before intact segments: exit %d\n%s%s", code, out, errOut)
	}
	if after, _ := os.ReadFile(first); !bytes.Equal(after, b) {
		t.Fatal("a refused repair changed the segment")
	}
	// With -need-from past the damaged segment, it is skipped, and repair
	// deletes it.
	need := fmt.Sprint(seqOf(segs[1]))
	if code, out, _ := runCLI(t, "wal", "verify", "-need-from", need, dir); code != 1 || !strings.Contains(out, "SKIPPED") {
		t.Fatalf("verify -need-from: exit %d\n%s", code, out)
	}
	other := t.TempDir()
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		os.WriteFile(filepath.Join(other, n), b, 0o644)
	}
	code, out, errOut = runCLI(t, "wal", "repair", "-yes", "-need-from", need, other)
	if code != 0 || !strings.Contains(out, "remove "+segs[0]) {
		t.Fatalf("repair -need-from: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "wal", "verify", other); code != 0 || strings.Contains(out, segs[0]) {
		t.Fatalf("verify after repair -need-from: exit %d\n%s", code, out)
	}
	os.WriteFile(first, orig, 0o644)

	// Damage the last record: repair cuts it, and says so.
	lastRecords := filepath.Join(dir, segs[len(segs)-2])
	b, _ = os.ReadFile(lastRecords)
	b[len(b)-frameTrailerBytes-2] ^= 0xff
	os.WriteFile(lastRecords, b, 0o644)
	code, out, _ = runCLI(t, "wal", "repair", dir)
	if code != 1 || !strings.Contains(out, "truncate segment "+segs[len(segs)-2]) || !strings.Contains(out, "drops seq 40..40") {
		t.Fatalf("repair without -yes: exit %d\n%s", code, out)
	}
	if after, _ := os.ReadFile(lastRecords); !bytes.Equal(after, b) {
		t.Fatal("repair without -yes changed the segment")
	}
	if code, out, errOut := runCLI(t, "wal", "repair", "-yes", dir); code != 0 {
		t.Fatalf("repair -yes: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "wal", "verify", dir); code != 0 || !strings.Contains(out, "39 records") {
		t.Fatalf("verify after repair: exit %d\n%s", code, out)
	}

	// A torn tail is a finding, not "ok".
	w, err = wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	names, _ = vfs.OS.List(dir)
	last := filepath.Join(dir, names[len(names)-2]) // before LOCK: the empty last segment
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{1, 2, 3, 4, 5, 0, 0, 0, 7})
	f.Close()
	if code, out, errOut := runCLI(t, "wal", "verify", dir); code != 3 || !strings.Contains(out, "TORN TAIL") || !strings.Contains(errOut, "9 bytes") {
		t.Fatalf("verify of a torn tail: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "wal", "verify", "-json", dir)
	var torn struct {
		Verdict  string `json:"verdict"`
		TornTail struct {
			Bytes int `json:"bytes"`
		} `json:"torn_tail"`
	}
	if err := json.Unmarshal([]byte(out), &torn); code != 3 || err != nil || torn.Verdict != "torn tail" || torn.TornTail.Bytes != 9 {
		t.Fatalf("verify -json of a torn tail: exit %d, %v\n%s", code, err, out)
	}

	// A garbage file named like a later segment is blamed, and dump still
	// lists every good segment.
	stray := fmt.Sprintf("%020d.wal", 1000)
	os.WriteFile(filepath.Join(dir, stray), []byte("garbage"), 0o644)
	code, out, errOut = runCLI(t, "wal", "dump", dir)
	if code != 1 || !strings.Contains(errOut, stray) || strings.Count(out, " data ") != 39 {
		t.Fatalf("dump with a stray file: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "wal", "verify"); code != 2 {
		t.Fatalf("verify without DIR: exit %d, want 2", code)
	}
}

func seqOf(name string) uint64 {
	var seq uint64
	fmt.Sscanf(name, "%020d.wal", &seq)
	return seq
}

// frameTrailerBytes is the size of a segment's trailer frame.
const frameTrailerBytes = 24 + 16

// TestWALVerifyNotALog: the wal verbs refuse what is not a log with exit 2
// and a message saying what they expected, and create nothing.
func TestWALVerifyNotALog(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "store")
	os.MkdirAll(filepath.Join(store, "wal"), 0o755)
	file := filepath.Join(root, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	empty := filepath.Join(root, "empty")
	os.MkdirAll(empty, 0o755)
	missing := filepath.Join(root, "missing")
	for _, c := range []struct{ dir, want string }{
		{store, "the log is " + filepath.Join(store, "wal")},
		{empty, "no <20 digits>.wal segment files"},
		{file, "it is a file"},
		{missing, "no such file"},
	} {
		for _, verb := range [][]string{{"wal", "verify"}, {"wal", "dump"}, {"wal", "repair", "-yes"}} {
			code, out, errOut := runCLI(t, append(verb, c.dir)...)
			if code != 2 || !strings.Contains(errOut, "is not a procyon log") || !strings.Contains(errOut, c.want) {
				t.Errorf("%v %s: exit %d\n%s%s", verb, c.dir, code, out, errOut)
			}
		}
	}
	for dir, want := range map[string]int{store: 1, empty: 0} {
		if names, _ := vfs.OS.List(dir); len(names) != want {
			t.Errorf("%s now holds %v", dir, names)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("%s was created", missing)
	}
}
