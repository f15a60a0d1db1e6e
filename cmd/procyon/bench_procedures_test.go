package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchProceduresJSON(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	for _, tc := range []struct {
		args []string
		keys []string
	}{
		{[]string{"bench", "procedures", "-dir", parent, "-duration", "300ms", "-concurrency", "32", "-json"},
			[]string{"procedures_per_sec", "steps_per_sec", "p50_ms", "p99_ms", "cpu_us_per_procedure", "raw_fsyncs_per_sec"}},
		{[]string{"bench", "procedures", "-dir", parent, "-recover", "-live", "3000", "-json"},
			[]string{"recover_ms", "bytes_per_live_procedure", "store_open_ms", "load_ms"}},
		{[]string{"bench", "procedures", "-dir", parent, "-duration", "300ms", "-concurrency", "32", "-locks", "contended", "-baseline=false", "-json"},
			[]string{"procedures_per_sec", "lock_requests", "lock_wait_p99_ms"}},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v: not one JSON object: %v\n%s", tc.args, err, out)
		}
		for _, k := range tc.keys {
			if v, ok := m[k].(float64); !ok || v <= 0 {
				t.Errorf("%v: %s = %v", tc.args, k, m[k])
			}
		}
	}
	if code, _, _ := runCLI(t, "bench", "procedures", "-steps", "0"); code == 0 {
		t.Fatal("-steps 0 accepted")
	}
	if code, _, errOut := runCLI(t, "bench", "procedures", "-scrape", "-1s"); code == 0 || !strings.Contains(errOut, "-scrape") {
		t.Fatalf("-scrape -1s: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, "bench", "procedures", "-locks", "none,bogus"); code == 0 || !strings.Contains(errOut, "bogus") {
		t.Fatalf("-locks bogus: exit %d, %q", code, errOut)
	}
}

// Several lock modes, interleaved: medians per mode and the ratio to none.
func TestBenchProceduresLockModes(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "procedures", "-dir", filepath.Join(t.TempDir(), "bench"), "-duration", "200ms",
		"-concurrency", "32", "-locks", "none,uncontended,contended", "-rounds", "2", "-baseline=false", "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res struct {
		Modes []struct {
			Locks  string    `json:"locks"`
			Runs   int       `json:"runs"`
			Rate   float64   `json:"procedures_per_sec"`
			All    []float64 `json:"procedures_per_sec_runs"`
			VsNone float64   `json:"vs_none"`
		} `json:"modes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Modes) != 3 {
		t.Fatalf("%d modes:\n%s", len(res.Modes), out)
	}
	for i, m := range res.Modes {
		if m.Runs != 2 || len(m.All) != 2 || m.Rate <= 0 || (i > 0 && m.VsNone <= 0) {
			t.Fatalf("mode %+v\n%s", m, out)
		}
	}
}

// -scrape reads the metrics over HTTP while the procedures run, and
// reports the reads; without it nothing is scraped.
func TestBenchProceduresScrape(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	for _, scrape := range []string{"50ms", "0"} {
		code, out, errOut := runCLI(t, "bench", "procedures", "-dir", parent, "-duration", "300ms", "-concurrency", "32",
			"-baseline=false", "-scrape", scrape, "-json")
		if code != 0 {
			t.Fatalf("-scrape %s: exit %d: %s", scrape, code, errOut)
		}
		var res struct {
			Rate    float64 `json:"procedures_per_sec"`
			Scrapes int     `json:"scrapes"`
			P50     float64 `json:"scrape_p50_ms"`
			Max     float64 `json:"scrape_max_ms"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("-scrape %s: %v\n%s", scrape, err, out)
		}
		switch {
		case res.Rate <= 0:
			t.Errorf("-scrape %s: %s", scrape, out)
		case scrape == "0" && (res.Scrapes != 0 || res.P50 != 0 || res.Max != 0):
			t.Errorf("-scrape 0 scraped: %s", out)
		case scrape != "0" && (res.Scrapes < 1 || res.P50 <= 0 || res.Max < res.P50):
			t.Errorf("-scrape %s: %d scrapes, p50 %v ms, max %v ms", scrape, res.Scrapes, res.P50, res.Max)
		}
	}
	// The table says it too.
	code, out, errOut := runCLI(t, "bench", "procedures", "-dir", parent, "-duration", "200ms", "-concurrency", "8",
		"-baseline=false", "-scrape", "50ms")
	if code != 0 || !strings.Contains(out, "metrics scrapes") {
		t.Fatalf("table: exit %d: %s%s", code, out, errOut)
	}
}
