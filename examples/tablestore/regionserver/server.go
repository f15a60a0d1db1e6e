// Package regionserver is the table store's region server: it opens,
// serves, snapshots and closes regions when the master asks (operations
// of package remote), and serves their rows to clients over HTTP.
//
// A region belongs to the node incarnation that opened it. When the
// master declares the incarnation dead (its lease expired: a stall or a
// partition) while the process lives, the node goes on as a new
// incarnation, and the server closes the dead incarnation's regions
// within Options.FenceInterval: the master has reassigned them or
// recorded them offline, and their LOCKs must be free for whoever opens
// them next. Until they are closed they answer "not serving".
package regionserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/vfs"
)

// Options configure a Server. Root, Name, Addr, Master and Transport are
// required; every other field has a default, written in its comment.
type Options struct {
	Root      string           // the shared root directory (tablestore.Layout)
	Name      string           // the server's stable name
	Addr      string           // where the master and clients reach it (host:port)
	Master    string           // the master's address
	Transport remote.Transport // how it reaches the master
	// Node configures the remote node beyond the fields above. Default
	// remote's defaults.
	Node remote.NodeOptions
	// Region configures the regions it opens (FS: default vfs.OS).
	Region region.Options
	// FenceInterval is how often the server looks whether the master
	// declared its incarnation dead, to close that incarnation's regions.
	// Default 100 ms.
	FenceInterval time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Server is a region server.
type Server struct {
	opts   Options
	layout tablestore.Layout
	log    *slog.Logger
	node   *remote.Node

	mu      sync.Mutex
	regions map[string]*served // open regions by id

	stop     chan struct{}  // closed by Stop: ends the fence loop
	stopOnce sync.Once      // closes stop
	wg       sync.WaitGroup // the fence loop
}

// served is an open region, its range and the node incarnation that
// opened it.
type served struct {
	desc tablestore.RegionDesc
	r    *region.Region
	inc  uint64
}

// New returns a region server; Start registers it with the master.
func New(opts Options) (*Server, error) {
	if opts.Root == "" || opts.Name == "" || opts.Addr == "" || opts.Master == "" || opts.Transport == nil {
		return nil, errors.New("tablestore/regionserver: Options.Root, Name, Addr, Master and Transport are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Region.FS == nil {
		opts.Region.FS = vfs.OS
	}
	if opts.Region.Logger == nil {
		opts.Region.Logger = opts.Logger
	}
	if opts.FenceInterval <= 0 {
		opts.FenceInterval = 100 * time.Millisecond
	}
	no := opts.Node
	no.Name, no.Addr, no.Master, no.Transport = opts.Name, opts.Addr, opts.Master, opts.Transport
	if no.Logger == nil {
		no.Logger = opts.Logger
	}
	node, err := remote.NewNode(no)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, layout: tablestore.Layout{Root: opts.Root}, log: opts.Logger, node: node,
		regions: map[string]*served{}, stop: make(chan struct{})}
	remote.Handle(node, tablestore.OpenRegion, s.openRegion)
	remote.Handle(node, tablestore.CloseRegion, s.closeRegion)
	remote.Handle(node, tablestore.SnapshotRegion, s.snapshotRegion)
	remote.Handle(node, tablestore.VerifyRegions, s.verifyRegions)
	return s, nil
}

// Start registers the server with the master (retrying until the master
// answers or ctx ends) and starts heartbeating.
func (s *Server) Start(ctx context.Context) error {
	if err := s.node.Start(ctx); err != nil {
		return err
	}
	s.wg.Add(1)
	go s.fenceLoop()
	return nil
}

// Stop stops the node and closes every open region.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	err := s.node.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sv := range s.regions {
		err = errors.Join(err, sv.r.Close())
		delete(s.regions, id)
	}
	return err
}

// Node returns the server's remote node (serve its Service).
func (s *Server) Node() *remote.Node { return s.node }

// Handler serves the row API and the node's remote service on one mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/remote/", remote.NodeHandler(s.node.Service(), remote.HTTPOptions{}))
	s.rowRoutes(mux)
	return mux
}

