package remote

import "github.com/procyon-dev/procyon/procedure"

// OpInfo is an outstanding operation, for operators (Dispatcher.Ops).
type OpInfo struct {
	ID          OpID
	Proc        procedure.ID // the procedure that asked for it
	Node        string
	Incarnation uint64 // the node's incarnation it was asked of (0: unknown or dead then)
	Type        string
	// Done: the outcome is recorded and waits for the procedure to
	// consume it. Outcome is then "result", "failed", "refused" or
	// "node-died", with the node's Message for the failures.
	Done    bool
	Outcome string
	Message string
}

// Ops returns the outstanding operations (asked for and not yet consumed
// or cancelled) of procedure proc, or of every procedure if proc is 0,
// by id. It reads every outstanding operation of the store: its cost
// grows with the operations outstanding, not with the procedures.
func (d *Dispatcher) Ops(proc procedure.ID) []OpInfo {
	var out []OpInfo
	for id, rec := range d.ops.All(d.e.Store().Latest()) {
		if proc != 0 && rec.Proc != uint64(proc) {
			continue
		}
		oi := OpInfo{ID: OpID(id), Proc: procedure.ID(rec.Proc), Node: rec.Node, Incarnation: rec.Incarnation,
			Type: rec.Type, Done: rec.State == opDone}
		if oi.Done {
			oi.Outcome, oi.Message = outcomeName(rec.Kind), rec.Message
		}
		out = append(out, oi)
	}
	return out
}

func outcomeName(kind uint8) string {
	switch kind {
	case outcomeResult:
		return "result"
	case outcomeFailed:
		return "failed"
	case outcomeRefused:
		return "refused"
	}
	return "node-died"
}
