package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Local is the in-process Transport: services are served by address in
// one process and called directly, for tests and single-process
// programs. Like a network, it shares no memory between caller and
// callee (payloads are copied) and carries a service's error as its
// sentinel and message only. A call to an address nobody serves fails
// with a transport error that wraps no sentinel (the request did not
// arrive). SetFault injects failures for tests. The zero Local is not
// usable: use NewLocal.
type Local struct {
	mu      sync.Mutex
	masters map[string]MasterService
	nodes   map[string]NodeService
	faults  map[string]Fault
	changed chan struct{} // closed and replaced by SetFault, to wake blocked calls
}

// Fault is what Local does to the calls to one address. The zero Fault
// delivers them normally.
type Fault struct {
	// Drop fails calls before they arrive (a partition, a dead process).
	Drop bool
	// DropReply lets calls arrive and run, then fails them on the way
	// back (a lost reply: the caller cannot tell it from Drop).
	DropReply bool
	// Delay holds each call this long before it arrives (or until its
	// context ends).
	Delay time.Duration
	// Block holds calls before they arrive until their context ends or
	// the address's fault changes (a hung peer).
	Block bool
}

var _ Transport = (*Local)(nil)

// NewLocal returns a Local serving nothing.
func NewLocal() *Local {
	return &Local{
		masters: make(map[string]MasterService),
		nodes:   make(map[string]NodeService),
		faults:  make(map[string]Fault),
		changed: make(chan struct{}),
	}
}

// ServeMaster serves s at addr (replacing what was served there).
func (l *Local) ServeMaster(addr string, s MasterService) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.masters[addr] = s
}

// ServeNode serves s at addr (replacing what was served there).
func (l *Local) ServeNode(addr string, s NodeService) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[addr] = s
}

// Unserve stops serving addr; calls already arrived finish.
func (l *Local) Unserve(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.masters, addr)
	delete(l.nodes, addr)
}

// SetFault sets the fault of the calls to addr (the zero Fault clears
// it). Calls blocked by the previous fault see the new one.
func (l *Local) SetFault(addr string, f Fault) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f == (Fault{}) {
		delete(l.faults, addr)
	} else {
		l.faults[addr] = f
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// DialNode returns a client of the node served at addr (served now or
// later: dialing never fails).
func (l *Local) DialNode(addr string) (NodeService, error) { return localNode{l, addr}, nil }

// DialMaster returns a client of the master served at addr (served now
// or later: dialing never fails).
func (l *Local) DialMaster(addr string) (MasterService, error) { return localMaster{l, addr}, nil }

// arrive waits out addr's fault and says whether the call arrives.
func (l *Local) arrive(ctx context.Context, addr string) (Fault, error) {
	for {
		l.mu.Lock()
		f, changed := l.faults[addr], l.changed
		l.mu.Unlock()
		if ctx.Err() != nil {
			return f, fmt.Errorf("remote: local call to %q: %w", addr, ctx.Err())
		}
		switch {
		case f.Block:
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return f, fmt.Errorf("remote: local call to %q blocked: %w", addr, ctx.Err())
			}
		case f.Delay > 0:
			if err := localDelay(ctx, f.Delay); err != nil {
				return f, fmt.Errorf("remote: local call to %q delayed: %w", addr, err)
			}
		}
		if f.Drop {
			return f, fmt.Errorf("remote: local call to %q dropped (fault)", addr)
		}
		return f, nil
	}
}

func localDelay(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// localCall delivers one call to the service served at addr, with
// addr's fault: serve looks the service up, do calls it.
func localCall[S any, Resp any](ctx context.Context, l *Local, addr string,
	serve func() (S, bool), do func(S) (Resp, error)) (Resp, error) {
	var zero Resp
	f, err := l.arrive(ctx, addr)
	if err != nil {
		return zero, err
	}
	l.mu.Lock()
	s, ok := serve()
	l.mu.Unlock()
	if !ok {
		return zero, fmt.Errorf("remote: local call to %q: nothing serves it", addr)
	}
	resp, err := do(s)
	if f.DropReply {
		return zero, fmt.Errorf("remote: local call to %q: reply dropped (fault)", addr)
	}
	if err != nil {
		return zero, localError(err)
	}
	return resp, nil
}

// localError is err as a network carries it: its sentinel and message.
func localError(err error) error {
	code := ErrorCode(err)
	if code == "" {
		return errors.New(err.Error())
	}
	return ErrorFromCode(code, err.Error())
}

type localNode struct {
	l    *Local
	addr string
}

func (c localNode) serve() (NodeService, bool) { s, ok := c.l.nodes[c.addr]; return s, ok }

func (c localNode) Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	req = localCopyExecute(req)
	return localCall(ctx, c.l, c.addr, c.serve, func(s NodeService) (*ExecuteResponse, error) {
		if _, err := s.Execute(ctx, req); err != nil {
			return nil, err
		}
		return &ExecuteResponse{}, nil
	})
}

type localMaster struct {
	l    *Local
	addr string
}

func (c localMaster) serve() (MasterService, bool) { s, ok := c.l.masters[c.addr]; return s, ok }

func (c localMaster) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	cp := *req
	return localCall(ctx, c.l, c.addr, c.serve, func(s MasterService) (*RegisterResponse, error) {
		resp, err := s.Register(ctx, &cp)
		return localCopy(resp), err
	})
}

func (c localMaster) Heartbeat(ctx context.Context, req *HeartbeatRequest) (*HeartbeatResponse, error) {
	cp := *req
	return localCall(ctx, c.l, c.addr, c.serve, func(s MasterService) (*HeartbeatResponse, error) {
		resp, err := s.Heartbeat(ctx, &cp)
		return localCopy(resp), err
	})
}

func (c localMaster) Report(ctx context.Context, req *ReportRequest) (*ReportResponse, error) {
	req = localCopyReport(req)
	return localCall(ctx, c.l, c.addr, c.serve, func(s MasterService) (*ReportResponse, error) {
		if _, err := s.Report(ctx, req); err != nil {
			return nil, err
		}
		return &ReportResponse{}, nil
	})
}

// localCopy copies a response of plain values (nil: the zero one).
func localCopy[T any](resp *T) *T {
	var cp T
	if resp != nil {
		cp = *resp
	}
	return &cp
}

func localCopyExecute(req *ExecuteRequest) *ExecuteRequest {
	cp := *req
	cp.Ops = make([]Op, len(req.Ops))
	for i, op := range req.Ops {
		op.Payload = bytes.Clone(op.Payload)
		cp.Ops[i] = op
	}
	return &cp
}

func localCopyReport(req *ReportRequest) *ReportRequest {
	cp := *req
	cp.Outcomes = make([]Outcome, len(req.Outcomes))
	for i, out := range req.Outcomes {
		out.Result = bytes.Clone(out.Result)
		cp.Outcomes[i] = out
	}
	return &cp
}
