package procedure

import (
	"iter"
	"time"
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
// (0: from the newest).
func (e *Engine) Audit(before uint64) iter.Seq[Action] {
	// TODO(audit): the log.
	return func(yield func(Action) bool) {}
}
