// Package server is the operator's surface of a procyon control plane: one
// http.Handler (Server) that a program embedding an engine mounts, serving a
// JSON API under /api/v1/, a web UI under /ui/, /healthz, /readyz, /metrics
// and, opt-in, pprof; and Client, the API's Go client (the procyon CLI's
// verbs use it).
//
// # Usage
//
//	srv, err := server.New(server.Options{Engine: e, Types: []server.SubmitType{server.JSONType(createTable)}})
//	if err != nil { ... }
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:7070", srv)
//
// Off loopback, give Options.Tokens or Options.ClientCerts: CheckListen
// refuses the address otherwise, and programs call it before they listen.
//
// # Model
//
// The server keeps nothing of its own: every answer is read from the
// engine (and the dispatcher, the barrier coordinator) when it is asked
// for, and every action is the engine's (Submit, Wait, Abort, Bypass,
// Ack), durable when the answer is sent. A request that is refused
// changes nothing.
//
// # Routes
//
// Bodies are the JSON types of wire.go; "→" is the answer's.
//
//	GET  /api/v1/procedures               → ProcedureList: ?status=a,b&type=&root=&parent=&error=&since=&until=&before=&limit=
//	POST /api/v1/procedures               SubmitRequest → 201 SubmitResponse
//	GET  /api/v1/procedures/{id}          → ProcedureDetail: tree, history, locks, remote operations, audit, result
//	GET  /api/v1/procedures/{id}/wait     → WaitResponse: ?timeout=30s (longer than 1m is cut to 1m)
//	POST /api/v1/procedures/{id}/abort    ReasonRequest → Procedure
//	POST /api/v1/procedures/{id}/bypass   ReasonRequest → Procedure
//	POST /api/v1/procedures/{id}/ack      (no body, or {}) → Procedure
//	POST /api/v1/procedures/abort         BulkAbortRequest → BulkAbortResponse
//	GET  /api/v1/locks                    → LockList
//	GET  /api/v1/waits                    → WaitList: events waited for, timers
//	GET  /api/v1/nodes                    → NodeList (empty without Options.Dispatcher)
//	GET  /api/v1/store                    → StoreInfo
//	GET  /api/v1/engine                   → EngineInfo
//	GET  /api/v1/engine/samples           → SampleList: one a second, the last 10 minutes
//	GET  /api/v1/audit                    → AuditList: ?before=SEQ&limit=100
//	GET  /api/v1/barriers                 → BarrierList: barrier procedures in progress, each member's phase (empty without Options.Barriers)
//	GET  /api/v1/types                    → TypeList: the submittable types
//	GET  /healthz                         200 "ok" while the process serves (no credentials)
//	GET  /readyz                          200 "ok" once Options.Ready returns nil, else 503 and why (no credentials)
//	GET  /metrics                         Options.Gatherer, Prometheus text (404 without one)
//	GET  /debug/pprof/...                 net/http/pprof, with Options.Pprof
//
// The list is newest first; a page of limit (1 to 1000, default 100)
// has Next, the "before" of the following page, unless it is the last.
// since and until are RFC 3339 and bound the creation time. A submission
// names a type of Options.Types; its args are decoded strictly into the
// type's data; a nonce (at most 256 bytes) makes it idempotent (the same
// id again); timeout is a Go duration, the procedure's deadline; the
// submitter recorded is the caller's name. Abort and bypass need a why
// (1 to 1024 bytes), recorded with the caller's name in the procedure
// and the audit log. A bulk abort takes the list's parameters as its
// filter (without limit), selects the live roots not already rolling
// back, newest first, at most limit (default 100, at most 10000; More
// says there were more), and aborts each: the outcome is "aborted" or the
// code that refused it (conflict: past the point of no return, or
// quarantined). With dryRun it aborts nothing and says "would abort",
// or conflict for a tree past its point of no return or quarantined.
//
// # Errors
//
// An error is an Error body {"code", "message"} with a stable code:
//
//	400 bad_request         malformed or over-long JSON, an unknown field, more than one value, a bad parameter, an unknown one
//	401 unauthorized        no or unknown credentials (WWW-Authenticate: Bearer)
//	403 forbidden           a read credential on an acting route; an unsafe cross-origin browser request
//	404 not_found           no such procedure, or no such route
//	405 method_not_allowed  the route takes other methods (Allow lists them)
//	409 conflict            refused in its state: past the point of no return, finished, not finished (ack), quarantined
//	413 too_large           a body over Options.MaxBody (default 1 MiB)
//	503 unavailable         the engine is not running or failed
//	500 internal            anything else (logged)
//
// Client returns them as *APIError, which errors.Is matches against
// ErrBadRequest, ErrNotFound, ErrConflict, and the rest.
//
// # Access control
//
// Every route but /healthz and /readyz needs credentials: a bearer token
// (Authorization: Bearer SECRET, or the UI's session cookie) of
// Options.Tokens, or a verified TLS client certificate whose common name
// Options.ClientCerts maps to a role (mutual TLS: the http.Server's
// tls.Config requires and verifies client certificates). Read may GET
// everything; Operate may also POST (submit, abort, bypass, ack, bulk
// abort) and use pprof. Secrets are kept as SHA-256 sums and compared in
// constant time against every token; the logs name the token (its Name,
// or "cert:" and the common name) and never hold a secret. Without tokens
// and certificates every request operates, as "local": serve such a
// server on loopback only. Unsafe cross-origin requests from browsers
// (Sec-Fetch-Site, Origin) are refused, so a web page cannot make a
// loopback server act. Each action is logged with who, what and why.
package server
