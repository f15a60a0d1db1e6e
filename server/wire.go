package server

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// The JSON bodies of the API under /api/v1 (see doc.go for the routes).
// Times are RFC 3339 with nanoseconds; a zero time is left out. Field names
// are lowerCamelCase and part of the API: add fields, never rename them.

// Procedure is one procedure as the list and the detail show it.
type Procedure struct {
	ID        procedure.ID `json:"id"`
	Parent    procedure.ID `json:"parent,omitempty"`
	Root      procedure.ID `json:"root"`
	Type      string       `json:"type"`
	Status    string       `json:"status"` // procedure.Status's String: runnable, waiting, suspended, failed, succeeded, rolled-back
	State     string       `json:"state"`  // the state it runs next (or ran last): its name if its type names states
	Steps     int          `json:"steps"`
	Submitter string       `json:"submitter,omitempty"`
	Nonce     string       `json:"nonce,omitempty"`
	Created   time.Time    `json:"created"`
	Updated   time.Time    `json:"updated"`
	Completed *time.Time   `json:"completed,omitempty"`
	Acked     *time.Time   `json:"acked,omitempty"`
	// What only memory knows (Info's overlay).
	Running         bool `json:"running,omitempty"`
	WaitingForLocks bool `json:"waitingForLocks,omitempty"`
	RollingBack     bool `json:"rollingBack,omitempty"`
	// NoReturn: which procedure of its tree is past its point of no
	// return, at which state (abort is refused); empty if none.
	NoReturn    string `json:"noReturn,omitempty"`
	Quarantined string `json:"quarantined,omitempty"`
	Retries     int    `json:"retries,omitempty"`
	LastError   string `json:"lastError,omitempty"`
	// What it waits for and until when.
	Event        string     `json:"event,omitempty"`
	WakeAt       *time.Time `json:"wakeAt,omitempty"`
	Deadline     *time.Time `json:"deadline,omitempty"`
	StepDeadline *time.Time `json:"stepDeadline,omitempty"`
	// How it failed or was forced.
	Error   *ProcError `json:"error,omitempty"`
	Bypass  *Bypass    `json:"bypass,omitempty"`
	Aborted bool       `json:"aborted,omitempty"`
}

// ProcError is procedure.Error.
type ProcError struct {
	Source  string `json:"source"`
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
}

// Bypass is procedure.Bypass.
type Bypass struct {
	Who    string       `json:"who"`
	Why    string       `json:"why"`
	At     time.Time    `json:"at"`
	Target procedure.ID `json:"target"`
	Role   string       `json:"role"` // direct, descendant, ancestor
}

// ProcedureList is a page of GET /api/v1/procedures. Next is the cursor of
// the following page (its "before" parameter); empty on the last page.
type ProcedureList struct {
	Procedures []Procedure `json:"procedures"`
	Next       string      `json:"next,omitempty"`
}

// ProcedureDetail is GET /api/v1/procedures/{id}.
type ProcedureDetail struct {
	Procedure
	// Tree is every procedure of its tree the store still holds, root
	// first, depth first (children by id), each with its depth.
	Tree []TreeNode `json:"tree"`
	// Executed is the rollback stack's part of this procedure: its
	// executed states, oldest first (a finished root: those its tree did
	// not roll back).
	Executed []string `json:"executed,omitempty"`
	// History is its timeline: each state it executed, in order, with
	// when its step committed and, if its tree's rollback undid it, when
	// that rollback committed (Events orders them as they committed).
	History []HistoryStep `json:"history,omitempty"`
	// Locks it holds; if WaitingForLocks, the locks it waits for are
	// in Waits.
	Locks []Lock `json:"locks,omitempty"`
	Waits []Lock `json:"waits,omitempty"`
	// RemoteOps are its remote operations that are outstanding (asked
	// for and not yet consumed), when the server has a dispatcher.
	RemoteOps []RemoteOp `json:"remoteOps,omitempty"`
	// Audit is what operators did to its tree (abort, bypass).
	Audit []Action `json:"audit,omitempty"`
	// Result is the finished root's data, as JSON when its type's codec
	// is JSON (else base64 in ResultBytes).
	Result      json.RawMessage `json:"result,omitempty"`
	ResultBytes []byte          `json:"resultBytes,omitempty"`
}

