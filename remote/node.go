package remote

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// NodeOptions configure a Node.
type NodeOptions struct {
	// Name is the node's stable name, the same across restarts. Required.
	Name string
	// Addr is the address the master reaches the node at
	// (Transport.DialNode). Required.
	Addr string
	// Master is the master's address (Transport.DialMaster). Required.
	Master string
	// Transport connects the node to the master. Required.
	Transport Transport
	// Incarnation identifies this run of the node. Default: random
	// (crypto/rand), never 0; a new random one replaces it when the master
	// declares this incarnation dead.
	Incarnation uint64
	// Workers bounds the operations running at once; more wait in a queue.
	// Default 64.
	Workers int
	// MaxReportBatch is the most outcomes in one report. Default 256.
	MaxReportBatch int
	// ReportDelay is how long an outcome may wait for others to fill a
	// report. Default 1 ms.
	ReportDelay time.Duration
	// Remember is how long the id and outcome of an acknowledged operation
	// are kept, so that a late resend is answered from memory instead of
	// running again. Default 1 min: once the master acknowledged an
	// outcome it has committed it and sends the operation no more, so only
	// a duplicate of an earlier request (bounded by the master's
	// RequestTimeout and resends) can still arrive; memory grows with the
	// rate times Remember (60 s at 20,000 operations/s: 1.2M entries).
	Remember time.Duration
	// Retry paces the retries of Register and of unacknowledged reports:
	// Initial, doubling up to Max, with Jitter. Attempts is ignored: the
	// node retries until answered or stopped. Default 10 ms doubling to
	// 1 s, jitter 0.2.
	Retry procedure.RetryPolicy
	// CallTimeout bounds each call to the master. Default 10 s.
	CallTimeout time.Duration
	// Clock drives heartbeats, report delays, retries and Remember.
	// Default: the system clock (tests pass a procedure.ManualClock).
	Clock procedure.Clock
	// Logger receives registrations, failed calls and handler panics.
	// Default: none.
	Logger *slog.Logger
}

