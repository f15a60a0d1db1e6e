// Package durable is procyon's transactional metadata store: typed,
// ordered collections kept in memory, changed by transactions that are
// logged as one record each, and bounded by snapshots taken in the
// background without stopping writers.
//
// # Model
//
// A Store holds named collections (Collection[K, V]: keys ordered, values
// encoded by a Codec). A transaction (Store.Write) reads and changes any
// of them; it commits whole or not at all, as one record in the log, and
// only the final state of each key it touched is recorded (a put then a
// delete is one delete). Concurrent transactions share an fsync.
//
// Readers see durable versions only: a version (read through a View) is
// the state after some transaction, identified by that transaction's
// sequence number, and is published once its record is durable. A version
// never changes; holding one keeps it readable, and reading never waits
// for a writer or the disk.
//
// Snapshots bound the log: one streams a version to disk while writes go
// on, after which the log before it can go. Recovery (Open) loads the
// newest usable snapshot and replays the log after it.
//
// # Usage
//
// Register every collection before Open (recovery needs each codec, and
// refuses names it does not know), then write in transactions:
//
//	s := durable.New(durable.Options{Dir: dir})
//	users := durable.NewCollection[string, User](s, "users", nil) // JSON values
//	regions := durable.NewCollection[uint64, []byte](s, "regions", nil)
//	if err := s.Open(ctx); err != nil { ... }
//	defer s.Close()
//
//	err := s.Write(ctx, func(tx *durable.Tx) error {
//		u, _, err := users.Get(tx, "ann") // sees the transaction's own writes
//		if err != nil {
//			return err
//		}
//		u.Logins++
//		return users.Put(tx, "ann", u)
//	})
//
// Write returns once the record is durable and readers see the new
// version. If the function returns an error or panics, nothing is applied
// or written (the panic goes on up). A Write whose context carries a
// transaction of the same store (Tx.Context) joins it. WriteAsync queues
// the record and returns a Commit to wait on, for a writer with other work
// meanwhile; commits become durable in the order WriteAsync returned them.
//
// Snapshots are taken automatically (Options.SnapshotBytes) or with
// Store.Snapshot. Store.Backup streams the latest version to an
// io.Writer while writes go on; Restore turns such a stream into a new
// data directory; "procyon backup" and "procyon restore" do the same from
// the command line. Stats and Damage report on a running store.
//
// # Reading
//
// Reads take a Reader: a *View from Store.Latest() (the latest durable
// version; reads through one View agree with each other) or the *Tx of a
// Write (its own writes over the latest version):
//
//	v := s.Latest() // the latest durable version: reads at one version, never wait
//	u, ok, err := users.Get(v, "ann")
//	n := users.Len(v)
//	for id, r := range regions.From(v, 100) { ... } // key order; break to end a range
//	err = v.Err() // a value an iterator could not decode (never with Bytes, String)
//
// Read what a transaction changes inside it, through its Tx, as above: a
// value read from a View and written back in a transaction can be stale
// by then. Reading with a nil Reader, a View of another store or a Tx
// whose Write has returned panics. If an iterator (All, From) meets a
// value its codec cannot decode, it stops: in a Tx, the Write fails with
// the error and nothing commits; a View keeps the first such error for
// View.Err. Values are stored encoded, so every read decodes a fresh copy
// that the caller may change.
//
// # Failures
//
// If the persistence fails (a write or fsync of the log), every
// transaction in flight fails, the store refuses further writes with an
// error wrapping ErrFailed and the cause, and reads keep serving the last
// durable version. If a Write's context ends while it waits for the
// disk, its error wraps ErrOutcomeUnknown: the transaction is whole and
// may still commit.
//
// Open creates a store only in a missing or empty directory (ErrNotStore
// otherwise), refuses snapshots without their log (ErrNoState), data of a
// collection not registered (ErrUnknownCollection; see
// Options.UnknownCollections) and a newer format (ErrVersion); a refused
// Open leaves the disk as it found it. Options.ReadOnly opens a store
// without changing anything.
//
// Damage is reported, never skipped silently: errors wrapping ErrCorrupt
// name the file and offset. A damaged snapshot is logged and set aside if
// an older one and the log can replace it (the log always reaches back to
// the previous snapshot); damaged log segments holding only records older
// than the newest snapshot are set aside too. Both are logged at ERROR and
// listed by Store.Damage: recovery can no longer fall back past them, so
// take a snapshot soon. Otherwise Open fails, naming the damaged files.
// Verify says what Open would do, changing nothing; PlanRepair and Repair
// remove what recovery does not need and cut a torn tail, stating every
// dropped transaction before anything changes. Damage in the log recovery
// needs is refused with ErrNeedBackup, or cut off with
// RepairOptions.AcceptLoss when no intact segment follows it.
//
// # On-disk formats
//
// A data directory holds snapshot files and the log:
//
//	DIR/00000000000000001234.snap   snapshot as of record 1234 (20 digits: names sort by seq)
//	DIR/00000000000000001234.snap.tmp   being written; removed by the next snapshot
//	DIR/wal/...                     the log (package wal), one record per transaction
//
// Disk use stays at about two snapshots and two snapshot intervals of log:
// a snapshot deletes snapshots older than the previous one and the log up
// to the previous one.
//
// All integers are little-endian; uvarint is encoding/binary's unsigned
// varint. The constants in record.go, snapshot.go and walpersist.go are
// part of the format: never change them. A new format gets a new version,
// and readers keep decoding the old ones.
//
// Transaction record (the payload of one WAL record):
//
//	+------+---------+-----------------+---------+---------+-----+
//	| kind | version | uvarint groups  | group 1 | group 2 | ... |
//	| 'T'  | u8 = 1  |                 |         |         |     |
//	+------+---------+-----------------+---------+---------+-----+
//	group: uvarint len(name) | name | uvarint ops | op ...
//	op:    u8 type (1 = put, 2 = delete) | uvarint len(key) | key
//	       [put only: uvarint len(value) | value]
//
// A group holds one collection's ops, one per key (coalesced), keys in
// order. Collections are named, not numbered, so that a record written by
// another program is recognized as such. Records carry no checksum of
// their own: the WAL frame has one.
//
// Snapshot file (and backup stream):
//
//	header, 40 bytes:
//	0          8         12      16      24           32         36     40
//	+----------+---------+-------+-------+------------+----------+------+
//	| magic    | version | flags | seq   | source seq | reserved | CRC  |
//	|"PRCYSNAP"| u32 = 1 | u32   | u64   | u64        | u32 = 0  | u32  |
//	+----------+---------+-------+-------+------------+----------+------+
//	CRC = CRC-32C (Castagnoli) of bytes 0..36. flags bit 0: a backup stream.
//	seq: the last record reflected, in this directory's log (0 for a
//	restored snapshot); source seq: the seq in the store it was taken from.
//
//	body: one section per collection, then the end:
//	+-----+-------------------+------+------------------+-------+-------+-----+
//	| 'C' | uvarint len(name) | name | uvarint entries  | entry | entry | ... |
//	+-----+-------------------+------+------------------+-------+-------+-----+
//	entry: uvarint len(key) | key | uvarint len(value) | value  (in key order)
//	end:   'E' | uvarint sections | u32 CRC-32C of the body up to here
//	Nothing may follow.
//
// Keys are encoded by their kind (the tree orders by the key itself, so
// the order of encoded keys does not matter): strings as their bytes,
// signed integers as zig-zag varints, unsigned integers as varints, floats
// as the 8 bytes of their float64 bits. Values are encoded by the
// collection's Codec (JSON by default; Bytes, String, or any other via
// CodecFunc, e.g. protobuf).
//
// # Crash model
//
// A crash may come between any two file operations; synced data survives
// it, unsynced writes and directory changes may be lost, kept or torn.
// After a crash, Open recovers a state in which every acknowledged
// transaction is present, none is partly applied, and none whose function
// failed is present; the one in flight at the crash may be there or not,
// whole. A torn log tail is cut to the last whole record. A snapshot is
// written to a temporary file, synced, renamed and the directory synced,
// so it is there whole or not at all. The tests run the store on
// vfs.MemFS and crash it at every k-th file operation (transactions, log
// rolls, snapshot writes and renames, segment and snapshot deletion),
// checking each recovery against a model replayed with the acknowledged
// transactions.
//
// Below the store, the Persistence interface is the seam (the WAL in
// Options.Dir by default; MemPersistence for tests); its documentation is
// the contract a persistence keeps for this model to hold.
package durable