// TreeNode is one procedure of a tree.
type TreeNode struct {
	Procedure
	Depth int `json:"depth"`
}

// HistoryStep is procedure.HistoryStep: a state the procedure executed,
// when its step committed, and when its rollback undid it (absent: not
// undone).
type HistoryStep struct {
	State      string     `json:"state"`
	At         time.Time  `json:"at"`
	RolledBack *time.Time `json:"rolledBack,omitempty"`
}

// HistoryEvent is one committed step of a history: a state executed, or
// undone by a rollback.
type HistoryEvent struct {
	State    string
	At       time.Time
	Rollback bool
}

// Events returns the steps of history in the order they committed: each
// executed state, then the rollbacks (a rollback undoes the last state
// first).
func Events(history []HistoryStep) []HistoryEvent {
	out := make([]HistoryEvent, 0, len(history))
	var undone []HistoryEvent
	for _, h := range history {
		out = append(out, HistoryEvent{State: h.State, At: h.At})
		if h.RolledBack != nil {
			undone = append(undone, HistoryEvent{State: h.State, At: *h.RolledBack, Rollback: true})
		}
	}
	slices.Reverse(undone)
	slices.SortStableFunc(undone, func(a, b HistoryEvent) int { return a.At.Compare(b.At) })
	return append(out, undone...)
}

// Lock is a lock a procedure holds or waits for.
type Lock struct {
	Resource string `json:"resource"`
	Mode     string `json:"mode"` // shared, exclusive
}

// RemoteOp is an outstanding remote operation.
type RemoteOp struct {
	ID          string `json:"id"`
	Node        string `json:"node"`
	Incarnation uint64 `json:"incarnation,omitempty"`
	Type        string `json:"type"`
	State       string `json:"state"`             // pending, done
	Outcome     string `json:"outcome,omitempty"` // done: result, failed, refused, node-died
	Message     string `json:"message,omitempty"`
}

// Action is one entry of the audit log (procedure.Action).
type Action struct {
	Seq    uint64       `json:"seq"`
	Kind   string       `json:"kind"` // abort, bypass
	Target procedure.ID `json:"target"`
	Root   procedure.ID `json:"root"`
	Who    string       `json:"who"`
	Why    string       `json:"why"`
	At     time.Time    `json:"at"`
}

// AuditList is GET /api/v1/audit.
type AuditList struct {
	Actions []Action `json:"actions"`
	Next    string   `json:"next,omitempty"`
}

// SubmitRequest is the body of POST /api/v1/procedures.
type SubmitRequest struct {
	Type string `json:"type"`
	// Args is the procedure's data as JSON, decoded into the type's data.
	Args json.RawMessage `json:"args"`
	// Nonce makes the submission idempotent (procedure.SubmitOptions).
	Nonce string `json:"nonce,omitempty"`
	// Timeout, a Go duration ("30s"), is the procedure's deadline.
	Timeout string `json:"timeout,omitempty"`
}

// SubmitResponse answers a submission.
type SubmitResponse struct {
	ID procedure.ID `json:"id"`
}

// ReasonRequest is the body of abort and bypass (Why is required).
type ReasonRequest struct {
	Why string `json:"why"`
}

// BulkAbortRequest is the body of POST /api/v1/procedures/abort: abort
// every root that matches Filter (the list's query parameters, as a map of
// parameter to value), at most Limit of them (default 100, at most 10000).
// With DryRun set, nothing is aborted: the answer says what would be.
type BulkAbortRequest struct {
	Filter map[string]string `json:"filter"`
	Why    string            `json:"why"`
	Limit  int               `json:"limit,omitempty"`
	DryRun bool              `json:"dryRun,omitempty"`
}

