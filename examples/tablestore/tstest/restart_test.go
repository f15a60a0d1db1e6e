package tstest_test

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
	"github.com/procyon-dev/procyon/procedure"
)

// stepHold holds the steps of one procedure type at one state: their
// Execute runs (with its effects on disk) but the step fails with a
// Retryable error, so its commit never happens and it is retried, as
// after a crash between a step's work and its commit.
type stepHold struct {
	typ   atomic.Pointer[string]
	state atomic.Int64
}

var errHeld = errors.New("test: step held")

func (h *stepHold) set(typ string, state int64) {
	h.state.Store(state)
	h.typ.Store(&typ)
}

func (h *stepHold) clear() { h.typ.Store(nil) }

func (h *stepHold) hooks() procedure.Hooks {
	return procedure.Hooks{FailStep: func(si procedure.StepInfo) error {
		if typ := h.typ.Load(); typ != nil && *typ == si.Type && si.State == h.state.Load() && !si.Rollback {
			return procedure.Retryable(errHeld)
		}
		return nil
	}}
}

// restartAt waits until procedure id, held by h at the state named name,
// was retried, then stops the master, lets go of the hold and starts a
// new master.
func restartAt(t *testing.T, c *tstest.Cluster, h *stepHold, id procedure.ID, name string) {
	t.Helper()
	c.Eventually(procTimeout, fmt.Sprintf("procedure %d held at %s", id, name), func() error {
		in, err := info(c, id)
		if err != nil {
			return err
		}
		if in.StateName != name || in.Retries == 0 {
			return fmt.Errorf("at %s, %d retries", in.StateName, in.Retries)
		}
		return nil
	})
	c.StopMaster()
	h.clear()
	c.StartMaster()
}

// TestSnapshotMasterRestartAtEveryState: for every state of
// snapshot-table, the master stops after the state's step did its work
// and before it committed; the new master runs the step again and the
// snapshot completes, whole and correct (its working directory gone,
// its MANIFEST and rows right), of an enabled and of a disabled table.
func TestSnapshotMasterRestartAtEveryState(t *testing.T) {
	states := []string{"prepare", "pre-operation", "write-snapshot-info", "snapshot-online-regions",
		"snapshot-offline-regions", "consolidate-snapshot", "verify-snapshot", "complete-snapshot", "post-operation"}
	for _, disabled := range []bool{false, true} {
		for state, name := range states {
			if disabled && name == "snapshot-online-regions" {
				continue // a disabled table's snapshot skips it
			}
			t.Run(fmt.Sprintf("disabled=%v/%s", disabled, name), func(t *testing.T) {
				var h stepHold
				c := tstest.New(t, tstest.Options{Hooks: h.hooks()})
				createTable(t, c, "t14", "b", "c")
				want := rowsFor("abc", 30, "v")
				putRows(t, c, "t14", want)
				if disabled {
					disable(t, c, "t14")
				}
				regs := regionsOf(t, c, "t14")
				h.set("snapshot-table", int64(state))
				id := submitSnapshot(t, c, "t14", "s14")
				restartAt(t, c, &h, id, name)
				mustProc(t, c, id, "snapshot s14")
				per := checkSnapshot(t, c, "s14", "t14", regs)
				if d := diff(union(per), want); d != "" {
					t.Errorf("snapshot rows: %s", d)
				}
			})
		}
	}
}

