// Package tables is a small reference control plane built on procedure:
// a catalog of tables and their regions, and the procedures that change
// it. "create-table" is a state machine that writes the table's
// descriptor, spawns one "create-region" child per region (which picks a
// server and opens the region there), and enables the table, a state past
// the point of no return. If any region cannot be opened, the whole tree
// rolls back: the regions already opened are closed and deleted, and so
// is the table. Every step's metadata commits atomically with the
// procedure's state.
//
// Locks keep procedures of one table apart: create-table holds an
// exclusive lock on its table for its whole life, and each create-region
// takes its region's lock (children inherit their parent's locks);
// snapshot-table holds a shared lock on the table while it waits for the
// region servers' flush reports (an event); compact-table sleeps until
// its due time (a durable timer) and then runs under a shared lock.
//
// It backs "procyon demo" and is the test bed of procedure/proctest.
package tables

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// Table is a table's descriptor.
type Table struct {
	Name    string
	Regions int
	State   string // "creating", then "enabled"
	// Creator is the create-table procedure that made it: a second
	// create of the same name fails, and a rollback deletes only its own.
	Creator procedure.ID
}

// Region is one region of a table.
type Region struct {
	Table  string
	Index  int
	Server string
	State  string // "assigned", then "open"
}

// RegionKey is the key of region i of table in the regions collection.
func RegionKey(table string, i int) string { return fmt.Sprintf("%s/%04d", table, i) }

// Catalog is the control plane's metadata and procedure types.
type Catalog struct {
	Tables      *durable.Collection[string, Table]
	Regions     *durable.Collection[string, Region]
	Snapshots   *durable.Collection[string, Manifest]
	Compactions *durable.Collection[string, Compaction]
	Create      *procedure.Type[CreateState, CreateTable]
	Region      *procedure.Type[RegionState, CreateRegion]
	Snap        *procedure.Type[SnapState, SnapshotTable]
	Compact     *procedure.Type[CompactState, CompactTable]
	// Engine runs the catalog's procedures: wait for them with
	// Engine.Wait (and decode with the type's Result).
	Engine *procedure.Engine
	store  *durable.Store
	opts   Options
}

// Options configure a catalog.
type Options struct {
	// Servers are the region servers regions are spread over. Default
	// rs-1..rs-3.
	Servers []string
	// StepDelay makes every step take this long (the demo slows steps
	// down to crash in the middle). Default 0.
	StepDelay time.Duration
}

// Register registers the catalog's collections and procedure types on s
// and e: call it before s.Open and e.Start.
func Register(s *durable.Store, e *procedure.Engine, opts Options) *Catalog {
	if len(opts.Servers) == 0 {
		opts.Servers = []string{"rs-1", "rs-2", "rs-3"}
	}
	c := &Catalog{
		Engine:      e,
		store:       s,
		Tables:      durable.NewCollection[string, Table](s, "tables", nil),
		Regions:     durable.NewCollection[string, Region](s, "regions", nil),
		Snapshots:   durable.NewCollection[string, Manifest](s, "snapshots", nil),
		Compactions: durable.NewCollection[string, Compaction](s, "compactions", nil),
		opts:        opts,
	}
	c.Region = procedure.Register[RegionState, CreateRegion](e, "create-region", &createRegion{c}, nil)
	c.Create = procedure.Register[CreateState, CreateTable](e, "create-table", &createTable{c},
		&procedure.TypeOptions[CreateTable]{HoldLocks: true})
	c.Snap = procedure.Register[SnapState, SnapshotTable](e, "snapshot-table", &snapshotTable{c},
		&procedure.TypeOptions[SnapshotTable]{HoldLocks: true})
	c.Compact = procedure.Register[CompactState, CompactTable](e, "compact-table", &compactTable{c}, nil)
	return c
}