// BulkAbortResponse lists what a bulk abort did (or would do): each
// matching root and its outcome: "aborted" (or "would abort" on a dry
// run), or the error code that refused it.
type BulkAbortResponse struct {
	DryRun  bool          `json:"dryRun"`
	Results []BulkOutcome `json:"results"`
	// More is set when more roots matched than Limit.
	More bool `json:"more,omitempty"`
}

// BulkOutcome is one root of a bulk abort.
type BulkOutcome struct {
	ID      procedure.ID `json:"id"`
	Type    string       `json:"type"`
	Outcome string       `json:"outcome"`
	Message string       `json:"message,omitempty"`
}

// WaitResponse answers GET /api/v1/procedures/{id}/wait: Done is false
// if the timeout passed first (Procedure is then its current status).
type WaitResponse struct {
	Done      bool      `json:"done"`
	Procedure Procedure `json:"procedure"`
}

// LockRow is one resource of the lock table.
type LockRow struct {
	Resource string       `json:"resource"`
	Holders  []LockHolder `json:"holders"`
	Waiters  []LockHolder `json:"waiters,omitempty"`
}

// LockHolder is a procedure holding or waiting for a lock, and since when.
type LockHolder struct {
	ID    procedure.ID `json:"id"`
	Type  string       `json:"type,omitempty"`
	Mode  string       `json:"mode"`
	Since time.Time    `json:"since"`
}

// EventRow is an event procedures are suspended on.
type EventRow struct {
	Event   string         `json:"event"`
	Waiters []procedure.ID `json:"waiters"`
}

// TimerRow is a procedure sleeping until a time.
type TimerRow struct {
	ID  procedure.ID `json:"id"`
	Due time.Time    `json:"due"`
}

// Node is one node of the remote liveness table, with its dispatch
// counters.
type Node struct {
	Name          string    `json:"name"`
	Addr          string    `json:"addr"`
	Incarnation   uint64    `json:"incarnation"`
	Live          bool      `json:"live"`
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"`
	Registered    time.Time `json:"registered,omitzero"`
	Died          time.Time `json:"died,omitzero"`
	Queued        int       `json:"queued"`
	InFlight      int       `json:"inFlight"`
	Batches       int64     `json:"batches"`
	OpsSent       int64     `json:"opsSent"`
	Failures      int64     `json:"failures"`
	RTTp50Ms      float64   `json:"rttP50Ms"`
	RTTp99Ms      float64   `json:"rttP99Ms"`
}

// StoreInfo is the store's state.
type StoreInfo struct {
	Seq            uint64  `json:"seq"`
	Commits        int64   `json:"commits"`
	Groups         int64   `json:"groups"`
	LogBytes       int64   `json:"logBytes"`
	LogSegments    int     `json:"logSegments"`
	SnapshotSeq    uint64  `json:"snapshotSeq"`
	SnapshotSize   int64   `json:"snapshotSize"`
	SnapshotMs     float64 `json:"snapshotMs"`
	RecoverMs      float64 `json:"recoverMs"`
	Damaged        int     `json:"damaged"`
	FsyncP50Ms     float64 `json:"fsyncP50Ms"`
	FsyncP99Ms     float64 `json:"fsyncP99Ms"`
	RecordsPerSync float64 `json:"recordsPerSync"`
}

// EngineInfo is the engine's state.
type EngineInfo struct {
	Live        int                 `json:"live"`
	Trees       int                 `json:"trees"`
	Quarantined int                 `json:"quarantined"`
	Results     int                 `json:"results"`
	Queued      int                 `json:"queued"`
	Workers     int                 `json:"workers"`
	Stuck       int                 `json:"stuck"`
	LockWaiting int                 `json:"lockWaiting"`
	Suspended   int                 `json:"suspended"`
	ByStatus    map[string]int      `json:"byStatus"`
	Oldest      time.Time           `json:"oldest,omitzero"`
	RecoverMs   float64             `json:"recoverMs"`
	Types       map[string]TypeInfo `json:"types"`
}

