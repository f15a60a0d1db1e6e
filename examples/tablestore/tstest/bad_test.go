package tstest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
	"github.com/procyon-dev/procyon/procedure"
)

// TestBadRequestsChangeNothing: admin requests that cannot be done fail
// with a clear error, and the table and snapshot they name stay as they
// were.
func TestBadRequestsChangeNothing(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "t10", "b", "c")
	want := rowsFor("abc", 30, "v")
	putRows(t, c, "t10", want)
	mustProc(t, c, submitSnapshot(t, c, "t10", "s10"), "snapshot s10")
	regs := regionsOf(t, c, "t10")
	snapRows := union(checkSnapshot(t, c, "s10", "t10", regs))
	m := c.Master()

	for _, tc := range []struct {
		name   string
		submit func() (procedure.ID, error)
		errHas string
	}{
		{"create an existing table", func() (procedure.ID, error) {
			return m.CreateTable(ctxT(t), master.CreateTable{Name: "t10"}, procedure.SubmitOptions{})
		}, "table t10 exists"},
		{"clone into an existing table", func() (procedure.ID, error) {
			return m.CreateTable(ctxT(t), master.CreateTable{Name: "t10", FromSnapshot: "s10"}, procedure.SubmitOptions{})
		}, "table t10 exists"},
		{"clone a missing snapshot", func() (procedure.ID, error) {
			return m.CreateTable(ctxT(t), master.CreateTable{Name: "t10b", FromSnapshot: "nope"}, procedure.SubmitOptions{})
		}, `no completed snapshot "nope"`},
		{"split keys not increasing", func() (procedure.ID, error) {
			return m.CreateTable(ctxT(t), master.CreateTable{Name: "t10c", Splits: splits("c", "b")}, procedure.SubmitOptions{})
		}, "split keys not increasing"},
		{"a snapshot name taken", func() (procedure.ID, error) {
			return m.SnapshotTable(ctxT(t), master.SnapshotTable{Table: "t10", Name: "s10"}, procedure.SubmitOptions{})
		}, "snapshot s10 exists"},
		{"a snapshot of a missing table", func() (procedure.ID, error) {
			return m.SnapshotTable(ctxT(t), master.SnapshotTable{Table: "nope", Name: "s10b"}, procedure.SubmitOptions{})
		}, "no such table"},
		{"a bad snapshot name", func() (procedure.ID, error) {
			return m.SnapshotTable(ctxT(t), master.SnapshotTable{Table: "t10", Name: "../x"}, procedure.SubmitOptions{})
		}, "bad snapshot name"},
		{"a split key outside the region", func() (procedure.ID, error) {
			return m.SplitRegion(ctxT(t), master.SplitRegion{Table: "t10", Region: regs[0].ID, Key: []byte("x")}, procedure.SubmitOptions{})
		}, "is not inside region"},
		{"delete an enabled table", func() (procedure.ID, error) {
			return m.DeleteTable(ctxT(t), master.DeleteTable{Name: "t10"}, procedure.SubmitOptions{})
		}, "is enabled, not disabled"},
	} {
		id, err := tc.submit()
		if err == nil {
			err = waitProc(t, c, id)
		}
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.errHas)
		}
	}

	for _, name := range []string{"t10b", "t10c"} {
		if _, _, err := m.Table(name); !errors.Is(err, master.ErrNoTable) {
			t.Errorf("table %s after its create failed: %v", name, err)
		}
	}
	if _, err := m.Snapshot("s10b"); !errors.Is(err, master.ErrNoSnapshot) {
		t.Errorf("snapshot s10b after it failed: %v", err)
	}
	if got := regionsOf(t, c, "t10"); len(got) != len(regs) {
		t.Errorf("t10 has %d regions, had %d", len(got), len(regs))
	}
	waitServing(t, c, "t10")
	checkScan(t, c, "t10", want)
	if d := diff(union(checkSnapshot(t, c, "s10", "t10", regs)), snapRows); d != "" {
		t.Errorf("snapshot s10 changed: %s", d)
	}
}
