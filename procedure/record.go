package procedure

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Status is a procedure's lifecycle. The values are part of the on-disk
// format: never change them.
type Status uint8

const (
	// Runnable: ready to run its next state (or running it).
	Runnable Status = 1
	// Waiting: waiting for its children to finish.
	Waiting Status = 2
	// Succeeded: finished successfully.
	Succeeded Status = 3
	// Failed: a step failed; the tree is rolling back.
	Failed Status = 4
	// RolledBack: the tree failed and was rolled back (roots only).
	RolledBack Status = 5
	// Suspended: waiting for an event (WaitEvent) or a time (Sleep,
	// SleepUntil).
	Suspended Status = 6
)

func (s Status) String() string {
	switch s {
	case Runnable:
		return "runnable"
	case Waiting:
		return "waiting"
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	case RolledBack:
		return "rolled-back"
	case Suspended:
		return "suspended"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Constants of the record format (see doc.go). Part of the on-disk format:
// never change them; a new format gets a new version.
const (
	recordV1 = 1
	// recordV2 is version 1's layout followed by the extension (xflags and
	// its sections). A record that needs no extension is written as
	// version 1, so that a truncated version 2 record never reads as a
	// whole version 1 one.
	recordV2 = 2

	flagErr       = 1 << 0
	flagBypass    = 1 << 1
	flagAborted   = 1 << 2
	flagCompleted = 1 << 3
	flagAcked     = 1 << 4
	flagWait      = 1 << 5
	flagTimeout   = 1 << 6
	flagLocks     = 1 << 7

	entrySpawn = 1 << 0

	// The extension's flags (xflags): the sections added after version 1's
	// last one. A record without them (written before they existed) ends
	// after its locks section.
	xflagErr         = 1 << 0 // the error's code and outcome
	xflagStepTimeout = 1 << 1 // the step's deadline (Env.SetTimeout)
	xflagBypassOf    = 1 << 2 // the bypass's target and this procedure's role
	xflagEntryTimes  = 1 << 3 // when each entry's step committed
	xflagUndone      = 1 << 4 // the rolled-back states, with when they ran and were undone
	xflagsKnown      = xflagErr | xflagStepTimeout | xflagBypassOf | xflagEntryTimes | xflagUndone

	waitEvent = 1 // suspended until an event is signalled
	waitTimer = 2 // suspended until a time
)

// waitState is what a Suspended procedure waits for.
type waitState struct {
	kind  uint8  // waitEvent or waitTimer; 0: none
	event string // waitEvent
	until int64  // waitTimer: unix nanoseconds
}

// entry is one executed state of a procedure and its position in the
// root's rollback stack.
type entry struct {
	state int64
	// at is when the last step that ran the state committed (unix ns; 0:
	// stored before entries had times).
	at    int64
	idx   uint32 // index in the tree's rollback stack
	spawn bool   // the step spawned children (a later run of the same state is a new entry)
}

// undoneEntry is a state of a procedure its tree's rollback undid: when
// its step committed (at; 0: stored before entries had times) and when
// the rollback step that undid it committed.
type undoneEntry struct {
	state, at, undoneAt int64
}

// Bypass records who forced a procedure to finish without running its
// steps, and why, and how the bypass reached it.
type Bypass struct {
	Who, Why string
	At       int64 // unix nanoseconds
	// Target is the procedure the operator bypassed (Engine.Bypass's id);
	// Role says what this procedure is to it. Target is 0 in records
	// written before it was stored (they were bypassed directly).
	Target ID
	Role   BypassRole
}

// BypassRole says how a bypass reached a procedure. The values are part
// of the on-disk format: never change them.
type BypassRole uint8

const (
	// BypassDirect: the procedure the operator bypassed.
	BypassDirect BypassRole = 0
	// BypassDescendant: an unfinished descendant of the one bypassed; it
	// finished with it.
	BypassDescendant BypassRole = 1
	// BypassAncestor: an ancestor of the one bypassed; it runs no further
	// state and finishes once its unfinished children have.
	BypassAncestor BypassRole = 2
)

func (r BypassRole) String() string {
	switch r {
	case BypassDirect:
		return "direct"
	case BypassDescendant:
		return "descendant"
	case BypassAncestor:
		return "ancestor"
	}
	return fmt.Sprintf("BypassRole(%d)", uint8(r))
}

// record is a procedure as stored in the procedures collection.
type record struct {
	// (Fields ordered to pack: one is decoded per live procedure at load.)
	status           Status
	aborted          bool
	version          uint32
	steps            uint32
	parent, root     ID
	typ              string
	next             int64
	entries          []entry
	undone           []undoneEntry // in the order they were undone
	created, updated int64
	submitter, nonce string
	data             []byte
	err              *Error
	bypass           *Bypass
	completed, acked int64
	wait             waitState
	timeout          int64  // the procedure's deadline (unix nanoseconds; 0: none)
	locks            []Lock // held across steps (TypeOptions.HoldLocks)
	stepTimeout      int64  // the deadline its last step set (Env.SetTimeout; unix ns; 0: none)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendRecord appends r's encoding to dst.
func appendRecord(dst []byte, r *record) []byte {
	var flags byte
	if r.err != nil {
		flags |= flagErr
	}
	if r.bypass != nil {
		flags |= flagBypass
	}
	if r.aborted {
		flags |= flagAborted
	}
	if r.completed != 0 {
		flags |= flagCompleted
	}
	if r.acked != 0 {
		flags |= flagAcked
	}
	if r.wait.kind != 0 {
		flags |= flagWait
	}
	if r.timeout != 0 {
		flags |= flagTimeout
	}
	if len(r.locks) > 0 {
		flags |= flagLocks
	}
	version := byte(recordV1)
	if r.extended() {
		version = recordV2
	}
	dst = append(dst, version, byte(r.status), flags)
	dst = binary.AppendUvarint(dst, uint64(r.parent))
	dst = binary.AppendUvarint(dst, uint64(r.root))
	dst = appendString(dst, r.typ)
	dst = binary.AppendUvarint(dst, uint64(r.version))
	dst = binary.AppendVarint(dst, r.next)
	dst = binary.AppendUvarint(dst, uint64(r.steps))
	dst = binary.AppendUvarint(dst, uint64(len(r.entries)))
	for _, e := range r.entries {
		dst = binary.AppendVarint(dst, e.state)
		dst = binary.AppendUvarint(dst, uint64(e.idx))
		var ef byte
		if e.spawn {
			ef |= entrySpawn
		}
		dst = append(dst, ef)
	}
	dst = binary.AppendVarint(dst, r.created)
	dst = binary.AppendVarint(dst, r.updated)
	dst = appendString(dst, r.submitter)
	dst = appendString(dst, r.nonce)
	dst = binary.AppendUvarint(dst, uint64(len(r.data)))
	dst = append(dst, r.data...)
	if r.err != nil {
		dst = appendString(dst, r.err.Source)
		dst = appendString(dst, r.err.Message)
	}
	if r.bypass != nil {
		dst = appendString(dst, r.bypass.Who)
		dst = appendString(dst, r.bypass.Why)
		dst = binary.AppendVarint(dst, r.bypass.At)
	}
	if r.completed != 0 {
		dst = binary.AppendVarint(dst, r.completed)
	}
	if r.acked != 0 {
		dst = binary.AppendVarint(dst, r.acked)
	}
	if r.wait.kind != 0 {
		dst = append(dst, r.wait.kind)
		if r.wait.kind == waitEvent {
			dst = appendString(dst, r.wait.event)
		} else {
			dst = binary.AppendVarint(dst, r.wait.until)
		}
	}
	if r.timeout != 0 {
		dst = binary.AppendVarint(dst, r.timeout)
	}
	if len(r.locks) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(r.locks)))
		for _, l := range r.locks {
			dst = append(dst, byte(l.Mode))
			dst = appendString(dst, l.Resource)
		}
	}
	return appendExtension(dst, r)
}

