package remote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors an operation's outcome carries (OpError.Kind), and Outcome's
// misuse error.
var (
	// ErrNodeDied: the node the operation was for died (its lease expired,
	// it came back as a new incarnation, or it was unknown or dead when the
	// operation would have been sent). The operation may or may not have
	// run there; it is never retried on its own.
	ErrNodeDied = errors.New("remote: node died")
	// ErrRefused: the node would not run the operation (an unknown type,
	// ...). It did not run.
	ErrRefused = errors.New("remote: refused by the node")
	// ErrFailed: the node ran the operation and it failed.
	ErrFailed = errors.New("remote: failed on the node")
	// ErrNotDone: Outcome was called for an operation that has no outcome
	// yet, or that is not outstanding (cancelled, or its outcome already
	// consumed): a bug in the calling procedure.
	ErrNotDone = errors.New("remote: operation has no outcome")
)

// OpError is how an operation failed: Kind is ErrNodeDied, ErrRefused or
// ErrFailed (errors.Is(err, remote.ErrFailed)), Message what the node
// said.
type OpError struct {
	Op      OpID
	Node    string
	Kind    error
	Message string
}

func (e *OpError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("remote: op %d on node %q: %v", e.Op, e.Node, e.Kind)
	}
	return fmt.Sprintf("remote: op %d on node %q: %v: %s", e.Op, e.Node, e.Kind, e.Message)
}

func (e *OpError) Unwrap() error { return e.Kind }

// eventOf is the engine event the procedure waiting for op is suspended
// on. Await has no Dispatcher, so the name cannot hold Options.Name: one
// dispatcher per engine.
func eventOf(op OpID) string { return "remote/op/" + op.String() }

// Op record states and outcome kinds. Part of the on-disk format: never
// change them.
const (
	opRecordV1 = 1

	opPending = 1
	opDone    = 2

	outcomeResult   = 1
	outcomeFailed   = 2
	outcomeRefused  = 3
	outcomeNodeDied = 4
)

// opRecord is an operation as "<Name>.ops" keeps it, from the step that
// asked for it (Call) until the step that consumes its outcome (Outcome)
// or gives it up (Cancel).
type opRecord struct {
	Proc        uint64 // the procedure that asked for it
	Node        string
	Incarnation uint64 // the node's incarnation when asked (0: unknown or dead)
	Type        string
	Payload     []byte
	State       uint8 // opPending or opDone
	Kind        uint8 // done: outcome* kind
	Result      []byte
	Message     string // done and not outcomeResult: what went wrong
}

func (r *opRecord) pendingOn(node string, inc uint64) bool {
	return r.State == opPending && r.Node == node && r.Incarnation == inc
}

// finish records an outcome: kind and the result bytes or message.
func (r *opRecord) finish(kind uint8, result []byte, msg string) {
	r.State, r.Kind, r.Result, r.Message = opDone, kind, result, msg
	r.Payload = nil // no longer needed: the op will not be sent again
}

// outcome returns what the operation came to: its result, or an *OpError.
func (r *opRecord) outcome(id OpID) ([]byte, error) {
	var kind error
	switch r.Kind {
	case outcomeResult:
		return r.Result, nil
	case outcomeFailed:
		kind = ErrFailed
	case outcomeRefused:
		kind = ErrRefused
	default:
		kind = ErrNodeDied
	}
	return nil, &OpError{Op: id, Node: r.Node, Kind: kind, Message: r.Message}
}

func (r opRecord) encode() ([]byte, error) {
	b := make([]byte, 0, 32+len(r.Node)+len(r.Type)+len(r.Payload)+len(r.Result)+len(r.Message))
	b = append(b, opRecordV1, r.State)
	b = binary.AppendUvarint(b, r.Proc)
	b = binary.AppendUvarint(b, r.Incarnation)
	b = appendBytes(b, []byte(r.Node))
	b = appendBytes(b, []byte(r.Type))
	b = appendBytes(b, r.Payload)
	if r.State == opDone {
		b = append(b, r.Kind)
		if r.Kind == outcomeResult {
			b = appendBytes(b, r.Result)
		} else {
			b = appendBytes(b, []byte(r.Message))
		}
	}
	return b, nil
}

func decodeOpRecord(data []byte) (opRecord, error) {
	d := decoder{what: "op record", b: data}
	var r opRecord
	if v := d.byte(); v != opRecordV1 && d.err == nil {
		return r, fmt.Errorf("remote: op record: unknown version %d", v)
	}
	r.State = d.byte()
	r.Proc = d.uvarint()
	r.Incarnation = d.uvarint()
	r.Node = string(d.bytes())
	r.Type = string(d.bytes())
	r.Payload = d.bytes()
	switch {
	case d.err != nil:
	case r.State == opDone:
		r.Kind = d.byte()
		if r.Kind == outcomeResult {
			r.Result = d.bytes()
		} else {
			r.Message = string(d.bytes())
		}
		if d.err == nil && (r.Kind < outcomeResult || r.Kind > outcomeNodeDied) {
			d.fail("outcome kind %d", r.Kind)
		}
	case r.State != opPending:
		d.fail("state %d", r.State)
	}
	d.end()
	return r, d.err
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the append-style encodings of this package; the first
// problem sticks in err, naming the byte offset.
type decoder struct {
	what string
	b    []byte
	off  int
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("remote: %s: bad %s at byte %d", d.what, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) byte() uint8 {
	if d.err != nil || d.off >= len(d.b) {
		d.fail("length (truncated)")
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.off += n
	return v
}

// bytes returns a copy (a Codec must not alias its input); nil if empty.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("length %d (truncated)", n)
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	if len(s) == 0 {
		return nil
	}
	return bytes.Clone(s)
}

func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail("length (%d trailing bytes)", len(d.b)-d.off)
	}
}
