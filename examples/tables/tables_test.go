package tables_test

import (
	"context"
	"errors"
	"testing"

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

func TestCreateTableResult(t *testing.T) {
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence()})
	e := procedure.New(s, procedure.Options{})
	c := tables.Register(s, e, tables.Options{Servers: []string{"a", "b"}})
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	id, _ := c.Create.Submit(ctx, tables.CreateTable{Name: "t", Regions: 4}, procedure.SubmitOptions{})
	res, err := c.Create.Wait(ctx, id)
	if err != nil || len(res.Servers) != 4 {
		t.Fatalf("%+v %v", res, err)
	}
	// A second create of the same table fails in prepare and rolls back,
	// leaving the first one alone.
	id2, _ := c.Create.Submit(ctx, tables.CreateTable{Name: "t", Regions: 2}, procedure.SubmitOptions{})
	if _, err := c.Create.Wait(ctx, id2); !errors.Is(err, procedure.ErrRolledBack) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := c.Snapshot().Verify(true); err != nil {
		t.Fatal(err)
	}
	if tb, _, _ := c.Tables.Get("t"); tb.Regions != 4 || tb.State != "enabled" {
		t.Fatalf("%+v", tb)
	}
}
