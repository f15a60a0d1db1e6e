// Package procedure is procyon's crash-safe procedure engine: HBase's
// Procedure v2 rebuilt in Go on the durable store.
//
// # Model
//
// A procedure is a state machine whose every step commits, in one
// transaction, the metadata writes it made and its own new state. A
// procedure may spawn children, which run in parallel; a root and its
// descendants form a tree. When any procedure of a tree fails, every step
// the tree executed is undone in exactly the reverse order, by the
// types' Rollback. A root's result (its final data, or why it rolled
// back) is kept until acknowledged; submissions are idempotent with a
// nonce; a restart resumes everything from the store.
//
// # Usage
//
//	s := durable.New(durable.Options{Dir: dir})
//	tables := durable.NewCollection[string, Table](s, "tables", nil)
//	e := procedure.New(s, procedure.Options{})        // registers its collections: before Start
//	create := procedure.Register[State, Data](e, "create-table", &createTable{tables: tables}, nil)
//	if err := e.Start(ctx); err != nil { ... }         // opens the store, recovers, runs
//	defer e.Stop()                                     // stops, then closes the store
//
//	id, err := create.Submit(ctx, Data{Name: "users"}, procedure.SubmitOptions{Nonce: requestID})
//	result, err := create.Result(e.Wait(ctx, id))     // the final Data, or why it rolled back
//	in, err := e.WaitFor(ctx, id, func(in procedure.Info) bool { return in.Status == procedure.Suspended })
//
// Start opens the store unless the program opened it; with several
// engines on one store (Options.Name), the program opens the store before
// their Starts and closes it after their Stops.
//
// A type is a StateMachine[S, D]: S an integer state type, D the user
// data (persisted with a durable.Codec; JSON by default), registered with
// its TypeOptions (nil: the defaults). Execute(ctx, env, state, data)
// returns GoTo(s), Again(), Done(), Yield(), Spawn(next, children...),
// WaitEvent(next, event), Sleep(next, d) or SleepUntil(next, t), or an
// error, which fails the procedure and rolls back its tree (Retryable(err)
// retries the step instead). Rollback(ctx, env, state, data) undoes one
// executed state. Sequential wraps one function as a one-shot procedure.
//
// A step's metadata writes go through env.Write, and the reads they
// depend on go inside it (Get(tx, ...)), so that no other step changes
// them before the commit (see Env.Write and the package example).
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
// signature: the engine would ignore it.
//
// Engine.Wait is the one way to wait for a result (Type.Result decodes
// its data), and Engine.WaitFor the one way to wait for anything else
// about a procedure (a condition on its Info), both until a context ends.
//
// Rollback: once a tree failed (a step's error, an Abort, a timeout), no
// new step of it starts; the steps running finish and commit, and then
// the executed states are rolled back from the last to the first. A child
// that succeeded is rolled back with its tree, unless its type sets
// TypeOptions.KeepSucceeded (its parent's Rollback compensates). A
// failing Rollback is retried after a growing delay, visibly
// (Info.Retries, LastError). A rolled-back tree's result holds an *Error;
// errors.Is matches ErrRolledBack, ErrAborted, ErrTimeout,
// ErrChildFailed, ErrBypassed and a declared ErrorCode, the same before
// and after a restart (see Error).
//
// Operators: Abort fails a tree (refused past its point of no return);
// Bypass finishes a procedure stuck for good without running it (HBCK2's
// bypass); Ack lets a result go early (results are kept for
// Options.ResultTTL, or Options.AckedResultTTL after Ack). Get, List,
// Locks and Stats show what runs and what waits; Info.History is a
// procedure's timeline (each state it executed with the time its step
// committed, and when its rollback undid it; a result keeps its root's).
//
// Audit log: every Abort and Bypass that takes effect appends an Action
// (who, why, the procedure, its root, when) in the transaction that
// carries it out, so it is durable iff the action is; one refused, bad
// or doing nothing appends none. Engine.Audit reads it newest first; it
// keeps the newest Options.AuditKeep entries.
//
// Listing: List(Query) yields the procedures the store holds (live ones
// and kept results) that match a Query (statuses, type, tree, parent,
// error text, creation time), newest first, each as Get returns it; pass
// the last id of a page as Query.Before for the next. It reads an index
// the engine keeps in memory: the ids of the records by status and by
// type, in sorted blocks (about 16 bytes a procedure), built by Start's
// scan by appending (a small part of a load) and changed on the
// commit path only when a record is created or deleted or its status
// changes. A page selected by a status, type, tree or parent costs about
// its size in record reads, whatever the store holds; a page selected
// only by error text or time reads records until it is full (Since stops
// the scan while creation times grow with ids).
//
// Scheduling: a step may take hierarchical locks (Lock; all or none,
// before it runs; TypeOptions.HoldLocks keeps them until the procedure
// finishes), wait for a level-triggered event (WaitEvent, Signal), sleep
// (Sleep), and have a deadline (SubmitOptions.Timeout, TypeOptions.Timeout,
// Env.SetTimeout). Nothing that waits holds a worker, and every wait,
// timer and held lock is restored after a restart.
//
// Outcomes from outside: SignalWrite records an outcome (a remote
// operation's result) and signals the event its procedure waits on in one
// transaction; the woken step reads it and consumes the event
// (Env.ResetEvent) in its own commit. Env.AfterCommit starts work that
// must wait until the step is durable (sending the request). Package
// remote is built this way.
//
// # On-disk format
//
// The engine keeps five collections in the store (prefix Options.Name,
// default "procedure"):
//
//	<name>.procs    uint64 id -> procedure record (below)
//	<name>.nonces   string nonce -> uvarint id
//	<name>.events   string event -> uvarint unix ns it was signalled (present: signalled)
//	<name>.meta     "next-id" -> uvarint: ids below it may be in use (raised
//	                by 1024 at a time, in the commit that needs it)
//	<name>.audit    uint64 seq -> audit entry (below); the keys are
//	                contiguous (appended at the next, trimmed from the
//	                oldest), so the next seq is the first key plus the count
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
//	|       |  [entry times: k, the leading entries without a time (k <
//	|       |   n entries), then for each later entry its time minus the
//	|       |   previous one's (the first: minus created), signed]
//	|       |  [undone: n (not 0), n x (state signed, its run time minus
//	|       |   the previous undo time (the first: minus created) signed,
//	|       |   its undo time minus its run time signed)]
//	+-------+-------------------------------------------------------------
//	entry: state (signed) | stack index | u8 entry flags (1: spawned children)
//	status: 1 runnable, 2 waiting (children), 3 succeeded, 4 failed,
//	        5 rolled back, 6 suspended (an event or a time: the wait section)
//	flags:  1 error, 2 bypass, 4 aborted, 8 completed, 16 acked, 32 wait,
//	        64 timeout, 128 locks (each optional section is present iff its
//	        flag is set)
//	xflags: 1 error code and outcome (present iff the error section is),
//	        2 step timeout (Env.SetTimeout's deadline), 4 bypass-of
//	        (present iff the bypass section is; a version 1 record's
//	        bypass was direct), 8 entry times (present iff an entry has
//	        a time: when the last step that ran its state committed;
//	        entries stored before times were have none), 16 undone (the
//	        states its tree's rollback undid, in that order, with when
//	        they ran and when their rollback committed)
//	outcome: 1 aborted, 2 timed out, 4 a child's failure
//	modes:  1 shared, 2 exclusive
//	roles:  0 the procedure bypassed, 1 a descendant of it, 2 an ancestor
//	times:  unix nanoseconds
//
// An audit entry (its key is its seq):
//
//	+---------+---------+--------+------+--------+-----+-----+
//	| version | kind    | target | root | at     | who | why |
//	| u8 1    | u8      | id     | id   | signed | str | str |
//	+---------+---------+--------+------+--------+-----+-----+
//	kind: 1 abort, 2 bypass
//
// Audit skips an entry that does not decode, logging its key, so that the
// rest of the log stays readable.
//
// A record is written as version 1 when it needs no extension section
// (most records), as version 2 otherwise; both are read. An error in a
// version 1 record (written before outcomes were stored) is a timeout if
// its source is "timeout" and an abort if it is "abort".
//
// Each committed step of a tree takes the next index of the tree's
// rollback stack; a procedure's entries are its executed states with
// their indexes. A finished root's record is its result (its final data,
// or its error, and its entries not rolled back: its timeline); its
// descendants' records are deleted in the same commit. Records written
// before results kept their entries have none.
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
// Steps are at-least-once: a step is acknowledged (and its next step
// starts) only once its commit is durable; after a crash, the steps whose
// commits were not durable run again. Execute and Rollback must tolerate
// running again, and Rollback a state that did only part of its work, or
// none (an Abort stacks the states of the steps running when it
// commits).
//
// Start recovers from the store alone: live procedures are loaded,
// their trees' rollback stacks rebuilt and checked, held locks taken
// again, waits, timers and timeouts armed at their stored wall-clock
// times (one that passed while the engine was down fires at once), and
// the work queued. A tree that cannot be loaded (an unknown type, data
// that does not decode or is newer than the program, a failing upgrade or
// AfterReplay, a damaged rollback stack) is quarantined: kept as it is,
// reported in Info.Quarantined, Stats and the log, never run, never
// dropped; the other trees run. Once the program can read it again, it
// runs after the next restart.
//
// procedure/proctest runs a user's procedure types through a crash and
// restart before and after every step's commit, and through a failure at
// every step, with crashes during the rollback.
package procedure
