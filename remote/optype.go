package remote

import (
	"encoding/json"
	"fmt"

	"github.com/procyon-dev/procyon/procedure"
)

// Call is Dispatcher.Call with a JSON-encoded request; the error is the
// encoding's (nothing is recorded then).
func (t OpType[Req, Resp]) Call(d *Dispatcher, env *procedure.Env, node string, req Req) (OpID, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("remote: op type %q: encode request: %w", t.Name, err)
	}
	return d.Call(env, node, t.Name, b), nil
}

// Outcome is Dispatcher.Outcome with the result decoded from JSON (an
// empty result is Resp's zero value).
func (t OpType[Req, Resp]) Outcome(d *Dispatcher, env *procedure.Env, op OpID) (Resp, error) {
	var resp Resp
	b, err := d.Outcome(env, op)
	if err != nil || len(b) == 0 {
		return resp, err
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return resp, fmt.Errorf("remote: op type %q: op %d: decode result: %w", t.Name, op, err)
	}
	return resp, nil
}
