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
// A Dispatcher runs beside an engine (one per engine): NewDispatcher
// before the store opens, Start after Engine.Start, Stop before
// Engine.Stop; serve d.Service() to the nodes. A step calls an operation
// and waits for it without holding a worker:
//
//	var snapRegion = remote.OpType[SnapReq, SnapResp]{Name: "snapshot-region"}
//
//	case stateSnapshot:
//		op, err := snapRegion.Call(d, env, server, SnapReq{Region: id})
//		if err != nil {
//			return procedure.Next{}, err
//		}
//		data.Op = op
//		return remote.Await(stateSnapshotted, op), nil
//	case stateSnapshotted:
//		resp, err := snapRegion.Outcome(d, env, data.Op)
//		if errors.Is(err, remote.ErrNodeDied) { ... } // the procedure decides: retry elsewhere, fail
//
// Call records the operation in the step's commit and hands it to the
// node's sender once that commit is durable (Env.AfterCommit). A report's
// outcomes are committed, each with the signal of its procedure's event
// ("remote/op/<id>"), in one transaction (Engine.SignalWrite) before the
// report is acknowledged; Outcome reads one in the next step and consumes
// it in that step's commit (Env.ResetEvent). Cancel forgets an operation
// (in a Rollback); its late report is ignored, as is every outcome of
// another master epoch (HBASE-28420), of an operation not pending on the
// reporting node incarnation, or of a procedure that is gone (whose
// record is then deleted; Start sweeps those too). An *OpError says why
// an operation failed: errors.Is it with ErrNodeDied, ErrRefused (no
// handler for its type) or ErrFailed (the handler's error message).
//
// Sending: one goroutine per live node incarnation; Call -> the engine's
// completer -> the sender -> the transport is one hand-off (two when a
// batch waits for BatchDelay). A batch leaves when it has MaxBatch
// operations (128) or BatchDelay (1 ms) after its first: the step already
// waited for an fsync, so under load batches fill first, and when idle
// they add 1 ms, not HBase's 150 ms. At most MaxInFlight (4096) operations
// per node are sent and unreported. A failed request is resent (Attempt+1,
// backoff Retry) while the node incarnation lives, never after it died
// (HBASE-22287).
//
// Liveness: Register records a node incarnation live (a new incarnation
// of a live name kills the old; a dead incarnation is told
// ErrUnknownNode and starts a new one); heartbeats renew its Lease (3 s;
// nodes are told to heartbeat every Lease/6). A node whose lease expires,
// who comes back as a new incarnation, or who answers a request with
// ErrWrongNode or ErrUnknownNode is dead: one transaction records it and
// fails every operation pending on it with ErrNodeDied (never retried on
// the same node: the procedure decides), then Options.OnNodeDead runs
// (a control plane starts its crash procedure there, with a nonce) until
// it returns nil, again after a restart if need be. An operation whose
// node is unknown or dead when it would be sent fails at once. A report
// or heartbeat of a newer epoch than the master's gets ErrStaleEpoch.
//
// # Transports
//
// Local is the in-process transport (tests, single-process programs; its
// Fault injects drops, lost replies, delays and hangs). HTTP is the
// network one: JSON over HTTP/1.1, POST only, routes /remote/v1/register,
// /remote/v1/heartbeat, /remote/v1/report (MasterHandler) and
// /remote/v1/execute (NodeHandler); bodies are the JSON of the wire
// structs ([]byte as base64). Every answer but 200 has the body {"code",
// "message"} with a stable code (ErrorCode) and a status (400 bad_request,
// 404 unknown_node, 409 stale_epoch or wrong_node, 503 stopped, 500
// other; 405, 415 and 413 for a wrong method, content type or a body over
// HTTPOptions.MaxBody, 8 MiB); the client turns it back into the sentinel
// (errors.Is works across the wire). A connection failure, a timeout or a
// foreign answer wraps no sentinel: the request may or may not have
// arrived. The handlers check route, method, content type and size, and
// decode one JSON object with no unknown fields and nothing after it,
// before the service sees anything: bad input changes nothing. ServeHTTP
// serves a handler with TLS (HTTPOptions.TLS; mutual TLS with
// ClientAuth), HTTP.TLS makes the client speak https. One 128-operation
// request costs about 6 µs per operation (BenchmarkHTTPExecute): far less
// than the fsync its batch shares.
//
// # Format
//
// Values are u8, uvarint, svarint (signed), str and bytes (uvarint length
// + bytes); every record starts with a version byte (1):
//
//	<Name>.ops    OpID -> | version | state u8 (1 pending, 2 done) | proc uvarint |
//	                        incarnation uvarint (0: node unknown or dead at Call) |
//	                        node str | type str | payload bytes (empty once done) |
//	                        done only: kind u8 (1 result, 2 failed, 3 refused, 4 node died) |
//	                                   result bytes (kind 1) or message str |
//	<Name>.nodes  name -> | version | flags u8 (1 live) | incarnation uvarint |
//	                        registered svarint | died svarint (unix ns; 0 live) | addr str |
//	                        n uvarint (<= 64) | n x (incarnation, registered, died, addr):
//	                        the dead incarnations whose OnNodeDead has not returned nil |
//	<Name>.meta   "epoch" -> | version | epoch uvarint |
//
// An OpID is epoch << 32 | a counter of that epoch (2^32 operations in one
// epoch fail the step), so it is never reused, not even across restarts.
//
// # Crash model
//
// An operation exists if and only if the step that called it committed,
// and is sent only after that. Start takes a new epoch first (durable
// before anything is sent), loads the nodes (live ones get a fresh lease
// from Start) and the pending operations, and sends them again (Attempt
// 1: the count is not stored; nodes answer a known OpID from memory),
// fails those whose node incarnation is not live, and calls OnNodeDead
// for deaths not handled. An outcome and its wake-up are durable together
// or not at all, and a report is acknowledged only once they are. A node
// keeps what it executed only while it lives: a node that restarts is a
// new incarnation, and the master fails what was pending on the old one.
package remote
