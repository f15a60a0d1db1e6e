package remote

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultHTTPTimeout is the default of HTTP.Timeout.
const DefaultHTTPTimeout = 10 * time.Second

// maxResponseBody bounds what a client reads of an answer; the
// responses are a few fields and an error message.
const maxResponseBody = 1 << 20

// HTTP is the network Transport: JSON over HTTP/1.1 (see
// doc_transport.txt for the protocol). The zero value is ready to use;
// set the fields before the first Dial and do not copy it after.
type HTTP struct {
	// Client sends the requests. Default: one shared client with a 5 s
	// dial and TLS handshake timeout, 30 s TCP keep-alive, up to 32 idle
	// keep-alive connections per address (closed after 90 s idle), no
	// proxy, redirects not followed, and TLS as its TLSClientConfig. A
	// Client you set is used as it is (configure its TLS yourself).
	Client *http.Client
	// TLS, when set, makes the client speak https with this config
	// (RootCAs to trust the server; Certificates for mutual TLS).
	// Default nil: plain http.
	TLS *tls.Config
	// Timeout bounds one call when the caller's context has no deadline;
	// a context deadline, earlier or later, wins. Default (0 or less):
	// DefaultHTTPTimeout, 10 s.
	Timeout time.Duration

	once   sync.Once
	client *http.Client // Client, or the default one; set by once
}

var _ Transport = (*HTTP)(nil)

// DialNode returns a client of the node serving NodeHandler at addr
// ("host:port"). It does not connect: connections are made, and kept
// alive, by the calls.
func (t *HTTP) DialNode(addr string) (NodeService, error) {
	base, err := t.base(addr)
	if err != nil {
		return nil, err
	}
	return &httpNode{httpCaller{t: t, base: base}}, nil
}

// DialMaster returns a client of the master serving MasterHandler at
// addr ("host:port").
func (t *HTTP) DialMaster(addr string) (MasterService, error) {
	base, err := t.base(addr)
	if err != nil {
		return nil, err
	}
	return &httpMaster{httpCaller{t: t, base: base}}, nil
}

func (t *HTTP) base(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", fmt.Errorf("remote: address %q is not host:port", addr)
	}
	scheme := "http"
	if t.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

func (t *HTTP) httpClient() *http.Client {
	t.once.Do(func() {
		t.client = t.Client
		if t.client == nil {
			t.client = defaultHTTPClient(t.TLS)
		}
	})
	return t.client
}

func defaultHTTPClient(conf *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     conf,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
		},
		// No Timeout: each call's context bounds it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (t *HTTP) timeout() time.Duration {
	if t.Timeout <= 0 {
		return DefaultHTTPTimeout
	}
	return t.Timeout
}

// httpCaller posts JSON requests to one address.
type httpCaller struct {
	t    *HTTP
	base string // scheme://host:port
}

// call posts req to route and decodes the answer into resp. A service
// error comes back as ErrorFromCode(code, message); anything else that
// goes wrong (connection, timeout, an answer not ours) is an error that
// wraps none of the sentinels.
func (c httpCaller) call(ctx context.Context, route string, req, resp any) error {
	url := c.base + route
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("remote: POST %s: encoding the request: %w", url, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.t.timeout())
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("remote: POST %s: %w", url, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := c.t.httpClient().Do(hreq)
	if err != nil {
		return fmt.Errorf("remote: POST %s: %w", url, err)
	}
	defer hresp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBody+1))
	switch {
	case err != nil:
		return fmt.Errorf("remote: POST %s: reading the answer: %w", url, err)
	case len(answer) > maxResponseBody:
		return fmt.Errorf("remote: POST %s: answer over %d bytes", url, maxResponseBody)
	}
	if hresp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(answer, resp); err != nil {
			return fmt.Errorf("remote: POST %s: malformed answer: %w", url, err)
		}
		return nil
	}
	return answerError(url, hresp.StatusCode, answer)
}

// answerError turns a non-200 answer into the service's error, or into
// a transport error if the answer is not one of ours.
func answerError(url string, status int, answer []byte) error {
	var e errorBody
	if err := json.Unmarshal(answer, &e); err != nil || e.Message == "" {
		const show = 128
		if len(answer) > show {
			answer = answer[:show]
		}
		return fmt.Errorf("remote: POST %s: HTTP %d: %q", url, status, answer)
	}
	return ErrorFromCode(e.Code, e.Message)
}

type httpNode struct{ httpCaller }

func (n *httpNode) Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	resp := new(ExecuteResponse)
	if err := n.call(ctx, routeExecute, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

type httpMaster struct{ httpCaller }

func (m *httpMaster) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	resp := new(RegisterResponse)
	if err := m.call(ctx, routeRegister, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (m *httpMaster) Heartbeat(ctx context.Context, req *HeartbeatRequest) (*HeartbeatResponse, error) {
	resp := new(HeartbeatResponse)
	if err := m.call(ctx, routeHeartbeat, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (m *httpMaster) Report(ctx context.Context, req *ReportRequest) (*ReportResponse, error) {
	resp := new(ReportResponse)
	if err := m.call(ctx, routeReport, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
