package tables_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tables"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/procedure/proctest"
)

func harness(req tables.CreateTable) proctest.Harness[*tables.Catalog] {
	return proctest.Harness[*tables.Catalog]{
		Setup: func(s *durable.Store, e *procedure.Engine) *tables.Catalog {
			return tables.Register(s, e, tables.Options{})
		},
		Submit: func(ctx context.Context, c *tables.Catalog) (procedure.ID, error) {
			return c.Create.Submit(ctx, req, procedure.SubmitOptions{Submitter: "test"})
		},
		State: func(c *tables.Catalog) any { return c.Snapshot() },
		Check: func(t testing.TB, c *tables.Catalog, r procedure.Result) {
			if err := c.Snapshot().Verify(true); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// create-table survives a crash before and after every step's commit.
func TestCreateTableRecovery(t *testing.T) {
	proctest.RecoveryAndDoubleExecution(t, harness(tables.CreateTable{Name: "users", Regions: 3}))
}

// A create-table that fails (a server refuses a region) rolls back the
// same way with crashes around every step, rollback steps included.
func TestCreateTableRefusedRecovery(t *testing.T) {
	proctest.RecoveryAndDoubleExecution(t, harness(tables.CreateTable{Name: "orders", Regions: 3, RefuseRegion: 2}))
}

// A failure at any step rolls create-table back to an empty catalog,
// also with crashes during the rollback; past the point of no return
// (enable), the step is retried.
func TestCreateTableRollback(t *testing.T) {
	proctest.RollbackAndDoubleExecution(t, harness(tables.CreateTable{Name: "users", Regions: 3}))
}

// startCatalog starts an engine with a catalog on an in-memory store
// (Start opens it); both are closed when the test ends.
func startCatalog(t *testing.T, opts tables.Options) (*procedure.Engine, *tables.Catalog) {
	t.Helper()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence()})
	e := procedure.New(s, procedure.Options{})
	c := tables.Register(s, e, opts)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	})
	return e, c
}

func TestCreateTableResult(t *testing.T) {
	_, c := startCatalog(t, tables.Options{Servers: []string{"a", "b"}})
	ctx := context.Background()
	id, _ := c.Create.Submit(ctx, tables.CreateTable{Name: "t", Regions: 4}, procedure.SubmitOptions{})
	res, err := c.Create.Result(c.Engine.Wait(ctx, id))
	if err != nil || len(res.Servers) != 4 {
		t.Fatalf("%+v %v", res, err)
	}
	// A second create of the same table fails in prepare and rolls back,
	// leaving the first one alone.
	id2, _ := c.Create.Submit(ctx, tables.CreateTable{Name: "t", Regions: 2}, procedure.SubmitOptions{})
	if _, err := c.Create.Result(c.Engine.Wait(ctx, id2)); !errors.Is(err, procedure.ErrRolledBack) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := c.Snapshot().Verify(true); err != nil {
		t.Fatal(err)
	}
	if tb, _, _ := c.Tables.Get(c.Engine.Store().Latest(), "t"); tb.Regions != 4 || tb.State != "enabled" {
		t.Fatalf("%+v", tb)
	}
}

// snapshot-table (a shared lock on its table held throughout, a wait for
// the servers' flush event) survives a crash before and after every
// step's commit, its table's create-table's included; the kit signals
// the event.
func TestSnapshotTableRecovery(t *testing.T) {
	proctest.RecoveryAndDoubleExecution(t, proctest.Harness[*tables.Catalog]{
		Setup: func(s *durable.Store, e *procedure.Engine) *tables.Catalog {
			return tables.Register(s, e, tables.Options{})
		},
		Submit: func(ctx context.Context, c *tables.Catalog) (procedure.ID, error) {
			id, err := c.Create.Submit(ctx, tables.CreateTable{Name: "users", Regions: 2}, procedure.SubmitOptions{Nonce: "create"})
			if err == nil {
				_, err = c.Create.Result(c.Engine.Wait(ctx, id))
			}
			if err != nil {
				return 0, err
			}
			return c.Snap.Submit(ctx, tables.SnapshotTable{Table: "users", Name: "s1"}, procedure.SubmitOptions{Nonce: "snap"})
		},
		State: func(c *tables.Catalog) any {
			m, _, _ := c.Snapshots.Get(c.Engine.Store().Latest(), "s1")
			return struct {
				Catalog  tables.Snapshot
				Manifest tables.Manifest
			}{c.Snapshot(), m}
		},
		Check: func(t testing.TB, c *tables.Catalog, r procedure.Result) {
			if m, ok, _ := c.Snapshots.Get(c.Engine.Store().Latest(), "s1"); !ok || m.Regions != 2 || len(m.Servers) != 2 {
				t.Fatalf("manifest %+v %v", m, ok)
			}
		},
		Events: []string{tables.FlushedEvent("users")},
	})
}

// A snapshot waits for its table's create-table (exclusive against
// shared) and for the flush event; a compaction sleeps until its due time.
func TestSnapshotAndCompaction(t *testing.T) {
	e, c := startCatalog(t, tables.Options{StepDelay: 5 * time.Millisecond})
	ctx := context.Background()
	create, _ := c.Create.Submit(ctx, tables.CreateTable{Name: "t", Regions: 3}, procedure.SubmitOptions{})
	// create-table holds the table's lock from its first step on.
	if _, err := e.WaitFor(ctx, create, func(in procedure.Info) bool { return in.Steps > 0 }); err != nil {
		t.Fatal(err)
	}
	snap, _ := c.Snap.Submit(ctx, tables.SnapshotTable{Table: "t", Name: "t-1"}, procedure.SubmitOptions{})
	due := time.Now().Add(50 * time.Millisecond)
	comp, _ := c.Compact.Submit(ctx, tables.CompactTable{Table: "t", Due: due}, procedure.SubmitOptions{})
	in, err := e.WaitFor(ctx, snap, func(in procedure.Info) bool { return in.WaitingForLocks || in.Status == procedure.Suspended })
	if err != nil {
		t.Fatal(err)
	}
	waited := in.WaitingForLocks
	in, err = e.WaitFor(ctx, snap, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
	if err != nil {
		t.Fatal(err)
	}
	if in.Event != tables.FlushedEvent("t") {
		t.Fatalf("suspended on %q", in.Event)
	}
	if r, err := c.Create.Result(c.Engine.Wait(ctx, create)); err != nil || len(r.Servers) != 3 {
		t.Fatalf("create: %+v %v", r, err)
	}
	if !waited {
		t.Fatal("the snapshot never waited for the create-table's exclusive lock")
	}
	if err := e.Signal(ctx, tables.FlushedEvent("t")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snap.Result(c.Engine.Wait(ctx, snap)); err != nil {
		t.Fatal(err)
	}
	if m, ok, _ := c.Snapshots.Get(c.Engine.Store().Latest(), "t-1"); !ok || m.Regions != 3 {
		t.Fatalf("manifest %+v", m)
	}
	r, err := c.Compact.Result(c.Engine.Wait(ctx, comp))
	if err != nil || r.Ran.Before(due) {
		t.Fatalf("compaction ran at %v, due %v: %v", r.Ran, due, err)
	}
	// Wait returns once a result is durable; the locks go a moment later.
	for deadline := time.Now().Add(10 * time.Second); len(e.Locks()) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("locks left: %+v", e.Locks())
		}
	}
}