// xflags returns the extension sections r needs (0: none). An error
// always has its code and outcome stored, so that only records written
// before they existed lack them.
func (r *record) xflags() uint64 {
	var x uint64
	if r.err != nil {
		x |= xflagErr
	}
	if r.stepTimeout != 0 {
		x |= xflagStepTimeout
	}
	if r.bypass != nil {
		x |= xflagBypassOf
	}
	if r.untimedPrefix() < len(r.entries) {
		x |= xflagEntryTimes
	}
	if len(r.undone) > 0 {
		x |= xflagUndone
	}
	return x
}

// untimedPrefix returns the number of r's leading entries without a time
// (stored before entries had times): the entry-times section starts
// after them.
func (r *record) untimedPrefix() int {
	for i, en := range r.entries {
		if en.at != 0 {
			return i
		}
	}
	return len(r.entries)
}

func (r *record) extended() bool { return r.xflags() != 0 }

// appendExtension appends the sections added after version 1, if r has
// any (a version 2 record).
func appendExtension(dst []byte, r *record) []byte {
	x := r.xflags()
	if x == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, x)
	if r.err != nil {
		dst = appendString(dst, r.err.Code)
		dst = append(dst, byte(r.err.outcome&outcomeStored))
	}
	if r.stepTimeout != 0 {
		dst = binary.AppendVarint(dst, r.stepTimeout)
	}
	if r.bypass != nil {
		dst = binary.AppendUvarint(dst, uint64(r.bypass.Target))
		dst = append(dst, byte(r.bypass.Role))
	}
	if x&xflagEntryTimes != 0 {
		dst = appendEntryTimes(dst, r)
	}
	if x&xflagUndone != 0 {
		dst = appendUndone(dst, r)
	}
	return dst
}

