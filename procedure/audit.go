package procedure

import (
	"encoding/binary"
	"fmt"
	"iter"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// Action is an operator's action on a procedure (Abort or Bypass), as the
// audit log keeps it: durably, in the transaction that carried it out.
type Action struct {
	Seq    uint64 // the log's sequence number, from 1
	Kind   string // "abort" or "bypass"
	Target ID     // the procedure Abort or Bypass was given
	Root   ID     // its tree's root
	Who    string
	Why    string
	At     time.Time
}

// Audit yields the audit log, newest first, from the entry before seq on
// (0: from the newest). It reads the latest durable version of the store,
// without the engine's lock: an abort or bypass is in it once it returned.
// The log keeps the newest Options.AuditKeep entries. An entry that does
// not decode is skipped and logged (at error level, naming its key), so
// that the others stay readable.
func (e *Engine) Audit(before uint64) iter.Seq[Action] {
	return func(yield func(Action) bool) {
		v := e.store.Latest()
		first, next := e.auditBounds(v)
		hi := next
		if before != 0 && before < hi {
			hi = before
		}
		var page []auditRow
		for hi > first {
			lo := first
			if hi-first > auditPage {
				lo = hi - auditPage
			}
			page = page[:0]
			for seq, b := range e.audit.From(v, lo) {
				if seq >= hi {
					break
				}
				page = append(page, auditRow{seq, b})
			}
			for i := len(page) - 1; i >= 0; i-- {
				a, err := decodeAction(page[i].seq, page[i].b)
				if err != nil {
					e.log.Error("procedure: audit entry skipped", "collection", e.audit.Name(), "err", err)
					continue
				}
				if !yield(a) {
					return
				}
			}
			hi = lo
		}
	}
}

// auditPage is how many entries Audit reads ascending at a time, to yield
// them descending.
const auditPage = 64

type auditRow struct {
	seq uint64
	b   []byte
}

// auditTrimMax bounds the entries one append deletes: after AuditKeep is
// lowered, the excess goes this many per append.
const auditTrimMax = 1024

// auditBounds returns the log's first key and the next sequence number
// in r. The keys are contiguous (entries are appended at next and deleted
// from first), so next is first plus the log's length. An empty log
// starts at 1.
func (e *Engine) auditBounds(r durable.Reader) (first, next uint64) {
	for seq := range e.audit.All(r) {
		first = seq
		break
	}
	if first == 0 {
		return 1, 1
	}
	return first, first + uint64(e.audit.Len(r))
}

// appendAudit records a in the audit log in tx (the transaction that
// carries the action out), at the next sequence number, and deletes the
// oldest entries beyond Options.AuditKeep.
func (e *Engine) appendAudit(tx *durable.Tx, a Action) error {
	first, next := e.auditBounds(tx)
	a.Seq = next
	b, err := appendAction(nil, &a)
	if err != nil {
		return err
	}
	if err := e.audit.Put(tx, a.Seq, b); err != nil {
		return err
	}
	keep := uint64(e.opts.AuditKeep)
	for n := 0; first+keep <= next && n < auditTrimMax; n++ {
		if err := e.audit.Delete(tx, first); err != nil {
			return err
		}
		first++
	}
	return nil
}

// Constants of the audit entry format (see doc.go). Part of the on-disk
// format: never change them.
const (
	auditV1     = 1
	auditAbort  = 1
	auditBypass = 2
)

var auditKinds = map[string]byte{"abort": auditAbort, "bypass": auditBypass}

// appendAction appends a's encoding (all but its Seq, the key) to dst.
func appendAction(dst []byte, a *Action) ([]byte, error) {
	kind, ok := auditKinds[a.Kind]
	if !ok {
		return nil, fmt.Errorf("procedure: audit entry of unknown kind %q", a.Kind)
	}
	dst = append(dst, auditV1, kind)
	dst = binary.AppendUvarint(dst, uint64(a.Target))
	dst = binary.AppendUvarint(dst, uint64(a.Root))
	dst = binary.AppendVarint(dst, a.At.UnixNano())
	dst = appendString(dst, a.Who)
	return appendString(dst, a.Why), nil
}

// decodeAction decodes audit entry seq.
func decodeAction(seq uint64, b []byte) (Action, error) {
	d := &recDecoder{b: b}
	if v := d.byte("version"); d.err == nil && v != auditV1 {
		d.fail(fmt.Sprintf("format version %d (this program reads %d)", v, auditV1))
	}
	a := Action{Seq: seq}
	switch k := d.byte("kind"); {
	case d.err != nil:
	case k == auditAbort:
		a.Kind = "abort"
	case k == auditBypass:
		a.Kind = "bypass"
	default:
		d.fail("kind")
	}
	a.Target = ID(d.uvarint("target"))
	a.Root = ID(d.uvarint("root"))
	a.At = time.Unix(0, d.varint("time"))
	a.Who = d.string("who")
	a.Why = d.string("why")
	if d.err == nil && d.off != len(b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return Action{}, fmt.Errorf("audit entry %d: %w", seq, d.err)
	}
	return a, nil
}
