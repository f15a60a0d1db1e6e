package master

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/vfs"
)

// SnapshotTable is the data of snapshot-table, HBase's SnapshotProcedure
// (seed 003), state for state: prepare -> pre-operation -> write snapshot
// info -> snapshot online regions (one snapshot-region child per region,
// on whichever server holds it) -> snapshot offline regions (a disabled
// table's, by the master itself) -> consolidate the manifest -> verify
// (verify-snapshot children spread over the live servers) -> complete
// (the working directory renamed into place) -> post-operation.
//
// It holds a shared lock on the table from its first step to its last
// (across its children and waits, and through a rollback): create, delete,
// disable, enable and split of the table wait for it, a second snapshot of
// the table does not; an exclusive lock on the snapshot's name keeps two
// snapshots of one name apart. It has no point of no return: rolling back
// removes its working directory (and a completed directory of its own)
// and its record, whatever state it reached.
type SnapshotTable struct {
	Table   string                  `json:"table"`
	Name    string                  `json:"name"`
	TableID uint64                  `json:"table_id,omitempty"`
	Online  bool                    `json:"online,omitempty"`
	Regions []tablestore.RegionDesc `json:"regions,omitempty"`
	Rows    int64                   `json:"rows,omitempty"`

	// manifest is transient: the manifest being built (HBase's
	// SnapshotManifest), made by prepare and rebuilt after a restart by
	// AfterReplay from the working directory's INFO.
	manifest *manifestBuilder
}

type snapState int

const (
	snapPrepare snapState = iota
	snapPreOperation
	snapWriteInfo
	snapOnlineRegions
	snapOfflineRegions
	snapConsolidate
	snapVerify
	snapComplete
	snapPostOperation
)

func (s snapState) String() string {
	return [...]string{"prepare", "pre-operation", "write-snapshot-info", "snapshot-online-regions",
		"snapshot-offline-regions", "consolidate-snapshot", "verify-snapshot", "complete-snapshot", "post-operation"}[s]
}

type snapSM struct{ m *Master }

var (
	_ procedure.Locker[snapState, SnapshotTable]        = snapSM{}
	_ procedure.AfterReplayer[snapState, SnapshotTable] = snapSM{}
)

func (snapSM) Locks(_ snapState, d *SnapshotTable) []procedure.Lock {
	return []procedure.Lock{procedure.SharedLock(tableLock(d.Table)), procedure.ExclusiveLock(snapshotLock(d.Name))}
}

// AfterReplay rebuilds the manifest in progress: from the working
// directory's INFO once it is written, before that from the data.
func (sm snapSM) AfterReplay(id procedure.ID, s snapState, d *SnapshotTable) {
	if s <= snapPrepare {
		return // prepare makes it
	}
	d.manifest = newManifestBuilder(d.info())
	if in, err := readSnapshotInfo(sm.m.fs, sm.m.layout.SnapshotWorkDir(d.Name, uint64(id))); err == nil {
		d.manifest = newManifestBuilder(in)
	}
}

func (sm snapSM) Execute(ctx context.Context, env *procedure.Env, s snapState, d *SnapshotTable) (procedure.Next, error) {
	m := sm.m
	work := m.layout.SnapshotWorkDir(d.Name, uint64(env.ID()))
	switch s {
	case snapPrepare:
		return sm.prepare(env, d)
	case snapPreOperation:
		// Earlier attempts of the name (rolled back, or their late region
		// snapshots) go; this one starts empty.
		if err := region.RemoveAll(m.fs, m.layout.SnapshotTmpDir(d.Name)); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		if err := m.fs.MkdirAll(filepath.Join(work, "regions")); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		return procedure.GoTo(snapWriteInfo), nil
	case snapWriteInfo:
		if err := writeJSON(m.fs, filepath.Join(work, infoFile), d.manifest.info); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		if d.Online {
			return procedure.GoTo(snapOnlineRegions), nil
		}
		return procedure.GoTo(snapOfflineRegions), nil
	case snapOnlineRegions:
		cs := make([]procedure.Child, len(d.Regions))
		for i, r := range d.Regions {
			cs[i] = m.snapRegion.Child(SnapshotRegion{Snapshot: d.Name, Region: r.ID, Dir: tablestore.RegionSnapshotDir(work, r.ID)})
		}
		return procedure.Spawn(snapOfflineRegions, cs...), nil
	case snapOfflineRegions:
		if !d.Online {
			if err := sm.snapshotOffline(d, work); err != nil {
				return procedure.Next{}, err
			}
		}
		return procedure.GoTo(snapConsolidate), nil
	case snapConsolidate:
		man, err := d.manifest.consolidate(m.fs, work)
		if err != nil {
			return procedure.Next{}, err
		}
		d.Rows = 0
		for _, r := range man.Regions {
			d.Rows += r.Rows
		}
		return procedure.GoTo(snapVerify), nil
	case snapVerify:
		cs, err := m.verifyChildren(d.Name, work, d.Regions)
		if err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		return procedure.Spawn(snapComplete, cs...), nil
	case snapComplete:
		if err := m.completeSnapshot(d.Name, uint64(env.ID())); err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		rows, n := d.Rows, len(d.Regions)
		env.Write(func(tx *durable.Tx) error {
			return m.updateSnapshot(tx, d.Name, func(s *Snapshot) { s.State, s.Rows, s.Regions = SnapshotComplete, rows, n })
		})
		return procedure.GoTo(snapPostOperation), nil
	case snapPostOperation:
		env.Logger().Info("tablestore: snapshot complete", "snapshot", d.Name, "table", d.Table, "regions", len(d.Regions), "rows", d.Rows)
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("snapshot-table: unknown state %d", s)
}

// prepare checks the table and the name, records the snapshot (taking)
// and starts the manifest.
func (sm snapSM) prepare(env *procedure.Env, d *SnapshotTable) (procedure.Next, error) {
	m := sm.m
	if err := tablestore.CheckName("snapshot", d.Name); err != nil {
		return procedure.Next{}, err
	}
	v := m.store.Latest()
	t, ok, err := m.cat.tables.Get(v, d.Table)
	if err != nil {
		return procedure.Next{}, err
	}
	if !ok {
		return procedure.Next{}, fmt.Errorf("table %s: %w", d.Table, ErrNoTable)
	}
	if t.State != TableEnabled && t.State != TableDisabled {
		return procedure.Next{}, fmt.Errorf("table %s is %s: a snapshot needs it enabled or disabled", d.Table, t.State)
	}
	d.TableID, d.Online, d.Regions = t.ID, t.State == TableEnabled, nil
	for _, id := range t.Regions {
		r, ok, err := m.cat.regions.Get(v, id)
		if err != nil {
			return procedure.Next{}, err
		}
		if !ok {
			return procedure.Next{}, fmt.Errorf("table %s: region %s has no record", d.Table, id)
		}
		d.Regions = append(d.Regions, r.RegionDesc)
	}
	d.manifest = newManifestBuilder(d.info())
	rec := Snapshot{Name: d.Name, Table: d.Table, TableID: t.ID, State: SnapshotTaking, Proc: uint64(env.ID()), Regions: len(d.Regions)}
	env.Write(func(tx *durable.Tx) error {
		if s, ok, err := m.cat.snapshots.Get(tx, d.Name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("snapshot %s exists (%s, of table %s)", d.Name, s.State, s.Table)
		}
		return m.cat.snapshots.Put(tx, d.Name, rec)
	})
	return procedure.GoTo(snapPreOperation), nil
}

// snapshotOffline snapshots a disabled table's regions from the master:
// no server has them open, and the snapshot's shared lock keeps the table
// from being enabled meanwhile.
func (sm snapSM) snapshotOffline(d *SnapshotTable, work string) error {
	m := sm.m
	for _, r := range d.Regions {
		reg, err := region.Open(m.layout.RegionDir(r.ID), region.Options{FS: m.fs, Logger: m.log})
		if err != nil {
			return procedure.Retryable(fmt.Errorf("open offline region %s: %w", r.ID, err))
		}
		_, err = reg.Snapshot(tablestore.RegionSnapshotDir(work, r.ID))
		if cerr := reg.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return procedure.Retryable(fmt.Errorf("snapshot offline region %s: %w", r.ID, err))
		}
	}
	return nil
}

// Rollback removes the working directory, and the record and completed
// directory if they are this procedure's (a snapshot of the same name
// made by another is left alone).
func (sm snapSM) Rollback(ctx context.Context, env *procedure.Env, s snapState, d *SnapshotTable) error {
	m := sm.m
	if err := region.RemoveAll(m.fs, m.layout.SnapshotTmpDir(d.Name)); err != nil {
		return err
	}
	rec, ok, err := m.cat.snapshots.Get(m.store.Latest(), d.Name)
	if err != nil || !ok || rec.Proc != uint64(env.ID()) {
		return err
	}
	if err := region.RemoveAll(m.fs, m.layout.SnapshotDir(d.Name)); err != nil {
		return err
	}
	if s == snapPrepare {
		env.Write(func(tx *durable.Tx) error { return m.cat.snapshots.Delete(tx, d.Name) })
	}
	return nil
}

func (d *SnapshotTable) info() snapshotInfo {
	return snapshotInfo{Name: d.Name, Table: d.Table, TableID: d.TableID, Online: d.Online, Regions: d.Regions}
}

// completeSnapshot moves the working directory into place: a rename, so a
// snapshot directory is complete or absent. Done again after a crash, it
// finds the move made.
func (m *Master) completeSnapshot(name string, proc uint64) error {
	work, final := m.layout.SnapshotWorkDir(name, proc), m.layout.SnapshotDir(name)
	if _, err := m.fs.Stat(filepath.Join(work, manifestFile)); errors.Is(err, iofs.ErrNotExist) {
		if _, err := m.fs.Stat(filepath.Join(final, manifestFile)); err == nil {
			return region.RemoveAll(m.fs, m.layout.SnapshotTmpDir(name)) // moved before a crash
		}
		return fmt.Errorf("snapshot %s: working directory %s has no manifest", name, work)
	} else if err != nil {
		return err
	}
	if err := m.fs.Rename(work, final); err != nil {
		return err
	}
	if err := m.fs.SyncDir(filepath.Dir(final)); err != nil {
		return err
	}
	if err := m.fs.SyncDir(filepath.Dir(work)); err != nil {
		return err
	}
	// What is left of the name's attempts: this one's empty parent, and
	// whatever a late region snapshot of a rolled-back attempt wrote.
	return region.RemoveAll(m.fs, m.layout.SnapshotTmpDir(name))
}

// updateSnapshot changes snapshot name's record in tx (nothing if gone).
func (m *Master) updateSnapshot(tx *durable.Tx, name string, change func(*Snapshot)) error {
	s, ok, err := m.cat.snapshots.Get(tx, name)
	if err != nil || !ok {
		return err
	}
	change(&s)
	return m.cat.snapshots.Put(tx, name, s)
}

// manifestBuilder builds a snapshot's MANIFEST from its INFO and the
// region manifests the region snapshots wrote.
type manifestBuilder struct {
	info snapshotInfo
}

func newManifestBuilder(in snapshotInfo) *manifestBuilder { return &manifestBuilder{info: in} }

// consolidate reads every region's manifest in the working directory and
// writes the snapshot's MANIFEST. A region snapshot that is missing or
// whose manifest does not read is an error naming it.
func (b *manifestBuilder) consolidate(fs vfs.FS, work string) (tableManifest, error) {
	man := tableManifest{Name: b.info.Name, Table: b.info.Table, TableID: b.info.TableID}
	for _, r := range b.info.Regions {
		rm, err := region.ReadManifest(fs, tablestore.RegionSnapshotDir(work, r.ID))
		if err != nil {
			return man, fmt.Errorf("snapshot %s: region %s: %w", b.info.Name, r.ID, err)
		}
		man.Regions = append(man.Regions, manifestRegion{ID: r.ID, Start: r.Start, End: r.End, Seq: rm.Seq, Rows: rm.Rows, Files: len(rm.Files)})
	}
	return man, writeJSON(fs, filepath.Join(work, manifestFile), man)
}