// appendUndone appends the undone section: the number of undone states,
// then for each its state, its run time minus the previous undo time (the
// first: minus created), and its undo time minus its run time.
func appendUndone(dst []byte, r *record) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(r.undone)))
	prev := r.created
	for _, u := range r.undone {
		dst = binary.AppendVarint(dst, u.state)
		dst = binary.AppendVarint(dst, u.at-prev)
		dst = binary.AppendVarint(dst, u.undoneAt-u.at)
		prev = u.undoneAt
	}
	return dst
}

// appendEntryTimes appends the entry-times section: the number of leading
// entries without a time, then each later entry's time as its difference
// from the previous one's (the first: from created), a few bytes each.
func appendEntryTimes(dst []byte, r *record) []byte {
	k := r.untimedPrefix()
	dst = binary.AppendUvarint(dst, uint64(k))
	prev := r.created
	for _, en := range r.entries[k:] {
		dst = binary.AppendVarint(dst, en.at-prev)
		prev = en.at
	}
	return dst
}

// errRecord is wrapped by every decoding error of a record.
var errRecord = errors.New("procedure: bad record")

type recDecoder struct {
	b   []byte
	off int
	err error
}

func (d *recDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", errRecord, what, d.off)
	}
}

func (d *recDecoder) byte(what string) byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail(what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *recDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

func (d *recDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

func (d *recDecoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(what)
		return nil
	}
	b := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

func (d *recDecoder) string(what string) string { return string(d.bytes(what)) }

func (d *recDecoder) uint32(what string) uint32 {
	v := d.uvarint(what)
	if v > 1<<32-1 {
		d.fail(what)
		return 0
	}
	return uint32(v)
}

// storedStatus returns the status of an encoded record without decoding
// the rest (ok false: not a record this program reads).
func storedStatus(b []byte) (Status, bool) {
	if len(b) < 2 || b[0] != recordV1 && b[0] != recordV2 {
		return 0, false
	}
	return Status(b[1]), true
}

// decodeRecord decodes a record. The result's data aliases b.
func decodeRecord(b []byte) (*record, error) {
	r := &record{}
	if err := decodeRecordInto(r, b); err != nil {
		return nil, err
	}
	return r, nil
}

// decodeRecordInto decodes a record into r (zero), so that a load can
// decode every record into one. r's data aliases b; its slices and
// pointers are new.
func decodeRecordInto(r *record, b []byte) error {
	d := &recDecoder{b: b}
	v := d.byte("version")
	if d.err == nil && v != recordV1 && v != recordV2 {
		return fmt.Errorf("%w: format version %d (this program reads %d and %d)", errRecord, v, recordV1, recordV2)
	}
	r.status = Status(d.byte("status"))
	flags := d.byte("flags")
	r.parent = ID(d.uvarint("parent"))
	r.root = ID(d.uvarint("root"))
	r.typ = d.string("type")
	r.version = d.uint32("type version")
	r.next = d.varint("state")
	r.steps = d.uint32("steps")
	r.entries = d.entries()
	r.created = d.varint("created")
	r.updated = d.varint("updated")
	r.submitter = d.string("submitter")
	r.nonce = d.string("nonce")
	r.data = d.bytes("data")
	d.sections(r, flags)
	switch {
	case v == recordV2:
		d.extension(r)
	case r.err != nil:
		r.err.outcome = legacyOutcome(r.err.Source)
	}
	if d.err == nil && (r.status < Runnable || r.status > Suspended) {
		d.fail("status")
	}
	if d.err == nil && (r.status == Suspended) != (r.wait.kind != 0) {
		d.fail("wait")
	}
	if d.err == nil && d.off != len(b) {
		d.fail("trailing bytes")
	}
	return d.err
}

// entries decodes a record's rollback-stack entries.
func (d *recDecoder) entries() []entry {
	n := d.uvarint("entries")
	if d.err == nil && n > uint64(len(d.b)-d.off)/3 { // an entry takes at least 3 bytes
		d.fail("entries")
	}
	if d.err != nil || n == 0 {
		return nil
	}
	es := make([]entry, n)
	for i := range es {
		es[i].state = d.varint("entry state")
		es[i].idx = d.uint32("entry index")
		ef := d.byte("entry flags")
		es[i].spawn = ef&entrySpawn != 0
		if ef&^entrySpawn != 0 {
			d.fail("entry flags")
		}
	}
	return es
}

// sections decodes the optional sections of a record that flags says
// are present, in their order.
func (d *recDecoder) sections(r *record, flags byte) {
	if flags&flagErr != 0 {
		r.err = &Error{Source: d.string("error source"), Message: d.string("error message")}
	}
	if flags&flagBypass != 0 {
		r.bypass = &Bypass{Who: d.string("bypass who"), Why: d.string("bypass why"), At: d.varint("bypass time")}
	}
	r.aborted = flags&flagAborted != 0
	if flags&flagCompleted != 0 {
		r.completed = d.nonZero("completed")
	}
	if flags&flagAcked != 0 {
		r.acked = d.nonZero("acked")
	}
	if flags&flagWait != 0 {
		switch r.wait.kind = d.byte("wait kind"); r.wait.kind {
		case waitEvent:
			r.wait.event = d.string("wait event")
		case waitTimer:
			r.wait.until = d.varint("wait until")
		default:
			d.fail("wait kind")
		}
	}
	if flags&flagTimeout != 0 {
		r.timeout = d.nonZero("timeout")
	}
	if flags&flagLocks != 0 {
		r.locks = d.locks()
	}
}

// nonZero decodes a signed varint that a present section never holds as
// zero (a time).
func (d *recDecoder) nonZero(what string) int64 {
	v := d.varint(what)
	if d.err == nil && v == 0 {
		d.fail(what)
	}
	return v
}

// locks decodes a record's locks section (not empty).
func (d *recDecoder) locks() []Lock {
	n := d.uvarint("locks")
	if d.err == nil && (n == 0 || n > uint64(len(d.b)-d.off)/2) { // a lock takes at least 2 bytes
		d.fail("locks")
	}
	if d.err != nil {
		return nil
	}
	ls := make([]Lock, n)
	for i := range ls {
		ls[i].Mode = LockMode(d.byte("lock mode"))
		ls[i].Resource = d.string("lock resource")
		if d.err == nil && ls[i].Mode != Shared && ls[i].Mode != Exclusive {
			d.fail("lock mode")
		}
	}
	return ls
}

// extension decodes the sections added after version 1 into r.
func (d *recDecoder) extension(r *record) {
	x := d.uvarint("extension flags")
	if d.err == nil && (x == 0 || x&^xflagsKnown != 0 || (x&xflagErr != 0) != (r.err != nil)) {
		d.fail("extension flags")
	}
	if d.err != nil {
		return
	}
	if x&xflagErr != 0 {
		r.err.Code = d.string("error code")
		r.err.outcome = outcome(d.byte("error outcome"))
		if d.err == nil && r.err.outcome&^outcomeStored != 0 {
			d.fail("error outcome")
		}
	}
	if x&xflagStepTimeout != 0 {
		r.stepTimeout = d.varint("step timeout")
		if d.err == nil && r.stepTimeout == 0 {
			d.fail("step timeout")
		}
	}
	if x&xflagBypassOf != 0 {
		if r.bypass == nil {
			d.fail("bypass-of without bypass")
			return
		}
		r.bypass.Target = ID(d.uvarint("bypass target"))
		if r.bypass.Role = BypassRole(d.byte("bypass role")); d.err == nil && r.bypass.Role > BypassAncestor {
			d.fail("bypass role")
		}
	}
	if x&xflagEntryTimes != 0 {
		d.entryTimes(r)
	}
	if x&xflagUndone != 0 {
		d.undone(r)
	}
}

// undone decodes the undone section (see appendUndone). It holds at least
// one state.
func (d *recDecoder) undone(r *record) {
	n := d.uvarint("undone")
	if d.err == nil && (n == 0 || n > uint64(len(d.b)-d.off)/3) { // an undone state takes at least 3 bytes
		d.fail("undone")
	}
	if d.err != nil {
		return
	}
	r.undone = make([]undoneEntry, n)
	prev := r.created
	for i := range r.undone {
		u := &r.undone[i]
		u.state = d.varint("undone state")
		u.at = prev + d.varint("undone run time")
		u.undoneAt = u.at + d.varint("undone time")
		prev = u.undoneAt
	}
}

// entryTimes decodes the entry-times section into r's entries (see
// appendEntryTimes). It holds at least one time.
func (d *recDecoder) entryTimes(r *record) {
	k := d.uvarint("entry times")
	if d.err == nil && k >= uint64(len(r.entries)) {
		d.fail("entry times")
	}
	if d.err != nil {
		return
	}
	prev := r.created
	for i := range r.entries[k:] {
		en := &r.entries[int(k)+i]
		en.at = prev + d.varint("entry time")
		prev = en.at
	}
}

// legacyOutcome is the outcome of an error stored before outcomes were:
// the engine named timeouts and aborts by their source.
func legacyOutcome(source string) outcome {
	switch source {
	case timeoutSource:
		return outcomeTimedOut
	case abortSource:
		return outcomeAborted
	}
	return 0
}

// Codec of the nonces and meta collections' uint64 values.
func encodeU64(v uint64) ([]byte, error) { return binary.AppendUvarint(nil, v), nil }
func decodeU64(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("%w: bad uvarint", errRecord)
	}
	return v, nil
}
