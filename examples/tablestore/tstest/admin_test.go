package tstest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
)

// TestAdminAPI drives the store through the master's HTTP admin API, as
// the CLI does: a nonce makes a request idempotent, Wait reports success
// and failure, the table answer locates every region.
func TestAdminAPI(t *testing.T) {
	c := tstest.New(t, tstest.Options{})
	ctx := ctxT(t)
	args := master.CreateTable{Name: "t12", Splits: splits("m")}
	id, err := c.Client.Admin(ctx, "create-table", args, "create-t12")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Client.Admin(ctx, "create-table", args, "create-t12")
	if err != nil || again != id {
		t.Fatalf("the same nonce again: procedure %d, %v; want %d", again, err, id)
	}
	st, err := c.Client.Wait(ctx, id)
	if err != nil || !st.Done || st.Type != "create-table" {
		t.Fatalf("wait create: %+v, %v", st, err)
	}
	info, err := c.Client.Table(ctx, "t12")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != string(master.TableEnabled) || len(info.Regions) != 2 {
		t.Fatalf("table t12 = %+v", info)
	}
	for _, r := range info.Regions {
		if r.State != string(master.RegionOpen) || r.Addr == "" {
			t.Errorf("region %s: %s at %q", r.ID, r.State, r.Addr)
		}
	}
	want := rowMap{"a": "1", "z": "2"}
	putRows(t, c, "t12", want)
	checkScan(t, c, "t12", want)

	sid, err := c.Client.Admin(ctx, "snapshot-table", master.SnapshotTable{Table: "nope", Name: "s12"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Wait(ctx, sid); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Errorf("snapshot of a missing table: %v", err)
	}

	var ae *tablestore.APIError
	_, err = c.Client.Admin(ctx, "create-table", map[string]any{"name": "t13", "splitz": []string{"m"}}, "")
	if !errors.As(err, &ae) || ae.Code != "bad_request" {
		t.Errorf("a misspelt field: %v, want bad_request", err)
	}
	_, err = c.Client.Admin(ctx, "drop-everything", map[string]any{}, "")
	if !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Errorf("an unknown operation: %v, want not_found", err)
	}
	if _, err := c.Client.Table(ctx, "t13"); !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Errorf("table t13 after a refused create: %v", err)
	}
}
