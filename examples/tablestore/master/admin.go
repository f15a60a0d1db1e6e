package master

import (
	"context"
	"errors"
	"fmt"

	"github.com/procyon-dev/procyon/procedure"
)

// ErrNoTable: the table does not exist.
var ErrNoTable = errors.New("tablestore: no such table")

// ErrNoSnapshot: the snapshot does not exist.
var ErrNoSnapshot = errors.New("tablestore: no such snapshot")

// register registers the master's procedure types.
func (m *Master) register() {
	e := m.engine
	hold := &procedure.TypeOptions[CreateTable]{HoldLocks: true}
	m.create = procedure.Register(e, "create-table", createSM{m}, hold)
	m.assign = procedure.Register(e, "assign-region", assignSM{m}, &procedure.TypeOptions[AssignRegion]{HoldLocks: true})
	m.unassign = procedure.Register(e, "unassign-region", unassignSM{m}, &procedure.TypeOptions[UnassignRegion]{HoldLocks: true})
	m.disable = procedure.Register(e, "disable-table", disableSM{m}, &procedure.TypeOptions[DisableTable]{HoldLocks: true})
	m.enable = procedure.Register(e, "enable-table", enableSM{m}, &procedure.TypeOptions[EnableTable]{HoldLocks: true})
	m.drop = procedure.Register(e, "delete-table", deleteSM{m}, &procedure.TypeOptions[DeleteTable]{HoldLocks: true})
	m.crash = procedure.Register(e, "server-crash", crashSM{m}, &procedure.TypeOptions[ServerCrash]{HoldLocks: true})
	m.split = procedure.Register(e, "split-region", splitSM{m}, &procedure.TypeOptions[SplitRegion]{HoldLocks: true})
	m.snapshot = procedure.Register(e, "snapshot-table", snapSM{m}, &procedure.TypeOptions[SnapshotTable]{HoldLocks: true})
	m.snapRegion = procedure.Register(e, "snapshot-region", snapRegionSM{m}, nil)
	m.verify = procedure.Register(e, "verify-snapshot", verifySM{m}, nil)
}

// CreateTable starts creating a table (or cloning a snapshot into a new
// table: CreateTable.FromSnapshot).
func (m *Master) CreateTable(ctx context.Context, d CreateTable, opts procedure.SubmitOptions) (procedure.ID, error) {
	return m.create.Submit(ctx, d, opts)
}

// DisableTable starts disabling a table.
func (m *Master) DisableTable(ctx context.Context, d DisableTable, opts procedure.SubmitOptions) (procedure.ID, error) {
	return m.disable.Submit(ctx, d, opts)
}

// EnableTable starts enabling a table.
func (m *Master) EnableTable(ctx context.Context, d EnableTable, opts procedure.SubmitOptions) (procedure.ID, error) {
	return m.enable.Submit(ctx, d, opts)
}

// DeleteTable starts deleting a disabled table.
func (m *Master) DeleteTable(ctx context.Context, d DeleteTable, opts procedure.SubmitOptions) (procedure.ID, error) {
	return m.drop.Submit(ctx, d, opts)
}

// SplitRegion starts splitting a region.
func (m *Master) SplitRegion(ctx context.Context, d SplitRegion, opts procedure.SubmitOptions) (procedure.ID, error) {
	return m.split.Submit(ctx, d, opts)
}

// SnapshotTable starts a snapshot of a table.
func (m *Master) SnapshotTable(ctx context.Context, d SnapshotTable, opts procedure.SubmitOptions) (procedure.ID, error) {
	return m.snapshot.Submit(ctx, d, opts)
}

// Wait waits for procedure id to finish and returns why it failed (nil:
// it succeeded).
func (m *Master) Wait(ctx context.Context, id procedure.ID) error {
	res, err := m.engine.Wait(ctx, id)
	if err != nil {
		return err
	}
	return res.Err()
}

// Table returns a table and its regions, in key order.
func (m *Master) Table(name string) (Table, []Region, error) {
	v := m.store.Latest()
	t, ok, err := m.cat.tables.Get(v, name)
	if err != nil {
		return t, nil, err
	}
	if !ok {
		return t, nil, fmt.Errorf("table %s: %w", name, ErrNoTable)
	}
	rs := make([]Region, 0, len(t.Regions))
	for _, id := range t.Regions {
		r, ok, err := m.cat.regions.Get(v, id)
		if err != nil {
			return t, nil, err
		}
		if ok {
			rs = append(rs, r)
		}
	}
	return t, rs, nil
}

// Region returns a region's record (ok false: there is no such region).
func (m *Master) Region(id string) (Region, bool, error) {
	return m.cat.regions.Get(m.store.Latest(), id)
}

// Tables returns every table, by name.
func (m *Master) Tables() ([]Table, error) {
	v := m.store.Latest()
	var ts []Table
	for _, t := range m.cat.tables.All(v) {
		ts = append(ts, t)
	}
	return ts, v.Err()
}

// Snapshot returns a snapshot's record.
func (m *Master) Snapshot(name string) (Snapshot, error) {
	s, ok, err := m.cat.snapshots.Get(m.store.Latest(), name)
	if err != nil {
		return s, err
	}
	if !ok {
		return s, fmt.Errorf("snapshot %s: %w", name, ErrNoSnapshot)
	}
	return s, nil
}