// EnsureDefaults fills unset fields with their defaults.
func (o *NodeOptions) EnsureDefaults() {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.MaxReportBatch <= 0 {
		o.MaxReportBatch = 256
	}
	if o.ReportDelay <= 0 {
		o.ReportDelay = time.Millisecond
	}
	if o.Remember <= 0 {
		o.Remember = time.Minute
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = 10 * time.Millisecond
	}
	if o.Retry.Max < o.Retry.Initial {
		o.Retry.Max = max(time.Second, o.Retry.Initial)
	}
	if o.Retry.Jitter == 0 {
		o.Retry.Jitter = 0.2
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Incarnation == 0 {
		o.Incarnation = newIncarnation(0)
	}
}

// Validate reports what is missing.
func (o *NodeOptions) Validate() error {
	switch {
	case o.Name == "":
		return errors.New("remote: NodeOptions.Name is required")
	case o.Addr == "":
		return errors.New("remote: NodeOptions.Addr is required")
	case o.Master == "":
		return errors.New("remote: NodeOptions.Master is required")
	case o.Transport == nil:
		return errors.New("remote: NodeOptions.Transport is required")
	}
	return nil
}

// Node executes the operations a master sends it: each operation id at
// most once while its incarnation lives, on a bounded pool of workers,
// reporting outcomes in batches until the master acknowledges them.
type Node struct {
	opts    NodeOptions
	log     *slog.Logger
	ops     *nodeOps
	rep     *reporter
	session *nodeSession

	// ctx lives until Stop; the session, the reporter and every
	// operation run under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the session's and the reporter's goroutines

	mu struct {
		sync.Mutex
		state  nodeState
		master MasterService // set by Start
	}
}

type nodeState int

const (
	nodeIdle nodeState = iota
	nodeStarting
	nodeRunning
	nodeStopped
)

// NewNode returns a node that serves Execute at once (Service) and
// registers with the master on Start.
func NewNode(opts NodeOptions) (*Node, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.EnsureDefaults()
	n := &Node{opts: opts, log: opts.Logger.With("node", opts.Name)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.rep = newReporter(n)
	n.ops = newNodeOps(n)
	n.session = &nodeSession{n: n, kickc: make(chan struct{}, 1), tick: make(chan struct{}, 1)}
	return n, nil
}

// Handle sets the handler of an operation type; call it before Start.
// The handler's error message becomes the Outcome's Error; a handler
// that panics fails its operation the same way (the node survives). An
// operation of a type without a handler is refused. Handle panics on an
// empty type or a type handled twice.
func (n *Node) Handle(typ string, h func(ctx context.Context, op Op) ([]byte, error)) {
	if typ == "" || h == nil {
		panic("remote: Node.Handle needs a type and a handler")
	}
	n.ops.handle(typ, h)
}

// Start registers with the master, retrying with backoff until it
// answers or ctx ends, then heartbeats and reports in the background
// until Stop. ctx bounds only the registration.
func (n *Node) Start(ctx context.Context) error {
	if err := n.setState(nodeIdle, nodeStarting); err != nil {
		return err
	}
	master, err := n.opts.Transport.DialMaster(n.opts.Master)
	if err == nil {
		n.setMaster(master)
		err = n.registerUntil(ctx)
	}
	if err != nil {
		_ = n.setState(nodeStarting, nodeIdle)
		return fmt.Errorf("remote: node %s: register with %s: %w", n.opts.Name, n.opts.Master, err)
	}
	if err := n.setState(nodeStarting, nodeRunning); err != nil {
		return err
	}
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.session.run(n.ctx) }()
	go func() { defer n.wg.Done(); n.rep.run(n.ctx) }()
	return nil
}

// registerUntil registers until ctx ends or the node stops.
func (n *Node) registerUntil(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	err := n.session.register(ctx)
	if n.ctx.Err() != nil {
		return ErrStopped
	}
	return err
}

// setState moves the node from one state to another, or says why not.
func (n *Node) setState(from, to nodeState) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.mu.state == from:
		n.mu.state = to
		return nil
	case n.mu.state == nodeStopped:
		return ErrStopped
	default:
		return fmt.Errorf("remote: node %s already started", n.opts.Name)
	}
}

func (n *Node) setMaster(m MasterService) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.master = m
}

func (n *Node) master() MasterService {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.master
}

// Stop stops heartbeats and reports, cancels the contexts of running
// operations and waits for them; Execute then returns ErrStopped.
// Outcomes not yet reported are lost: the master learns of them by the
// node's death. Stop is idempotent.
func (n *Node) Stop() error {
	n.mu.Lock()
	already := n.mu.state == nodeStopped
	n.mu.state = nodeStopped
	n.mu.Unlock()
	if already {
		return nil
	}
	n.ops.stop()
	n.cancel()
	n.wg.Wait()
	n.ops.wait()
	return nil
}

// Service returns what the master calls on this node: serve it on a
// transport at Addr.
func (n *Node) Service() NodeService { return nodeService{n} }

// Incarnation returns the node's current incarnation.
func (n *Node) Incarnation() uint64 { return n.ops.incarnation() }

// nodeService is the NodeService of a Node.
type nodeService struct{ n *Node }

// Execute takes every operation of req (see the package doc, Nodes) and
// returns without waiting for any of them to run.
func (s nodeService) Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	if err := s.n.ops.execute(req); err != nil {
		return nil, err
	}
	return &ExecuteResponse{}, nil
}

// newIncarnation returns a random incarnation other than 0 and old.
func newIncarnation(old uint64) uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if inc := binary.LittleEndian.Uint64(b[:]); inc != 0 && inc != old {
			return inc
		}
	}
}

// sleepClock waits d on c, or until ctx ends.
func sleepClock(ctx context.Context, c procedure.Clock, d time.Duration) error {
	done := make(chan struct{})
	t := c.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