func (c *Catalog) delay(ctx context.Context) error {
	if c.opts.StepDelay <= 0 {
		return nil
	}
	t := time.NewTimer(c.opts.StepDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CreateState is the state of a create-table procedure.
type CreateState int

const (
	CreatePrepare    CreateState = iota // check the request
	CreateWriteTable                    // write the descriptor, state "creating"
	CreateRegions                       // one child per region
	CreateEnable                        // state "enabled": past the point of no return
)

func (s CreateState) String() string {
	switch s {
	case CreatePrepare:
		return "prepare"
	case CreateWriteTable:
		return "write-table"
	case CreateRegions:
		return "create-regions"
	case CreateEnable:
		return "enable"
	}
	return fmt.Sprintf("CreateState(%d)", int(s))
}

// CreateTable is a create-table procedure's data and result.
type CreateTable struct {
	Name    string
	Regions int
	// RefuseRegion, if positive, makes the server of region
	// RefuseRegion-1 refuse to open it (to show a rollback).
	RefuseRegion int `json:",omitempty"`
	// Servers is the result: the server of each region.
	Servers []string `json:",omitempty"`
}

type createTable struct{ c *Catalog }

// ErrExists: a table of that name exists.
var ErrExists = errors.New("tables: table exists")

func (p *createTable) Execute(ctx context.Context, env *procedure.Env, s CreateState, d *CreateTable) (procedure.Next, error) {
	c := p.c
	if err := c.delay(ctx); err != nil {
		return procedure.Next{}, err
	}
	switch s {
	case CreatePrepare:
		if d.Name == "" || strings.Contains(d.Name, "/") || d.Regions < 1 || d.Regions > 1000 {
			return procedure.Next{}, fmt.Errorf("tables: bad table %q with %d regions", d.Name, d.Regions)
		}
		if _, ok, err := c.Tables.Get(c.store.Latest(), d.Name); err != nil {
			return procedure.Next{}, err
		} else if ok {
			return procedure.Next{}, fmt.Errorf("%w: %s", ErrExists, d.Name)
		}
		return procedure.GoTo(CreateWriteTable), nil
	case CreateWriteTable:
		t := Table{Name: d.Name, Regions: d.Regions, State: "creating", Creator: env.ID()}
		env.Write(func(tx *durable.Tx) error {
			// Checked again in the commit: another create may have won
			// since Prepare.
			if old, ok, err := c.Tables.Get(tx, t.Name); err != nil {
				return err
			} else if ok && old.Creator != t.Creator {
				return fmt.Errorf("%w: %s", ErrExists, t.Name)
			}
			return c.Tables.Put(tx, t.Name, t)
		})
		return procedure.GoTo(CreateRegions), nil
	case CreateRegions:
		children := make([]procedure.Child, d.Regions)
		for i := range children {
			children[i] = c.Region.Child(CreateRegion{Table: d.Name, Index: i, Refuse: d.RefuseRegion == i+1})
		}
		return procedure.Spawn(CreateEnable, children...), nil
	case CreateEnable:
		name := d.Name
		d.Servers = d.Servers[:0]
		v := c.store.Latest()
		for i := range d.Regions {
			r, _, err := c.Regions.Get(v, RegionKey(name, i))
			if err != nil {
				return procedure.Next{}, err
			}
			d.Servers = append(d.Servers, r.Server)
		}
		env.Write(func(tx *durable.Tx) error {
			t, _, err := c.Tables.Get(tx, name)
			if err != nil {
				return err
			}
			t.State = "enabled"
			return c.Tables.Put(tx, name, t)
		})
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("tables: create-table in unknown state %d", s)
}

func (p *createTable) Rollback(ctx context.Context, env *procedure.Env, s CreateState, d *CreateTable) error {
	c := p.c
	switch s {
	case CreateWriteTable:
		name, id := d.Name, env.ID()
		env.Write(func(tx *durable.Tx) error {
			// Only our own table.
			if t, ok, err := c.Tables.Get(tx, name); err != nil || !ok || t.Creator != id {
				return err
			}
			return c.Tables.Delete(tx, name)
		})
	}
	// Prepare wrote nothing; the regions roll themselves back; Enable is
	// past the point of no return.
	return nil
}

// The optional capabilities of the catalog's types, checked at compile time.
var (
	_ procedure.Locker[CreateState, CreateTable]   = (*createTable)(nil)
	_ procedure.NoReturner[CreateState]            = (*createTable)(nil)
	_ procedure.Locker[RegionState, CreateRegion]  = (*createRegion)(nil)
	_ procedure.Locker[SnapState, SnapshotTable]   = (*snapshotTable)(nil)
	_ procedure.Locker[CompactState, CompactTable] = (*compactTable)(nil)
)

// Locks: an exclusive lock on the table, held from the first step to the
// end (HoldLocks); its create-region children take their regions under it.
func (p *createTable) Locks(s CreateState, d *CreateTable) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(TableLock(d.Name))}
}

// NoReturn: once the table is being enabled, clients may use it; the
// creation can no longer be undone.
func (p *createTable) NoReturn(s CreateState) bool { return s == CreateEnable }

// RegionState is the state of a create-region procedure.
type RegionState int

const (
	RegionAssign RegionState = iota // pick a server, region "assigned"
	RegionOpen                      // open it there, region "open"
)

func (s RegionState) String() string {
	switch s {
	case RegionAssign:
		return "assign"
	case RegionOpen:
		return "open"
	}
	return fmt.Sprintf("RegionState(%d)", int(s))
}

// CreateRegion is a create-region procedure's data.
type CreateRegion struct {
	Table  string
	Index  int
	Server string `json:",omitempty"`
	Refuse bool   `json:",omitempty"`
}

type createRegion struct{ c *Catalog }

// Locks: the region's exclusive lock, for each step (its parent's table
// lock covers it: children inherit their parent's locks).
func (p *createRegion) Locks(s RegionState, d *CreateRegion) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(RegionLock(d.Table, d.Index))}
}

