package remote

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type doubleReq struct{ X int }
type doubleResp struct{ Y int }

var doubleOp = OpType[doubleReq, doubleResp]{Name: "double"}

func TestHandleTyped(t *testing.T) {
	m := newMasterStub(1, time.Hour)
	tn := startTestNode(t, m, NodeOptions{}, func(n *Node) {
		Handle(n, doubleOp, func(ctx context.Context, req doubleReq) (doubleResp, error) {
			if req.X < 0 {
				return doubleResp{}, errors.New("negative")
			}
			return doubleResp{Y: 2 * req.X}, nil
		})
	})
	payload, _ := json.Marshal(doubleReq{X: 21})
	tn.mustExecute(1, Op{ID: 1, Type: "double", Payload: payload},
		Op{ID: 2, Type: "double", Payload: []byte(`{"X":-1}`)},
		Op{ID: 3, Type: "double", Payload: []byte(`{"X":`)})
	m.waitFor(t, "3 outcomes", func() bool {
		return len(m.outcomes(1))+len(m.outcomes(2))+len(m.outcomes(3)) == 3
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	var resp doubleResp
	if err := json.Unmarshal(m.outcomes(1)[0].Result, &resp); err != nil || resp.Y != 42 {
		t.Fatalf("op 1: %+v, %v", resp, err)
	}
	if got := m.outcomes(2)[0].Error; got != "negative" {
		t.Fatalf("op 2 error %q", got)
	}
	if got := m.outcomes(3)[0].Error; !strings.Contains(got, `"double"`) || !strings.Contains(got, "decode") {
		t.Fatalf("op 3 (bad payload) error %q", got)
	}
}
