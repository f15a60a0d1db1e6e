package server

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// route is one route of the server's own mux (the API, the probes,
// /metrics, pprof): what it needs to be served.
type route struct {
	method string
	path   string
	role   Role // Read or Operate; 0: no credentials needed
}

// handlerFunc serves a request made by who; an error is written as an
// Error body (errorOf).
type handlerFunc func(w http.ResponseWriter, r *http.Request, who identity) error

// routeAPI registers the JSON API, the probes, /metrics and pprof on the
// server's API mux (ServeHTTP sends their paths there).
func (s *Server) routeAPI() {
	s.api = http.NewServeMux()
	s.routeProcedures()
	s.routeViews()
	s.routeProbes()
}

func (s *Server) routeProcedures() {
	s.handle("GET", "/api/v1/procedures", Read, s.listProcedures)
	s.handle("POST", "/api/v1/procedures", Operate, s.submit)
	s.handle("GET", "/api/v1/procedures/{id}", Read, s.getProcedure)
	s.handle("GET", "/api/v1/procedures/{id}/wait", Read, s.wait)
	s.handle("POST", "/api/v1/procedures/{id}/abort", Operate, s.abort)
	s.handle("POST", "/api/v1/procedures/{id}/bypass", Operate, s.bypass)
	s.handle("POST", "/api/v1/procedures/{id}/ack", Operate, s.ack)
	s.handle("POST", "/api/v1/procedures/abort", Operate, s.bulkAbort)
}

func (s *Server) routeProbes() {
	s.handle("GET", "/healthz", 0, s.healthz)
	s.handle("GET", "/readyz", 0, s.readyz)
	if s.opts.Gatherer != nil {
		s.handle("GET", "/metrics", Read, plain(s.metricsHandler()))
	}
	if s.opts.Pprof {
		s.handle("GET", "/debug/pprof/", Operate, plain(http.HandlerFunc(pprof.Index)))
		s.handle("GET", "/debug/pprof/cmdline", Operate, plain(http.HandlerFunc(pprof.Cmdline)))
		s.handle("GET", "/debug/pprof/profile", Operate, plain(http.HandlerFunc(pprof.Profile)))
		s.handle("GET", "/debug/pprof/symbol", Operate, plain(http.HandlerFunc(pprof.Symbol)))
		s.handle("POST", "/debug/pprof/symbol", Operate, plain(http.HandlerFunc(pprof.Symbol)))
		s.handle("GET", "/debug/pprof/trace", Operate, plain(http.HandlerFunc(pprof.Trace)))
	}
}

// plain serves h once the request is authorized.
func plain(h http.Handler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ identity) error {
		h.ServeHTTP(w, r)
		return nil
	}
}

// handle registers h for method and path, for credentials of role (0:
// none needed).
func (s *Server) handle(method, path string, role Role, h handlerFunc) {
	s.routes = append(s.routes, route{method: method, path: path, role: role})
	s.api.Handle(method+" "+path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := identity{}
		if role != 0 {
			var err error
			if who, err = s.authorize(r, role); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if err := h(w, r, who); err != nil {
			s.fail(w, r, err)
		}
	}))
}

// ownsPath reports whether path is served by the API mux rather than the
// UI's.
func ownsPath(path string) bool {
	switch path {
	case "/api/v1", "/healthz", "/readyz", "/metrics", "/debug/pprof":
		return true
	}
	return strings.HasPrefix(path, "/api/v1/") || strings.HasPrefix(path, "/debug/pprof/")
}

// serveAPI serves a request of the API mux: a route, or a JSON 404 or
// 405. Unsafe cross-origin browser requests are refused first.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if err := s.sameOrigin(r); err != nil {
		s.writeJSON(w, http.StatusForbidden, Error{Code: CodeForbidden, Message: "cross-origin request refused"})
		return
	}
	h, pattern := s.api.Handler(r)
	if pattern != "" {
		s.api.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		s.writeJSON(w, http.StatusNotFound, Error{Code: CodeNotFound, Message: "no route " + r.URL.Path})
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", rec.header.Get("Allow"))
		s.writeJSON(w, http.StatusMethodNotAllowed, Error{Code: CodeMethodNotAllowed,
			Message: r.Method + " " + r.URL.Path + ": allowed: " + rec.header.Get("Allow")})
	default: // a redirect to the cleaned path
		h.ServeHTTP(w, r)
	}
}

// statusRecorder keeps the status and header the mux's own 404 and 405
// handlers write, and drops their plain-text body.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// authorize identifies r's sender and checks that they may act as need.
// Refusals are logged, without the credentials.
func (s *Server) authorize(r *http.Request, need Role) (identity, error) {
	who, err := s.identify(r)
	if err != nil {
		s.opts.Logger.Warn("server: unauthenticated request refused", "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "reason", err.Error())
		return identity{}, &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized, msg: err.Error()}
	}
	if who.Role < need {
		s.opts.Logger.Warn("server: request forbidden", "method", r.Method, "path", r.URL.Path,
			"who", who.Who, "role", who.Role.String())
		return identity{}, &apiError{status: http.StatusForbidden, code: CodeForbidden,
			msg: "role " + who.Role.String() + " of " + who.Who + " may not " + r.Method + " " + r.URL.Path + " (needs " + need.String() + ")"}
	}
	return who, nil
}
