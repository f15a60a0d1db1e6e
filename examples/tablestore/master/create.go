package master

import (
	"bytes"
	"context"
	"fmt"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/procedure"
)

// CreateTable is the data of create-table: it records the table and its
// regions, copies a snapshot's files for a clone, assigns the regions to
// live servers (one assign-region child each) and enables the table.
// Once it assigns, it is past its point of no return: an assignment is
// never rolled back, it retries until the region is open.
type CreateTable struct {
	Name   string   `json:"name"`
	Splits [][]byte `json:"splits,omitempty"` // split keys, increasing: len+1 regions
	// FromSnapshot: clone this completed snapshot (its regions, rows and
	// split keys; Splits is ignored).
	FromSnapshot string `json:"from_snapshot,omitempty"`

	Regions    []string `json:"regions,omitempty"`     // set by prepare
	SrcRegions []string `json:"src_regions,omitempty"` // clone: the snapshot's region of each
}

type createState int

const (
	createPrepare createState = iota
	createCloneFiles
	createAssign
	createEnable
)

func (s createState) String() string {
	return [...]string{"prepare", "clone-files", "assign", "enable"}[s]
}

type createSM struct{ m *Master }

var (
	_ procedure.Locker[createState, CreateTable] = createSM{}
	_ procedure.NoReturner[createState]          = createSM{}
)

func (sm createSM) Locks(_ createState, d *CreateTable) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(tableLock(d.Name))}
}

func (createSM) NoReturn(s createState) bool { return s >= createAssign }