// TypeInfo is one procedure type's counters.
type TypeInfo struct {
	Submitted   int64   `json:"submitted"`
	Succeeded   int64   `json:"succeeded"`
	RolledBack  int64   `json:"rolledBack"`
	Aborted     int64   `json:"aborted"`
	Bypassed    int64   `json:"bypassed"`
	Steps       int64   `json:"steps"`
	StepP50Ms   float64 `json:"stepP50Ms"`
	StepP99Ms   float64 `json:"stepP99Ms"`
	Submittable bool    `json:"submittable"`
}

// Sample is one point of the engine's throughput and latency, taken every
// second (GET /api/v1/engine/samples: the last 10 minutes).
type Sample struct {
	At         time.Time `json:"at"`
	Steps      float64   `json:"stepsPerSec"`
	Finished   float64   `json:"finishedPerSec"`
	Commits    float64   `json:"commitsPerSec"`
	StepP99Ms  float64   `json:"stepP99Ms"`
	FsyncP99Ms float64   `json:"fsyncP99Ms"`
	Live       int       `json:"live"`
}

// Error is the body of every error response.
type Error struct {
	Code    string `json:"code"`    // stable: one of the Code* constants
	Message string `json:"message"` // for a person
}

// Error codes: stable, part of the API.
const (
	CodeBadRequest       = "bad_request"        // 400: malformed body, unknown field, bad parameter
	CodeUnauthorized     = "unauthorized"       // 401: no or unknown credentials
	CodeForbidden        = "forbidden"          // 403: the credentials' role may not do this
	CodeNotFound         = "not_found"          // 404: no such procedure (or route)
	CodeMethodNotAllowed = "method_not_allowed" // 405: the route does not take this method (Allow lists those it does)
	CodeConflict         = "conflict"           // 409: refused in its state (past the point of no return, finished, quarantined)
	CodeTooLarge         = "too_large"          // 413: body over the limit
	CodeUnavailable      = "unavailable"        // 503: not ready (recovering, stopping, failed)
	CodeInternal         = "internal"           // 500
)

// LockList is GET /api/v1/locks.
type LockList struct {
	Locks []LockRow `json:"locks"`
}

// NodeList is GET /api/v1/nodes.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// WaitList is GET /api/v1/waits: the events procedures are suspended on
// and the timers they sleep on.
type WaitList struct {
	Events []EventRow `json:"events"`
	Timers []TimerRow `json:"timers"`
}

// SampleList is GET /api/v1/engine/samples.
type SampleList struct {
	Samples []Sample `json:"samples"`
}

// BarrierList is GET /api/v1/barriers: the barrier procedures this
// server's coordinator runs, sorted by name.
type BarrierList struct {
	Barriers []Barrier `json:"barriers"`
}

// Barrier is a barrier procedure in progress, as its coordinator sees it
// (barrier.Stats).
type Barrier struct {
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Instance  int64     `json:"instance"` // 0 until the transport recorded it
	Started   time.Time `json:"started"`
	ElapsedMs float64   `json:"elapsedMs"`
	// Phase sums the procedure up: starting (not yet recorded), acquiring
	// (until the barrier is recorded as reached: every member acquired),
	// inside (members run Inside), completing (every member is done; the
	// completion is being recorded), aborting (a member's session was
	// lost).
	Phase   string          `json:"phase"`
	Members []BarrierMember `json:"members"`
}

// BarrierMember is one member of a barrier procedure in progress.
type BarrierMember struct {
	Name  string `json:"name"`
	Phase string `json:"phase"` // its last marker: "" (not yet seen), joined, acquired, done
	Lost  bool   `json:"lost,omitempty"`
}

// TypeList is GET /api/v1/types: the registered types operators may
// submit.
type TypeList struct {
	Types []string `json:"types"`
}
