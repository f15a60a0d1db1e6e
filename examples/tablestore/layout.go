package tablestore

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Layout names the directories under the shared root, which every
// process of the store sees at the same path (HBase's root directory on
// HDFS):
//
//	<root>/master/                   the master's durable store
//	<root>/data/<region id>/         a region's files (package region), readable
//	                                 by whichever server opens it next
//	<root>/snapshots/.tmp/<name>/<proc>/  a snapshot being taken by procedure proc (its
//	                                 working directory: an attempt of the same name by
//	                                 another procedure never shares it)
//	<root>/snapshots/<name>/         a completed snapshot: INFO, MANIFEST and
//	                                 regions/<region id>/ (each a region snapshot)
//
// A region id is "<table>.<table id>.<n>": the table's name, the id of
// the procedure that created the table (so a table dropped and created
// again never reuses a directory), and the region's number in the table.
type Layout struct{ Root string }

// MasterDir is the master's store directory.
func (l Layout) MasterDir() string { return filepath.Join(l.Root, "master") }

// RegionDir is region id's data directory.
func (l Layout) RegionDir(id string) string { return filepath.Join(l.Root, "data", id) }

// SnapshotTmpDir holds the working directories of snapshot name's
// attempts.
func (l Layout) SnapshotTmpDir(name string) string {
	return filepath.Join(l.Root, "snapshots", ".tmp", name)
}

// SnapshotWorkDir is the working directory of procedure proc's snapshot
// name: a region snapshot still running for an attempt that rolled back
// writes into that attempt's directory, never into a later one's.
func (l Layout) SnapshotWorkDir(name string, proc uint64) string {
	return filepath.Join(l.SnapshotTmpDir(name), strconv.FormatUint(proc, 10))
}

// SnapshotDir is completed snapshot name's directory.
func (l Layout) SnapshotDir(name string) string { return filepath.Join(l.Root, "snapshots", name) }

// RegionSnapshotDir is region id's snapshot in the snapshot directory dir
// (working or completed).
func RegionSnapshotDir(dir, id string) string { return filepath.Join(dir, "regions", id) }

// RegionID returns the id of region n of the table made by procedure tid.
func RegionID(table string, tid uint64, n int) string {
	return fmt.Sprintf("%s.%d.%04d", table, tid, n)
}

// CheckName checks a table or snapshot name: 1 to 64 bytes of letters,
// digits, '-' and '_' (it is part of directory names and lock resources).
func CheckName(kind, name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("tablestore: bad %s name %q: 1 to 64 characters", kind, name)
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}); i >= 0 {
		return fmt.Errorf("tablestore: bad %s name %q: only letters, digits, '-' and '_'", kind, name)
	}
	return nil
}
