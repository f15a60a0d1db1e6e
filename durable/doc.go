// Package durable is procyon's transactional metadata store: typed,
// ordered collections kept in memory, changed by transactions that are
// logged as one record each, and bounded by snapshots taken in the
// background without stopping writers. Recovery is the newest usable
// snapshot plus a replay of the log after it. It follows Aurora's
// DurableStorage (ops recorded in a transaction, coalesced, persisted
// through a Persistence) and fixes what its users suffered: a failed
// transaction is rolled back in memory, snapshots never hold the write
// lock, and they stream the state without copying it.
//
// # Using it
//
// Collections are registered before Open, because recovery must know every
// collection's codec and must reject names it does not know:
//
//	s := durable.New(durable.Options{Dir: dir})
//	users := durable.NewCollection[string, User](s, "users", nil) // JSON values
//	regions := durable.NewCollection[uint64, []byte](s, "regions", nil)
//	if err := s.Open(ctx); err != nil { ... }
//	defer s.Close()
//
//	err := s.Write(ctx, func(tx *durable.Tx) error {
//		u, ok, err := users.Get(tx, "ann") // sees the transaction's writes
//		...
//		return users.Put(tx, "ann", u)
//	})
//
//	v := s.Latest() // the latest durable version: reads at one version, never wait
//	u, ok, err := users.Get(v, "ann")
//	n := users.Len(v)
//	for id, r := range regions.From(v, 100) { ... } // key order; break to end a range
//	err = v.Err() // a value an iterator could not decode (never with Bytes, String)
//
// Every read takes a Reader: a View or the Tx of a Write. Reading with a
// nil Reader, a View of another store or a Tx whose Write has returned
// panics. If an iterator (All, From) meets a value its codec cannot
// decode, it stops: in a Tx, the Write fails with the error and nothing
// commits; a View keeps the first such error for View.Err.
//
// Write returns once the transaction's record is durable. If the function
// returns an error, nothing is applied or written; if it panics, nothing
// is applied or written and the panic continues. A Write whose context
// carries a transaction of the same store (Tx.Context) joins it; if the
// nested function fails, the transaction is put back as it was before the
// nested call. A transaction records only the final state of each key it
// touched (put then delete is one delete). WriteAsync does the same but
// returns as soon as the record is queued, with a Commit to wait on:
// a writer that has other work (the procedure engine's committer, which
// applies the next batch while the previous one waits for the disk) does
// not need a goroutine per transaction. Commits become durable in the
// order WriteAsync returned them.
//
// # Versions, readers and writers
//
// A version is one B+tree per collection (internal/cowbtree: Clone is O(1)
// and copy-on-write, and a sorted batch of updates is applied in one walk
// of the tree), a few layers on top of them, and the
// log sequence number of the last transaction it reflects. A layer is the
// writes (each key's final state) of one group of transactions, or of
// several merged (see below); a read looks at the layers, newest first,
// then at the tree. Values are stored encoded: every Get decodes a fresh
// copy, snapshots stream the bytes as they are, and memory stays near the
// raw size.
//
// Transactions run one at a time under the write lock. A transaction's
// writes stay in its ops (its reads see them first, then the head: the
// forming group's layer, the layers of groups not yet applied, the trees);
// if it fails, they are dropped. One writer at a time, the combiner, runs
// the transactions queued by all, in order (flat combining), so that under
// load the lock does not pass from goroutine to goroutine between
// transactions; a transaction's function may therefore run on another
// writer's goroutine (its panic is raised again in its own caller). The
// other writers are woken once, when their outcome is known (for Write:
// once the record is durable); a combiner whose own transaction has run
// hands the combining to the next writer in the queue rather than work on
// for others. A committed transaction appends its record to the forming
// group and merges its ops into the group's layer: no B-tree work on the
// writers' path. A committer goroutine takes each group in turn: under
// the lock it freezes the group (its layer is never changed again), then,
// without the lock, appends the group's records as one batch and waits
// for the fsync; then it publishes the version with the group's layer on
// top and releases the group's writers. While one group is on its way to
// the disk the next one forms, so concurrent transactions share fsyncs.
// Before freezing, the committer waits briefly for the writers the last
// group released and those already waiting (they are about to commit
// again), unless such waits keep timing out: writers that batch
// themselves, like the procedure engine, do not come back that fast.
//
// An applier goroutine takes the layers off the readers' way, on the
// other core: once the layers hold applyKeys keys, or the committer is
// idle, it hands them to an apply worker, which applies them to
// copy-on-write clones of the trees and swaps the new trees in for them,
// in the published version and in the head; meanwhile, once there are a
// few layers beyond those being applied, the applier merges them into one
// (a map and its keys in order), so that a read looks at a few layers at
// most however long an apply takes. The worker applies the keys in order,
// 64 to a walk of the tree; a walk copies the nodes it touches that this
// apply has not copied yet (about one leaf per key, with random keys),
// and changes those it has in place, so applying a thousand keys to one
// clone costs much less per key than a clone per group, and none of it
// delays a writer (the worker also yields its core between walks, so that
// writers waiting for one run first). What piles up during an apply is
// applied in one go after it, at a lower cost per key, so the worker
// catches up; the committer waits for it only past a bound on the layers
// or their keys (maxLayers, maxUnapplied).
//
// Readers load the published version through an atomic pointer: they
// never take a lock, never wait, and never see a transaction whose record
// is not durable. A published version (trees and layers) is never changed
// again, so a reader (or a snapshot, or a backup) may hold it as long as
// it likes. Len on a version with layers looks up, below each layer,
// whether each of its keys existed: one lookup per key not yet applied,
// usually a few thousand at most (maxUnapplied bounds them).
//
// If the persistence fails (a write or fsync of the log, ErrFailed), every
// transaction in flight fails, the store refuses further writes with an
// error wrapping ErrFailed and the cause (errors.Is(err, wal.ErrFailed)
// for the WAL), and reads keep serving the last durable version.
//
// # Snapshots
//
// A snapshot streams the latest published version (immutable: nothing to
// lock; its layers, if any, are applied to O(1) clones first) to the
// persistence, which for the WAL-backed one means:
// roll the log (so the records so far can later be deleted), write
// "<seq>.snap.tmp" with a running CRC-32C, fsyncing every
// Options.SnapshotSyncBytes so that the last fsync is short, fsync,
// rename to "<seq>.snap", fsync the directory; then delete snapshots older
// than the previous one and the log up to the previous one's seq. The log
// thus always reaches back to the previous snapshot, and recovery can fall
// back to it if the newest is damaged. Disk use stays at about two
// snapshots and two snapshot intervals of log. Snapshots are taken on
// request (Store.Snapshot) and automatically, in the background, once the
// records logged since the last one exceed the larger of
// Options.SnapshotBytes (64 MiB) and the last snapshot's size; at most one
// runs at a time.
//
// # Recovery
//
// Open first looks at the directory, by name only, and creates nothing
// until it knows it may: a read-write Open makes a new store only in a
// missing or empty directory (anything else without DIR/<seq>.snap or
// DIR/wal is refused with ErrNotStore, naming what it expected), and a
// store whose snapshots are all past seq 0 but whose DIR/wal holds no
// segment is refused with ErrNoState (a log that is missing, or not
// mounted). An Open that is refused leaves the disk as it found it, also
// when recovery refuses it (no usable snapshot, a collection not
// registered, a newer format, a cancelled context): the log is opened
// under its lock but changing nothing (wal.Options.DeferWrites; a LOCK
// file it had to create is removed again), recovery only reads, and only
// once it succeeded does Open let the log finish a crash's repair (cut a
// torn tail, remove *.tmp files, create the segment after a sealed last
// one) and create the directory and log of a new store.
//
// Recovery needs the newest snapshot and the log after it. Open reads the
// newest snapshot's seq N from its name, before it opens the log, and opens
// the log needing the records from N+1 on: damage in log segments holding
// only older records (a segment whose successor starts at or before N+1)
// does not fail Open. The log is opened without those segments and any
// before them, and the damage is logged at ERROR and kept in Store.Damage
// (and Stats.Damaged): recovery can no longer fall back past it. The next
// snapshot deletes those segments (wal's TruncateFront), like any log it
// makes obsolete.
// Choosing by name costs nothing (the snapshot is read once, by recovery);
// the price is that if the newest snapshot then turns out damaged and the
// log its predecessor needs was set aside, Open fails with an error that
// names both the damaged snapshot and the damaged log segment.
//
// Then Open lists the snapshots, newest first, and uses the first one whose
// checksum verifies and that the log covers (the log starts at or before
// its seq+1); it replays every record after it through the one decoding
// path (applyRecord). A damaged snapshot (or a directory where one belongs)
// is logged at ERROR, kept in Store.Damage, and skipped if an older one can
// replace it, or a log that starts at seq 1 in a store that was not restored
// (a restored store's state before its log is only in its snapshot at seq
// 0, which the log is truncated before it is deleted); otherwise Open fails
// with an error wrapping ErrCorrupt that names the damaged files. A snapshot or record that names a collection the program did not register fails
// recovery with ErrUnknownCollection (Options.UnknownCollections can drop
// such data, or keep it as opaque bytes), and one written by a newer
// format fails with ErrVersion.
//
// Options.ReadOnly opens an existing store without changing anything: no
// lock, no new directory or segment, a torn log tail read up to the last
// whole record and left on disk, unfinished snapshots left; writes and
// snapshots fail with ErrReadOnly.
//
// # Verify and repair
//
// Verify (and "procyon verify DIR") reads every snapshot whole and checks
// every log segment, changing nothing and taking no lock, and says what
// Open would do: which snapshot it would use, which log records it would
// replay, which older snapshots it could fall back to, and why it would
// not open. PlanRepair and Repair ("procyon repair DIR [-yes]") remove
// damaged log segments that the snapshot recovery uses covers, truncate a
// torn log tail, and remove damaged snapshots only if asked
// (RemoveDamagedSnapshots); the plan states every dropped transaction by
// sequence number before anything changes. Damage in the log recovery
// needs is refused with ErrNeedBackup, naming the intact segments after it
// that a truncation would lose: the way back is a backup. If no intact
// segment holding records follows it, the log can be cut at the damage,
// but only with RepairOptions.AcceptLoss ("-accept-loss"): the plan's Loss
// says which transactions go (from seq From on; up to To when the segment
// after the cut one tells where it ended, else at least those recognised
// after the damage), and the store then opens with every one before From.
// A cut that would leave the log ending before a snapshot's seq is refused.
//
// # Backup and restore
//
// Store.Backup streams the latest published version, in the snapshot
// format with the backup flag, to any io.Writer while writes go on
// (Aurora's snapshotWith). Restore reads such a stream, checks all of it
// (format and checksum) while writing it to a temporary file in an empty
// directory, and only then renames it into place as the directory's
// snapshot at seq 0; the restored store starts a new log. "procyon backup
// DIR FILE" and "procyon restore FILE DIR" do the same from the command
// line (backup opens DIR read-only, refuses a DIR that is not a store, and
// an existing FILE unless -force).
//
// # Persistence
//
// The Persistence interface is the seam below the store (Aurora's
// prepare / recover / persist): the WAL-backed implementation in
// Options.Dir is the default, MemPersistence serves tests, and an etcd
// one will come for HA. Its documentation is the contract: durability in
// sequence order, failure is final, snapshots atomic, nothing deleted
// that recovery may still need, and nothing changed before Recovered (so
// that a refused Open changes nothing). A persistence that can open in spite of
// damage in data recovery does not need says so through the optional
// DamageReporter interface.
//
// # On-disk formats
//
// A data directory holds snapshot files and the log:
//
//	DIR/00000000000000001234.snap   snapshot as of record 1234 (20 digits: names sort by seq)
//	DIR/00000000000000001234.snap.tmp   being written; removed by the next snapshot
//	DIR/wal/...                     the log (package wal), one record per transaction
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
// The tests run the store on vfs.MemFS and crash it at every k-th file
// operation (transactions, log rolls, snapshot writes and renames, segment
// and snapshot deletion); a crash keeps synced data and drops, keeps or
// tears unsynced writes and directory changes. After each crash, recovery
// must succeed, every acknowledged transaction must be present, none
// partly applied, none whose function failed present, and the state must
// equal a model replayed with the acknowledged transactions (one in flight
// at the crash may be there or not, whole).
package durable