func (p *createRegion) Execute(ctx context.Context, env *procedure.Env, s RegionState, d *CreateRegion) (procedure.Next, error) {
	c := p.c
	if err := c.delay(ctx); err != nil {
		return procedure.Next{}, err
	}
	key := RegionKey(d.Table, d.Index)
	switch s {
	case RegionAssign:
		h := fnv.New32a()
		h.Write([]byte(key))
		d.Server = c.opts.Servers[int(h.Sum32()%uint32(len(c.opts.Servers)))]
		r := Region{Table: d.Table, Index: d.Index, Server: d.Server, State: "assigned"}
		env.Write(func(tx *durable.Tx) error { return c.Regions.Put(tx, key, r) })
		return procedure.GoTo(RegionOpen), nil
	case RegionOpen:
		if d.Refuse {
			return procedure.Next{}, &procedure.Error{Source: d.Server, Message: fmt.Sprintf("refused to open region %s", key)}
		}
		r := Region{Table: d.Table, Index: d.Index, Server: d.Server, State: "open"}
		env.Write(func(tx *durable.Tx) error { return c.Regions.Put(tx, key, r) })
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("tables: create-region in unknown state %d", s)
}

func (p *createRegion) Rollback(ctx context.Context, env *procedure.Env, s RegionState, d *CreateRegion) error {
	c := p.c
	key := RegionKey(d.Table, d.Index)
	switch s {
	case RegionOpen: // close it: back to assigned
		env.Write(func(tx *durable.Tx) error {
			r, ok, err := c.Regions.Get(tx, key)
			if err != nil || !ok {
				return err
			}
			r.State = "assigned"
			return c.Regions.Put(tx, key, r)
		})
	case RegionAssign:
		env.Write(func(tx *durable.Tx) error { return c.Regions.Delete(tx, key) })
	}
	return nil
}

// Snapshot is the whole catalog, for comparisons.
type Snapshot struct {
	Tables  map[string]Table
	Regions map[string]Region
}

// Snapshot reads the catalog's latest durable state. It leaves out the
// creators' procedure ids, which differ from run to run.
func (c *Catalog) Snapshot() Snapshot {
	s := Snapshot{Tables: map[string]Table{}, Regions: map[string]Region{}}
	v := c.store.Latest()
	for k, t := range c.Tables.All(v) {
		t.Creator = 0
		s.Tables[k] = t
	}
	for k, r := range c.Regions.All(v) {
		s.Regions[k] = r
	}
	return s
}

// Verify checks the catalog's invariants: every table is enabled with all
// its regions open, or (while a creation runs) creating; no region
// belongs to a missing table. With settled set (no procedure running), a
// table must be enabled.
func (s Snapshot) Verify(settled bool) error {
	for name, t := range s.Tables {
		switch t.State {
		case "enabled":
			for i := range t.Regions {
				r, ok := s.Regions[RegionKey(name, i)]
				if !ok || r.State != "open" {
					return fmt.Errorf("tables: enabled table %s: region %d is %+v", name, i, r)
				}
			}
		case "creating":
			if settled {
				return fmt.Errorf("tables: table %s still creating", name)
			}
		default:
			return fmt.Errorf("tables: table %s in state %q", name, t.State)
		}
	}
	for k, r := range s.Regions {
		t, ok := s.Tables[r.Table]
		if !ok {
			return fmt.Errorf("tables: region %s of missing table %s", k, r.Table)
		}
		if r.Index >= t.Regions {
			return fmt.Errorf("tables: region %s beyond table %s's %d regions", k, r.Table, t.Regions)
		}
	}
	return nil
}
