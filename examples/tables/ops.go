package tables

import (
	"context"
	"fmt"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// TableLock is the resource of a table in the engine's lock table; its
// regions are below it (RegionLock), so an exclusive table lock keeps
// every region procedure of the table out.
func TableLock(table string) string { return "table/" + table }

// RegionLock is the resource of region i of table.
func RegionLock(table string, i int) string { return fmt.Sprintf("table/%s/region/%d", table, i) }

// FlushedEvent is the event the region servers' flush reports signal for
// table (in the demo, the operator signals it).
func FlushedEvent(table string) string { return "flushed/" + table }

// Manifest is a table snapshot's manifest.
type Manifest struct {
	Table   string
	Regions int
	Servers []string
}

// Compaction is the record of a scheduled compaction.
type Compaction struct {
	Table string
	Due   time.Time // when it was scheduled to run
	Ran   time.Time // when it ran (never before Due)
}

// SnapState is the state of a snapshot-table procedure.
type SnapState int

const (
	SnapCheck    SnapState = iota // the table must be enabled
	SnapFlush                     // wait for the servers' flush reports (an event)
	SnapManifest                  // write the manifest
)

func (s SnapState) String() string {
	switch s {
	case SnapCheck:
		return "check"
	case SnapFlush:
		return "flush"
	case SnapManifest:
		return "manifest"
	}
	return fmt.Sprintf("SnapState(%d)", int(s))
}

// SnapshotTable is a snapshot-table procedure's data: it takes a shared
// lock on the table for its whole life (HoldLocks), so the table cannot
// be created, changed or dropped under it, waits until the region
// servers report the table flushed (FlushedEvent), and writes the
// manifest (HBase's snapshot procedure, in small).
type SnapshotTable struct {
	Table string
	Name  string
}

type snapshotTable struct{ c *Catalog }

func (p *snapshotTable) Locks(s SnapState, d *SnapshotTable) []procedure.Lock {
	return []procedure.Lock{procedure.SharedLock(TableLock(d.Table))}
}

func (p *snapshotTable) Execute(ctx context.Context, env *procedure.Env, s SnapState, d *SnapshotTable) (procedure.Next, error) {
	c := p.c
	if err := c.delay(ctx); err != nil {
		return procedure.Next{}, err
	}
	switch s {
	case SnapCheck:
		t, ok, err := c.Tables.Get(c.store.Latest(), d.Table)
		if err != nil {
			return procedure.Next{}, err
		}
		if !ok || t.State != "enabled" {
			return procedure.Next{}, fmt.Errorf("tables: snapshot of %s: table not enabled", d.Table)
		}
		return procedure.GoTo(SnapFlush), nil
	case SnapFlush:
		return procedure.WaitEvent(SnapManifest, FlushedEvent(d.Table)), nil
	case SnapManifest:
		v := c.store.Latest()
		t, ok, err := c.Tables.Get(v, d.Table)
		if err != nil {
			return procedure.Next{}, err
		}
		if !ok {
			return procedure.Next{}, fmt.Errorf("tables: snapshot of %s: table gone under a shared lock", d.Table)
		}
		m := Manifest{Table: d.Table, Regions: t.Regions}
		for i := range t.Regions {
			r, _, err := c.Regions.Get(v, RegionKey(d.Table, i))
			if err != nil {
				return procedure.Next{}, err
			}
			m.Servers = append(m.Servers, r.Server)
		}
		name := d.Name
		env.Write(func(tx *durable.Tx) error { return c.Snapshots.Put(tx, name, m) })
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("tables: snapshot-table in unknown state %d", s)
}

func (p *snapshotTable) Rollback(ctx context.Context, env *procedure.Env, s SnapState, d *SnapshotTable) error {
	if s == SnapManifest {
		name := d.Name
		env.Write(func(tx *durable.Tx) error { return p.c.Snapshots.Delete(tx, name) })
	}
	return nil
}

// CompactState is the state of a compact-table procedure.
type CompactState int

const (
	CompactSchedule CompactState = iota // sleep until Due
	CompactRun                          // run it
)

func (s CompactState) String() string {
	switch s {
	case CompactSchedule:
		return "schedule"
	case CompactRun:
		return "run"
	}
	return fmt.Sprintf("CompactState(%d)", int(s))
}

// CompactTable is a compact-table procedure's data: it sleeps until Due (a
// durable timer: it wakes at that wall-clock time whatever restarts
// happen meanwhile), then records the compaction, holding a shared lock
// on the table for that step.
type CompactTable struct {
	Table string
	Due   time.Time
	Ran   time.Time `json:",omitzero"`
}

type compactTable struct{ c *Catalog }

func (p *compactTable) Locks(s CompactState, d *CompactTable) []procedure.Lock {
	if s == CompactRun {
		return []procedure.Lock{procedure.SharedLock(TableLock(d.Table))}
	}
	return nil
}

func (p *compactTable) Execute(ctx context.Context, env *procedure.Env, s CompactState, d *CompactTable) (procedure.Next, error) {
	switch s {
	case CompactSchedule:
		return procedure.SleepUntil(CompactRun, d.Due), nil
	case CompactRun:
		d.Ran = time.Now()
		rec := Compaction{Table: d.Table, Due: d.Due, Ran: d.Ran}
		env.Write(func(tx *durable.Tx) error { return p.c.Compactions.Put(tx, rec.Table, rec) })
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("tables: compact-table in unknown state %d", s)
}

func (p *compactTable) Rollback(ctx context.Context, env *procedure.Env, s CompactState, d *CompactTable) error {
	if s == CompactRun {
		table := d.Table
		env.Write(func(tx *durable.Tx) error { return p.c.Compactions.Delete(tx, table) })
	}
	return nil
}
