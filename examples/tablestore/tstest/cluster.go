package tstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/regionserver"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

// Options configure a Cluster. Every field has a default, written in its
// comment.
type Options struct {
	// Servers is the number of region servers New starts, named rs1,
	// rs2, ... Default 3.
	Servers int
	// Lease is the region servers' lease: a server silent for longer is
	// dead. Default 300 ms.
	Lease time.Duration
	// Hooks are the master engine's test hooks (every master the cluster
	// starts gets them). Default none.
	Hooks procedure.Hooks
	// Master adjusts the options of every master the cluster starts,
	// after the cluster set Root, Transport, Remote.Lease and Logger.
	// Default none.
	Master func(*master.Options)
}

// Cluster is a master and region servers in this process. Its methods
// fail the test on errors; they are safe for concurrent use.
type Cluster struct {
	t    testing.TB
	opts Options
	// Root is the shared root directory.
	Root string
	// Client is a table store client of the master.
	Client *tablestore.Client
	// Log holds every log record of the master and the servers.
	Log *LogRecorder

	masterFront *front
	masterSrv   *httptest.Server

	mu struct {
		sync.Mutex
		master  *master.Master // nil while stopped
		servers map[string]*Server
		next    int // names the next server
	}
}

// Server is a region server of a Cluster.
type Server struct {
	Name string
	// RS is the region server (nil after a kill).
	RS    *regionserver.Server
	front *front
	srv   *httptest.Server
	out   *gate // its calls to the master
}

// New starts a master and opts.Servers region servers on a new temporary
// root, and waits until the master sees every server live. Cleanup stops
// everything.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Servers <= 0 {
		opts.Servers = 3
	}
	if opts.Lease <= 0 {
		opts.Lease = 300 * time.Millisecond
	}
	c := &Cluster{t: t, opts: opts, Root: t.TempDir(), Log: &LogRecorder{}, masterFront: &front{}}
	c.mu.servers = map[string]*Server{}
	c.masterSrv = httptest.NewServer(c.masterFront)
	c.Client = tablestore.NewClient(c.MasterAddr())
	t.Cleanup(c.close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster log (last 200 records):\n%s", c.Log.Tail(200))
		}
	})
	c.StartMaster()
	for range opts.Servers {
		c.AddServer()
	}
	c.Eventually(10*time.Second, "every region server live", func() error {
		if n := len(c.LiveServers()); n != opts.Servers {
			return fmt.Errorf("%d live servers, want %d", n, opts.Servers)
		}
		return nil
	})
	return c
}

// MasterAddr is the master's address (the same across its restarts).
func (c *Cluster) MasterAddr() string { return c.masterSrv.Listener.Addr().String() }

// Master returns the running master; it fails the test if it is stopped.
func (c *Cluster) Master() *master.Master {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.master == nil {
		c.t.Fatalf("tstest: the master is stopped")
	}
	return c.mu.master
}

// StartMaster starts a master on the cluster's root (a new one after
// StopMaster: it recovers from the store) and serves it at MasterAddr.
func (c *Cluster) StartMaster() *master.Master {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.master != nil {
		c.t.Fatalf("tstest: the master runs already")
	}
	mo := master.Options{
		Root:      c.Root,
		Transport: &remote.HTTP{},
		Remote:    remote.Options{Lease: c.opts.Lease},
		Engine:    procedure.Options{Hooks: c.opts.Hooks},
		Logger:    c.Log.Logger("master"),
	}
	if c.opts.Master != nil {
		c.opts.Master(&mo)
	}
	m, err := master.New(mo)
	if err != nil {
		c.t.Fatalf("tstest: new master: %v", err)
	}
	// Served before Start: the servers' reports and heartbeats find the
	// new master as soon as it takes them.
	c.masterFront.set(m.Handler())
	if err := m.Start(context.Background()); err != nil {
		c.masterFront.set(nil)
		c.t.Fatalf("tstest: start master: %v", err)
	}
	c.mu.master = m
	return m
}

// StopMaster stops the master: its address stops answering, then its
// dispatcher and engine stop and its store closes.
func (c *Cluster) StopMaster() {
	c.t.Helper()
	c.mu.Lock()
	m := c.mu.master
	c.mu.master = nil
	c.mu.Unlock()
	if m == nil {
		return
	}
	c.masterFront.set(nil)
	if err := m.Stop(); err != nil {
		c.t.Errorf("tstest: stop master: %v", err)
	}
}

// RestartMaster stops the master and starts a new one on the same root.
func (c *Cluster) RestartMaster() *master.Master {
	c.t.Helper()
	c.StopMaster()
	return c.StartMaster()
}

// DropReports makes the master's address drop the region servers'
// reports (the connection is closed, nothing answered) while on is true:
// their operations run, and the procedures waiting for them stay waiting.
// Heartbeats and registrations go through.
func (c *Cluster) DropReports(on bool) { c.masterFront.setDrop("/remote/v1/report", on) }

// DropOps makes region server name's address drop the master's requests
// (operations) while on is true: they are not delivered, and the master
// resends them while the server lives.
func (c *Cluster) DropOps(name string, on bool) {
	c.mu.Lock()
	s := c.mu.servers[name]
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("tstest: no region server %s", name)
	}
	s.front.setDrop("/remote/v1/execute", on)
}

// Partition cuts region server name off the master while on is true:
// its heartbeats and reports fail, and the master's operations do not
// reach it. It lives on and serves its row API.
func (c *Cluster) Partition(name string, on bool) {
	c.mu.Lock()
	s := c.mu.servers[name]
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("tstest: no region server %s", name)
	}
	s.out.closed.Store(on)
	s.front.setDrop("/remote/v1/execute", on)
}

