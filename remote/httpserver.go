package remote

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"
)

// The HTTP routes. Part of the wire protocol: never change a path,
// add a versioned one.
const (
	routeRegister  = "/remote/v1/register"
	routeHeartbeat = "/remote/v1/heartbeat"
	routeReport    = "/remote/v1/report"
	routeExecute   = "/remote/v1/execute"
)

// DefaultMaxBody is the default of HTTPOptions.MaxBody: a full batch of
// 128 operations with payloads of up to ~48 KiB each (base64 in JSON).
const DefaultMaxBody = 8 << 20

// Server-side limits ServeHTTP sets on its http.Server.
const (
	serverReadHeaderTimeout = 10 * time.Second // a client gets this long to send its headers
	serverReadTimeout       = 30 * time.Second // ... and this long for the whole request
	serverIdleTimeout       = 2 * time.Minute  // an idle keep-alive connection is closed after this
	serverMaxHeaderBytes    = 64 << 10
	serverShutdownGrace     = 5 * time.Second // requests in progress get this long once ServeHTTP's ctx ends
)

// HTTPOptions configure the HTTP handlers and ServeHTTP.
type HTTPOptions struct {
	// MaxBody is the largest request body a handler reads, in bytes; a
	// larger one is refused with 413 and code "bad_request" before the
	// service sees it. Default (0 or less): DefaultMaxBody, 8 MiB.
	MaxBody int64
	// TLS, when set, makes ServeHTTP serve HTTPS with this config: it needs
	// Certificates (or GetCertificate); for mutual TLS set ClientAuth to
	// tls.RequireAndVerifyClientCert and ClientCAs. The handlers ignore it.
	// Default nil: plain HTTP.
	TLS *tls.Config
}

func (o HTTPOptions) maxBody() int64 {
	if o.MaxBody <= 0 {
		return DefaultMaxBody
	}
	return o.MaxBody
}

// MasterHandler serves s on the master routes (POST /remote/v1/register,
// /remote/v1/heartbeat, /remote/v1/report).
func MasterHandler(s MasterService, opts HTTPOptions) http.Handler {
	return &handler{maxBody: opts.maxBody(), routes: map[string]endpoint{
		routeRegister:  bind(s.Register),
		routeHeartbeat: bind(s.Heartbeat),
		routeReport:    bind(s.Report),
	}}
}

// NodeHandler serves s on the node route (POST /remote/v1/execute).
func NodeHandler(s NodeService, opts HTTPOptions) http.Handler {
	return &handler{maxBody: opts.maxBody(), routes: map[string]endpoint{
		routeExecute: bind(s.Execute),
	}}
}

// ServeHTTP serves h on l until ctx ends: over TLS with opts.TLS when it
// is set, with bounded header, request and idle times. The handlers'
// contexts derive from ctx, so when it ends the calls in progress are
// cancelled and get a short grace to answer before the connections
// close. It returns nil once ctx has ended and the server is closed,
// else the error that stopped it.
func ServeHTTP(ctx context.Context, l net.Listener, h http.Handler, opts HTTPOptions) error {
	if opts.TLS != nil {
		if len(opts.TLS.Certificates) == 0 && opts.TLS.GetCertificate == nil && opts.TLS.GetConfigForClient == nil {
			return errors.New("remote: HTTPOptions.TLS has no certificate")
		}
		l = tls.NewListener(l, opts.TLS)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    serverMaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("remote: serving %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	grace, cancel := context.WithTimeout(context.Background(), serverShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(grace); err != nil {
		srv.Close()
	}
	<-served // http.ErrServerClosed
	return nil
}

// endpoint decodes a request body and calls the service with it.
type endpoint func(ctx context.Context, body []byte) (any, error)

// bind makes an endpoint of a service method: the service is called only
// with a request that decoded strictly.
func bind[Req, Resp any](call func(context.Context, *Req) (*Resp, error)) endpoint {
	return func(ctx context.Context, body []byte) (any, error) {
		req := new(Req)
		if err := decodeStrict(body, req); err != nil {
			return nil, err
		}
		resp, err := call(ctx, req)
		if err == nil && resp == nil {
			resp = new(Resp)
		}
		return resp, err
	}
}

// handler serves one side's routes. It checks route, method, content
// type and size, and decodes strictly, before any service call: bad
// input never reaches the service.
type handler struct {
	maxBody int64
	routes  map[string]endpoint // by path; read-only after construction
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep, ok := h.routes[r.URL.Path]
	if !ok {
		// Code "": a misrouted request (a node address dialled as a
		// master, ...) must not look like the service's "unknown node".
		writeError(w, http.StatusNotFound, fmt.Errorf("remote: no route %s", r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, want POST", ErrBadRequest, r.Method))
		return
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		writeError(w, http.StatusUnsupportedMediaType, err)
		return
	}
	body, status, err := h.readBody(w, r)
	if err != nil {
		writeError(w, status, err)
		return
	}
	resp, err := ep(r.Context(), body)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func checkContentType(ct string) error {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%w: content type %q, want application/json", ErrBadRequest, ct)
	}
	return nil
}

// readBody reads the whole body, at most h.maxBody bytes.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if r.ContentLength > h.maxBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge(h.maxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	var over *http.MaxBytesError
	switch {
	case errors.As(err, &over):
		return nil, http.StatusRequestEntityTooLarge, tooLarge(h.maxBody)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	return body, 0, nil
}

func tooLarge(limit int64) error {
	return fmt.Errorf("%w: request body over %d bytes", ErrBadRequest, limit)
}

// decodeStrict decodes body into v: one JSON object, no unknown fields,
// nothing after it. Field names match case-insensitively (encoding/json).
func decodeStrict(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%w: body is not a JSON object", ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return fmt.Errorf("%w: malformed JSON at byte %d: %v", ErrBadRequest, syntax.Offset, err)
		}
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON object at byte %d", ErrBadRequest, dec.InputOffset())
	}
	return nil
}

// statusOf maps a service error to its HTTP status by its wire code.
func statusOf(err error) int {
	switch ErrorCode(err) {
	case "bad_request":
		return http.StatusBadRequest
	case "unknown_node":
		return http.StatusNotFound
	case "stale_epoch", "wrong_node":
		return http.StatusConflict
	case "stopped":
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON body of every non-200 answer.
type errorBody struct {
	Code    string `json:"code"`    // ErrorCode of the error; "" for none of the sentinels
	Message string `json:"message"` // err.Error()
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, errorBody{Code: ErrorCode(err), Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(errorBody{Message: "remote: encoding the response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
