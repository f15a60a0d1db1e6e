package remote

import "context"

// MasterService is what nodes call on the master (the Dispatcher serves
// it).
type MasterService interface {
	Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error)
	Heartbeat(ctx context.Context, req *HeartbeatRequest) (*HeartbeatResponse, error)
	Report(ctx context.Context, req *ReportRequest) (*ReportResponse, error)
}

// NodeService is what the master calls on a node (a Node serves it).
type NodeService interface {
	Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error)
}

// Transport connects masters and nodes by address. A client it returns
// is cheap to keep and safe for concurrent use; a call's error is the
// service's (testable with errors.Is against this package's sentinels)
// or the transport's own (the request may or may not have arrived).
// Local is the in-process transport; HTTP the network one.
type Transport interface {
	DialNode(addr string) (NodeService, error)
	DialMaster(addr string) (MasterService, error)
}
