package master

import (
	"context"
	"fmt"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// DisableTable is the data of disable-table: the table goes from enabled
// to disabling, its regions are closed (one unassign-region child each),
// and it is disabled. Past its first state it only goes forward.
type DisableTable struct {
	Name    string   `json:"name"`
	Regions []string `json:"regions,omitempty"`
}

type disableState int

const (
	disablePrepare disableState = iota
	disableUnassign
	disableDone
)

func (s disableState) String() string { return [...]string{"prepare", "unassign", "done"}[s] }

type disableSM struct{ m *Master }

var (
	_ procedure.Locker[disableState, DisableTable] = disableSM{}
	_ procedure.NoReturner[disableState]           = disableSM{}
)

func (disableSM) Locks(_ disableState, d *DisableTable) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(tableLock(d.Name))}
}

func (disableSM) NoReturn(s disableState) bool { return s > disablePrepare }

func (sm disableSM) Execute(ctx context.Context, env *procedure.Env, s disableState, d *DisableTable) (procedure.Next, error) {
	m := sm.m
	switch s {
	case disablePrepare:
		t, err := m.tableIn(d.Name, TableEnabled)
		if err != nil {
			return procedure.Next{}, err
		}
		d.Regions = t.Regions
		env.Write(func(tx *durable.Tx) error { return m.setTableState(tx, d.Name, TableDisabling) })
		return procedure.GoTo(disableUnassign), nil
	case disableUnassign:
		cs := make([]procedure.Child, len(d.Regions))
		for i, r := range d.Regions {
			cs[i] = m.unassign.Child(UnassignRegion{Table: d.Name, Region: r})
		}
		return procedure.Spawn(disableDone, cs...), nil
	case disableDone:
		env.Write(func(tx *durable.Tx) error { return m.setTableState(tx, d.Name, TableDisabled) })
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("disable-table: unknown state %d", s)
}

// Rollback has nothing to undo: only prepare can fail, and it writes
// nothing when it does.
func (disableSM) Rollback(context.Context, *procedure.Env, disableState, *DisableTable) error {
	return nil
}

// EnableTable is the data of enable-table: disabled to enabling, its
// regions assigned, enabled.
type EnableTable struct {
	Name    string   `json:"name"`
	Regions []string `json:"regions,omitempty"`
}

type enableState int

const (
	enablePrepare enableState = iota
	enableAssign
	enableDone
)

func (s enableState) String() string { return [...]string{"prepare", "assign", "done"}[s] }

type enableSM struct{ m *Master }

var (
	_ procedure.Locker[enableState, EnableTable] = enableSM{}
	_ procedure.NoReturner[enableState]          = enableSM{}
)

func (enableSM) Locks(_ enableState, d *EnableTable) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(tableLock(d.Name))}
}

func (enableSM) NoReturn(s enableState) bool { return s > enablePrepare }

func (sm enableSM) Execute(ctx context.Context, env *procedure.Env, s enableState, d *EnableTable) (procedure.Next, error) {
	m := sm.m
	switch s {
	case enablePrepare:
		t, err := m.tableIn(d.Name, TableDisabled)
		if err != nil {
			return procedure.Next{}, err
		}
		d.Regions = t.Regions
		env.Write(func(tx *durable.Tx) error { return m.setTableState(tx, d.Name, TableEnabling) })
		return procedure.GoTo(enableAssign), nil
	case enableAssign:
		return procedure.Spawn(enableDone, m.assignChildren(d.Name, d.Regions)...), nil
	case enableDone:
		env.Write(func(tx *durable.Tx) error { return m.setTableState(tx, d.Name, TableEnabled) })
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("enable-table: unknown state %d", s)
}

// Rollback has nothing to undo (as disable-table's).
func (enableSM) Rollback(context.Context, *procedure.Env, enableState, *EnableTable) error {
	return nil
}

// DeleteTable is the data of delete-table: a disabled table's region
// files are removed, then its records. Past its first state it only goes
// forward.
type DeleteTable struct {
	Name    string   `json:"name"`
	Regions []string `json:"regions,omitempty"`
}

type deleteState int

const (
	deletePrepare deleteState = iota
	deleteFiles
	deleteRecords
)

func (s deleteState) String() string { return [...]string{"prepare", "files", "records"}[s] }

type deleteSM struct{ m *Master }

var (
	_ procedure.Locker[deleteState, DeleteTable] = deleteSM{}
	_ procedure.NoReturner[deleteState]          = deleteSM{}
)

func (deleteSM) Locks(_ deleteState, d *DeleteTable) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(tableLock(d.Name))}
}

func (deleteSM) NoReturn(s deleteState) bool { return s > deletePrepare }

func (sm deleteSM) Execute(ctx context.Context, env *procedure.Env, s deleteState, d *DeleteTable) (procedure.Next, error) {
	m := sm.m
	switch s {
	case deletePrepare:
		t, err := m.tableIn(d.Name, TableDisabled)
		if err != nil {
			return procedure.Next{}, err
		}
		d.Regions = t.Regions
		env.Write(func(tx *durable.Tx) error { return m.setTableState(tx, d.Name, TableDeleting) })
		return procedure.GoTo(deleteFiles), nil
	case deleteFiles:
		if err := m.removeRegionDirs(d.Regions); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		return procedure.GoTo(deleteRecords), nil
	case deleteRecords:
		env.Write(func(tx *durable.Tx) error {
			for _, r := range d.Regions {
				if err := m.cat.regions.Delete(tx, r); err != nil {
					return err
				}
			}
			return m.cat.tables.Delete(tx, d.Name)
		})
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("delete-table: unknown state %d", s)
}

// Rollback has nothing to undo (as disable-table's).
func (deleteSM) Rollback(context.Context, *procedure.Env, deleteState, *DeleteTable) error {
	return nil
}

// tableIn returns table name, which must be in state want.
func (m *Master) tableIn(name string, want TableState) (Table, error) {
	t, ok, err := m.cat.tables.Get(m.store.Latest(), name)
	if err != nil {
		return t, err
	}
	if !ok {
		return t, fmt.Errorf("table %s: %w", name, ErrNoTable)
	}
	if t.State != want {
		return t, fmt.Errorf("table %s is %s, not %s", name, t.State, want)
	}
	return t, nil
}
