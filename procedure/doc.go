// Package procedure is procyon's crash-safe procedure engine: HBase's
// Procedure v2 rebuilt in Go on the durable store. A procedure is a state
// machine whose every step commits, in one transaction, the metadata
// writes it made and its own new state; procedures spawn children that run
// in parallel; when any procedure of a tree fails, every step the tree
// executed is undone in exactly the reverse order (children of types that
// declare KeepSucceeded and succeeded are left to their parent to
// compensate); results are kept until acknowledged, with an error a
// caller can match with errors.Is; submissions are idempotent with a nonce; a restart
// resumes everything from the store.
//
// # Using it
//
//	s := durable.New(durable.Options{Dir: dir})
//	tables := durable.NewCollection[string, Table](s, "tables", nil)
//	e := procedure.New(s, procedure.Options{})        // registers its collections: before Open
//	create := procedure.Register[State, Data](e, "create-table", &createTable{tables: tables}, nil)
//	if err := s.Open(ctx); err != nil { ... }
//	if err := e.Start(ctx); err != nil { ... }         // recovers, then runs
//	defer e.Stop()
//
//	id, err := create.Submit(ctx, Data{Name: "users"}, procedure.SubmitOptions{Nonce: requestID})
//	result, err := create.Result(e.Wait(ctx, id))     // the final Data, or why it rolled back
//	in, err := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
//
// A type is a StateMachine[S, D]: S an integer state type, D the user
// data (persisted with a durable.Codec; JSON by default), registered with
// its TypeOptions (nil: the defaults). Execute(ctx, env, state, data)
// returns GoTo(s), Again(), Done(), Yield(), Spawn(next, children...),
// WaitEvent(next, event), Sleep(next, d) or SleepUntil(next, t), or an
// error, which fails the procedure and rolls back its tree (Retryable(err)
// retries the step instead). Rollback(ctx, env, state, data) undoes one
// executed state. A step's metadata writes go through env.Write, and the
// reads they depend on go inside it (Get(tx, ...)), so that no other
// step changes them before the commit (see Env.Write and the package
// example).
//
// Optional capabilities are named interfaces; a type implements those it
// needs, and asserts them at compile time
// (var _ procedure.Locker[State, Data] = (*createTable)(nil)):
//
//	Initialer[S]          Initial() S: the first state (default: the zero S)
//	NoReturner[S]         NoReturn(S) bool: the point of no return (abort refused,
//	                      nothing before it rolled back; a failure after it is retried)
//	AfterReplayer[S, D]   AfterReplay(id, state, data): rebuild transient state after a restart
//	Locker[S, D]          Locks(state, data) []Lock: the locks a step needs
//	TimeoutHandler[S, D]  OnTimeout(ctx, env, state, data) (Next, error): handles the
//	                      procedure's timeout, or its step's (Env.SetTimeout)
//
// Register panics on a method named as one of them with another
// signature: the engine would ignore it. Sequential wraps one function as
// a one-shot procedure.
//
// Engine.Wait is the one way to wait for a result (Type.Result decodes
// its data), and Engine.WaitFor the one way to wait for anything else
// about a procedure (a condition on its Info), both until a context ends.
//
// # The one write path
//
// A step never runs inside a store transaction (that would hold the
// store's write lock for as long as the step takes). It records its
// metadata writes with Env.Write, whose functions read, inside the
// transaction, what the writes depend on. When it returns, the worker hands the
// step's commit to the committer and takes other work. The committer
// gathers the commits waiting (steps, rollback steps, submissions; up to
// Options.MaxBatch) into one durable.Store.WriteAsync whose function
// runs, for each, the recorded writes and then stores the procedure's new
// record (and its new children's, or its completed tree's result); the
// records are encoded under the engine's lock and put in the transaction
// after it is released, so that the B-tree inserts never hold up the
// workers. So a step's metadata and its procedure's state are in one
// transaction, one WAL record, always together; a batch holds several
// whole steps. As soon as a batch's transaction is queued, the committer
// gathers the next batch, while a completer waits for the previous ones'
// commits in order (at most Options.Committers waiting) and lets their
// procedures go; the store's group commit shares each fsync among them.
// The procedure is held (not runnable) until its commit is durable: its
// next step never starts before. If a recorded write fails, the batch's
// transaction is dropped and made again with that step failed instead
// (nothing of its writes commits; the other steps are unaffected); if
// the store refuses a batch as too large, its commits go one by one.
//
// # Trees and the rollback stack
//
// A root and its descendants form a tree. Every committed step of any of
// its procedures takes the next index of the tree's rollback stack,
// allocated inside the commit function; commits are serialized by the
// store, so index order is commit order. Each procedure's record holds its
// executed states with their indexes. A state run again (Again, or a GoTo
// to itself) without children in between is one entry, rolled back once;
// the state whose Execute failed gets an entry too (its Execute may have
// done part of its work), unless the step failed before Execute ran (its
// Locks were invalid). On load, each tree's stack is rebuilt from its
// procedures' records; a gap, a duplicate, an index past the end or
// entries out of order quarantine that tree alone.
//
// A failure (a step's error, or a client's Abort, which is refused once
// the tree is past its point of no return) marks the tree failed: no new
// step of it starts, the steps running finish and commit (they are on the
// stack too), and once none runs, the rollback pops the stack from the
// top: Rollback of the owning procedure for its last executed state, and
// a commit of the pop (with the Rollback's recorded writes). A failing
// Rollback is retried after a bounded, growing delay, visibly (Info.Retries,
// LastError); Bypass skips it. The pop that empties the stack also
// completes the tree as rolled back.
//
// A child that succeeded is rolled back with its tree, state by state,
// unless its type sets TypeOptions.KeepSucceeded (HBase 2's rule): then
// its entries, and its descendants', are popped without their Rollback,
// and its parent's Rollback of the state that spawned it compensates.
// The default is the safe one: nothing is left behind unless a type says
// its parent compensates, and a Rollback that keeps failing is visible
// and can be bypassed, while a missing compensation would be silent.
//
// # Operator actions: Abort and Bypass
//
// Abort(id) fails id's tree (the first failure's error stays the tree's:
// source "abort"). Each step of the tree running then sees its context
// cancelled with context.Cause ErrAborted (one taken by a worker but not
// yet in Execute does not run); whatever it returns commits, and its
// state is rolled back with the rest. The abort's own commit
// puts the state of every step running on the stack (its step's commit
// then adds no entry), so a step whose commit a crash loses is rolled
// back all the same: Rollback must tolerate a state that did part of its
// work, or none.
//
// Bypass(id, who, why) is for a procedure stuck for good (HBCK2's
// bypass). In a running tree, id and its unfinished descendants finish at
// once as succeeded without running (a step of theirs still running has
// its context cancelled with cause ErrBypassed, and its commit is
// discarded; one not yet in Execute does not run), and every ancestor of id is bypassed too: it runs no
// further state, its timeout is cleared, and it finishes once its other
// children have (siblings finish their work). Nothing builds on work that
// never happened: the root ends succeeded but bypassed, and Wait's
// Result.Err matches ErrBypassed. Bypassing the root completes the tree
// at once, whatever its procedures were doing (running a step, waiting
// for locks, an event, a timer or children), and lets go of their locks,
// lock requests, timers and event waits. In a tree that is rolling back,
// the rollback of id and its descendants is skipped (their executed
// states stay), their ancestors are rolled back as usual, and bypassing
// the root completes the tree as rolled back (Err matches ErrRolledBack
// and ErrBypassed). Each procedure a bypass reached records who, why,
// when, the procedure bypassed (Info.Bypass.Target) and how it was
// reached (Role: BypassDirect, BypassDescendant, BypassAncestor); the
// root's result keeps its own. A bypass is durable when Bypass returns,
// and no procedure it reached starts a forward step from then on (an
// ancestor is still rolled back if its tree fails later, by a sibling's
// failure or an Abort).
//
// When a root finishes (succeeded or rolled back), the same commit turns
// its record into the result (its final data, or its Error) and deletes
// its descendants' records. Results are
// kept for Options.ResultTTL (15 min) after completion, or
// Options.AckedResultTTL (5 min) after Ack, whichever comes first; the
// sweeper deletes expired ones in batches, with their nonces.
//
// # Errors
//
// A rolled-back tree's result holds an *Error: its source ("type#id" of
// the procedure that failed, "abort", "timeout", or one a step named),
// its message, the code of the ErrorCode the step's error wrapped, and
// which of the engine's outcomes it is. Only these are stored, so the
// error Wait returns has the same shape before and after a restart, and
// errors.Is matches ErrRolledBack, ErrAborted, ErrTimeout, ErrChildFailed
// (the failure was a descendant's), ErrBypassed, and a declared ErrorCode
// (procedure.NewErrorCode("pkg.kind", "message"), returned wrapped by a
// step; a code no ErrorCode of the program declares is kept as stored).
//
// # Executor
//
// Options.Workers goroutines pull work from a run queue (front: resumed
// work; back: new submissions and yields). A procedure is held by at most
// one worker (or one commit) at a time. A procedure that cannot run
// (waiting for children, a lock, an event, a time or a retry; see
// Scheduling) is parked outside the queue and pushed to the front when
// woken. A monitor notices workers busy in one step longer than
// Options.StuckAfter and starts temporary workers, up to
// Options.MaxExtraWorkers, which exit when idle.
//
// # Scheduling: locks, events, timers, timeouts, retries
//
// Nothing that waits holds a worker: a procedure waiting for a lock, an
// event, a time, a retry or its children is parked outside the run queue
// and pushed to its front when woken, so that every worker can be busy
// with waiting work and progress still happens (HBASE-19976).
//
// Locks are hierarchical resources ("table/t1", "table/t1/region/r7"),
// exclusive or shared; a lock implies a shared lock on every ancestor
// (see Lock). Before a step runs, the engine takes all the locks the
// type's Locks method returns for the state, or none: a procedure that
// cannot get them all is parked in the lock table, which serves each
// resource's waiters in order (an exclusive waiter is not starved by
// later shared ones) and wakes them when the locks free up. A procedure
// never conflicts with its ancestors' locks (children inherit them), and
// its requests jump the queue while an ancestor holds locks (a parent
// waits for its children: making them queue behind a waiter for the
// parent's lock would deadlock). Without TypeOptions.HoldLocks, a step's
// locks are let go once its commit is durable; with it, they are taken
// at the first step that needs them, stored in that step's commit, held
// through suspensions, children and rollback, let go when the procedure
// finishes (or its tree completes), and held again at recovery before
// anything runs. A Rollback step takes the locks of its state, unless the
// procedure holds its locks. Engine.Locks shows the table: holders,
// waiters, since when.
//
// Events are named and level-triggered (HBase's ProcedureEvent): Signal
// (or a step's Env.Signal, in its commit) makes an event signalled, in
// the store, and wakes every procedure suspended on it to the front of
// the queue; ResetEvent makes it not signalled again. A step returning
// WaitEvent is suspended only if the event is not signalled when its
// commit applies, in the same transaction as the signal's check, so a
// signal is never lost. Sleep and SleepUntil store the wake-up time (the
// engine's Clock) with the step; timeouts store the deadline with the
// procedure. A step may also bound the wait it enters (an event, a
// sleep, its children, a retry) with Env.SetTimeout: that deadline is
// stored with its commit and replaced by the procedure's next committed
// step (cleared, unless that step sets one again; one that passes while
// a step runs waits for that step's commit). The procedure's timeout and
// its step's are independent; whichever passes first fires (the
// procedure's first if both have). All are armed again at recovery at
// the stored wall-clock times, never fire before them, and fire at once
// if they passed while the engine was down. A timeout fails the
// procedure and rolls its tree back (Wait's error matches ErrTimeout),
// unless the type has OnTimeout, which then runs as the procedure's next
// step (Env.StepTimedOut says which timeout; it may re-arm the step's
// with SetTimeout). A procedure waiting for its children fails all the
// same; past the point of no return a timeout is only logged.
//
// A step that returns Retryable(err) is run again after the type's
// RetryPolicy delay (exponential, with jitter), writing nothing to the
// store per attempt (HBASE-21233); after RetryPolicy.Attempts it fails.
// Failed rollback steps and failed steps past the point of no return are
// retried with the same backoff until they succeed, visibly (Info.Retries,
// Info.LastError).
//
// # Recovery
//
// Start scans the procedures collection once: finished roots are only
// noted for the sweeper; live procedures are decoded (through their
// type's upgrade if their data is older), grouped into trees, checked, and
// their AfterReplay hooks run; held locks are restored into the lock
// table; suspended procedures wait again (or are runnable, if their event
// is signalled or their time passed) and timers and timeouts are armed;
// then runnable procedures and failed trees' rollbacks are queued. A procedure whose type is unknown, whose data does
// not decode or is newer than the program, or whose upgrade fails, makes
// its tree quarantined: kept as it is, reported in Info.Quarantined, Stats
// and the log, never run, never dropped; the other trees load and run.
// Once the program can read it again, it runs after the next restart.
// Start-up reads only the live procedures and kept results: the durable
// store's snapshots bound the log.
//
// # On-disk format
//
// The engine keeps four collections in the store (prefix Options.Name,
// default "procedure"):
//
//	<name>.procs    uint64 id -> procedure record (below)
//	<name>.nonces   string nonce -> uvarint id
//	<name>.events   string event -> uvarint unix ns it was signalled (present: signalled)
//	<name>.meta     "next-id" -> uvarint: ids below it may be in use (raised
//	                by 1024 at a time, in the commit that needs it)
//
// A procedure record; integers are varints (uvarint unless marked signed),
// strings and byte strings are a uvarint length and the bytes:
//
//	+---------+--------+-------+--------+------+------+-------------+-------+
//	| version | status | flags | parent | root | type | type version| state |
//	| u8 1, 2 | u8     | u8    |        |      | str  |             | signed|
//	+---------+--------+-------+--------+------+------+-------------+-------+
//	| steps | n entries | entry... | created | updated | submitter | nonce |
//	|       |           |          | signed  | signed  | str       | str   |
//	+-------+-----------+----------+---------+---------+-----------+-------+
//	| data  | [error: source str, message str]   [bypass: who str, why str,
//	| bytes |  at signed]  [completed signed]   [acked signed]
//	|       |  [wait: u8 kind, event str (kind 1) or until signed (kind 2)]
//	|       |  [timeout signed]  [locks: n, n x (u8 mode, resource str)]
//	|       |  version 2 only: xflags uvarint (not 0), then
//	|       |  [error code str, u8 outcome]  [step timeout signed]
//	|       |  [bypass-of: target id, u8 role]
//	+-------+-------------------------------------------------------------
//	entry: state (signed) | stack index | u8 entry flags (1: spawned children)
//	status: 1 runnable, 2 waiting (children), 3 succeeded, 4 failed,
//	        5 rolled back, 6 suspended (an event or a time: the wait section);
//	        bit 7 (128) set: the flags2 byte follows flags
//	flags:  1 error, 2 bypass, 4 aborted, 8 completed, 16 acked, 32 wait,
//	        64 timeout, 128 locks (each optional section is present iff its
//	        flag is set)
//	xflags: 1 error code and outcome (present iff the error section is),
//	        2 step timeout (Env.SetTimeout's deadline), 4 bypass-of
//	        (present iff the bypass section is; a version 1 record's
//	        bypass was direct)
//	outcome: 1 aborted, 2 timed out, 4 a child's failure
//	modes:  1 shared, 2 exclusive
//	roles:  0 the procedure bypassed, 1 a descendant of it, 2 an ancestor
//	times:  unix nanoseconds
//
// A record is written as version 1 when it needs no extension section
// (most records), as version 2 otherwise; both are read. An error in a
// version 1 record (written before outcomes were stored) is a timeout if
// its source is "timeout" and an abort if it is "abort".
//
// A waiting procedure whose children all succeeded is stored as waiting
// and loaded as runnable; the count of running children is not stored
// (a child bypassed as an ancestor still counts until it finished).
// A live procedure with an error section failed: its tree is rolling back
// (a step that was running when its timeout failed it may have committed
// a later status).
// A suspended procedure woken by an event or a timer stays stored as
// suspended until its next commit (the signalled event or the passed
// time wakes it again at recovery; ResetEvent first rewrites the records
// of the procedures the event woke). Locks are stored only for
// HoldLocks types; a step's own locks are memory only (after a crash the
// step runs again and takes them again).
// The constants in record.go are part of the format: never change them.
//
// # Crash model
//
// Steps are at-least-once: after a crash, the steps whose commits were not
// durable run again; a step is acknowledged (and its next step may start)
// only once its commit is durable. Execute and Rollback must tolerate
// running again, and Rollback a state that did only part of its work.
// procedure/proctest runs a user's procedure types through a crash and
// restart before and after every step's commit, and through a failure at
// every step, with crashes during the rollback. The package's own
// randomized test runs many trees with failures on the crash-simulating
// file system, aborting and bypassing random procedures of them at random
// moments, crashing at random file operations; after every restart it
// checks that no acknowledged step was lost, that every procedure's
// executed states and its metadata agree (exactly, but for the states an
// abort stacked and the rollbacks a bypass skipped), that finished trees
// left all their metadata (succeeded) or none (rolled back, unless
// bypassed) and no record, that no procedure ran on two workers at once,
// and that no procedure a bypass reached started a step after Bypass
// returned. Its trees also
// wait for events (signalled later, across crashes), sleep, retry, time
// out, and take table and region locks, exclusive and shared, some held
// across steps: after every restart and stop it checks that no two
// conflicting owners hold a lock and that every holder is a live
// procedure, every step after a sleep checks that it did not wake early,
// and no tree times out before its deadline.
package procedure
