package server

import "github.com/procyon-dev/procyon/procedure"

// remoteOps returns procedure id's outstanding remote operations (none
// without a dispatcher).
func (s *Server) remoteOps(id procedure.ID) []RemoteOp {
	d := s.opts.Dispatcher
	if d == nil {
		return nil
	}
	var out []RemoteOp
	for _, op := range d.Ops(id) {
		st := "pending"
		if op.Done {
			st = "done"
		}
		out = append(out, RemoteOp{ID: op.ID.String(), Node: op.Node, Incarnation: op.Incarnation,
			Type: op.Type, State: st, Outcome: op.Outcome, Message: op.Message})
	}
	return out
}
