// Package embedetcd starts a single-node etcd server inside the current
// process, listening on loopback only, for the barrier package's tests, the
// "procyon barrier demo" and "procyon bench barrier" verbs. It is not meant
// to serve production traffic: it has one member and no TLS.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Options configure a server. The zero value is usable except for Dir.
type Options struct {
	// Dir is the data directory. Required; the caller owns it and removes it.
	Dir string
	// TickMs is the raft heartbeat interval. Default 10 ms: the server is
	// alone, so short ticks only make elections and lease expiry snappier.
	TickMs uint
	// ElectionMs is the raft election timeout. Default 10 × TickMs.
	ElectionMs uint
	// NoFsync disables etcd's fsyncs (faster, not durable). Default false.
	NoFsync bool
	// MaxTxnOps is the server's --max-txn-ops. Default 128, etcd's default.
	MaxTxnOps uint
	// StartTimeout bounds how long Start waits for the server to be ready.
	// Default 30 s.
	StartTimeout time.Duration
	// Logger receives etcd's own logs. Default: none.
	Logger *zap.Logger
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
}

// Start starts a server whose client and peer listeners are on 127.0.0.1
// with ports picked by the kernel, so parallel test binaries never collide.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedetcd: Options.Dir is required")
	}
	if opts.TickMs == 0 {
		opts.TickMs = 10
	}
	if opts.ElectionMs == 0 {
		opts.ElectionMs = 10 * opts.TickMs
	}
	if opts.MaxTxnOps == 0 {
		opts.MaxTxnOps = embed.DefaultMaxTxnOps
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedetcd: %w", err)
	}
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := embed.NewConfig()
	cfg.Name = "procyon"
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls = []url.URL{loop}
	cfg.AdvertiseClientUrls = []url.URL{loop}
	cfg.ListenPeerUrls = []url.URL{loop}
	cfg.AdvertisePeerUrls = []url.URL{loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs = opts.TickMs
	cfg.ElectionMs = opts.ElectionMs
	cfg.UnsafeNoFsync = opts.NoFsync
	cfg.MaxTxnOps = opts.MaxTxnOps
	cfg.EnableGRPCGateway = false
	cfg.Metrics = "basic"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(opts.Logger)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	case <-time.After(opts.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedetcd: not ready after %v", opts.StartTimeout)
	}
	s := &Server{etcd: e}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, "http://"+l.Addr().String())
	}
	return s, nil
}

// Endpoints are the client URLs, e.g. "http://127.0.0.1:40123".
func (s *Server) Endpoints() []string { return s.endpoints }

// Client returns a new client connected to the server; the caller closes it.
func (s *Server) Client(ctx context.Context) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   s.endpoints,
		DialTimeout: 5 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
}

// Close stops the server. It does not remove Options.Dir.
func (s *Server) Close() { s.etcd.Close() }
