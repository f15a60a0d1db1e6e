package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// Bounds of the procedure routes' input.
const (
	maxNonce       = 256              // bytes of a submission's nonce
	maxWhy         = 1 << 10          // bytes of an abort's or a bypass's reason
	defaultWait    = 30 * time.Second // a long poll's default timeout
	maxWait        = time.Minute      // a long poll's longest timeout: longer ones are cut to it
	settleResponse = time.Second      // how long an answer waits for a finished procedure's result
)

// query parses r's query strictly: a malformed one is a 400, not dropped
// pairs.
func query(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query: %v", err)
	}
	return v, nil
}

// noQuery refuses parameters on a route that takes none.
func noQuery(r *http.Request) error {
	if r.URL.RawQuery != "" {
		return badRequest("%s takes no parameters", r.URL.Path)
	}
	return nil
}

// pathID is the route's {id}.
func pathID(r *http.Request) (procedure.ID, error) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		return 0, badRequest("%v", err)
	}
	return id, nil
}

func (s *Server) listProcedures(w http.ResponseWriter, r *http.Request, _ identity) error {
	v, err := query(r)
	if err != nil {
		return err
	}
	q, limit, err := parseQuery(v)
	if err != nil {
		return badRequest("%v", err)
	}
	s.writeJSON(w, http.StatusOK, s.list(q, limit))
	return nil
}

func (s *Server) getProcedure(w http.ResponseWriter, r *http.Request, _ identity) error {
	id, err := pathID(r)
	if err == nil {
		err = noQuery(r)
	}
	if err != nil {
		return err
	}
	d, err := s.detail(r.Context(), id)
	if err != nil {
		return err
	}
	s.writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request, who identity) error {
	var req SubmitRequest
	if err := noQuery(r); err != nil {
		return err
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	t, opts, err := s.checkSubmit(req)
	if err != nil {
		return err
	}
	opts.Submitter = who.Who
	id, err := t.submit(r.Context(), req.Args, opts)
	if err != nil {
		return err
	}
	s.opts.Logger.Info("server: submitted", "who", who.Who, "type", req.Type, "id", id, "nonce", req.Nonce)
	s.writeJSON(w, http.StatusCreated, SubmitResponse{ID: id})
	return nil
}

// checkSubmit validates a submission: a submittable type, a nonce and a
// timeout in bounds.
func (s *Server) checkSubmit(req SubmitRequest) (SubmitType, procedure.SubmitOptions, error) {
	var opts procedure.SubmitOptions
	t, ok := s.types[req.Type]
	if !ok {
		return nil, opts, badRequest("type %q is not submittable; submittable: %s", req.Type, strings.Join(s.typeNames(), ", "))
	}
	if len(req.Nonce) > maxNonce {
		return nil, opts, badRequest("nonce longer than %d bytes", maxNonce)
	}
	opts.Nonce = req.Nonce
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			return nil, opts, badRequest("timeout: want a positive Go duration such as 30s or 10m: %q", req.Timeout)
		}
		opts.Timeout = d
	}
	return t, opts, nil
}

// typeNames are the submittable types, sorted.
func (s *Server) typeNames() []string {
	names := make([]string, 0, len(s.types))
	for n := range s.types {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// waitTimeout reads a long poll's ?timeout=.
func waitTimeout(r *http.Request) (time.Duration, error) {
	v, err := query(r)
	if err != nil {
		return 0, err
	}
	d := defaultWait
	for key, vals := range v {
		if key != "timeout" || len(vals) != 1 {
			return 0, badRequest("wait takes one parameter: timeout (a Go duration, at most %s)", maxWait)
		}
		if d, err = time.ParseDuration(vals[0]); err != nil || d < 0 {
			return 0, badRequest("timeout: want a Go duration such as 30s: %q", vals[0])
		}
	}
	return min(d, maxWait), nil
}

func (s *Server) wait(w http.ResponseWriter, r *http.Request, _ identity) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	timeout, err := waitTimeout(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := s.e.Wait(ctx, id)
	switch {
	case err == nil:
		s.writeJSON(w, http.StatusOK, WaitResponse{Done: true, Procedure: s.procAfter(r.Context(), id, &res)})
		return nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		in, err := s.e.Get(id)
		if err != nil {
			return err
		}
		s.writeJSON(w, http.StatusOK, WaitResponse{Procedure: procOf(in)})
		return nil
	}
	return err
}

// procAfter is procedure id as an answer shows it after an action: as
// Get returns it, else (a child of a tree that completed meanwhile) as
// its result res (nil: Wait for it, briefly) says.
func (s *Server) procAfter(ctx context.Context, id procedure.ID, res *procedure.Result) Procedure {
	if in, err := s.e.Get(id); err == nil {
		return procOf(in)
	}
	if res == nil {
		ctx, cancel := context.WithTimeout(ctx, settleResponse)
		defer cancel()
		r, err := s.e.Wait(ctx, id)
		if err != nil {
			return Procedure{ID: id}
		}
		res = &r
	}
	return procOfResult(*res)
}

// procOfResult is a finished procedure the store no longer holds.
func procOfResult(res procedure.Result) Procedure {
	in := procedure.Info{ID: res.ID, Type: res.Type, Status: res.Status, Completed: res.Completed,
		Updated: res.Completed, Err: res.Error, Bypass: res.Bypass}
	p := procOf(in)
	p.State = ""
	return p
}

// reason reads and checks the body of an abort or a bypass.
func (s *Server) reason(w http.ResponseWriter, r *http.Request) (string, error) {
	var req ReasonRequest
	if err := noQuery(r); err != nil {
		return "", err
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return "", err
	}
	return checkWhy(req.Why)
}

func checkWhy(why string) (string, error) {
	why = strings.TrimSpace(why)
	switch {
	case why == "":
		return "", badRequest("why is required: say why, it is recorded")
	case len(why) > maxWhy:
		return "", badRequest("why is longer than %d bytes", maxWhy)
	}
	return why, nil
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request, who identity) error {
	return s.act(w, r, who, "abort", s.e.Abort)
}

func (s *Server) bypass(w http.ResponseWriter, r *http.Request, who identity) error {
	return s.act(w, r, who, "bypass", s.e.Bypass)
}

// act runs an abort or a bypass of the route's procedure, logs it with
// who and why, and answers with the procedure after it.
func (s *Server) act(w http.ResponseWriter, r *http.Request, who identity, what string,
	do func(ctx context.Context, id procedure.ID, who, why string) error) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	why, err := s.reason(w, r)
	if err != nil {
		return err
	}
	if err := do(r.Context(), id, who.Who, why); err != nil {
		s.opts.Logger.Info("server: "+what+" refused", "who", who.Who, "id", id, "why", why, "err", err)
		return err
	}
	s.opts.Logger.Warn("server: "+what, "who", who.Who, "id", id, "why", why)
	s.writeJSON(w, http.StatusOK, s.procAfter(r.Context(), id, nil))
	return nil
}

func (s *Server) ack(w http.ResponseWriter, r *http.Request, who identity) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := noQuery(r); err != nil {
		return err
	}
	if err := s.decodeEmpty(w, r); err != nil {
		return err
	}
	if err := s.e.Ack(r.Context(), id); err != nil {
		return err
	}
	s.opts.Logger.Info("server: ack", "who", who.Who, "id", id)
	s.writeJSON(w, http.StatusOK, s.procAfter(r.Context(), id, nil))
	return nil
}
