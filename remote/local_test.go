package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// nodeStub is a NodeService that records requests and answers err.
type nodeStub struct {
	mu    sync.Mutex
	calls []*ExecuteRequest
	err   error
}

func (s *nodeStub) Execute(_ context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, req)
	return &ExecuteResponse{}, s.err
}

func (s *nodeStub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func isSentinel(err error) bool {
	for _, s := range wireErrors {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func TestLocalUnservedAddress(t *testing.T) {
	l := NewLocal()
	c, err := l.DialNode("nowhere")
	if err != nil {
		t.Fatalf("dial of an unserved address: %v", err)
	}
	_, err = c.Execute(context.Background(), &ExecuteRequest{})
	if err == nil || isSentinel(err) {
		t.Fatalf("call to an unserved address: %v, want a transport error", err)
	}
	s := &nodeStub{}
	l.ServeNode("a", s)
	c, _ = l.DialNode("a")
	if _, err := c.Execute(context.Background(), &ExecuteRequest{}); err != nil {
		t.Fatal(err)
	}
	l.Unserve("a")
	if _, err := c.Execute(context.Background(), &ExecuteRequest{}); err == nil || isSentinel(err) {
		t.Fatalf("call after Unserve: %v, want a transport error", err)
	}
	if s.count() != 1 {
		t.Fatalf("%d calls arrived, want 1", s.count())
	}
}

func TestLocalCopiesMessages(t *testing.T) {
	l := NewLocal()
	node := &nodeStub{}
	l.ServeNode("n", node)
	master := newMasterStub(1, time.Second)
	master.live[9] = true
	l.ServeMaster("m", master)

	payload := []byte("abc")
	c, _ := l.DialNode("n")
	if _, err := c.Execute(context.Background(), &ExecuteRequest{Ops: []Op{{ID: 1, Type: "t", Payload: payload}}}); err != nil {
		t.Fatal(err)
	}
	payload[0] = 'X'
	if got := string(node.calls[0].Ops[0].Payload); got != "abc" {
		t.Fatalf("callee sees the caller's later write: %q", got)
	}

	result := []byte("res")
	mc, _ := l.DialMaster("m")
	if _, err := mc.Report(context.Background(), &ReportRequest{Incarnation: 9, Outcomes: []Outcome{{Op: 1, Result: result}}}); err != nil {
		t.Fatal(err)
	}
	result[0] = 'X'
	if got := string(master.reports[0].Outcomes[0].Result); got != "res" {
		t.Fatalf("master sees the node's later write: %q", got)
	}
}

func TestLocalCarriesServiceErrors(t *testing.T) {
	l := NewLocal()
	s := &nodeStub{err: fmt.Errorf("%w: for n2", ErrWrongNode)}
	l.ServeNode("n", s)
	c, _ := l.DialNode("n")
	_, err := c.Execute(context.Background(), &ExecuteRequest{})
	if !errors.Is(err, ErrWrongNode) || err.Error() != s.err.Error() {
		t.Fatalf("service error arrived as %v", err)
	}
	s.err = errors.New("plain")
	if _, err := c.Execute(context.Background(), &ExecuteRequest{}); err == nil || isSentinel(err) || err.Error() != "plain" {
		t.Fatalf("plain service error arrived as %v", err)
	}
}

func TestLocalFaults(t *testing.T) {
	l := NewLocal()
	s := &nodeStub{}
	l.ServeNode("n", s)
	c, _ := l.DialNode("n")
	call := func(ctx context.Context) error {
		_, err := c.Execute(ctx, &ExecuteRequest{})
		return err
	}

	l.SetFault("n", Fault{Drop: true})
	if err := call(context.Background()); err == nil || isSentinel(err) || s.count() != 0 {
		t.Fatalf("Drop: %v, %d calls arrived", err, s.count())
	}
	l.SetFault("n", Fault{DropReply: true})
	if err := call(context.Background()); err == nil || isSentinel(err) || s.count() != 1 {
		t.Fatalf("DropReply: %v, %d calls arrived (want 1)", err, s.count())
	}
	l.SetFault("other", Fault{Drop: true}) // faults are per address
	l.SetFault("n", Fault{Delay: time.Millisecond})
	if err := call(context.Background()); err != nil || s.count() != 2 {
		t.Fatalf("short Delay: %v, %d calls arrived (want 2)", err, s.count())
	}
	l.SetFault("n", Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := call(ctx); !errors.Is(err, context.DeadlineExceeded) || s.count() != 2 {
		t.Fatalf("long Delay: %v, %d calls arrived (want 2)", err, s.count())
	}

	// Block: held until the context ends, or the fault changes.
	l.SetFault("n", Fault{Block: true})
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := call(ctx); !errors.Is(err, context.DeadlineExceeded) || s.count() != 2 {
		t.Fatalf("Block: %v, %d calls arrived (want 2)", err, s.count())
	}
	done := make(chan error)
	go func() { done <- call(context.Background()) }()
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- call(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked call with a cancelled context: %v", err)
	}
	if s.count() != 2 {
		t.Fatalf("a blocked call arrived")
	}
	l.SetFault("n", Fault{})
	if err := <-done; err != nil || s.count() != 3 {
		t.Fatalf("blocked call after the fault was cleared: %v, %d calls arrived (want 3)", err, s.count())
	}
}
