package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/procyon-dev/procyon/procedure"
)

// SubmitType is a procedure type operators may submit through the API,
// with JSON arguments: make one with JSONType.
type SubmitType interface {
	// Name is the type's registered name.
	Name() string
	submit(ctx context.Context, args json.RawMessage, opts procedure.SubmitOptions) (procedure.ID, error)
	resultJSON(res procedure.Result) (json.RawMessage, error)
}

// JSONType lets operators submit procedures of t with their data given as
// JSON (strictly decoded into a D: unknown fields are refused), and shows
// its results as JSON.
func JSONType[S procedure.State, D any](t *procedure.Type[S, D]) SubmitType {
	return jsonType[S, D]{t}
}

type jsonType[S procedure.State, D any] struct{ t *procedure.Type[S, D] }

func (j jsonType[S, D]) Name() string { return j.t.Name() }

func (j jsonType[S, D]) submit(ctx context.Context, args json.RawMessage, opts procedure.SubmitOptions) (procedure.ID, error) {
	var data D
	if len(bytes.TrimSpace(args)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(args))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&data); err != nil {
			return 0, &badArgsError{typ: j.t.Name(), err: err}
		}
		if dec.More() {
			return 0, &badArgsError{typ: j.t.Name(), err: fmt.Errorf("more than one JSON value")}
		}
	}
	return j.t.Submit(ctx, data, opts)
}

func (j jsonType[S, D]) resultJSON(res procedure.Result) (json.RawMessage, error) {
	d, err := j.t.Result(res, nil)
	if err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// badArgsError is a submission whose arguments do not decode: a 400.
type badArgsError struct {
	typ string
	err error
}

func (e *badArgsError) Error() string {
	return fmt.Sprintf("arguments of %s: %v", e.typ, e.err)
}

func (e *badArgsError) Unwrap() error { return e.err }
