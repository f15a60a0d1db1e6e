package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/durable"
)

func TestBackupRestoreVerbs(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	s := durable.New(durable.Options{Dir: src})
	users := durable.NewCollection[string, string](s, "users", nil)
	ids := durable.NewCollection[int64, []byte](s, "ids", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := s.Write(context.Background(), func(tx *durable.Tx) error {
		users.Put(tx, "ann", "Ann")
		users.Put(tx, "bob", "Bob")
		return ids.Put(tx, -7, []byte{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	file := filepath.Join(tmp, "b.bak")
	if code, _, errOut := runCLI(t, "backup", src, file); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, errOut)
	}
	dst := filepath.Join(tmp, "dst")
	code, out, errOut := runCLI(t, "restore", file, dst)
	if code != 0 || !strings.Contains(out, "3 entries") {
		t.Fatalf("restore: exit %d: %s %s", code, out, errOut)
	}
	// Refuses a non-empty directory, and a damaged backup.
	if code, _, errOut := runCLI(t, "restore", file, dst); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("restore into a non-empty dir: exit %d: %s", code, errOut)
	}
	b, _ := os.ReadFile(file)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(tmp, "bad.bak")
	os.WriteFile(bad, b, 0o644)
	if code, _, errOut := runCLI(t, "restore", bad, filepath.Join(tmp, "d2")); code == 0 || !strings.Contains(errOut, "corrupt") {
		t.Fatalf("restore of a damaged backup: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "backup", src); code != 2 {
		t.Fatalf("backup with one argument: exit %d", code)
	}

	s = durable.New(durable.Options{Dir: dst})
	users = durable.NewCollection[string, string](s, "users", nil)
	ids = durable.NewCollection[int64, []byte](s, "ids", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	latest := s.Latest()
	if v, ok, _ := users.Get(latest, "bob"); !ok || v != "Bob" || users.Len(latest) != 2 {
		t.Fatalf("restored users: %q %v, %d", v, ok, users.Len(latest))
	}
	if v, ok, _ := ids.Get(latest, -7); !ok || len(v) != 3 {
		t.Fatalf("restored ids: %v %v", v, ok)
	}
}

func TestBenchDurableJSON(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	for _, args := range [][]string{
		{"bench", "durable", "-dir", parent, "-duration", "300ms", "-writers", "4", "-keys", "2000", "-json"},
		{"bench", "durable", "-dir", parent, "-recover", "-keys", "2000", "-replay", "500", "-json"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: not one JSON object: %v\n%s", args, err, out)
		}
		keys := []string{"txns_per_sec", "p50_us", "p99_us", "snapshot_ms", "p99_us_during_snapshot", "heap_bytes_per_key",
			"txns_per_commit", "commit_us", "wal_records_per_sync", "wal_sync_us"}
		if m["mode"] == "recover" {
			keys = []string{"recover_ms", "snapshot_bytes"}
		}
		for _, k := range keys {
			if v, ok := m[k].(float64); !ok || v <= 0 {
				t.Errorf("%v: %s = %v", args, k, m[k])
			}
		}
		// Each of the 4 writers has one transaction at a time in flight.
		for _, k := range []string{"txns_per_commit", "wal_records_per_sync"} {
			if v, ok := m[k].(float64); ok && (v < 1 || v > 4) {
				t.Errorf("%v: %s = %v, want 1 to 4 (4 writers)", args, k, v)
			}
		}
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("bench left %s behind", parent)
	}
	if code, _, _ := runCLI(t, "bench", "durable", "-writers", "0"); code == 0 {
		t.Fatal("-writers 0 accepted")
	}
	if code, _, _ := runCLI(t, "bench", "durable", "-rounds", "0"); code == 0 {
		t.Fatal("-rounds 0 accepted")
	}
}

// TestBenchDurableRounds: with -rounds, the store and the log alone run
// in turn, and the result holds each round's figures, their medians and
// the median of the rounds' ratios.
func TestBenchDurableRounds(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	code, out, errOut := runCLI(t, "bench", "durable", "-dir", parent, "-rounds", "3", "-duration", "200ms",
		"-writers", "4", "-keys", "1000", "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r durableBenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if r.Rounds != 3 || len(r.TxnsPerSecAll) != 3 || len(r.WALPerSecAll) != 3 || len(r.RatioToWALAll) != 3 {
		t.Fatalf("rounds %d, per-round figures %v %v %v", r.Rounds, r.TxnsPerSecAll, r.WALPerSecAll, r.RatioToWALAll)
	}
	for i := range 3 {
		if r.TxnsPerSecAll[i] <= 0 || r.WALPerSecAll[i] <= 0 {
			t.Fatalf("round %d: %v txns/s, %v appends/s", i, r.TxnsPerSecAll[i], r.WALPerSecAll[i])
		}
		if want := r.TxnsPerSecAll[i] / r.WALPerSecAll[i]; math.Abs(r.RatioToWALAll[i]-want) > 1e-9 {
			t.Fatalf("round %d: ratio %v, want %v", i, r.RatioToWALAll[i], want)
		}
	}
	if r.TxnsPerSec != median(r.TxnsPerSecAll) || r.RatioToWAL != median(r.RatioToWALAll) {
		t.Fatalf("medians %v %v of %v %v", r.TxnsPerSec, r.RatioToWAL, r.TxnsPerSecAll, r.RatioToWALAll)
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Fatalf("bench left %s behind", parent)
	}
}
