package server

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/procyon-dev/procyon/barrier"
)

// The read-only routes besides the procedures': tables of the engine and
// the store, and the probes.

// view makes a route of a parameterless read.
func view[T any](s *Server, read func() T) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ identity) error {
		if err := noQuery(r); err != nil {
			return err
		}
		s.writeJSON(w, http.StatusOK, read())
		return nil
	}
}

// routeViews registers the tables of the engine, the store and the
// dispatcher.
func (s *Server) routeViews() {
	s.handle("GET", "/api/v1/locks", Read, view(s, func() LockList { return LockList{Locks: s.locks()} }))
	s.handle("GET", "/api/v1/waits", Read, view(s, func() WaitList {
		events, timers := s.waits()
		return WaitList{Events: events, Timers: timers}
	}))
	s.handle("GET", "/api/v1/nodes", Read, view(s, func() NodeList { return NodeList{Nodes: s.nodes()} }))
	s.handle("GET", "/api/v1/store", Read, view(s, s.storeInfo))
	s.handle("GET", "/api/v1/engine", Read, view(s, s.engineInfo))
	s.handle("GET", "/api/v1/engine/samples", Read, view(s, func() SampleList { return SampleList{Samples: s.sampler.samples()} }))
	s.handle("GET", "/api/v1/audit", Read, s.getAudit)
	s.handle("GET", "/api/v1/barriers", Read, view(s, s.barriers))
	s.handle("GET", "/api/v1/types", Read, view(s, func() TypeList { return TypeList{Types: s.typeNames()} }))
}

// barriers are the barrier procedures in progress, sorted by name.
func (s *Server) barriers() BarrierList {
	out := BarrierList{Barriers: []Barrier{}}
	if b := s.opts.Barriers; b != nil {
		for _, st := range b.Running() {
			out.Barriers = append(out.Barriers, barrierOf(st))
		}
	}
	return out
}

func barrierOf(st barrier.Stats) Barrier {
	b := Barrier{Name: st.Name, Type: st.Type, Instance: st.Instance, Started: st.Start,
		ElapsedMs: ms(st.Total), Phase: barrierPhase(st), Members: make([]BarrierMember, len(st.Members))}
	for i, m := range st.Members {
		b.Members[i] = BarrierMember{Name: m.Name, Lost: m.Lost}
		if m.Phase != 0 {
			b.Members[i].Phase = m.Phase.String()
		}
	}
	return b
}

// barrierPhase sums up a procedure from what its coordinator recorded
// (see Barrier.Phase).
func barrierPhase(st barrier.Stats) string {
	lost, done := false, 0
	for _, m := range st.Members {
		lost = lost || m.Lost
		if m.Phase == barrier.PhaseDone {
			done++
		}
	}
	switch {
	case st.Finished && st.Err == nil:
		return "complete"
	case st.Finished:
		return "aborted"
	case lost:
		return "aborting"
	case st.Instance == 0:
		return "starting"
	case st.Acquire == 0: // set once the barrier is recorded as reached
		return "acquiring"
	case done == len(st.Members):
		return "completing"
	}
	return "inside"
}

// getAudit serves a page of the audit log: ?before= (a Seq; default the
// newest) and ?limit= (1 to 1000, default 100).
func (s *Server) getAudit(w http.ResponseWriter, r *http.Request, _ identity) error {
	v, err := query(r)
	if err != nil {
		return err
	}
	var before uint64
	limit := defaultLimit
	for key, vals := range v {
		if len(vals) != 1 {
			return badRequest("parameter %q given %d times", key, len(vals))
		}
		switch key {
		case "before":
			if before, err = strconv.ParseUint(vals[0], 10, 64); err != nil || before == 0 {
				return badRequest("before: want an audit entry's seq: %q", vals[0])
			}
		case "limit":
			if limit, err = strconv.Atoi(vals[0]); err != nil || limit < 1 || limit > maxLimit {
				return badRequest("limit: want 1 to %d: %q", maxLimit, vals[0])
			}
		default:
			return badRequest("unknown parameter %q (before, limit)", key)
		}
	}
	s.writeJSON(w, http.StatusOK, s.audit(before, limit))
	return nil
}

// healthz answers while the process serves.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ identity) error {
	writeText(w, http.StatusOK, "ok")
	return nil
}

// readyz answers 200 once Options.Ready says so, else 503 with why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ identity) error {
	if err := s.ready(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return nil
	}
	writeText(w, http.StatusOK, "ok")
	return nil
}

func (s *Server) ready() error {
	if s.opts.Ready != nil {
		return s.opts.Ready()
	}
	return s.e.Ready()
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}

// metricsHandler serves Options.Gatherer.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}})
}

// slogPrinter logs promhttp's errors.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) {
	p.s.opts.Logger.Error("server: /metrics", "err", v)
}