// AddServer starts a new region server (rs1, rs2, ...) and waits until it
// registered.
func (c *Cluster) AddServer() *Server {
	c.t.Helper()
	c.mu.Lock()
	c.mu.next++
	name := fmt.Sprintf("rs%d", c.mu.next)
	c.mu.Unlock()
	return c.StartServer(name)
}

// StartServer starts region server name (a new process of it, if it ran
// before) on a new address and waits until it registered.
func (c *Cluster) StartServer(name string) *Server {
	c.t.Helper()
	s := &Server{Name: name, front: &front{}, out: &gate{base: http.DefaultTransport}}
	s.srv = httptest.NewServer(s.front)
	rs, err := regionserver.New(regionserver.Options{
		Root:      c.Root,
		Name:      name,
		Addr:      s.srv.Listener.Addr().String(),
		Master:    c.MasterAddr(),
		Transport: &remote.HTTP{Client: &http.Client{Transport: s.out}},
		Logger:    c.Log.Logger(name),
	})
	if err != nil {
		s.srv.Close()
		c.t.Fatalf("tstest: new region server %s: %v", name, err)
	}
	s.RS = rs
	s.front.set(rs.Handler())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rs.Start(ctx); err != nil {
		s.srv.Close()
		c.t.Fatalf("tstest: start region server %s: %v", name, err)
	}
	c.mu.Lock()
	if old := c.mu.servers[name]; old != nil && old.RS != nil {
		c.mu.Unlock()
		c.t.Fatalf("tstest: region server %s runs already", name)
	}
	c.mu.servers[name] = s
	c.mu.Unlock()
	return s
}

// Kill kills region server name (see the package doc): it stops answering
// at once, its node stops without a word to the master, and its regions
// are closed without a flush, releasing their locks.
func (c *Cluster) Kill(name string) {
	c.t.Helper()
	c.mu.Lock()
	s := c.mu.servers[name]
	var rs *regionserver.Server
	if s != nil {
		rs, s.RS = s.RS, nil
	}
	c.mu.Unlock()
	if rs == nil {
		c.t.Fatalf("tstest: no running region server %s", name)
	}
	s.front.set(nil)
	s.srv.CloseClientConnections()
	if err := rs.Stop(); err != nil {
		c.t.Logf("tstest: kill %s: %v", name, err)
	}
}

// Servers returns the running region servers, by name.
func (c *Cluster) Servers() []*Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ss []*Server
	for _, s := range c.mu.servers {
		if s.RS != nil {
			ss = append(ss, s)
		}
	}
	slices.SortFunc(ss, func(a, b *Server) int { return strings.Compare(a.Name, b.Name) })
	return ss
}

// LiveServers returns the names of the servers the master sees live.
func (c *Cluster) LiveServers() []string {
	var live []string
	for _, n := range c.Master().Dispatcher().Nodes() {
		if n.Live {
			live = append(live, n.Name)
		}
	}
	return live
}

// Eventually polls cond until it returns nil, and fails the test with its
// last error if it does not within timeout.
func (c *Cluster) Eventually(timeout time.Duration, what string, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("tstest: %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond) // polling an eventual state, not synchronising
	}
}

// close stops every server and the master.
func (c *Cluster) close() {
	for _, s := range c.Servers() {
		c.Kill(s.Name)
	}
	c.StopMaster()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.mu.servers {
		s.srv.Close()
	}
	c.masterSrv.Close()
}

// front is an address's front door: it hands requests to a handler, or,
// with none (the process is dead) or for a dropped path, closes the
// connection without an answer.
type front struct {
	mu   sync.Mutex
	h    http.Handler
	drop map[string]bool
}

func (f *front) set(h http.Handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.h = h
}

func (f *front) setDrop(path string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drop == nil {
		f.drop = map[string]bool{}
	}
	f.drop[path] = on
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	h, drop := f.h, f.drop[r.URL.Path]
	f.mu.Unlock()
	if h == nil || drop {
		panic(http.ErrAbortHandler) // net/http closes the connection, answering nothing
	}
	h.ServeHTTP(w, r)
}

// gate is an http.RoundTripper that fails every request while closed.
type gate struct {
	base   http.RoundTripper
	closed atomic.Bool
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	if g.closed.Load() {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errors.New("tstest: partitioned")
	}
	return g.base.RoundTrip(r)
}

// LogRecorder keeps the log records of the cluster's processes in memory.
type LogRecorder struct {
	mu      sync.Mutex
	records []string
}

// Logger returns a logger whose records are kept with the name of their
// process.
func (l *LogRecorder) Logger(process string) *slog.Logger {
	return slog.New(&recordHandler{l: l, attrs: []slog.Attr{slog.String("process", process)}})
}

// Contains reports whether a record holds every one of parts.
func (l *LogRecorder) Contains(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if containsAll(r, parts) {
			return true
		}
	}
	return false
}

// Last returns the last record that holds every one of parts ("" if
// none does).
func (l *LogRecorder) Last(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range slices.Backward(l.records) {
		if containsAll(r, parts) {
			return r
		}
	}
	return ""
}

// Tail returns the last n records, a line each.
func (l *LogRecorder) Tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.records[max(0, len(l.records)-n):], "\n")
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// recordHandler is the slog.Handler of a LogRecorder.
type recordHandler struct {
	l     *LogRecorder
	attrs []slog.Attr
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %q", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	h.l.mu.Lock()
	h.l.records = append(h.l.records, b.String())
	h.l.mu.Unlock()
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordHandler{l: h.l, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }
