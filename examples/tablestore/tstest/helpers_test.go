package tstest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// procTimeout bounds the wait for one procedure (generous: -race on a
// loaded machine).
const procTimeout = 60 * time.Second

// snapStateVerify is the state of snapshot-table that spawns the verify
// children (master/snapshot.go); the tests that hook it check, by
// Info.StateName, that the snapshot then waits at complete-snapshot.
const snapStateVerify = 6

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitProc waits for procedure id on the cluster's current master.
func waitProc(t *testing.T, c *tstest.Cluster, id procedure.ID) error {
	t.Helper()
	return c.Master().Wait(ctxT(t), id)
}

// mustProc waits for procedure id and fails the test if it failed.
func mustProc(t *testing.T, c *tstest.Cluster, id procedure.ID, what string) {
	t.Helper()
	if err := waitProc(t, c, id); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func splits(keys ...string) [][]byte {
	var s [][]byte
	for _, k := range keys {
		s = append(s, []byte(k))
	}
	return s
}

// createTable creates a table with split keys and waits for it.
func createTable(t *testing.T, c *tstest.Cluster, name string, keys ...string) {
	t.Helper()
	id, err := c.Master().CreateTable(ctxT(t), master.CreateTable{Name: name, Splits: splits(keys...)}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustProc(t, c, id, "create table "+name)
}

func submitSnapshot(t *testing.T, c *tstest.Cluster, table, name string) procedure.ID {
	t.Helper()
	id, err := c.Master().SnapshotTable(ctxT(t), master.SnapshotTable{Table: table, Name: name}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func disable(t *testing.T, c *tstest.Cluster, table string) {
	t.Helper()
	id, err := c.Master().DisableTable(ctxT(t), master.DisableTable{Name: table}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustProc(t, c, id, "disable "+table)
}

func enable(t *testing.T, c *tstest.Cluster, table string) {
	t.Helper()
	id, err := c.Master().EnableTable(ctxT(t), master.EnableTable{Name: table}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustProc(t, c, id, "enable "+table)
}

// clone clones snapshot snap into a new table and waits for it.
func clone(t *testing.T, c *tstest.Cluster, snap, table string) {
	t.Helper()
	id, err := c.Master().CreateTable(ctxT(t), master.CreateTable{Name: table, FromSnapshot: snap}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustProc(t, c, id, "clone "+snap+" into "+table)
}

// checkServing says why table is not served as it should be: every
// region recorded open on a live server, which serves it, and no other
// running server serves it.
func checkServing(c *tstest.Cluster, table string) error {
	_, regs, err := c.Master().Table(table)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, s := range c.LiveServers() {
		live[s] = true
	}
	serving := servingMap(c)
	for _, r := range regs {
		if r.State != master.RegionOpen || !live[r.Server] {
			return fmt.Errorf("region %s is %s on %q (live: %v)", r.ID, r.State, r.Server, c.LiveServers())
		}
		if got := serving[r.ID]; len(got) != 1 || got[0] != r.Server {
			return fmt.Errorf("region %s is recorded on %s, served by %v", r.ID, r.Server, got)
		}
	}
	return checkNoDoubles(c)
}

// checkNoDoubles fails if a region is served by two running servers.
func checkNoDoubles(c *tstest.Cluster) error {
	for id, ss := range servingMap(c) {
		if len(ss) > 1 {
			return fmt.Errorf("region %s is served by %v", id, ss)
		}
	}
	return nil
}

// servingMap returns the running servers that serve each region.
func servingMap(c *tstest.Cluster) map[string][]string {
	serving := map[string][]string{}
	for _, s := range c.Servers() {
		for _, id := range s.RS.Regions() {
			serving[id] = append(serving[id], s.Name)
		}
	}
	return serving
}

// waitServing waits until table is served as it should be.
func waitServing(t *testing.T, c *tstest.Cluster, table string) {
	t.Helper()
	c.Eventually(procTimeout, "table "+table+" served", func() error { return checkServing(c, table) })
}

// rowMap is rows by key.
type rowMap map[string]string

func (m rowMap) rows() []tablestore.Row {
	var rs []tablestore.Row
	for k, v := range m {
		rs = append(rs, tablestore.Row{Key: []byte(k), Value: []byte(v)})
	}
	slices.SortFunc(rs, func(a, b tablestore.Row) int { return bytes.Compare(a.Key, b.Key) })
	return rs
}

func toMap(rs []tablestore.Row) rowMap {
	m := rowMap{}
	for _, r := range rs {
		m[string(r.Key)] = string(r.Value)
	}
	return m
}

// diff describes how got differs from want ("" if equal).
func diff(got, want rowMap) string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("missing %q", k))
		} else if g != v {
			d = append(d, fmt.Sprintf("%q = %q, want %q", k, g, v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("extra %q = %q", k, v))
		}
	}
	slices.Sort(d)
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("... %d differences", len(d)))
	}
	return strings.Join(d, "; ")
}

// putRows writes rows through the client, one put per n rows.
func putRows(t *testing.T, c *tstest.Cluster, table string, rows rowMap) {
	t.Helper()
	rs := rows.rows()
	for len(rs) > 0 {
		n := min(len(rs), 7)
		if err := c.Client.Put(ctxT(t), table, rs[:n]...); err != nil {
			t.Fatalf("put into %s: %v", table, err)
		}
		rs = rs[n:]
	}
}

// checkScan scans table through the client and compares with want.
func checkScan(t *testing.T, c *tstest.Cluster, table string, want rowMap) {
	t.Helper()
	got, err := c.Client.Scan(ctxT(t), table)
	if err != nil {
		t.Fatalf("scan %s: %v", table, err)
	}
	if !slices.IsSortedFunc(got, func(a, b tablestore.Row) int { return bytes.Compare(a.Key, b.Key) }) {
		t.Errorf("scan %s: rows not in key order", table)
	}
	if len(got) != len(toMap(got)) {
		t.Errorf("scan %s: %d rows, %d keys: a key twice", table, len(got), len(toMap(got)))
	}
	if d := diff(toMap(got), want); d != "" {
		t.Fatalf("scan %s: %s", table, d)
	}
}

// rowsFor returns n rows spread over the keys a.., b.., ... (letters
// letters), with values tagged by tag.
func rowsFor(letters string, n int, tag string) rowMap {
	m := rowMap{}
	for i := range n {
		l := letters[i%len(letters)]
		m[fmt.Sprintf("%c%03d", l, i)] = fmt.Sprintf("%s-%d", tag, i)
	}
	return m
}

// tableManifest is a completed snapshot's MANIFEST (master/files.go).
type tableManifest struct {
	Name    string `json:"name"`
	Table   string `json:"table"`
	TableID uint64 `json:"table_id"`
	Regions []struct {
		ID    string `json:"id"`
		Start []byte `json:"start"`
		End   []byte `json:"end"`
		Seq   uint64 `json:"seq"`
		Rows  int64  `json:"rows"`
		Files int    `json:"files"`
	} `json:"regions"`
}

func readManifest(t *testing.T, dir string) tableManifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		t.Fatalf("snapshot manifest: %v", err)
	}
	var m tableManifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("snapshot manifest %s: %v", dir, err)
	}
	return m
}

