package master

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/procedure"
)

// SplitRegion is the data of split-region: an open region of an enabled
// table is closed, its rows are written into two daughter regions at Key
// (by the master, from the shared root), the catalog swaps the parent for
// the daughters, the daughters are assigned, and the parent's files are
// removed. It holds the table's lock exclusively, so it waits for a
// snapshot of the table to finish (and a snapshot waits for it): a
// snapshot never sees a region half split (the reviewer's question on
// seed 003). Past prepare it only goes forward.
type SplitRegion struct {
	Table     string                  `json:"table"`
	Region    string                  `json:"region"`
	Key       []byte                  `json:"key"`
	Parent    tablestore.RegionDesc   `json:"parent,omitempty"`
	Daughters []tablestore.RegionDesc `json:"daughters,omitempty"`
}

type splitState int

const (
	splitPrepare splitState = iota
	splitClose
	splitWrite
	splitUpdate
	splitAssign
	splitCleanup
)

func (s splitState) String() string {
	return [...]string{"prepare", "close", "write-daughters", "update-catalog", "assign", "cleanup"}[s]
}

type splitSM struct{ m *Master }

var (
	_ procedure.Locker[splitState, SplitRegion] = splitSM{}
	_ procedure.NoReturner[splitState]          = splitSM{}
)

func (splitSM) Locks(_ splitState, d *SplitRegion) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(tableLock(d.Table))}
}

func (splitSM) NoReturn(s splitState) bool { return s > splitPrepare }

func (sm splitSM) Execute(ctx context.Context, env *procedure.Env, s splitState, d *SplitRegion) (procedure.Next, error) {
	m := sm.m
	switch s {
	case splitPrepare:
		return sm.prepare(env, d)
	case splitClose:
		return procedure.Spawn(splitWrite, m.unassign.Child(UnassignRegion{Table: d.Table, Region: d.Region})), nil
	case splitWrite:
		if err := m.writeDaughters(d); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		return procedure.GoTo(splitUpdate), nil
	case splitUpdate:
		env.Write(func(tx *durable.Tx) error { return m.swapRegions(tx, d) })
		return procedure.GoTo(splitAssign), nil
	case splitAssign:
		ids := []string{d.Daughters[0].ID, d.Daughters[1].ID}
		return procedure.Spawn(splitCleanup, m.assignChildren(d.Table, ids)...), nil
	case splitCleanup:
		if err := m.removeRegionDirs([]string{d.Region}); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("split-region: unknown state %d", s)
}

// prepare checks the region and the key and names the daughters.
func (sm splitSM) prepare(env *procedure.Env, d *SplitRegion) (procedure.Next, error) {
	m := sm.m
	t, err := m.tableIn(d.Table, TableEnabled)
	if err != nil {
		return procedure.Next{}, err
	}
	r, ok, err := m.cat.regions.Get(m.store.Latest(), d.Region)
	if err != nil {
		return procedure.Next{}, err
	}
	if !ok || r.Table != d.Table {
		return procedure.Next{}, fmt.Errorf("table %s has no region %s", d.Table, d.Region)
	}
	if len(d.Key) == 0 || bytes.Compare(d.Key, r.Start) <= 0 || !r.Contains(d.Key) {
		return procedure.Next{}, fmt.Errorf("split key %q is not inside region %s [%q, %q)", d.Key, d.Region, r.Start, r.End)
	}
	d.Parent = r.RegionDesc
	d.Daughters = []tablestore.RegionDesc{
		{ID: tablestore.RegionID(d.Table, t.ID, t.NextRegion), Table: d.Table, Start: r.Start, End: d.Key},
		{ID: tablestore.RegionID(d.Table, t.ID, t.NextRegion+1), Table: d.Table, Start: d.Key, End: r.End},
	}
	env.Write(func(tx *durable.Tx) error {
		t, ok, err := m.cat.tables.Get(tx, d.Table)
		if err != nil || !ok {
			return err
		}
		t.NextRegion += 2
		return m.cat.tables.Put(tx, d.Table, t)
	})
	return procedure.GoTo(splitClose), nil
}

// writeDaughters writes the parent's rows into the daughters' directories
// (made again from nothing each time: the parent is intact until cleanup).
func (m *Master) writeDaughters(d *SplitRegion) error {
	parent, err := region.Open(m.layout.RegionDir(d.Region), region.Options{FS: m.fs, Logger: m.log})
	if err != nil {
		return fmt.Errorf("open parent %s: %w", d.Region, err)
	}
	defer parent.Close()
	for _, dd := range d.Daughters {
		if err := m.writeDaughter(parent, dd); err != nil {
			return err
		}
	}
	return nil
}

func (m *Master) writeDaughter(parent *region.Region, dd tablestore.RegionDesc) error {
	dir := m.layout.RegionDir(dd.ID)
	if err := region.RemoveAll(m.fs, dir); err != nil {
		return err
	}
	dr, err := region.Open(dir, region.Options{FS: m.fs, Logger: m.log})
	if err != nil {
		return fmt.Errorf("create daughter %s: %w", dd.ID, err)
	}
	var batch []region.Row
	for row, err := range parent.Scan(dd.Start, dd.End) {
		if err != nil {
			dr.Close()
			return err
		}
		batch = append(batch, row)
		if len(batch) == 512 {
			if err := dr.Put(context.Background(), batch...); err != nil {
				dr.Close()
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := dr.Put(context.Background(), batch...); err != nil {
			dr.Close()
			return err
		}
	}
	if err := dr.Flush(); err != nil {
		dr.Close()
		return err
	}
	return dr.Close()
}

// swapRegions replaces the parent by the daughters in the catalog.
func (m *Master) swapRegions(tx *durable.Tx, d *SplitRegion) error {
	t, ok, err := m.cat.tables.Get(tx, d.Table)
	if err != nil || !ok {
		return err
	}
	i := slices.Index(t.Regions, d.Region)
	if i < 0 {
		return nil // swapped before a crash
	}
	t.Regions = slices.Replace(t.Regions, i, i+1, d.Daughters[0].ID, d.Daughters[1].ID)
	if err := m.cat.tables.Put(tx, d.Table, t); err != nil {
		return err
	}
	for _, dd := range d.Daughters {
		if err := m.cat.regions.Put(tx, dd.ID, Region{RegionDesc: dd, State: RegionOffline}); err != nil {
			return err
		}
	}
	return m.cat.regions.Delete(tx, d.Region)
}

// Rollback has nothing to undo: only prepare can fail before the point
// of no return, and its write (the region counter) is harmless.
func (splitSM) Rollback(context.Context, *procedure.Env, splitState, *SplitRegion) error { return nil }
