package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// Client calls a server's API (the CLI's verbs use it).
type Client struct {
	// Endpoint is the server's base URL, such as http://127.0.0.1:7070.
	Endpoint string
	// Token is the bearer token sent with every request ("": none).
	Token string
	// HTTP is the client requests go through. Default http.DefaultClient
	// (give one with a tls.Config for https and mutual TLS).
	HTTP *http.Client
}

// APIError is an error response: errors.Is matches it against the
// Err* sentinels of its code.
type APIError struct {
	Status int   // the HTTP status
	Body   Error // the decoded error body
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (%d %s): %s", e.Body.Code, e.Status, http.StatusText(e.Status), e.Body.Message)
}

// Sentinels an *APIError matches by its code.
var (
	ErrBadRequest       = errors.New(CodeBadRequest)
	ErrUnauthorized     = errors.New(CodeUnauthorized)
	ErrForbidden        = errors.New(CodeForbidden)
	ErrNotFound         = errors.New(CodeNotFound)
	ErrMethodNotAllowed = errors.New(CodeMethodNotAllowed)
	ErrConflict         = errors.New(CodeConflict)
	ErrTooLarge         = errors.New(CodeTooLarge)
	ErrUnavailable      = errors.New(CodeUnavailable)
	ErrInternal         = errors.New(CodeInternal)
)

// sentinels maps each code to its sentinel.
var sentinels = map[string]error{
	CodeBadRequest: ErrBadRequest, CodeUnauthorized: ErrUnauthorized, CodeForbidden: ErrForbidden,
	CodeNotFound: ErrNotFound, CodeMethodNotAllowed: ErrMethodNotAllowed, CodeConflict: ErrConflict,
	CodeTooLarge: ErrTooLarge, CodeUnavailable: ErrUnavailable, CodeInternal: ErrInternal,
}

// Is matches the sentinel of e's code.
func (e *APIError) Is(target error) bool {
	s, ok := sentinels[e.Body.Code]
	return ok && s == target
}

// do sends a request with body (nil: none) as JSON and decodes the answer
// into out (nil: ignored).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Endpoint, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Code == "" {
			ae.Body = Error{Code: codeOfStatus(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// codeOfStatus is the code of an error answer without a JSON body.
func codeOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	return CodeInternal
}

func idPath(id procedure.ID, suffix string) string {
	return "/api/v1/procedures/" + strconv.FormatUint(uint64(id), 10) + suffix
}

// List returns a page of procedures: filter holds the list's parameters
// (status, type, root, parent, error, since, until, before, limit).
func (c *Client) List(ctx context.Context, filter url.Values) (ProcedureList, error) {
	var out ProcedureList
	path := "/api/v1/procedures"
	if len(filter) > 0 {
		path += "?" + filter.Encode()
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Get returns procedure id in detail.
func (c *Client) Get(ctx context.Context, id procedure.ID) (ProcedureDetail, error) {
	var out ProcedureDetail
	return out, c.do(ctx, http.MethodGet, idPath(id, ""), nil, &out)
}

// Submit submits a procedure.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (procedure.ID, error) {
	var out SubmitResponse
	err := c.do(ctx, http.MethodPost, "/api/v1/procedures", req, &out)
	return out.ID, err
}

// Wait waits up to timeout (at most a minute; the server's bound) for
// procedure id to finish.
func (c *Client) Wait(ctx context.Context, id procedure.ID, timeout time.Duration) (WaitResponse, error) {
	var out WaitResponse
	return out, c.do(ctx, http.MethodGet, idPath(id, "/wait?timeout="+timeout.String()), nil, &out)
}

// Abort aborts procedure id's tree, saying why.
func (c *Client) Abort(ctx context.Context, id procedure.ID, why string) (Procedure, error) {
	var out Procedure
	return out, c.do(ctx, http.MethodPost, idPath(id, "/abort"), ReasonRequest{Why: why}, &out)
}

// Bypass bypasses procedure id, saying why.
func (c *Client) Bypass(ctx context.Context, id procedure.ID, why string) (Procedure, error) {
	var out Procedure
	return out, c.do(ctx, http.MethodPost, idPath(id, "/bypass"), ReasonRequest{Why: why}, &out)
}

// Ack acknowledges finished root id's result.
func (c *Client) Ack(ctx context.Context, id procedure.ID) (Procedure, error) {
	var out Procedure
	return out, c.do(ctx, http.MethodPost, idPath(id, "/ack"), nil, &out)
}

// BulkAbort aborts (or, with DryRun, lists) the roots a filter selects.
func (c *Client) BulkAbort(ctx context.Context, req BulkAbortRequest) (BulkAbortResponse, error) {
	var out BulkAbortResponse
	return out, c.do(ctx, http.MethodPost, "/api/v1/procedures/abort", req, &out)
}

// Locks returns the lock table.
func (c *Client) Locks(ctx context.Context) ([]LockRow, error) {
	var out LockList
	return out.Locks, c.do(ctx, http.MethodGet, "/api/v1/locks", nil, &out)
}

// Nodes returns the remote liveness table.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out NodeList
	return out.Nodes, c.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &out)
}

// Barriers returns the barrier procedures in progress, sorted by name.
func (c *Client) Barriers(ctx context.Context) ([]Barrier, error) {
	var out BarrierList
	return out.Barriers, c.do(ctx, http.MethodGet, "/api/v1/barriers", nil, &out)
}

// Audit returns a page of the audit log before seq (0: the newest).
func (c *Client) Audit(ctx context.Context, before uint64) (AuditList, error) {
	var out AuditList
	path := "/api/v1/audit"
	if before != 0 {
		path += "?before=" + strconv.FormatUint(before, 10)
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Store returns the store's state.
func (c *Client) Store(ctx context.Context) (StoreInfo, error) {
	var out StoreInfo
	return out, c.do(ctx, http.MethodGet, "/api/v1/store", nil, &out)
}

// Engine returns the engine's state.
func (c *Client) Engine(ctx context.Context) (EngineInfo, error) {
	var out EngineInfo
	return out, c.do(ctx, http.MethodGet, "/api/v1/engine", nil, &out)
}
