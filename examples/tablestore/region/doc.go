// Package region is the storage of one region of the table store
// (examples/tablestore): the rows a region server keeps for a key range of
// a table, as files under a root directory that every server shares (HBase's
// HDFS root dir), so that whichever server opens the region next reads
// them. A region is opened by one server at a time.
//
// # Using it
//
//	r, err := region.Open(root+"/data/t1/r1", region.Options{})
//	err = r.Put(ctx, region.Row{Key: k, Value: v}, ...) // one batch, durable on return
//	v, ok, err := r.Get(k)
//	for row, err := range r.Scan(from, to) { ... }     // [from, to), nil is open
//	m, err := r.Snapshot(root+"/.snapshot/s1/r1")       // consistent, idempotent
//	err = r.Close()
//
//	m, err := region.VerifyManifest(fs, snapDir)      // files present, sizes, CRCs, parse
//	for row, err := range region.SnapshotRows(fs, snapDir) { ... }
//	err = region.Clone(fs, snapDir, root+"/data/t2/r1") // then Open it
//	err = region.RemoveAll(fs, dir)                     // drop a closed region or a snapshot
//
// # Model
//
// A Put batch gets the region's next sequence number and becomes one log
// record; concurrent Puts share the log's fsyncs (group commit, package
// wal). Once durable, batches are applied to the memstore in sequence
// order, so readers see only durable writes and a batch is seen whole or
// not at all. A value replaces the key's earlier one; there are no
// deletes. Reads look at the memstore, then the row files, newest first.
//
// When the memstore reaches Options.FlushBytes, a Put flushes it to a new
// immutable row file and the log before it is truncated. Past
// Options.MaxFiles files, a flush is followed by a compaction of all of
// them into one. Row files are read whole at Open and served from memory:
// this is a reference store for the control plane, sized for its demos,
// not a block cache.
//
// Snapshot flushes the memstore under the lock that serializes flushes,
// compactions and snapshots: the rows acknowledged before the call are in
// the snapshot, rows written after its flush are not (Manifest.Seq is the
// last write it holds). It then copies the row files, which are immutable,
// and writes the manifest last. A snapshot directory must lie outside the
// region's (ErrOverlap).
//
// # Layout
//
//	<region dir>/LOCK                 vfs Lock, taken before Open changes
//	                                  anything: one Region at a time; flock, so
//	                                  a killed process releases it (the fencing
//	                                  of a server declared dead)
//	<region dir>/log/                 a procyon wal: one record per Put batch
//	<region dir>/files/f-<seq>.rows   immutable row files; seq (20 digits) is
//	                                  the last write the file holds
//	<snapshot dir>/f-<seq>.rows       copies of the region's row files
//	<snapshot dir>/MANIFEST           written last; without it, no snapshot
//
// # Formats
//
// All integers are little-endian; CRC is CRC-32C (internal/crc32c). The
// constants in rowfile.go, manifest.go and logrec.go are part of the
// format: never change them.
//
// Row file:
//
//	0          8         12         16
//	+----------+---------+----------+--------------------------+-------------------------------+
//	| magic    | version | reserved | records                  | footer (28 B)                 |
//	|"PRCYROWS"| u32 = 1 | u32 = 0  | sorted by key, unique    | count u64 | from u64 | seq u64 |
//	+----------+---------+----------+--------------------------+ CRC u32                       |
//	                                                           +-------------------------------+
//	record: uvarint key length (> 0) | uvarint value length | key | value
//	CRC: of every byte before it. The file holds the latest value, as of
//	seq, of every row written in (from, seq]: a flush covers the writes
//	since the previous file, a compaction its inputs' union.
//
// Manifest:
//
//	"PRCYSNAP" | u32 version = 1 | uvarint len, region name | u64 seq | u64 rows |
//	uvarint n | n × (uvarint len, file name | u64 size | u32 the file's CRC field) |
//	u32 CRC of every byte before it
//
// Log record (one per Put batch; the log frames and checksums it):
//
//	u64 seq | uvarint n | n × (uvarint len, key | uvarint len, value)
//
// seq is the region's, not the log's, so that a clone, whose log is new,
// goes on from its snapshot's seq.
//
// # Crash model
//
// Every file is written to a temporary name, fsynced, renamed and its
// directory fsynced; only then is the log truncated or a replaced file
// removed. A crash at any point leaves a state Open accepts: it removes
// temporary files and the inputs of a compaction whose output survived
// (their ranges are inside its range), loads the row files, and replays
// the log records after the newest file's seq. So every acknowledged Put
// is readable with its latest value, an unacknowledged batch is there
// whole or not at all, and a snapshot whose Snapshot returned nil
// verifies and holds exactly the rows acknowledged before it. A re-run
// Snapshot removes the directory first, so a crash in it leaves no
// MANIFEST: no half snapshot passes for a whole one. A Clone cut short is
// finished by running it again. Damage that is not a crash's (a bad CRC,
// a missing or resized snapshot file) is a *CorruptionError naming the
// file and offset, never skipped. The tests crash a workload of puts,
// flushes, compactions and snapshots on vfs.MemFS at every write and
// check all of this on crash clones.
//
// A failed write or fsync fails the region (ErrFailed), as it fails the
// log: reopen it to go on.
package region
