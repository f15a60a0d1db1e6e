package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// bench remote runs end to end (its nodes and region servers are
// processes of this test binary) and reports what it measured: operations
// that completed through the node processes, batches, and snapshots of
// the table.
func TestBenchRemote(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bench")
	code, out, errOut := runBarrierCLI(t, "bench", "remote", "-dir", dir, "-duration", "300ms",
		"-concurrency", "64", "-regions", "20", "-rows", "5", "-rounds", "2", "-json")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var res remoteBenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if res.Nodes != 3 || res.Ops <= 0 || res.OpsPerSec <= 0 || res.OpsPerBatch < 1 || res.P50ms <= 0 {
		t.Fatalf("dispatch part: %+v", res)
	}
	if res.Regions != 20 || res.Rows != 100 || len(res.SnapshotMsRuns) != 2 || res.SnapshotMs <= 0 {
		t.Fatalf("table store part: %+v", res)
	}
	if code, _, errOut := runBarrierCLI(t, "bench", "remote", "-nodes", "0"); code != 2 || !strings.Contains(errOut, "-nodes must be") {
		t.Fatalf("-nodes 0: exit %d, %q", code, errOut)
	}
}