// TestSplitMasterRestartAtEveryState: as for snapshots, for split-region;
// the table ends with both daughters served and every row.
func TestSplitMasterRestartAtEveryState(t *testing.T) {
	states := []string{"prepare", "close", "write-daughters", "update-catalog", "assign", "cleanup"}
	for state, name := range states {
		t.Run(name, func(t *testing.T) {
			var h stepHold
			c := tstest.New(t, tstest.Options{Hooks: h.hooks()})
			createTable(t, c, "t15", "c")
			want := rowsFor("abcd", 40, "v")
			putRows(t, c, "t15", want)
			parent := regionsOf(t, c, "t15")[0]
			h.set("split-region", int64(state))
			id, err := c.Master().SplitRegion(ctxT(t), master.SplitRegion{Table: "t15", Region: parent.ID, Key: []byte("b")}, procedure.SubmitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			restartAt(t, c, &h, id, name)
			mustProc(t, c, id, "split")
			regs := regionsOf(t, c, "t15")
			if len(regs) != 3 || string(regs[0].End) != "b" || string(regs[1].Start) != "b" {
				t.Fatalf("after the split: %+v", regs)
			}
			waitServing(t, c, "t15")
			checkScan(t, c, "t15", want)
		})
	}
}

// TestCloneMasterRestartAtEveryState: as for snapshots, for a clone
// (create-table from a snapshot); the clone reads back equal to the
// snapshot.
func TestCloneMasterRestartAtEveryState(t *testing.T) {
	states := []string{"prepare", "clone-files", "assign", "enable"}
	for state, name := range states {
		t.Run(name, func(t *testing.T) {
			var h stepHold
			c := tstest.New(t, tstest.Options{Hooks: h.hooks()})
			createTable(t, c, "t16", "b", "c")
			want := rowsFor("abc", 30, "v")
			putRows(t, c, "t16", want)
			mustProc(t, c, submitSnapshot(t, c, "t16", "s16"), "snapshot s16")
			h.set("create-table", int64(state))
			id, err := c.Master().CreateTable(ctxT(t), master.CreateTable{Name: "t16clone", FromSnapshot: "s16"}, procedure.SubmitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			restartAt(t, c, &h, id, name)
			mustProc(t, c, id, "clone")
			waitServing(t, c, "t16clone")
			checkScan(t, c, "t16clone", want)
		})
	}
}

// TestLifecycleMasterRestartAtEveryState: as for snapshots, for every
// state of disable-table, enable-table and delete-table.
func TestLifecycleMasterRestartAtEveryState(t *testing.T) {
	for _, tc := range []struct {
		typ    string
		states []string
	}{
		{"disable-table", []string{"prepare", "unassign", "done"}},
		{"enable-table", []string{"prepare", "assign", "done"}},
		{"delete-table", []string{"prepare", "files", "records"}},
	} {
		for state, name := range tc.states {
			t.Run(tc.typ+"/"+name, func(t *testing.T) {
				var h stepHold
				c := tstest.New(t, tstest.Options{Hooks: h.hooks()})
				createTable(t, c, "t17", "b")
				want := rowsFor("abc", 20, "v")
				putRows(t, c, "t17", want)
				if tc.typ != "disable-table" {
					disable(t, c, "t17")
				}
				h.set(tc.typ, int64(state))
				var id procedure.ID
				var err error
				switch tc.typ {
				case "disable-table":
					id, err = c.Master().DisableTable(ctxT(t), master.DisableTable{Name: "t17"}, procedure.SubmitOptions{})
				case "enable-table":
					id, err = c.Master().EnableTable(ctxT(t), master.EnableTable{Name: "t17"}, procedure.SubmitOptions{})
				case "delete-table":
					id, err = c.Master().DeleteTable(ctxT(t), master.DeleteTable{Name: "t17"}, procedure.SubmitOptions{})
				}
				if err != nil {
					t.Fatal(err)
				}
				restartAt(t, c, &h, id, name)
				mustProc(t, c, id, tc.typ)
				switch tc.typ {
				case "disable-table":
					if s := servingMap(c); len(s) != 0 {
						t.Errorf("disabled, but served: %v", s)
					}
				case "enable-table":
					waitServing(t, c, "t17")
					checkScan(t, c, "t17", want)
				case "delete-table":
					if _, _, err := c.Master().Table("t17"); !errors.Is(err, master.ErrNoTable) {
						t.Errorf("deleted table: %v", err)
					}
				}
			})
		}
	}
}

// TestServerCrashMasterRestartAtEveryState: as for snapshots, for every
// state of server-crash: the dead server's regions end served elsewhere,
// with every row.
func TestServerCrashMasterRestartAtEveryState(t *testing.T) {
	for state, name := range []string{"find", "assign", "done"} {
		t.Run(name, func(t *testing.T) {
			var h stepHold
			c := tstest.New(t, tstest.Options{Hooks: h.hooks()})
			createTable(t, c, "t18", "b", "c", "d")
			want := rowsFor("abcd", 40, "v")
			putRows(t, c, "t18", want)
			h.set("server-crash", int64(state))
			c.Kill(busiestServer(t, c, "t18"))
			var id procedure.ID
			c.Eventually(procTimeout, "server crash started", func() error {
				ins := slices.Collect(c.Master().Engine().List(procedure.Query{}))
				for _, in := range ins {
					if in.Type == "server-crash" {
						id = in.ID
						return nil
					}
				}
				return errors.New("not yet")
			})
			restartAt(t, c, &h, id, name)
			mustProc(t, c, id, "server crash")
			waitServing(t, c, "t18")
			checkScan(t, c, "t18", want)
		})
	}
}