func (sm createSM) Execute(ctx context.Context, env *procedure.Env, s createState, d *CreateTable) (procedure.Next, error) {
	m := sm.m
	switch s {
	case createPrepare:
		return sm.prepare(env, d)
	case createCloneFiles:
		snapDir := m.layout.SnapshotDir(d.FromSnapshot)
		for i, id := range d.Regions {
			src := tablestore.RegionSnapshotDir(snapDir, d.SrcRegions[i])
			if err := region.Clone(m.fs, src, m.layout.RegionDir(id)); err != nil {
				return procedure.Next{}, fmt.Errorf("clone region %s from %s: %w", id, src, err)
			}
		}
		return procedure.GoTo(createAssign), nil
	case createAssign:
		return procedure.Spawn(createEnable, m.assignChildren(d.Name, d.Regions)...), nil
	case createEnable:
		env.Write(func(tx *durable.Tx) error {
			return m.setTableState(tx, d.Name, TableEnabled)
		})
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("create-table: unknown state %d", s)
}

// prepare records the table (creating) and its regions (offline).
func (sm createSM) prepare(env *procedure.Env, d *CreateTable) (procedure.Next, error) {
	m := sm.m
	if err := tablestore.CheckName("table", d.Name); err != nil {
		return procedure.Next{}, err
	}
	descs, src, err := sm.layoutOf(d, uint64(env.ID()))
	if err != nil {
		return procedure.Next{}, err
	}
	d.Regions, d.SrcRegions = nil, src
	for _, r := range descs {
		d.Regions = append(d.Regions, r.ID)
	}
	id := uint64(env.ID())
	env.Write(func(tx *durable.Tx) error {
		if t, ok, err := m.cat.tables.Get(tx, d.Name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("table %s exists (%s)", d.Name, t.State)
		}
		t := Table{Name: d.Name, ID: id, State: TableCreating, Regions: d.Regions, NextRegion: len(descs), FromSnapshot: d.FromSnapshot}
		if err := m.cat.tables.Put(tx, d.Name, t); err != nil {
			return err
		}
		for _, r := range descs {
			if err := m.cat.regions.Put(tx, r.ID, Region{RegionDesc: r, State: RegionOffline}); err != nil {
				return err
			}
		}
		return nil
	})
	if d.FromSnapshot != "" {
		return procedure.GoTo(createCloneFiles), nil
	}
	return procedure.GoTo(createAssign), nil
}

// layoutOf returns the regions of the new table: from its split keys, or
// from the snapshot it clones (with each one's region in the snapshot).
func (sm createSM) layoutOf(d *CreateTable, tid uint64) ([]tablestore.RegionDesc, []string, error) {
	if d.FromSnapshot == "" {
		descs, err := splitRegions(d.Name, tid, d.Splits)
		return descs, nil, err
	}
	m := sm.m
	snap, ok, err := m.cat.snapshots.Get(m.store.Latest(), d.FromSnapshot)
	if err != nil {
		return nil, nil, err
	}
	if !ok || snap.State != SnapshotComplete {
		return nil, nil, fmt.Errorf("no completed snapshot %q", d.FromSnapshot)
	}
	man, err := readTableManifest(m.fs, m.layout.SnapshotDir(d.FromSnapshot))
	if err != nil {
		return nil, nil, err
	}
	var descs []tablestore.RegionDesc
	var src []string
	for i, r := range man.Regions {
		descs = append(descs, tablestore.RegionDesc{ID: tablestore.RegionID(d.Name, tid, i), Table: d.Name, Start: r.Start, End: r.End})
		src = append(src, r.ID)
	}
	return descs, src, nil
}

// splitRegions returns the regions that split keys make.
func splitRegions(table string, tid uint64, splits [][]byte) ([]tablestore.RegionDesc, error) {
	for i, k := range splits {
		if len(k) == 0 {
			return nil, fmt.Errorf("split key %d is empty", i)
		}
		if i > 0 && bytes.Compare(splits[i-1], k) >= 0 {
			return nil, fmt.Errorf("split keys not increasing at %d (%q after %q)", i, k, splits[i-1])
		}
	}
	if len(splits) >= 100000 {
		return nil, fmt.Errorf("%d split keys: at most 99999", len(splits))
	}
	descs := make([]tablestore.RegionDesc, len(splits)+1)
	for i := range descs {
		descs[i] = tablestore.RegionDesc{ID: tablestore.RegionID(table, tid, i), Table: table}
		if i > 0 {
			descs[i].Start = splits[i-1]
		}
		if i < len(splits) {
			descs[i].End = splits[i]
		}
	}
	return descs, nil
}

// Rollback undoes prepare and clone-files (the states before the point
// of no return): the records this procedure made and the files it copied.
func (sm createSM) Rollback(ctx context.Context, env *procedure.Env, s createState, d *CreateTable) error {
	m := sm.m
	switch s {
	case createCloneFiles:
		return m.removeRegionDirs(d.Regions)
	case createPrepare:
		id := uint64(env.ID())
		env.Write(func(tx *durable.Tx) error {
			t, ok, err := m.cat.tables.Get(tx, d.Name)
			if err != nil || !ok || t.ID != id {
				return err // not ours (another table of that name failed this one)
			}
			for _, r := range t.Regions {
				if err := m.cat.regions.Delete(tx, r); err != nil {
					return err
				}
			}
			return m.cat.tables.Delete(tx, d.Name)
		})
	}
	return nil
}

// assignChildren returns one assign-region child per region.
func (m *Master) assignChildren(table string, regions []string) []procedure.Child {
	cs := make([]procedure.Child, len(regions))
	for i, r := range regions {
		cs[i] = m.assign.Child(AssignRegion{Table: table, Region: r})
	}
	return cs
}

// setTableState sets table's state in tx.
func (m *Master) setTableState(tx *durable.Tx, table string, st TableState) error {
	t, ok, err := m.cat.tables.Get(tx, table)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("table %s: no such table", table)
	}
	t.State = st
	return m.cat.tables.Put(tx, table, t)
}

// removeRegionDirs removes the directories of regions (idempotent).
func (m *Master) removeRegionDirs(regions []string) error {
	for _, r := range regions {
		if err := region.RemoveAll(m.fs, m.layout.RegionDir(r)); err != nil {
			return fmt.Errorf("remove region %s: %w", r, err)
		}
	}
	return nil
}
