package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestBenchAPIJSON: bench api builds its store, checks every answer it
// times, and reports each kind of request.
func TestBenchAPIJSON(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "bench")
	code, out, errOut := runCLI(t, "bench", "api", "-procedures", "2000", "-requests", "20", "-dir", parent, "-seed", "7", "-json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var res apiBenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.Procedures != 2000 || res.RolledBack != 18 || res.Live != 2 || res.Rare != 200 || res.Seed != 7 {
		t.Errorf("store: %+v", res)
	}
	for name, s := range map[string]latencyStats{"list_first": res.ListFirst, "list_status": res.ListStatus,
		"list_type": res.ListType, "list_deep": res.ListDeep, "show": res.Show} {
		if s.Count != 20 || s.P50ms <= 0 || s.P99ms < s.P50ms || s.MaxMs < s.P99ms {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if res.ListP99ms != max(res.ListStatus.P99ms, res.ListType.P99ms) || res.ShowP99ms != res.Show.P99ms {
		t.Errorf("headline figures: %+v", res)
	}
}
