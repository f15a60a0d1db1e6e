package main

import (
	"encoding/json"
	"path/filepath"
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
}
