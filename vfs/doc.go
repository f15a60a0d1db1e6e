// Package vfs is the file-system seam under the write-ahead log and the
// snapshot files. Everything that must survive a crash goes through an FS,
// so that tests can swap the operating system for a file system that
// crashes (MemFS) or fails (FaultyFS) on demand, and check that the layers
// above keep their promises.
//
// There are three implementations:
//
//   - OS, the operating system's file system. File.Sync is fdatasync on
//     Linux; Lock is flock(2), and also refuses a second holder in the
//     same process.
//   - MemFS, an in-memory file system that tracks what is durable and can
//     produce any state a power cut could leave (see "Crash model").
//   - FaultyFS, a wrapper that fails chosen operations of another FS (see
//     "Fault injection").
//
// # Durability contract
//
// Every implementation and every caller assumes this:
//
//   - Data written to a File is durable only after File.Sync returns nil.
//   - A directory entry change (Create of a new file, Rename, Remove) is
//     durable only after SyncDir of its parent directory returns nil. A
//     rename between two directories changes both; it is durable once both
//     are synced.
//   - A failed Sync is final: callers must not retry it and must not assume
//     that anything written since the last successful Sync survived.
//
// All implementations also share the POSIX behaviour the log relies on:
// Rename atomically replaces its target, and Remove does not disturb open
// handles (a reader of a removed segment keeps reading it).
//
// # Crash model
//
// A MemFS keeps, for each file, its current content and its content at the
// last successful File.Sync; for each directory, its entries as of the last
// successful SyncDir and the file entry changes made since (creates,
// renames in and out, removes), in order. Directories themselves are durable
// as soon as they are made: MkdirAll, and Remove or Rename of a directory,
// need no SyncDir. Files are inodes: a rename moves the file, and Remove
// unlinks the name while open handles keep the file.
//
// A MemFS crashes at its crash point or when Crash is called.
// SetCrashAfter(k) makes the k-th mutating operation from then on (Create,
// OpenReadWrite, File.Write, File.Sync, File.Truncate, Rename, Remove,
// MkdirAll, SyncDir; every call counts, whether or not it succeeds) the
// crash point: it does not take effect, and it and every later operation on
// the FS and on its open files, reads and Close included, fail with an error
// wrapping ErrCrashed. Reads, Close and Lock are not counted. Ops reports
// how many mutating operations have run, so that a test can run a workload
// once to count them and then crash it at each k in turn.
//
// CrashClone(seed) returns a new MemFS holding a state the power cut could
// have left, chosen by a generator seeded with seed (the same seed and the
// same history give the same state, byte for byte):
//
//   - A file's synced content is intact. If the file changed since its
//     last Sync, the change is, with equal odds, dropped (the synced
//     content), kept whole (the current content), or torn. A torn change
//     is the current content up to a random cut within the changed bytes
//     (from the first byte that differs from the synced content to the
//     last), and the synced content past the cut: writes reach the disk
//     in order, and an overwrite of synced bytes (preallocated zeros, for
//     instance) leaves them past the cut. With even odds the last 1 to
//     512 bytes before the cut (never bytes before that first difference)
//     are then replaced by zeros or by garbage, as by a torn sector. An
//     unsynced Truncate to below the synced size keeps one of the two
//     whole versions.
//   - Each directory's durable entries are intact, and each unsynced entry
//     change is kept or lost independently, with equal odds. Kept changes
//     are replayed in their original order, each only if the names it
//     touches still hold what they held when it ran; otherwise it is
//     skipped (for example a rename of a file whose create was lost). So
//     only a kept change removes or replaces a durable entry. A rename
//     between two directories is kept or lost as a whole while it is
//     unsynced in both; once one of them is synced, the other half is
//     kept or lost alone, which may leave the file under both names or
//     under neither: sync both.
//   - Locks are not carried over.
//
// The clone's whole state is durable (it is the new baseline), it has no
// crash point, and it can be crashed and cloned in turn, as a restarted
// process would be. The original stays crashed and unchanged, so it can be
// cloned again with other seeds.
//
// The core crash test of a layer above runs its workload on a MemFS with
// SetCrashAfter(k) for k = 1, 2, ... until a run completes without
// crashing; after each crash it recovers from CrashClone with a few seeds
// and checks every invariant, printing the seeds when one fails.
//
// # Fault injection
//
// NewFaulty wraps any FS so that an Injector decides, before every FS and
// File operation, whether it fails. An operation is described by an Op: its
// OpKind and the path it concerns. A failed operation returns the
// injector's error in an *fs.PathError (an *os.LinkError for Rename) and
// never reaches the underlying FS, with one exception: an injected error
// matching io.ErrShortWrite on a Write first writes half the buffer to the
// underlying file, a short write. Close is never failed.
//
// The ready injectors count operations of one kind, deterministically and
// safely under concurrent use: FailNth fails the n-th, FailFrom the n-th
// and every later one, ShortWriteNth makes the n-th Write a short write.
// WithPathSuffix and WithPathFilter restrict an injector to some paths.
// Injected errors wrap ErrInjected by default; pass ErrNoSpace to simulate
// a full disk (it matches syscall.ENOSPC). Any function can be an injector
// through InjectorFunc.
package vfs
