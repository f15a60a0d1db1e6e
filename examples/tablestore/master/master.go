package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/vfs"
)

// Options configure a Master. Root and Transport are required; every
// other field has a default, written in its comment.
type Options struct {
	// Root is the shared root directory (tablestore.Layout).
	Root string
	// Transport reaches the region servers (remote.HTTP between
	// processes, remote.Local in tests).
	Transport remote.Transport
	// Remote configures the dispatcher (its OnNodeDead is the master's:
	// a dead region server's regions are reassigned). Default remote's
	// defaults.
	Remote remote.Options
	// Engine configures the procedure engine. Default procedure's
	// defaults.
	Engine procedure.Options
	// Store configures the master's store; its Dir is Root's master
	// directory. Default durable's defaults.
	Store durable.Options
	// FS is where region files and snapshots are read and written by the
	// master itself (offline regions, clones, deletes). Default vfs.OS.
	FS vfs.FS
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Master is the table store's control plane: the catalog of tables,
// regions and snapshots in a durable store, and the procedures that change
// it, driving region servers through a remote.Dispatcher.
type Master struct {
	opts   Options
	layout tablestore.Layout
	fs     vfs.FS
	log    *slog.Logger
	store  *durable.Store
	engine *procedure.Engine
	disp   *remote.Dispatcher
	cat    catalog
	reg    *prometheus.Registry // the metrics /metrics serves
	bal    balancer             // picks the server of each assignment
	// ready is closed once the dispatcher started: before, its liveness
	// table is empty, though Engine.Start already resumed the procedures.
	ready chan struct{}

	create     *procedure.Type[createState, CreateTable]
	assign     *procedure.Type[assignState, AssignRegion]
	unassign   *procedure.Type[unassignState, UnassignRegion]
	disable    *procedure.Type[disableState, DisableTable]
	enable     *procedure.Type[enableState, EnableTable]
	drop       *procedure.Type[deleteState, DeleteTable]
	crash      *procedure.Type[crashState, ServerCrash]
	split      *procedure.Type[splitState, SplitRegion]
	snapshot   *procedure.Type[snapState, SnapshotTable]
	snapRegion *procedure.Type[snapRegionState, SnapshotRegion]
	verify     *procedure.Type[verifyState, VerifySnapshot]
}

// New returns a master over the store in Root; Start opens it.
func New(opts Options) (*Master, error) {
	if opts.Root == "" || opts.Transport == nil {
		return nil, errors.New("tablestore/master: Options.Root and Options.Transport are required")
	}
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Master{opts: opts, layout: tablestore.Layout{Root: opts.Root}, fs: opts.FS, log: opts.Logger, ready: make(chan struct{})}
	so := opts.Store
	so.Dir = m.layout.MasterDir()
	if so.Logger == nil {
		so.Logger = opts.Logger
	}
	m.store = durable.New(so)
	eo := opts.Engine
	if eo.Logger == nil {
		eo.Logger = opts.Logger
	}
	m.engine = procedure.New(m.store, eo)
	ro := opts.Remote
	ro.OnNodeDead = m.onNodeDead
	if ro.Logger == nil {
		ro.Logger = opts.Logger
	}
	m.disp = remote.NewDispatcher(m.engine, opts.Transport, ro)
	m.cat = newCatalog(m.store)
	m.register()
	m.reg = m.newRegistry()
	return m, nil
}

// Start opens the store, recovers the procedures and starts dispatching.
func (m *Master) Start(ctx context.Context) error {
	if err := m.engine.Start(ctx); err != nil {
		return err
	}
	if err := m.disp.Start(ctx); err != nil {
		return errors.Join(err, m.engine.Stop())
	}
	close(m.ready)
	return nil
}

// Stop stops dispatching and the engine, and closes the store.
func (m *Master) Stop() error {
	return errors.Join(m.disp.Stop(), m.engine.Stop())
}

// Engine returns the master's procedure engine.
func (m *Master) Engine() *procedure.Engine { return m.engine }

// Dispatcher returns the master's dispatcher (serve its Service to the
// region servers).
func (m *Master) Dispatcher() *remote.Dispatcher { return m.disp }

// onNodeDead starts the dead server's crash procedure (once per
// incarnation: the nonce).
func (m *Master) onNodeDead(ctx context.Context, n remote.NodeInfo) error {
	_, err := m.crash.Submit(ctx, ServerCrash{Server: n.Name, Incarnation: n.Incarnation},
		procedure.SubmitOptions{Nonce: "server-crash/" + n.Name + "/" + strconv.FormatUint(n.Incarnation, 10), Submitter: "master"})
	if err != nil {
		return fmt.Errorf("tablestore/master: start the crash procedure of %s: %w", n.Name, err)
	}
	return nil
}

// errStarting fails, for a retry, a step that needs the region servers'
// liveness before the dispatcher has loaded it.
var errStarting = errors.New("tablestore/master: starting: the region servers' liveness is not loaded yet")

// nodes returns the dispatcher's liveness table. Until the dispatcher
// started, it returns a Retryable error: the table is empty then, and a
// step that believed it would take every server for dead (an unassign
// would record a region offline that its server still serves).
func (m *Master) nodes() ([]remote.NodeInfo, error) {
	select {
	case <-m.ready:
		return m.disp.Nodes(), nil
	default:
		return nil, procedure.Retryable(errStarting)
	}
}

// liveServers returns the names of the live region servers.
func (m *Master) liveServers() ([]string, error) {
	nodes, err := m.nodes()
	var live []string
	for _, n := range nodes {
		if n.Live {
			live = append(live, n.Name)
		}
	}
	return live, err
}

// isLive reports whether server is a live region server, in incarnation
// inc (0: any).
func (m *Master) isLive(server string, inc uint64) (bool, error) {
	nodes, err := m.nodes()
	for _, n := range nodes {
		if n.Name == server {
			return n.Live && (inc == 0 || n.Incarnation == inc), nil
		}
	}
	return false, err
}

func tableLock(t string) string     { return "table/" + t }
func regionLock(t, r string) string { return "table/" + t + "/region/" + r }
func serverLock(s string) string    { return "server/" + s }
func snapshotLock(s string) string  { return "snapshot/" + s }
