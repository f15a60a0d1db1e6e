package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/server"
)

// procyon serve runs the built-in control plane, the table store's master
// (examples/tablestore/master), with the operator's server (package
// server) mounted on the same listener. procyon tablestore master runs
// the same thing under its older flag names.

func init() {
	register(command{path: "serve", usage: "--dir DIR [--listen ADDR] [flags]",
		summary: "run the built-in control plane (the table store's master) with the operator's API, web UI and /metrics, until interrupted",
		define:  serve})
}

// serveFlags are the flags of serve and tablestore master beyond where
// the data is and where to listen.
type serveFlags struct {
	lease     *time.Duration
	tokenFile *string
	tlsCert   *string
	tlsKey    *string
	clientCA  *string
	pprof     *bool
}

func addServeFlags(fs *flag.FlagSet) *serveFlags {
	return &serveFlags{
		lease: fs.Duration("lease", 3*time.Second, "a region server silent for longer is dead"),
		tokenFile: fs.String("token-file", "", "file of the credentials the server accepts, one per line: \"NAME ROLE SECRET\" (a bearer token; ROLE read or operate; "+
			"the secret at least 16 bytes) or \"cert:CN ROLE\" (a client certificate's common name, with --client-ca); # starts a comment. "+
			"Without credentials the server only listens on loopback (else exit 2) and every request may operate"),
		tlsCert:  fs.String("tls-cert", "", "PEM certificate: serve https (with --tls-key)"),
		tlsKey:   fs.String("tls-key", "", "PEM key of --tls-cert"),
		clientCA: fs.String("client-ca", "", "PEM CA whose client certificates are verified when a client presents one (mutual TLS; roles by common name from --token-file)"),
		pprof:    fs.Bool("pprof", false, "serve net/http/pprof under /debug/pprof/ (operate role)"),
	}
}

func serve(fs *flag.FlagSet) runFunc {
	dir := fs.String("dir", "", "the data directory: the table store's shared root, made if missing (required)")
	listen := fs.String("listen", "127.0.0.1:7070", "address to serve the API, the UI, /metrics, the admin API and the region servers on")
	sf := addServeFlags(fs)
	return func(ctx context.Context, e *env, args []string) error {
		if *dir == "" {
			return usagef("--dir is required")
		}
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		return runMaster(ctx, e, *dir, *listen, sf)
	}
}

// access is what --token-file, --tls-* and --client-ca configure.
type access struct {
	tokens []server.Token
	certs  map[string]server.Role
	tls    *tls.Config // nil: plain HTTP
}

// loadAccess reads the credentials and TLS files; a mistake in them is a
// usage error (exit 2).
func (sf *serveFlags) loadAccess() (access, error) {
	var a access
	if *sf.tokenFile != "" {
		var err error
		if a.tokens, a.certs, err = readAccessFile(*sf.tokenFile); err != nil {
			return a, &usageError{err: err}
		}
	}
	switch {
	case (*sf.tlsCert == "") != (*sf.tlsKey == ""):
		return a, usagef("--tls-cert and --tls-key go together")
	case *sf.clientCA != "" && *sf.tlsCert == "":
		return a, usagef("--client-ca needs --tls-cert and --tls-key")
	case *sf.clientCA != "" && len(a.certs) == 0:
		return a, usagef("--client-ca needs \"cert:CN ROLE\" lines in --token-file: a certificate without a role would be refused")
	case len(a.certs) > 0 && *sf.clientCA == "":
		return a, usagef("--token-file names client certificates but --client-ca is not given")
	}
	if *sf.tlsCert == "" {
		return a, nil
	}
	cert, err := tls.LoadX509KeyPair(*sf.tlsCert, *sf.tlsKey)
	if err != nil {
		return a, usagef("--tls-cert/--tls-key: %v", err)
	}
	a.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if *sf.clientCA != "" {
		pem, err := os.ReadFile(*sf.clientCA)
		if err != nil {
			return a, usagef("--client-ca: %v", err)
		}
		a.tls.ClientCAs = x509.NewCertPool()
		if !a.tls.ClientCAs.AppendCertsFromPEM(pem) {
			return a, usagef("--client-ca %s: no PEM certificate", *sf.clientCA)
		}
		// Tokens still work for a client without a certificate.
		a.tls.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return a, nil
}

// readAccessFile parses a credentials file: "NAME ROLE SECRET" lines
// (tokens) and "cert:CN ROLE" lines (client certificates). Errors name the
// file and line, never a secret.
func readAccessFile(path string) ([]server.Token, map[string]server.Role, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	var tokens []server.Token
	certs := map[string]server.Role{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("--token-file %s, line %d: %s", path, n, fmt.Sprintf(format, a...))
		}
		if cn, ok := strings.CutPrefix(words[0], "cert:"); ok {
			if len(words) != 2 || cn == "" {
				return nil, nil, bad("want \"cert:CN ROLE\"")
			}
			role, err := server.ParseRole(words[1])
			if err != nil {
				return nil, nil, bad("%v", err)
			}
			certs[cn] = role
			continue
		}
		if len(words) != 3 {
			return nil, nil, bad("want \"NAME ROLE SECRET\" (%d words)", len(words))
		}
		role, err := server.ParseRole(words[1])
		if err != nil {
			return nil, nil, bad("%v", err)
		}
		tokens = append(tokens, server.Token{Name: words[0], Role: role, Secret: words[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("--token-file %s: %w", path, err)
	}
	if len(tokens) == 0 && len(certs) == 0 {
		return nil, nil, fmt.Errorf("--token-file %s holds no credentials", path)
	}
	return tokens, certs, nil
}

// errRecovering is /readyz's answer (and every route's but the probes')
// until the master has recovered.
var errRecovering = errors.New("recovering: the master is opening its store and resuming its procedures")

// runMaster runs the table store's master on root with the operator's
// server, both served on addr, until ctx ends. It listens before the
// master recovers: meanwhile /healthz answers, /readyz and every other
// route answer 503. Once recovered, it prints the ready line.
func runMaster(ctx context.Context, e *env, root, addr string, sf *serveFlags) error {
	if *sf.lease <= 0 {
		return usagef("--lease must be positive")
	}
	acc, err := sf.loadAccess()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := master.New(master.Options{Root: root, Transport: &remote.HTTP{}, Remote: remote.Options{Lease: *sf.lease}, Logger: log})
	if err != nil {
		return err
	}
	var started atomic.Bool
	opts := server.Options{
		Engine: m.Engine(), Dispatcher: m.Dispatcher(), Gatherer: m.Metrics(), Types: m.SubmitTypes(),
		Tokens: acc.tokens, ClientCerts: acc.certs, Pprof: *sf.pprof, Logger: log,
		Ready: func() error {
			if !started.Load() {
				return errRecovering
			}
			return m.Engine().Err()
		},
	}
	if err := server.CheckListen(addr, opts); err != nil {
		return &usageError{err: fmt.Errorf("%w (--token-file)", err)}
	}
	srv, err := server.New(opts)
	if err != nil {
		return &usageError{err: err}
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if acc.tls != nil {
		ln = tls.NewListener(ln, acc.tls)
	}
	hs := serveHTTP(ln, untilStarted(&started, masterMux(m, srv)))
	if err := m.Start(ctx); err != nil {
		hs.Close()
		return err
	}
	started.Store(true)
	log.Info("serving", "addr", ln.Addr().String(), "tls", acc.tls != nil, "tokens", len(acc.tokens), "client_certs", len(acc.certs))
	return readyUntilDone(ctx, e, hs, readyLine{Event: "ready", Role: "master", Addr: ln.Addr().String(), PID: os.Getpid(), Epoch: m.Dispatcher().Epoch()}, m.Stop)
}

// masterMux routes the master's own API (/ts/) and the dispatcher's
// service (/remote/) to the master, everything else to the server.
func masterMux(m *master.Master, srv *server.Server) http.Handler {
	mux := http.NewServeMux()
	mh := m.Handler()
	mux.Handle("/ts/", mh)
	mux.Handle("/remote/", mh)
	mux.Handle("/", srv)
	return mux
}

// untilStarted answers 503 to every request but the probes until started
// is set: before, the engine has not recovered.
func untilStarted(started *atomic.Bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if started.Load() || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(server.Error{Code: server.CodeUnavailable, Message: errRecovering.Error()})
	})
}