// Regions returns the ids of the regions the server serves.
func (s *Server) Regions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.regions))
	for id := range s.regions {
		ids = append(ids, id)
	}
	return ids
}

func (s *Server) openRegion(ctx context.Context, req tablestore.OpenRegionReq) (tablestore.OpenRegionResp, error) {
	d := req.Region
	inc := s.node.Incarnation()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv, ok := s.regions[d.ID]; ok {
		if sv.inc == inc {
			return tablestore.OpenRegionResp{}, nil
		}
		s.closeStaleLocked(d.ID, sv) // opened again below, by this incarnation
	}
	r, err := region.Open(s.layout.RegionDir(d.ID), s.opts.Region)
	if err != nil {
		return tablestore.OpenRegionResp{}, fmt.Errorf("open region %s: %w", d.ID, err)
	}
	s.regions[d.ID] = &served{desc: d, r: r, inc: inc}
	s.log.Info("tablestore: region open", "server", s.opts.Name, "region", d.ID)
	return tablestore.OpenRegionResp{}, nil
}

func (s *Server) closeRegion(ctx context.Context, req tablestore.CloseRegionReq) (tablestore.CloseRegionResp, error) {
	s.mu.Lock()
	sv, ok := s.regions[req.Region]
	delete(s.regions, req.Region)
	s.mu.Unlock()
	if !ok {
		return tablestore.CloseRegionResp{}, nil
	}
	if err := sv.r.Flush(); err != nil {
		sv.r.Close()
		return tablestore.CloseRegionResp{}, fmt.Errorf("close region %s: flush: %w", req.Region, err)
	}
	return tablestore.CloseRegionResp{}, sv.r.Close()
}

func (s *Server) snapshotRegion(ctx context.Context, req tablestore.SnapshotRegionReq) (tablestore.SnapshotRegionResp, error) {
	sv, err := s.region(req.Region)
	if err != nil {
		return tablestore.SnapshotRegionResp{}, err
	}
	man, err := sv.r.Snapshot(req.Dir)
	if err != nil {
		return tablestore.SnapshotRegionResp{}, fmt.Errorf("snapshot region %s: %w", req.Region, err)
	}
	return tablestore.SnapshotRegionResp{Seq: man.Seq, Rows: man.Rows, Files: len(man.Files)}, nil
}

func (s *Server) verifyRegions(ctx context.Context, req tablestore.VerifyRegionsReq) (tablestore.VerifyRegionsResp, error) {
	var resp tablestore.VerifyRegionsResp
	for _, dir := range req.Dirs {
		if err := ctx.Err(); err != nil {
			return resp, err
		}
		man, err := region.VerifyManifest(s.opts.Region.FS, dir)
		if err != nil {
			return resp, err
		}
		resp.Regions++
		resp.Rows += man.Rows
	}
	return resp, nil
}

// errNotServing: the server does not serve the region (any more).
var errNotServing = errors.New(tablestore.NotServing)

// region returns the open region id (not one of a dead incarnation).
func (s *Server) region(id string) (*served, error) {
	inc := s.node.Incarnation()
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.regions[id]
	if !ok || sv.inc != inc {
		return nil, fmt.Errorf("%w %s on %s", errNotServing, id, s.opts.Name)
	}
	return sv, nil
}

// fenceLoop closes the regions of dead incarnations every FenceInterval
// until Stop.
func (s *Server) fenceLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.FenceInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.fence()
		}
	}
}

// fence closes the regions opened by an incarnation other than the
// node's current one: the master declared it dead.
func (s *Server) fence() {
	inc := s.node.Incarnation()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sv := range s.regions {
		if sv.inc != inc {
			s.closeStaleLocked(id, sv)
		}
	}
}

// closeStaleLocked closes region id of a dead incarnation, without a
// flush (its log holds every acknowledged row). s.mu is held.
func (s *Server) closeStaleLocked(id string, sv *served) {
	delete(s.regions, id)
	err := sv.r.Close()
	s.log.Warn("tablestore: closed a region of an incarnation the master declared dead",
		"server", s.opts.Name, "region", id, "incarnation", sv.inc, "err", err)
}
