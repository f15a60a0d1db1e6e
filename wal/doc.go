// Package wal is procyon's write-ahead log: a segmented, checksummed log of
// opaque records with group commit, size-based rolling, torn-tail repair,
// corruption reported with file and offset, obsolete-segment deletion and a
// tailing reader. Every durable change in procyon goes through it.
//
// # Using it
//
//	w, err := wal.Open(dir, wal.Options{})
//	seq, err := w.Append(wal.Entry{Data: rec})  // returns once rec is durable
//	first, err := w.Append(entries...)          // consecutive records, one write
//	p, err := w.AppendAsync(entries...)         // returns at once; p.Wait(ctx) or w.Sync()
//	r, err := w.NewReader(from)                 // r.Next() up to the durable end; r.Follow(ctx) waits
//	err = w.TruncateFront(seq)                  // records before seq are no longer needed
//	err = w.Close()                             // seals the active segment
//
// Options.ReadOnly opens a log for reading only (tools, backups): nothing
// on disk changes, no lock is taken, and what was durable at Open is read.
// Options.DeferWrites opens it likewise, but under the lock, for a caller
// that reads it before it commits to it (a store's recovery):
// OpenForWrites then makes Open's repairs and the log writable, and a
// Close before that leaves the directory as Open found it.
//
// Sequence numbers start at 1 and increase by one per record, across
// segments and restarts.
//
// # Group commit
//
// Appenders encode their records into one pending batch under a mutex. One
// goroutine at a time owns the IO path: it takes the pending batch, writes
// it with one write and syncs it with one fdatasync, then completes every
// waiter of the batch. While that fsync is in flight, the next batch forms
// from whoever appends meanwhile; no fixed sleep is involved. A lone
// appender that finds the path idle writes its own batch (no hand-off to
// another goroutine); when more formed meanwhile, a background flusher
// takes over. After releasing several waiting appenders, the flusher waits
// at most half an average fsync for them to append again, so that one
// fsync carries all of them instead of every other batch carrying half.
// Non-waiting appends (AppendAsync, HBase's ASYNC_WAL) are written and
// synced by the flusher in the background; past Options.MaxPendingBytes
// they block until the log catches up.
//
// # Failure semantics
//
// A failed write or fsync is final (fsyncgate): the log never retries it,
// never reports the batch or anything after it durable, and returns an
// error wrapping ErrFailed and the cause to every waiter and every later
// append, Sync, Roll and Close. Reopening the log recovers exactly what was
// durable. (HBase rolls to a new file and rewrites the unacknowledged
// records instead; this package does not.)
//
// # On-disk format
//
// A log is a directory of segment files named by their first sequence
// number, 20 decimal digits and ".wal", so that names sort in sequence
// order, plus a LOCK file (flock'd by the process that has the log open),
// and, after a crash during a segment's creation, "<segment name>.tmp".
// All integers are little-endian. The constants in format.go are part of
// the format: never change them.
//
// Segment file:
//
//	+------------------+-----------+-----------+-----+-----------------+
//	| header (32 B)    | frame     | frame     | ... | trailer frame   |
//	+------------------+-----------+-----------+-----+-----------------+
//	                                                   (sealed segments only:
//	                                                   rolled, or closed with records)
//
// Header:
//
//	0       8          12        16            24         28       32
//	+-------+----------+---------+-------------+----------+--------+
//	| magic | version  | flags   | first seq   | reserved | CRC    |
//	|"PRCYNWAL"| u32 = 1 | u32 = 0 | u64       | u32 = 0  | u32    |
//	+-------+----------+---------+-------------+----------+--------+
//	CRC = CRC-32C (Castagnoli) of bytes 0..28.
//
// Frame:
//
//	0       4         8           16         20     21         24
//	+-------+---------+-----------+----------+------+----------+--------------+
//	| CRC   | length  | seq       | stream   | type | reserved | payload      |
//	| u32   | u32     | u64       | u32      | u8   | 3 B = 0  | length bytes |
//	+-------+---------+-----------+----------+------+----------+--------------+
//	CRC = CRC-32C of bytes 4..24+length (everything after the CRC field).
//
// Types: 1 = data (a caller's record, with its sequence number and stream);
// 2 = trailer (payload: u64 last sequence number in the segment, u64
// number of data records; its seq field is the same last sequence number).
// Type 0 is never written, so zero-filled space never decodes as a frame.
// A segment's data records carry consecutive sequence numbers starting at
// the header's first seq; the next segment starts where it ended.
//
// # Durability protocol
//
//   - A segment is created atomically: its header is written to
//     "<name>.tmp" and fsynced, the file renamed to the segment's name, and
//     the directory fsynced, before any record goes into it. So a file
//     with a segment's name always has a durable header. A read-write Open
//     removes leftover *.tmp files (they hold no record).
//   - Rolling writes the old segment's trailer and fsyncs it before the new
//     segment is created. Close does the same to a segment holding records
//     (an empty one stays as it is). So in a cleanly closed log every
//     segment holding records is sealed and followed by another segment;
//     only a crash leaves an unsealed segment with records, and only as
//     the last one.
//   - A batch is acknowledged only after its fdatasync returns.
//   - The active segment is preallocated: before a batch would pass the
//     end of the file, Options.Preallocate bytes of zeros (default 1 MiB)
//     are written past it, and made durable by that batch's fdatasync.
//     Batches then overwrite zeros already on disk, so their fdatasync
//     commits no file-size change (on ext4, no journal commit). Rolling
//     and Close truncate the zeros before writing the trailer. Zeros never
//     decode as a frame (type 0 is never written).
//   - Obsolete segments are deleted oldest first, with a directory fsync
//     after each removal, so that the log on disk is always a contiguous
//     run of segments.
//
// Logs written before this protocol open unchanged (the format version is
// still 1), except that a segment-named file with a missing or torn header,
// which older versions could leave behind a crash and removed silently, is
// now reported as corruption of that file.
//
// # Recovery
//
// Open checks every file with a segment's name: header, checksums,
// sequence numbers, trailer agreement, and contiguity between segments.
// Only the unsealed last segment may end in a torn frame (the unsynced
// tail of a crash): if no valid frame follows the damage, Open truncates
// the segment there and logs the offset and the bytes dropped. Zeros from a
// frame boundary to the end of the last segment are preallocated space, not
// damage (Open cuts them off at debug level). Anything else is corruption,
// reported on the file that is wrong: a bad frame in a sealed segment or
// one followed by a valid frame, a segment with records and no trailer
// that is not the last (a tail cut off after it was sealed), bytes after a
// trailer, a wrong sequence number, a gap between segments (reported on
// the segment after it), a missing or bad header, a foreign file or a
// directory under a segment's name. Open then fails with a
// *CorruptionError naming the file and offset (errors.Is(err, ErrCorrupt))
// and changes nothing. A segment with a newer format version fails with
// ErrVersion.
//
// Options.NeedFrom says which records the caller needs (a store: those
// after its newest snapshot). Damage in segments that hold only records
// before it does not fail Open: the log starts at the segment after the
// last such damage, the files before it stay on disk untouched until
// TruncateFront passes them, and (*WAL).Damage lists what was skipped.
//
// Undetectable by design: a crashed log whose unsealed last segment is cut
// at a record boundary, or whose last segment is removed whole, looks like
// a crash a little earlier; a log whose first segments are removed looks
// like one truncated at the front. A store notices both when the log does
// not reach or cover its snapshot.
//
// # Repair and inspection
//
// Verify and Dump ("procyon wal verify", "procyon wal dump") report what
// Open would do, as a Report whose Verdict is Clean, Torn (a torn tail
// Open would cut: a finding, not "ok"), Skipped (damage before NeedFrom)
// or Corrupt. They, PlanRepair and a ReadOnly Open change nothing (they
// create no directory, LOCK file or segment and truncate nothing) and fail
// with ErrNotLog on a path that is not a log. PlanRepair ("procyon wal
// repair") says exactly what Repair drops: files, sequence ranges, record
// counts and bytes. It cuts the log at the damage only if no intact segment
// holding records follows it; otherwise it refuses (ErrRepairRefused) and
// names those segments: the store-level repair, which knows which records
// its snapshots hold, or a backup is the way then. With NeedFrom, damage
// wholly before it is repaired by deleting the segments before the log's
// start, oldest first.
//
// # Obsolete segments
//
// Records carry a caller-chosen stream number (HBase: a region). A sealed
// segment may be deleted once every stream that wrote to it has been marked
// flushed past its last record there (MarkFlushed), or once all its records
// precede the point given to TruncateFront; only a prefix of the log is
// ever deleted, and never the active segment. A Reader keeps reading a
// segment it has open after it is deleted.
//
// # Crash model
//
// The tests run the log on vfs.MemFS, which at a crash keeps synced data,
// and drops, keeps or tears (cuts, zeroes or garbles the end of) unsynced
// writes, and keeps or loses each unsynced directory change. After every
// crash point, every acknowledged record must be there, byte-exact and in
// order, nothing that was never appended may appear, and the log must take
// new appends.
package wal
