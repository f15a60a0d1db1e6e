package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/regionserver"
	"github.com/procyon-dev/procyon/remote"
)

func init() {
	register(command{path: "tablestore master", usage: "-root DIR [flags]", summary: "run the table store's master (procedures, catalog, dispatcher) until interrupted", run: tablestoreMaster})
	register(command{path: "tablestore regionserver", usage: "-root DIR -name NAME -master ADDR [flags]", summary: "run a table store region server until interrupted", run: tablestoreRegionServer})
}

// readyLine is the JSON line a table store process prints once it serves:
// the demo and the process tests wait for it (and learn the address).
type readyLine struct {
	Event string `json:"event"` // "ready"
	Role  string `json:"role"`  // "master" or "regionserver"
	Name  string `json:"name,omitempty"`
	Addr  string `json:"addr"`
	PID   int    `json:"pid"`
	Epoch uint64 `json:"epoch,omitempty"`
}

func tablestoreMaster(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "tablestore master", "-root DIR [flags]")
	root := fs.String("root", "", "the shared root directory (required)")
	addr := fs.String("addr", "127.0.0.1:7700", "address to serve the admin API and the region servers on")
	lease := fs.Duration("lease", 3*time.Second, "a region server silent for longer is dead")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return errUsage
	case *root == "":
		return errors.New("-root is required")
	case *lease <= 0:
		return errors.New("-lease must be positive")
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := master.New(master.Options{Root: *root, Transport: &remote.HTTP{}, Remote: remote.Options{Lease: *lease}, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	return serveUntilDone(ctx, e, ln, m.Handler(), readyLine{Event: "ready", Role: "master", Addr: ln.Addr().String(), PID: os.Getpid(), Epoch: m.Dispatcher().Epoch()}, m.Stop)
}

func tablestoreRegionServer(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "tablestore regionserver", "-root DIR -name NAME -master ADDR [flags]")
	root := fs.String("root", "", "the shared root directory (required)")
	name := fs.String("name", "", "the server's name, stable across its restarts (required)")
	masterAddr := fs.String("master", "", "the master's address (required)")
	addr := fs.String("addr", "127.0.0.1:0", "address to serve the row API and the master's operations on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 0:
		return errUsage
	case *root == "" || *name == "" || *masterAddr == "":
		return errors.New("-root, -name and -master are required")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := regionserver.New(regionserver.Options{Root: *root, Name: *name, Addr: ln.Addr().String(), Master: *masterAddr, Transport: &remote.HTTP{}, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: s.Handler()}
	go srv.Serve(ln)
	if err := s.Start(ctx); err != nil {
		srv.Close()
		return err
	}
	ready := readyLine{Event: "ready", Role: "regionserver", Name: *name, Addr: ln.Addr().String(), PID: os.Getpid()}
	if err := json.NewEncoder(e.stdout).Encode(ready); err != nil {
		return err
	}
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(shut), s.Stop())
}

// serveUntilDone serves h on ln, prints ready, and at the end of ctx
// shuts the server down and calls stop.
func serveUntilDone(ctx context.Context, e *env, ln net.Listener, h http.Handler, ready readyLine, stop func() error) error {
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	if err := json.NewEncoder(e.stdout).Encode(ready); err != nil {
		srv.Close()
		return errors.Join(err, stop())
	}
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(shut), stop())
}
