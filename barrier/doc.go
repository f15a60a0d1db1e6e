// Package barrier runs globally-barriered procedures: operations that must
// happen on every member process at once, such as flushing a table's
// regions everywhere or taking an online snapshot while every member holds
// its writes. It is HBase's distributed Procedure (ZooKeeper-based,
// org.apache.hadoop.hbase.procedure) rebuilt on etcd leases, so that a dead
// member or coordinator aborts a procedure at once instead of at its
// timeout.
//
// "Procedure" here keeps HBase's word for one such barriered run (and
// Subprocedure for a member's part in it). It is unrelated to
// procedure.Procedure, the durable multi-step operation of package
// procedure: a barrier procedure is not persisted, is not replayed after a
// crash, and vanishes with its coordinator (see Failure model).
//
// # Roles and phases
//
// A Coordinator starts a named procedure of some type on a list of members
// and waits for its outcome (Coordinator.Start, Handle.Wait). A Member
// registers a Factory per procedure type (Member.Register) and, for every
// procedure that names it, builds a Subprocedure and drives it:
//
//	coordinator                         each member
//	-----------                         -----------
//	Start: record the procedure  ───►   learn of it (also if it joins late)
//	                                    write "joined", run Acquire
//	                             ◄───   write "acquired"
//	every member acquired:
//	record "reached"             ───►   run Inside
//	                             ◄───   write "done" with Inside's result
//	every member done:
//	record "complete"            ───►   finish (no Cleanup)
//	Wait returns the results
//
// The procedure type selects the members' Factory; the name identifies one
// run and is unique among running procedures (ErrDuplicate). The args bytes
// are handed to every member's Factory; each member's result bytes are
// collected by Handle.Wait.
//
// # Errors
//
// The first error raised anywhere aborts the procedure everywhere: a
// member's Factory, Acquire or Inside failing (ErrMemberFailed), the
// caller's Cancel or context (ErrCanceled), a timeout (ErrTimeout), a
// member's or the coordinator's session ending (ErrMemberLost,
// ErrCoordinatorLost), or the transport losing track of the procedure
// (ErrTransport). The abort is recorded once, first writer wins, as an
// *AbortError carrying the Source (a member name, or CoordinatorSource),
// the Kind and the Message; Handle.Wait returns it and every member that
// acquired receives it in Cleanup. Cleanup runs exactly once on exactly the
// members whose Acquire returned nil, unless the procedure completed. A
// failed Acquire must undo its own partial work.
//
// # Progress
//
// The coordinator keeps each procedure's timeline as Stats: every member's
// last marker (Phase: joined, acquired, done; zero before it joined),
// whether its session was lost, and when each phase was reached.
// Handle.Stats returns it, Handle.WaitFor waits for a condition on it, and
// Coordinator.Running returns the Stats of every procedure in progress,
// sorted by name (an operator's view: a finished procedure leaves it).
//
// # Timeouts
//
// CoordinatorOptions.Timeout bounds a whole procedure at the coordinator;
// MemberOptions.Timeout bounds each member's part, so that a member never
// waits forever for a slow or paused peer or coordinator. Either one firing
// aborts the procedure with ErrTimeout and the Source that fired it.
//
// # Transports
//
// Coordinator and Member run over a Transport: NewInProc keeps everything
// in one process (tests, single-binary deployments), NewEtcd runs across
// processes on etcd. Both enforce the same rules; the phase logic,
// timeouts, cleanup and statistics are shared.
//
// # etcd key layout
//
// Under EtcdOptions.Prefix (default "/procyon/barrier/"); "(C)" marks keys
// under the coordinator's session lease, "(M)" under a member's. Key
// segments and JSON fields are part of the wire format; never change them.
//
//	<prefix>
//	├── coord/<lease>                  (C) election: concurrency.Mutex; the owner is the coordinator
//	├── members/<member>               (M) {"host","pid","started"}: one live session per name
//	├── proc/<name>/
//	│   ├── record                     (C) {"v":1,"type","args","members","lease","coordinator"};
//	│   │                                  its create revision is the run's instance number
//	│   ├── reached                    (C) {"instance"}: the barrier is reached
//	│   ├── complete                   (C) {"instance"}: every member is done
//	│   └── abort                      (C) {"instance","source","kind","message"}: the first error
//	└── run/<name>/<instance>/<member>/
//	    ├── joined                     (M) {}: the member is acquiring
//	    ├── acquired                   (M) {"took_ns"}: Acquire returned nil
//	    └── done                       (M) {"took_ns","result"}: Inside's result
//
// Members write the abort under the coordinator's lease (the record names
// it), so that everything about a run vanishes with its coordinator.
//
// Every decision is one transaction:
//
//   - create: record absent and this coordinator owns the election ⇒ put
//     record; sweep stale reached/complete/abort and every run/<name>/ key
//     left by a dead run of the same name.
//   - member marker: record has this instance and no abort (for joined: nor
//     reached, nor complete, so a member never joins a run already past
//     its acquire phase) ⇒ put the marker under the member's lease.
//   - reached: record has this instance, no abort, this coordinator still
//     owns the election (the IsOwner fence) and every member's acquired
//     marker exists ⇒ put reached. It compares MaxTxnOps-3 members at most
//     (125 with etcd's default --max-txn-ops 128).
//   - complete: record, no abort, election ⇒ put complete.
//   - abort: record has this instance, no abort, no complete ⇒ put abort;
//     otherwise the earlier abort (or the completion) is the outcome.
//   - remove: the coordinator deletes the record, the decisions and
//     run/<name>/ when the outcome is known.
//
// The coordinator watches run/<name>/<instance>/ and the abort key from
// just after the record's revision; each member reads proc/ once (the late
// joiner's view) and watches it from that revision on. A watch that ends on
// its own (compaction, lost etcd leader) aborts the procedure with
// ErrTransport rather than leaving it hanging. The etcd recipes Barrier and
// DoubleBarrier are not used: they hold no lease, so a dead holder hangs
// them.
//
// # Failure model
//
//   - A member dies (crash, SIGKILL, partition) after it joined: its lease
//     expires within TTL, its markers vanish, the coordinator records
//     ErrMemberLost with the member as Source; the other members clean up.
//     If it had already reported done, its result stands and nothing
//     aborts. A member that dies before it learned of the procedure is
//     caught by the timeouts.
//   - A member's session is lost while the process lives: the same abort;
//     the member itself cleans up (Cleanup gets ErrMemberLost) and
//     Member.Run returns ErrMemberLost. Run again to rejoin.
//   - The coordinator dies: its lease expires within TTL; the record and
//     decisions vanish; members see the record go without an outcome and
//     clean up with ErrCoordinatorLost, then delete their own markers. A
//     coordinator that lost its lease or the election but runs on is
//     fenced: its reached and complete transactions fail.
//   - A Subprocedure hangs: the timeouts abort the procedure; the hung call
//     is canceled through its context.
//   - Only one coordinator per prefix is active; OpenCoordinator (and so the
//     first Start) waits for the election.
//
// # Guarantees
//
//   - No member runs Inside before every member's Acquire returned nil
//     (the reached transaction checks every acquired marker).
//   - The outcome is exactly one of complete or the first abort, and every
//     participant that learns it learns the same one. A participant cut off
//     from the transport learns a lost session instead.
//   - A member runs a given run of a procedure at most once, even if the
//     transport reports it again.
//   - Cleanup runs exactly once on each member that acquired, unless the
//     procedure completed.
//   - Keys of a run are removed when it ends; keys left by a crashed run are
//     swept when the name is started again, or vanish with their leases.
package barrier
