package server

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/barrier"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

// Options configure a Server. Engine is required; every other field has a
// default, written in its comment.
type Options struct {
	// Engine is the engine the server shows and acts on. Required.
	Engine *procedure.Engine
	// Dispatcher, if set, adds the nodes (remote's liveness table) and
	// each procedure's remote operations. Default none.
	Dispatcher *remote.Dispatcher
	// Barriers, if set, adds the barrier procedures in progress. Default
	// none.
	Barriers *barrier.Coordinator
	// Gatherer, if set, is served at /metrics (a *prometheus.Registry
	// holding metrics.NewCollector, typically). Default none: /metrics is
	// 404.
	Gatherer prometheus.Gatherer
	// Types are the procedure types operators may submit through the API
	// (JSONType). Default none: submission is refused.
	Types []SubmitType
	// Tokens are the bearer tokens the server accepts. With neither
	// Tokens nor ClientCerts, every request is allowed, as Operate (who:
	// "local"): serve such a server on loopback only (CheckListen).
	// Default none.
	Tokens []Token
	// ClientCerts maps the common name of a verified TLS client
	// certificate to its role (mutual TLS: the http.Server's
	// tls.Config must require and verify client certificates). Default
	// none.
	ClientCerts map[string]Role
	// Ready reports whether the server is ready to act (/readyz): nil once
	// the control plane recovered. Default: Engine.Ready (started, and
	// neither stopped nor failed).
	Ready func() error
	// Pprof serves net/http/pprof under /debug/pprof/ (Operate role).
	// Default off.
	Pprof bool
	// MaxBody bounds a request body. Default 1 MiB.
	MaxBody int64
	// Logger receives the operator actions and errors (never a secret).
	// Default slog.Default().
	Logger *slog.Logger
}

// Server is the operator's HTTP surface of an engine: the JSON API under
// /api/v1/, the web UI under /ui/, /healthz, /readyz, /metrics and,
// opt-in, pprof. It is an http.Handler; mount it at the root of a mux or
// a server of its own.
type Server struct {
	opts    Options
	e       *procedure.Engine
	mux     *http.ServeMux
	types   map[string]SubmitType
	hashed  []hashedToken
	sampler *sampler

	api    *http.ServeMux // the API, the probes, /metrics, pprof (routeAPI)
	routes []route        // what api serves, in registration order
	cop    *http.CrossOriginProtection
}

// New returns a server for opts.Engine. It starts the sampler behind the
// engine page's charts; Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("server: Options.Engine is required")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, e: opts.Engine, mux: http.NewServeMux(), types: map[string]SubmitType{},
		cop: http.NewCrossOriginProtection()}
	for _, t := range opts.Types {
		if _, dup := s.types[t.Name()]; dup {
			return nil, errors.New("server: type " + t.Name() + " given twice in Options.Types")
		}
		s.types[t.Name()] = t
	}
	if err := s.setTokens(opts.Tokens); err != nil {
		return nil, err
	}
	s.sampler = newSampler(s)
	s.routeAPI()
	s.routeUI()
	return s, nil
}

// ServeHTTP serves the API, the UI and the probes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ownsPath(r.URL.Path) {
		s.serveAPI(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Close stops the sampler. The engine is the caller's.
func (s *Server) Close() error {
	s.sampler.stop()
	return nil
}
