package master

import (
	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
)

// TableState is where a table is in its life.
type TableState string

const (
	TableCreating  TableState = "creating"  // its create-table procedure runs
	TableEnabled   TableState = "enabled"   // its regions are assigned (or being reassigned)
	TableDisabling TableState = "disabling" // disable-table runs
	TableDisabled  TableState = "disabled"  // no region is open anywhere
	TableEnabling  TableState = "enabling"  // enable-table runs
	TableDeleting  TableState = "deleting"  // delete-table runs
)

// Table is a table's record.
type Table struct {
	Name    string     `json:"name"`
	ID      uint64     `json:"id"` // the create-table procedure that made it
	State   TableState `json:"state"`
	Regions []string   `json:"regions"` // its regions, in key order
	// NextRegion numbers the next region made (by a split).
	NextRegion int `json:"next_region"`
	// FromSnapshot is the snapshot the table was cloned from ("" if none).
	FromSnapshot string `json:"from_snapshot,omitempty"`
}

// RegionState is where a region is in its assignment.
type RegionState string

const (
	RegionOffline RegionState = "offline" // open nowhere
	RegionOpening RegionState = "opening" // asked Server to open it
	RegionOpen    RegionState = "open"    // Server serves it
	RegionClosing RegionState = "closing" // asked Server to close it
)

// Region is a region's record.
type Region struct {
	tablestore.RegionDesc
	State  RegionState `json:"state"`
	Server string      `json:"server,omitempty"` // opening, open, closing: the region server
	// Incarnation is Server's incarnation that was asked to open it: a
	// server restarted under its name is another incarnation, and the
	// crash procedure of the dead one must not take the regions the new
	// one opened.
	Incarnation uint64 `json:"incarnation,omitempty"`
}

// SnapshotState is where a snapshot is.
type SnapshotState string

const (
	SnapshotTaking   SnapshotState = "taking"   // its snapshot-table procedure runs
	SnapshotComplete SnapshotState = "complete" // its directory is complete
)

// Snapshot is a snapshot's record.
type Snapshot struct {
	Name    string        `json:"name"`
	Table   string        `json:"table"`
	TableID uint64        `json:"table_id"`
	State   SnapshotState `json:"state"`
	Proc    uint64        `json:"proc"` // the snapshot-table procedure
	Regions int           `json:"regions"`
	Rows    int64         `json:"rows"`
}

// catalog is the master's metadata, in its store.
type catalog struct {
	tables    *durable.Collection[string, Table]
	regions   *durable.Collection[string, Region]
	snapshots *durable.Collection[string, Snapshot]
}

func newCatalog(s *durable.Store) catalog {
	return catalog{
		tables:    durable.NewCollection[string, Table](s, "ts.tables", nil),
		regions:   durable.NewCollection[string, Region](s, "ts.regions", nil),
		snapshots: durable.NewCollection[string, Snapshot](s, "ts.snapshots", nil),
	}
}
