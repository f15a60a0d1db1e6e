// Package server is the operator's surface of a procyon control plane: one
// http.Handler (Server) that a program embedding an engine mounts, serving a
// JSON API under /api/v1/, a web UI under /ui/, /healthz, /readyz, /metrics
// and, opt-in, pprof; and Client, the API's Go client (the procyon CLI's
// verbs use it).
//
// # Routes
//
//	GET  /api/v1/procedures                 list: ?status=a,b&type=&root=&parent=&error=&since=&until=&before=&limit=
//	POST /api/v1/procedures                 submit (SubmitRequest) a type of Options.Types
//	GET  /api/v1/procedures/{id}            detail: tree, history, locks, remote operations, audit, result
//	GET  /api/v1/procedures/{id}/wait       long poll: ?timeout=30s (at most 1m)
//	POST /api/v1/procedures/{id}/abort      abort its tree (ReasonRequest: why is required)
//	POST /api/v1/procedures/{id}/bypass     bypass it (ReasonRequest)
//	POST /api/v1/procedures/{id}/ack        acknowledge a finished root's result
//	POST /api/v1/procedures/abort           bulk abort of the roots a filter selects, with a dry run
//	GET  /api/v1/locks | waits | nodes | store | engine | engine/samples | audit | barriers | types
//	GET  /healthz  /readyz  /metrics  /debug/pprof/
//
// (doc.go is completed by the API's engineer.)
package server
