// Package remote dispatches operations from procedures on a master to
// worker processes (nodes), as HBase's RemoteProcedureDispatcher does for
// region servers.
//
// # Model
//
// A procedure step asks for an operation (a type, a payload, a target
// node); its record commits with the step and is sent once durable, in
// batches per node. The node runs it and reports the outcome; the master
// commits the outcome together with the wake-up of the procedure before
// it acknowledges the report. Every operation carries its procedure, its
// id, its attempt, the node incarnation and the master epoch. Nodes run
// each operation id at most once while they live; a node that dies fails
// its outstanding operations with ErrNodeDied, and the procedure decides.
//
// # Nodes
//
//	n, err := remote.NewNode(remote.NodeOptions{Name: "rs1", Addr: "rs1:7001",
//		Master: "master:7000", Transport: tr})
//	remote.Handle(n, snapRegion, func(ctx context.Context, req SnapReq) (SnapResp, error) { ... })
//	serve n.Service() at Addr on the transport
//	err = n.Start(ctx) // registers (retrying until the master answers or ctx ends)
//	defer n.Stop()
//
// Start registers the incarnation and heartbeats at the interval the
// master gives. Execute takes a request only if it names this node and
// incarnation (else ErrWrongNode), comes from the newest master epoch the
// node has seen or a newer one (else ErrStaleEpoch) and is well formed:
// operations, each with a type, no id twice (else ErrBadRequest); a
// refused request changes nothing. It returns at once: a new operation
// id is queued for one of Workers workers; a known one still running is
// left alone; a finished one has its outcome reported again. A type
// without a handler is refused; a handler's error, or its panic, fails the
// operation with that message.
//
// Outcomes go back in reports of up to MaxReportBatch, sent when that
// many wait or ReportDelay after the first, one report at a time, each
// resent with backoff until acknowledged. An outcome carries the epoch and
// attempt of the latest request that carried its operation (a new master
// accepts only its own epoch). An acknowledged operation is remembered,
// with its outcome, for Remember, so that a late resend is answered from
// memory; then it is forgotten, and a resend would run it again. Memory
// is thus bounded by the operations of the last Remember plus those not
// yet acknowledged (the master's MaxInFlight bounds those).
//
// A master that answers ErrUnknownNode to a heartbeat or a report gets
// the same incarnation registered again; if it answers Register with
// ErrUnknownNode it has declared the incarnation dead (and failed its
// operations): the node then takes a new random incarnation, forgets
// every operation and unreported outcome of the dead one, cancels the
// contexts of its running operations, and registers again. ErrStaleEpoch
// from a master (the node knows a newer one) is logged and retried. Stop
// cancels running operations, waits for them and drops unreported
// outcomes; Execute then returns ErrStopped.
//
// # Master
//
// (see dispatcher.go)
//
// # Transports
//
// (see dispatcher.go)
//
// # Wire
//
// (see dispatcher.go)
package remote
