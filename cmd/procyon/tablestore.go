package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore/regionserver"
	"github.com/procyon-dev/procyon/remote"
)

func init() {
	register(command{path: "tablestore master", usage: "-root DIR [flags]", summary: "run the table store's master (procedures, catalog, dispatcher, the operator's API and UI) until interrupted; procyon serve with the table store's flag names", define: tablestoreMaster})
	register(command{path: "tablestore regionserver", usage: "-root DIR -name NAME -master ADDR [flags]", summary: "run a table store region server until interrupted", define: tablestoreRegionServer})
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

// tablestoreMaster is serve under the flag names the table store's
// processes use (-root, -addr): one way to run a master.
func tablestoreMaster(fs *flag.FlagSet) runFunc {
	root := fs.String("root", "", "the shared root directory (required)")
	addr := fs.String("addr", "127.0.0.1:7700", "address to serve the admin API, the region servers, and the operator's API, UI and /metrics on")
	sf := addServeFlags(fs)
	return func(ctx context.Context, e *env, args []string) error {
		if *root == "" {
			return usagef("-root is required")
		}
		return runMaster(ctx, e, *root, *addr, sf)
	}
}

func tablestoreRegionServer(fs *flag.FlagSet) runFunc {
	root := fs.String("root", "", "the shared root directory (required)")
	name := fs.String("name", "", "the server's name, stable across its restarts (required)")
	masterAddr := fs.String("master", "", "the master's address (required)")
	addr := fs.String("addr", "127.0.0.1:0", "address to serve the row API and the master's operations on")
	return func(ctx context.Context, e *env, args []string) error {
		switch {
		case *root == "" || *name == "" || *masterAddr == "":
			return usagef("-root, -name and -master are required")
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
		srv := serveHTTP(ln, s.Handler())
		if err := s.Start(ctx); err != nil {
			srv.Close()
			return err
		}
		return readyUntilDone(ctx, e, srv, readyLine{Event: "ready", Role: "regionserver", Name: *name, Addr: ln.Addr().String(), PID: os.Getpid()}, s.Stop)
	}
}

// readyUntilDone prints ready for a process whose srv serves, and at the
// end of ctx stops srv and then calls stop.
func readyUntilDone(ctx context.Context, e *env, srv *httpServing, ready readyLine, stop func() error) error {
	if err := json.NewEncoder(e.stdout).Encode(ready); err != nil {
		srv.Close()
		return errors.Join(err, stop())
	}
	<-ctx.Done()
	return errors.Join(srv.Stop(), stop())
}

// httpServing is an http.Server that knows which connections have a
// request in flight, so that Stop waits for requests, not connections:
// http.Server.Shutdown also waits up to 5 s for a connection on which no
// request ever came (a client's spare dial, which Go's transport makes
// when a request finds an idle connection first), and then fails the
// process's stop for nothing.
type httpServing struct {
	*http.Server
	mu     sync.Mutex
	active map[net.Conn]bool // connections with a request in flight
}

// serveHTTP serves h on ln in the background.
func serveHTTP(ln net.Listener, h http.Handler) *httpServing {
	s := &httpServing{active: map[net.Conn]bool{}}
	s.Server = &http.Server{Handler: h, ConnState: s.track}
	go s.Serve(ln)
	return s
}

func (s *httpServing) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateActive {
		s.active[c] = true
	} else {
		delete(s.active, c)
	}
}

func (s *httpServing) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

// Stop stops accepting, waits up to 5 s for the requests in flight to
// finish, then closes every connection; it fails if requests were still
// in flight.
func (s *httpServing) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				err = fmt.Errorf("%d requests still in flight after 5 s: %w", s.inFlight(), err)
				s.Close()
			}
			return err
		case <-tick.C:
			if s.inFlight() == 0 {
				s.Close() // only connections without a request are left
				<-done
				return nil
			}
		}
	}
}
