package durable

import (
	"context"
	"io"
)

// Persistence is where a Store keeps its transaction records and its
// snapshots: Aurora's Persistence (prepare / recover / persist) with
// snapshots made explicit. The WAL-backed implementation (the default, in
// Options.Dir) and MemPersistence (for tests) are in this package; an etcd
// one will follow for HA. Implementations must keep this contract.
//
// Records. Append stores a group of opaque records (one per transaction)
// and numbers them: sequence numbers are consecutive, increasing by one
// per record, and never reused (across Close and Open too). The records
// are durable once the Pending's Wait returns nil: they then survive any
// crash, and so does every record with a lower number (durability is in
// sequence order). Wait returning any other error than its context's means
// the records never will be durable, nor will any later one: the
// persistence has failed for good, and the store refuses further writes;
// so does an error from Append itself. Append must not keep recs after it
// returns (the store reuses the buffers) and is called by one goroutine at
// a time, which waits for each group before it appends the next (so
// Append may as well make the records durable itself and return a done
// Pending: the WAL-backed one does). MaxRecordSize says how large a
// record may be; the store never appends a larger one.
//
// Recovery (Aurora's recover). After Open, LogBounds says which records
// are held: first..last, every one of them durable (first = last+1 when
// none are); Replay calls fn with each of them from a given sequence
// number on, in order. Snapshots lists the snapshots held, newest (highest
// sequence number) first, and ReadSnapshot streams one. The store picks
// the newest snapshot that it can read and that the log covers (first <=
// seq+1) and replays the records after it.
//
// Snapshots. WriteSnapshot stores, atomically, a snapshot of the state as
// of record seq (every record up to and including seq applied), whose
// bytes write produces. Once it returns nil the snapshot is durable: after
// any crash it is there whole, or (if WriteSnapshot failed or was cut by
// the crash) it is absent and the older ones are as they were. Only after
// that may the persistence discard older data, and only what recovery can
// no longer need: snapshots older than the previous one, and records up to
// and including the previous snapshot's seq. Keeping the previous snapshot
// and the log since it is what lets recovery fall back to it when the
// newest snapshot turns out damaged. The store writes one snapshot at a
// time, concurrently with Append.
//
// Open (Aurora's prepare) takes what keeps other processes from writing the
// same state (a lock file; on etcd, a lease and fencing revision) and
// changes nothing else: the store then recovers, reading only. If recovery
// succeeds, the store calls Recovered, before any Append or WriteSnapshot:
// the persistence then makes the changes it needs to take writes (repairs
// a torn log tail, creates the log of a new store). If it fails, the store
// calls Close instead, which must leave the storage as Open found it: a
// refused Open changes nothing. Close releases what Open took; a closed
// persistence may be opened again.
type Persistence interface {
	Open() error
	Recovered() error
	LogBounds() (first, last uint64, err error)
	Replay(from uint64, fn func(seq uint64, rec []byte) error) error
	Snapshots() ([]SnapshotInfo, error)
	ReadSnapshot(seq uint64) (io.ReadCloser, error)
	Append(recs [][]byte) (Pending, error)
	MaxRecordSize() int
	WriteSnapshot(seq uint64, write func(w io.Writer) error) (size int64, err error)
	Close() error
}

// DamageReporter is implemented by a persistence that opens in spite of
// damage in data recovery does not need (the WAL-backed one: log segments
// holding only records that the newest snapshot covers). Damage lists, after
// Open, what was set aside, each error naming the file (or key) and wrapping
// the cause; that data is lost for good, and recovery can no longer fall
// back to a snapshot that needs it. The store reports it (Store.Damage).
type DamageReporter interface {
	Damage() []error
}

// Pending is a group of appended records that may not be durable yet.
type Pending interface {
	// Seq returns the first record's sequence number.
	Seq() uint64
	// Wait blocks until the records are durable (nil), will never be (an
	// error), or ctx is done (ctx's error: they may still become durable).
	Wait(ctx context.Context) error
}

// SnapshotInfo describes a stored snapshot.
type SnapshotInfo struct {
	Seq  uint64 // the last record the snapshot reflects
	Name string // file name (or key) for messages
	Size int64  // bytes
}