// snapshotRegionRows reads a region snapshot's rows from disk.
func snapshotRegionRows(t *testing.T, dir string) rowMap {
	t.Helper()
	m := rowMap{}
	for row, err := range region.SnapshotRows(vfs.OS, dir) {
		if err != nil {
			t.Fatalf("rows of region snapshot %s: %v", dir, err)
		}
		m[string(row.Key)] = string(row.Value)
	}
	return m
}

// checkSnapshot checks completed snapshot name of table from disk: its
// MANIFEST lists the regions (ids and ranges) of want, in key order, each
// region's entry agrees with its verified region manifest, and every
// region snapshot holds only keys of its range. It returns the rows of
// each region snapshot, by region id.
func checkSnapshot(t *testing.T, c *tstest.Cluster, name, table string, want []master.Region) map[string]rowMap {
	t.Helper()
	l := tablestore.Layout{Root: c.Root}
	dir := l.SnapshotDir(name)
	if _, err := os.Stat(l.SnapshotTmpDir(name)); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("snapshot %s: working directory still there (%v)", name, err)
	}
	rec, err := c.Master().Snapshot(name)
	if err != nil {
		t.Fatalf("snapshot %s record: %v", name, err)
	}
	if rec.State != master.SnapshotComplete || rec.Table != table || rec.Regions != len(want) {
		t.Errorf("snapshot %s record = %+v, want complete, of %s, %d regions", name, rec, table, len(want))
	}
	man := readManifest(t, dir)
	if man.Name != name || man.Table != table || len(man.Regions) != len(want) {
		t.Fatalf("snapshot %s MANIFEST = %+v, want %d regions of %s", name, man, len(want), table)
	}
	out := map[string]rowMap{}
	var total int64
	for i, mr := range man.Regions {
		w := want[i]
		if mr.ID != w.ID || !bytes.Equal(mr.Start, w.Start) || !bytes.Equal(mr.End, w.End) {
			t.Errorf("snapshot %s MANIFEST region %d = %s [%q, %q), want %s [%q, %q)", name, i, mr.ID, mr.Start, mr.End, w.ID, w.Start, w.End)
		}
		rdir := tablestore.RegionSnapshotDir(dir, mr.ID)
		rm, err := region.VerifyManifest(vfs.OS, rdir)
		if err != nil {
			t.Fatalf("snapshot %s region %s: %v", name, mr.ID, err)
		}
		if rm.Seq != mr.Seq || rm.Rows != mr.Rows || len(rm.Files) != mr.Files {
			t.Errorf("snapshot %s MANIFEST region %s = seq %d rows %d files %d; region manifest: seq %d rows %d files %d",
				name, mr.ID, mr.Seq, mr.Rows, mr.Files, rm.Seq, rm.Rows, len(rm.Files))
		}
		rows := snapshotRegionRows(t, rdir)
		if int64(len(rows)) != mr.Rows {
			t.Errorf("snapshot %s region %s: %d rows, MANIFEST says %d", name, mr.ID, len(rows), mr.Rows)
		}
		for k := range rows {
			if !w.Contains([]byte(k)) {
				t.Errorf("snapshot %s region %s holds key %q outside its range", name, mr.ID, k)
			}
		}
		total += mr.Rows
		out[mr.ID] = rows
	}
	if rec.Rows != total {
		t.Errorf("snapshot %s record: %d rows, the MANIFEST %d", name, rec.Rows, total)
	}
	return out
}

