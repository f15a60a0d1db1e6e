package server

import (
	"net/http"
	"net/url"

	"github.com/procyon-dev/procyon/procedure"
)

// Bounds of a bulk abort.
const (
	defaultBulk = 100
	maxBulk     = 10000
)

// Outcomes of a bulk abort's roots (else the code of the error that
// refused one).
const (
	outcomeAborted    = "aborted"
	outcomeWouldAbort = "would abort"
)

// bulkAbort aborts, or on a dry run lists, the live roots the filter
// selects, newest first.
func (s *Server) bulkAbort(w http.ResponseWriter, r *http.Request, who identity) error {
	if err := noQuery(r); err != nil {
		return err
	}
	var req BulkAbortRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	q, limit, why, err := checkBulk(req)
	if err != nil {
		return err
	}
	roots, more := s.bulkRoots(q, limit)
	out := BulkAbortResponse{DryRun: req.DryRun, Results: make([]BulkOutcome, 0, len(roots)), More: more}
	for _, in := range roots {
		if req.DryRun {
			out.Results = append(out.Results, dryRunOutcome(in))
			continue
		}
		if r.Context().Err() != nil {
			break // the client left: abort no more
		}
		out.Results = append(out.Results, s.abortOne(r, who, in, why))
	}
	s.opts.Logger.Info("server: bulk abort", "who", who.Who, "why", why, "filter", req.Filter,
		"dryRun", req.DryRun, "roots", len(out.Results), "more", more)
	s.writeJSON(w, http.StatusOK, out)
	return nil
}

// checkBulk validates a bulk abort: its filter (the list's parameters,
// without limit), its limit and its reason.
func checkBulk(req BulkAbortRequest) (q procedure.Query, limit int, why string, err error) {
	v := url.Values{}
	for k, val := range req.Filter {
		if k == "limit" {
			return q, 0, "", badRequest("filter: limit is the request's limit field, not a filter")
		}
		v.Set(k, val)
	}
	if q, _, err = parseQuery(v); err != nil {
		return q, 0, "", badRequest("filter: %v", err)
	}
	switch limit = req.Limit; {
	case limit == 0:
		limit = defaultBulk
	case limit < 0 || limit > maxBulk:
		return q, 0, "", badRequest("limit: want 1 to %d: %d", maxBulk, req.Limit)
	}
	why, err = checkWhy(req.Why)
	return q, limit, why, err
}

// bulkRoots returns at most limit live roots that q selects and that are
// not already rolling back, and whether more matched.
func (s *Server) bulkRoots(q procedure.Query, limit int) (roots []procedure.Info, more bool) {
	for in := range s.e.List(q) {
		if in.Parent != 0 || !in.Completed.IsZero() || in.RollingBack || in.Status == procedure.Failed {
			continue
		}
		if len(roots) == limit {
			return roots, true
		}
		roots = append(roots, in)
	}
	return roots, false
}

// dryRunOutcome says what aborting in would do: a quarantined tree, or
// one past its point of no return (Info.NoReturn), refuses. A step that
// commits between the dry run and the abort may change that.
func dryRunOutcome(in procedure.Info) BulkOutcome {
	o := BulkOutcome{ID: in.ID, Type: in.Type, Outcome: outcomeWouldAbort}
	switch {
	case in.Quarantined != "":
		o.Outcome, o.Message = CodeConflict, "quarantined: "+in.Quarantined
	case in.NoReturn != "":
		o.Outcome, o.Message = CodeConflict, "past its point of no return: "+in.NoReturn
	}
	return o
}

// abortOne aborts root in for a bulk abort.
func (s *Server) abortOne(r *http.Request, who identity, in procedure.Info, why string) BulkOutcome {
	o := BulkOutcome{ID: in.ID, Type: in.Type, Outcome: outcomeAborted}
	if err := s.e.Abort(r.Context(), in.ID, who.Who, why); err != nil {
		_, body := errorOf(err)
		o.Outcome, o.Message = body.Code, body.Message
		return o
	}
	s.opts.Logger.Warn("server: abort", "who", who.Who, "id", in.ID, "why", why, "bulk", true)
	return o
}
