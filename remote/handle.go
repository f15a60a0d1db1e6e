package remote

import (
	"context"
	"encoding/json"
	"fmt"
)

// OpType is a typed operation: its Name is the Op.Type on the wire, its
// request and response travel as JSON. Declare one per operation, shared
// by the master (Call, Outcome) and the nodes (Handle):
//
//	var snapRegion = remote.OpType[SnapReq, SnapResp]{Name: "snapshot-region"}
type OpType[Req, Resp any] struct{ Name string }

// Handle sets h as n's handler of t (see Node.Handle): the payload is
// decoded into a Req, and h's Resp encoded as the result. A payload that
// does not decode fails the operation with an error naming t.
func Handle[Req, Resp any](n *Node, t OpType[Req, Resp], h func(ctx context.Context, req Req) (Resp, error)) {
	n.Handle(t.Name, func(ctx context.Context, op Op) ([]byte, error) {
		var req Req
		if err := json.Unmarshal(op.Payload, &req); err != nil {
			return nil, fmt.Errorf("remote: operation %v of type %q: decode request: %w", op.ID, t.Name, err)
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		result, err := json.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("remote: operation %v of type %q: encode response: %w", op.ID, t.Name, err)
		}
		return result, nil
	})
}