// union merges per-region rows.
func union(per map[string]rowMap) rowMap {
	m := rowMap{}
	for _, rs := range per {
		for k, v := range rs {
			m[k] = v
		}
	}
	return m
}

// regionsOf returns table's regions as the master has them.
func regionsOf(t *testing.T, c *tstest.Cluster, table string) []master.Region {
	t.Helper()
	_, regs, err := c.Master().Table(table)
	if err != nil {
		t.Fatal(err)
	}
	return regs
}

// info returns procedure id's info from the current master.
func info(c *tstest.Cluster, id procedure.ID) (procedure.Info, error) {
	return c.Master().Engine().Get(id)
}

// waitState waits until procedure id (on the current master) is
// suspended, or waits for its children, at the state named want.
func waitState(t *testing.T, c *tstest.Cluster, id procedure.ID, want string) procedure.Info {
	t.Helper()
	var in procedure.Info
	c.Eventually(procTimeout, fmt.Sprintf("procedure %d waiting at %s", id, want), func() error {
		var err error
		in, err = info(c, id)
		if err != nil {
			return err
		}
		if in.StateName != want || in.Running || !in.Completed.IsZero() {
			return fmt.Errorf("procedure %d: %s at %s (running %v)", id, in.Status, in.StateName, in.Running)
		}
		return nil
	})
	return in
}

// waitRegionSnapshots waits until every region of regs has a region
// snapshot (its MANIFEST) in snapshot name's working directory.
func waitRegionSnapshots(t *testing.T, c *tstest.Cluster, name string, regs []master.Region) {
	t.Helper()
	work := workDir(t, c, name)
	c.Eventually(procTimeout, "region snapshots of "+name+" written", func() error {
		for _, r := range regs {
			if _, err := region.ReadManifest(vfs.OS, tablestore.RegionSnapshotDir(work, r.ID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// workDir returns the working directory of snapshot name, which is being
// taken (its record names the procedure).
func workDir(t *testing.T, c *tstest.Cluster, name string) string {
	t.Helper()
	rec, err := c.Master().Snapshot(name)
	if err != nil {
		t.Fatal(err)
	}
	return tablestore.Layout{Root: c.Root}.SnapshotWorkDir(name, rec.Proc)
}
