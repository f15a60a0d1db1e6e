package remote

import (
	"errors"
	"fmt"
	"strconv"
)

// OpID identifies one remote operation for good: the master epoch that
// created it in the high 32 bits, a counter of that epoch in the low 32.
// A node remembers the operations it executed by OpID, so an id is never
// reused, not even after a master restart.
type OpID uint64

// MakeOpID returns the id of the n-th operation created in epoch.
func MakeOpID(epoch uint64, n uint32) OpID { return OpID(epoch<<32 | uint64(n)) }

// Epoch returns the master epoch that created the operation.
func (id OpID) Epoch() uint64 { return uint64(id) >> 32 }

func (id OpID) String() string { return strconv.FormatUint(uint64(id), 10) }

// Op is one operation as the master sends it to a node.
type Op struct {
	ID      OpID   `json:"id"`
	Proc    uint64 `json:"proc"` // the procedure that asked for it
	Type    string `json:"type"`
	Payload []byte `json:"payload,omitempty"`
	// Attempt counts the sends of this operation: 1 for the first, one
	// more for each resend (after a failed request, or by a new master).
	// A node executes an operation once whatever the attempt.
	Attempt uint32 `json:"attempt"`
}

// ExecuteRequest is one batch of operations for one node incarnation.
type ExecuteRequest struct {
	Epoch       uint64 `json:"epoch"`       // the sending master's epoch
	Node        string `json:"node"`        // the node it is meant for
	Incarnation uint64 `json:"incarnation"` // ... and that node's incarnation
	Ops         []Op   `json:"ops"`
}

// ExecuteResponse acknowledges that the node took every operation of
// the request (new ones started, known ones answered from memory); the
// outcomes come back in Reports.
type ExecuteResponse struct{}

// Outcome is what became of one operation on a node. Exactly one of
// Result (Refused and Error empty), Refused or Error describes it.
type Outcome struct {
	Op      OpID   `json:"op"`
	Attempt uint32 `json:"attempt"` // the send it answers
	// Epoch is the master epoch of the latest request that carried the
	// operation: a master accepts only outcomes of its own epoch (an
	// older one resends the operation, and the node answers again).
	Epoch   uint64 `json:"epoch"`
	Result  []byte `json:"result,omitempty"`
	Refused string `json:"refused,omitempty"` // the node would not run it (unknown type, ...)
	Error   string `json:"error,omitempty"`   // the node ran it and it failed with this message
}

// ReportRequest carries a batch of outcomes from a node to the master.
// The node resends an outcome until a report holding it is acknowledged.
type ReportRequest struct {
	Node        string    `json:"node"`
	Incarnation uint64    `json:"incarnation"`
	Epoch       uint64    `json:"epoch"` // the master epoch the node reports to
	Outcomes    []Outcome `json:"outcomes"`
}

// ReportResponse acknowledges every outcome of the report: committed, or
// ignored because its operation is no longer outstanding.
type ReportResponse struct{}

// RegisterRequest announces a node incarnation to the master.
type RegisterRequest struct {
	Node        string `json:"node"`        // the node's stable name
	Addr        string `json:"addr"`        // where the master reaches it (Transport.DialNode)
	Incarnation uint64 `json:"incarnation"` // new each time the node process starts
}

// RegisterResponse tells the node the master's epoch and how often to
// heartbeat.
type RegisterResponse struct {
	Epoch           uint64 `json:"epoch"`
	HeartbeatMillis int64  `json:"heartbeat_ms"`
	LeaseMillis     int64  `json:"lease_ms"`
}

// HeartbeatRequest renews a node incarnation's lease.
type HeartbeatRequest struct {
	Node        string `json:"node"`
	Incarnation uint64 `json:"incarnation"`
	Epoch       uint64 `json:"epoch"`
}

// HeartbeatResponse returns the master's epoch.
type HeartbeatResponse struct {
	Epoch uint64 `json:"epoch"`
}

// Errors a service returns, which every transport carries so that the
// caller can test them with errors.Is.
var (
	// ErrUnknownNode: the master has no live registration for this node
	// incarnation (never registered, declared dead, or replaced by a newer
	// incarnation). A node that gets it registers again, as a new
	// incarnation if it was declared dead.
	ErrUnknownNode = errors.New("remote: unknown node incarnation")
	// ErrWrongNode: a node got a request meant for another node or
	// another incarnation of it.
	ErrWrongNode = errors.New("remote: request for another node or incarnation")
	// ErrStaleEpoch: the request comes from, or is addressed to, a master
	// epoch older than one the receiver knows.
	ErrStaleEpoch = errors.New("remote: stale master epoch")
	// ErrBadRequest: the request is malformed or too large; nothing was
	// changed.
	ErrBadRequest = errors.New("remote: bad request")
	// ErrStopped: the receiver is shutting down.
	ErrStopped = errors.New("remote: stopped")
)

// wireErrors are the sentinels by their stable codes, as transports
// carry them.
var wireErrors = map[string]error{
	"unknown_node": ErrUnknownNode,
	"wrong_node":   ErrWrongNode,
	"stale_epoch":  ErrStaleEpoch,
	"bad_request":  ErrBadRequest,
	"stopped":      ErrStopped,
}

// ErrorCode returns the stable code of err's sentinel ("" if it wraps
// none): a transport sends it with the message.
func ErrorCode(err error) string {
	for code, sentinel := range wireErrors {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return ""
}

// ErrorFromCode rebuilds, on the calling side, an error a service
// returned with code and message: it wraps the code's sentinel, so
// errors.Is works across the wire.
func ErrorFromCode(code, message string) error {
	if sentinel, ok := wireErrors[code]; ok {
		return &wireError{sentinel: sentinel, msg: message}
	}
	return fmt.Errorf("remote: %s", message)
}

type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }
