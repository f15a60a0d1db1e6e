package remote

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// httpFake is a MasterService and a NodeService that records the
// requests it gets and answers them (or fails with err).
type httpFake struct {
	err  error                     // every call fails with it when set
	hook func(ctx context.Context) // when set, every call runs it first

	mu  sync.Mutex
	got []any // the requests, in order of arrival
}

var (
	_ MasterService = (*httpFake)(nil)
	_ NodeService   = (*httpFake)(nil)
)

func (f *httpFake) record(ctx context.Context, req any) error {
	if f.hook != nil {
		f.hook(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return f.err
}

func (f *httpFake) requests() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]any(nil), f.got...)
}

func (f *httpFake) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	if err := f.record(ctx, req); err != nil {
		return nil, err
	}
	return &RegisterResponse{Epoch: req.Incarnation + 1, HeartbeatMillis: 500, LeaseMillis: 3000}, nil
}

func (f *httpFake) Heartbeat(ctx context.Context, req *HeartbeatRequest) (*HeartbeatResponse, error) {
	if err := f.record(ctx, req); err != nil {
		return nil, err
	}
	return &HeartbeatResponse{Epoch: req.Epoch}, nil
}

func (f *httpFake) Report(ctx context.Context, req *ReportRequest) (*ReportResponse, error) {
	if err := f.record(ctx, req); err != nil {
		return nil, err
	}
	return &ReportResponse{}, nil
}

func (f *httpFake) Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	if err := f.record(ctx, req); err != nil {
		return nil, err
	}
	return &ExecuteResponse{}, nil
}

// serveHTTPTest serves h on a loopback httptest server for the test's
// duration and returns its "host:port".
func serveHTTPTest(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// dialHTTPBoth serves f as master and as node and returns clients of both.
func dialHTTPBoth(t testing.TB, tr *HTTP, f *httpFake, opts HTTPOptions) (MasterService, NodeService) {
	t.Helper()
	m, err := tr.DialMaster(serveHTTPTest(t, MasterHandler(f, opts)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := tr.DialNode(serveHTTPTest(t, NodeHandler(f, opts)))
	if err != nil {
		t.Fatal(err)
	}
	return m, n
}

func allByteValues() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestHTTPRoundTrip(t *testing.T) {
	f := &httpFake{}
	master, node := dialHTTPBoth(t, &HTTP{}, f, HTTPOptions{})
	ctx := context.Background()

	exec := &ExecuteRequest{Epoch: math.MaxUint64, Node: "rs-1 ☃", Incarnation: math.MaxUint64 - 1, Ops: []Op{
		{ID: MakeOpID(7, 1), Proc: 42, Type: "snapshot-region", Payload: nil, Attempt: 1},
		{ID: MakeOpID(7, 2), Proc: 43, Type: "t", Payload: []byte{}, Attempt: 2},
		{ID: MakeOpID(7, 3), Proc: math.MaxUint64, Type: "bin\x00\"\\", Payload: allByteValues(), Attempt: math.MaxUint32},
	}}
	if _, err := node.Execute(ctx, exec); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	report := &ReportRequest{Node: "rs-1", Incarnation: 9, Epoch: 7, Outcomes: []Outcome{
		{Op: MakeOpID(7, 1), Attempt: 1, Epoch: 7, Result: allByteValues()},
		{Op: MakeOpID(7, 2), Attempt: 2, Epoch: 7, Result: []byte{}},
		{Op: MakeOpID(7, 3), Attempt: 3, Epoch: 7, Refused: "unknown type \"bin\\x00\""},
		{Op: MakeOpID(7, 4), Attempt: 1, Epoch: 7, Error: "disk full \u2028 é \x01"},
	}}
	if _, err := master.Report(ctx, report); err != nil {
		t.Fatalf("Report: %v", err)
	}
	reg := &RegisterRequest{Node: "rs-1", Addr: "127.0.0.1:7001", Incarnation: 41}
	regResp, err := master.Register(ctx, reg)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if want := (RegisterResponse{Epoch: 42, HeartbeatMillis: 500, LeaseMillis: 3000}); *regResp != want {
		t.Errorf("Register answered %+v, want %+v", *regResp, want)
	}
	hb := &HeartbeatRequest{Node: "rs-1", Incarnation: 41, Epoch: math.MaxUint64}
	hbResp, err := master.Heartbeat(ctx, hb)
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if hbResp.Epoch != math.MaxUint64 {
		t.Errorf("Heartbeat answered epoch %d, want %d", hbResp.Epoch, uint64(math.MaxUint64))
	}

	got := f.requests()
	if len(got) != 4 {
		t.Fatalf("service got %d requests, want 4", len(got))
	}
	checkHTTPExecute(t, got[0].(*ExecuteRequest), exec)
	checkHTTPReport(t, got[1].(*ReportRequest), report)
	if !reflect.DeepEqual(got[2], reg) {
		t.Errorf("Register got %+v, want %+v", got[2], reg)
	}
	if !reflect.DeepEqual(got[3], hb) {
		t.Errorf("Heartbeat got %+v, want %+v", got[3], hb)
	}
}

// checkHTTPExecute compares requests with payloads by their bytes (an empty
// payload may arrive as nil).
func checkHTTPExecute(t *testing.T, got, want *ExecuteRequest) {
	t.Helper()
	if len(got.Ops) != len(want.Ops) {
		t.Fatalf("Execute got %d ops, want %d", len(got.Ops), len(want.Ops))
	}
	g, w := *got, *want
	g.Ops, w.Ops = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("Execute got %+v, want %+v", g, w)
	}
	for i := range want.Ops {
		gop, wop := got.Ops[i], want.Ops[i]
		if !bytes.Equal(gop.Payload, wop.Payload) {
			t.Errorf("op %d: payload %x, want %x", i, gop.Payload, wop.Payload)
		}
		gop.Payload, wop.Payload = nil, nil
		if !reflect.DeepEqual(gop, wop) {
			t.Errorf("op %d: got %+v, want %+v", i, gop, wop)
		}
	}
}

func checkHTTPReport(t *testing.T, got, want *ReportRequest) {
	t.Helper()
	if len(got.Outcomes) != len(want.Outcomes) {
		t.Fatalf("Report got %d outcomes, want %d", len(got.Outcomes), len(want.Outcomes))
	}
	g, w := *got, *want
	g.Outcomes, w.Outcomes = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("Report got %+v, want %+v", g, w)
	}
	for i := range want.Outcomes {
		gout, wout := got.Outcomes[i], want.Outcomes[i]
		if !bytes.Equal(gout.Result, wout.Result) {
			t.Errorf("outcome %d: result %x, want %x", i, gout.Result, wout.Result)
		}
		gout.Result, wout.Result = nil, nil
		if !reflect.DeepEqual(gout, wout) {
			t.Errorf("outcome %d: got %+v, want %+v", i, gout, wout)
		}
	}
}

var httpSentinels = []error{ErrUnknownNode, ErrWrongNode, ErrStaleEpoch, ErrBadRequest, ErrStopped}

// checkHTTPNoSentinel fails the test unless err is an error that wraps none
// of the httpSentinels.
func checkHTTPNoSentinel(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("call succeeded, want an error")
	}
	for _, s := range httpSentinels {
		if errors.Is(err, s) {
			t.Errorf("error %q wraps %v, want none of the httpSentinels", err, s)
		}
	}
}

// post sends body to url's path with a content type, outside the
// client: for checking statuses and malformed requests.
func rawPost(t *testing.T, method, url, contentType string, body io.Reader) (int, errorBody, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("HTTP %d with a body that is not an error body: %v", resp.StatusCode, err)
		}
		if e.Message == "" {
			t.Errorf("HTTP %d with an empty message", resp.StatusCode)
		}
	}
	return resp.StatusCode, e, resp.Header
}

func TestHTTPErrorsCrossTheWire(t *testing.T) {
	cases := []struct {
		sentinel error // nil: an error that wraps none
		status   int
		code     string
	}{
		{ErrBadRequest, http.StatusBadRequest, "bad_request"},
		{ErrUnknownNode, http.StatusNotFound, "unknown_node"},
		{ErrStaleEpoch, http.StatusConflict, "stale_epoch"},
		{ErrWrongNode, http.StatusConflict, "wrong_node"},
		{ErrStopped, http.StatusServiceUnavailable, "stopped"},
		{nil, http.StatusInternalServerError, ""},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status, c.code), func(t *testing.T) {
			f := &httpFake{err: errors.New("fake: disk on fire")}
			if c.sentinel != nil {
				f.err = fmt.Errorf("fake: node rs-1 incarnation 3: %w", c.sentinel)
			}
			nodeAddr := serveHTTPTest(t, NodeHandler(f, HTTPOptions{}))
			status, body, _ := rawPost(t, http.MethodPost, "http://"+nodeAddr+routeExecute, "application/json", strings.NewReader(`{"epoch":1}`))
			if status != c.status || body.Code != c.code || body.Message != f.err.Error() {
				t.Errorf("answer %d %+v, want %d code %q message %q", status, body, c.status, c.code, f.err)
			}

			master, node := dialHTTPBoth(t, &HTTP{}, f, HTTPOptions{})
			_, errExec := node.Execute(context.Background(), &ExecuteRequest{Epoch: 1})
			_, errReport := master.Report(context.Background(), &ReportRequest{Epoch: 1})
			for _, err := range []error{errExec, errReport} {
				if c.sentinel == nil {
					checkHTTPNoSentinel(t, err)
					continue
				}
				if !errors.Is(err, c.sentinel) {
					t.Errorf("client error %v does not wrap %v", err, c.sentinel)
				}
				if err.Error() != f.err.Error() {
					t.Errorf("client error %q, want the service's %q", err, f.err)
				}
				for _, other := range httpSentinels {
					if other != c.sentinel && errors.Is(err, other) {
						t.Errorf("client error %v also wraps %v", err, other)
					}
				}
			}
		})
	}
}

// chunkedBody hides a reader's length, so that the request is sent without
// Content-Length and the server finds the size only by reading.
type chunkedBody struct{ r io.Reader }

func (c chunkedBody) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestHTTPBadInputChangesNothing(t *testing.T) {
	const maxBody = 1024
	big := `{"epoch":1,"ops":[{"id":1,"payload":"` + strings.Repeat("A", 2*maxBody) + `"}]}`
	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		chunked     bool
		status      int
		code        string
	}{
		{"malformed JSON", "POST", routeExecute, "application/json", `{"epoch":`, false, 400, "bad_request"},
		{"syntax error", "POST", routeExecute, "application/json", `{"epoch" 1}`, false, 400, "bad_request"},
		{"unknown field", "POST", routeExecute, "application/json", `{"epoch":1,"bogus":2}`, false, 400, "bad_request"},
		{"unknown nested field", "POST", routeExecute, "application/json", `{"ops":[{"id":1,"prio":3}]}`, false, 400, "bad_request"},
		{"trailing data", "POST", routeExecute, "application/json", `{"epoch":1} x`, false, 400, "bad_request"},
		{"two values", "POST", routeExecute, "application/json", `{"epoch":1}{"epoch":2}`, false, 400, "bad_request"},
		{"trailing brace", "POST", routeExecute, "application/json", `{"epoch":1}}`, false, 400, "bad_request"},
		{"null", "POST", routeExecute, "application/json", `null`, false, 400, "bad_request"},
		{"array", "POST", routeExecute, "application/json", `[]`, false, 400, "bad_request"},
		{"empty body", "POST", routeExecute, "application/json", ``, false, 400, "bad_request"},
		{"negative epoch", "POST", routeExecute, "application/json", `{"epoch":-1}`, false, 400, "bad_request"},
		{"epoch overflows", "POST", routeExecute, "application/json", `{"epoch":18446744073709551616}`, false, 400, "bad_request"},
		{"wrong type", "POST", routeExecute, "application/json", `{"node":7}`, false, 400, "bad_request"},
		{"bad base64", "POST", routeExecute, "application/json", `{"ops":[{"id":1,"payload":"!!"}]}`, false, 400, "bad_request"},
		{"wrong method", "GET", routeExecute, "application/json", ``, false, 405, "bad_request"},
		{"PUT", "PUT", routeExecute, "application/json", `{}`, false, 405, "bad_request"},
		{"text/plain", "POST", routeExecute, "text/plain", `{}`, false, 415, "bad_request"},
		{"no content type", "POST", routeExecute, "", `{}`, false, 415, "bad_request"},
		{"oversized", "POST", routeExecute, "application/json", big, false, 413, "bad_request"},
		{"oversized chunked", "POST", routeExecute, "application/json", big, true, 413, "bad_request"},
		{"unknown route", "POST", "/remote/v1/nope", "application/json", `{}`, false, 404, ""},
		{"master route on a node", "POST", routeRegister, "application/json", `{}`, false, 404, ""},
	}
	f := &httpFake{}
	addr := serveHTTPTest(t, NodeHandler(f, HTTPOptions{MaxBody: maxBody}))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = chunkedBody{body}
			}
			status, e, header := rawPost(t, c.method, "http://"+addr+c.path, c.contentType, body)
			if status != c.status || e.Code != c.code {
				t.Errorf("answer %d %+v, want %d code %q", status, e, c.status, c.code)
			}
			if status == http.StatusMethodNotAllowed && header.Get("Allow") != "POST" {
				t.Errorf("405 with Allow %q, want POST", header.Get("Allow"))
			}
		})
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("the service got %d bad requests: %+v", len(got), got)
	}

	// What the client makes of it: an oversized batch is ErrBadRequest,
	// also when the answer comes long before the body is sent.
	node, err := (&HTTP{}).DialNode(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{maxBody, 1 << 20} {
		_, err = node.Execute(context.Background(), &ExecuteRequest{Ops: []Op{{ID: 1, Payload: make([]byte, size)}}})
		if !errors.Is(err, ErrBadRequest) {
			t.Errorf("Execute with a %d-byte payload: %v, want ErrBadRequest", size, err)
		}
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("the service got an oversized request")
	}
	// A valid request of the same handler does reach it.
	if _, err := node.Execute(context.Background(), &ExecuteRequest{Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	if got := f.requests(); len(got) != 1 {
		t.Errorf("the service got %d requests, want 1", len(got))
	}
}

func TestHTTPServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	node, err := (&HTTP{}).DialNode(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.Execute(context.Background(), &ExecuteRequest{})
	checkHTTPNoSentinel(t, err)
	master, err := (&HTTP{}).DialMaster(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = master.Heartbeat(context.Background(), &HeartbeatRequest{})
	checkHTTPNoSentinel(t, err)
}

// An answer that is not ours (a proxy's error page, a default 404, a
// redirect) is a transport error, whatever its status.
func TestHTTPForeignAnswer(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"404 page", http.StatusNotFound, "404 page not found\n"},
		{"409 text", http.StatusConflict, "conflict"},
		{"502 html", http.StatusBadGateway, "<html>bad gateway</html>"},
		{"200 not JSON", http.StatusOK, "ok"},
		{"200 JSON array", http.StatusOK, "[1]"},
		{"error JSON without message", http.StatusNotFound, `{"code":"unknown_node"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := serveHTTPTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}))
			node, err := (&HTTP{}).DialNode(addr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = node.Execute(context.Background(), &ExecuteRequest{})
			checkHTTPNoSentinel(t, err)
		})
	}
}

// A redirect is not followed: a request goes to the address it was
// dialled for or nowhere.
func TestHTTPNoRedirects(t *testing.T) {
	f := &httpFake{}
	elsewhere := "http://" + serveHTTPTest(t, NodeHandler(f, HTTPOptions{})) + routeExecute
	addr := serveHTTPTest(t, http.RedirectHandler(elsewhere, http.StatusTemporaryRedirect))
	node, err := (&HTTP{}).DialNode(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.Execute(context.Background(), &ExecuteRequest{})
	checkHTTPNoSentinel(t, err)
	if got := f.requests(); len(got) != 0 {
		t.Errorf("the redirect was followed: the other server got %d requests", len(got))
	}
}

func TestHTTPDialBadAddress(t *testing.T) {
	for _, addr := range []string{"", "localhost", "localhost:", ":7001", "http://localhost:7001", "a:b:c"} {
		if _, err := (&HTTP{}).DialNode(addr); err == nil {
			t.Errorf("DialNode(%q) succeeded", addr)
		}
		if _, err := (&HTTP{}).DialMaster(addr); err == nil {
			t.Errorf("DialMaster(%q) succeeded", addr)
		}
	}
}

// The handler calls the service with the request's context: when the
// caller gives up, the service sees it.
func TestHTTPContextCancel(t *testing.T) {
	entered := make(chan struct{})
	serverSaw := make(chan error, 1)
	f := &httpFake{hook: func(ctx context.Context) {
		close(entered)
		<-ctx.Done()
		serverSaw <- ctx.Err()
	}}
	node, err := (&HTTP{}).DialNode(serveHTTPTest(t, NodeHandler(f, HTTPOptions{})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	_, err = node.Execute(ctx, &ExecuteRequest{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Execute: %v, want context.Canceled", err)
	}
	checkHTTPNoSentinel(t, err)
	if err := <-serverSaw; !errors.Is(err, context.Canceled) {
		t.Errorf("the service's context ended with %v, want context.Canceled", err)
	}
}

// HTTP.Timeout bounds a call without a deadline; a caller's deadline
// wins over it. A 1 ns timeout always expires before an answer.
func TestHTTPDeadlines(t *testing.T) {
	f := &httpFake{}
	node, err := (&HTTP{Timeout: time.Nanosecond}).DialNode(serveHTTPTest(t, NodeHandler(f, HTTPOptions{})))
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.Execute(context.Background(), &ExecuteRequest{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Execute with a 1 ns Timeout: %v, want context.DeadlineExceeded", err)
	}
	checkHTTPNoSentinel(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := node.Execute(ctx, &ExecuteRequest{}); err != nil {
		t.Errorf("Execute with the caller's 1 h deadline: %v", err)
	}
}

// selfSignedCert returns an ECDSA P-256 certificate for 127.0.0.1 signed by
// its own key, usable by servers and clients.
func selfSignedCert(t testing.TB, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// serveHTTPWith serves h with ServeHTTP and opts on loopback until the test
// ends, and checks that ServeHTTP then returns nil.
func serveHTTPWith(t *testing.T, h http.Handler, opts HTTPOptions) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(ctx, l, h, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	})
	return l.Addr().String()
}

func TestHTTPTLS(t *testing.T) {
	serverCert, serverPool := selfSignedCert(t, "master")
	_, otherPool := selfSignedCert(t, "impostor")
	f := &httpFake{}
	addr := serveHTTPWith(t, MasterHandler(f, HTTPOptions{}), HTTPOptions{TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}}})

	master, err := (&HTTP{TLS: &tls.Config{RootCAs: serverPool}}).DialMaster(addr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := master.Heartbeat(context.Background(), &HeartbeatRequest{Node: "rs-1", Epoch: 5})
	if err != nil || resp.Epoch != 5 {
		t.Fatalf("Heartbeat over TLS: %+v, %v", resp, err)
	}

	refused := map[string]*HTTP{
		"plain http":          {},
		"untrusted server":    {TLS: &tls.Config{RootCAs: otherPool}},
		"system roots only":   {TLS: &tls.Config{}},
		"wrong name verified": {TLS: &tls.Config{RootCAs: serverPool, ServerName: "elsewhere.example"}},
	}
	for name, tr := range refused {
		master, err := tr.DialMaster(addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = master.Heartbeat(context.Background(), &HeartbeatRequest{Node: name})
		t.Logf("%s: %v", name, err)
		checkHTTPNoSentinel(t, err)
	}
	if got := f.requests(); len(got) != 1 {
		t.Errorf("the service got %d requests, want the 1 over TLS", len(got))
	}
}

func TestHTTPMutualTLS(t *testing.T) {
	serverCert, serverPool := selfSignedCert(t, "node")
	clientCert, clientPool := selfSignedCert(t, "master")
	strangerCert, _ := selfSignedCert(t, "stranger")
	f := &httpFake{}
	addr := serveHTTPWith(t, NodeHandler(f, HTTPOptions{}), HTTPOptions{TLS: &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientPool,
	}})

	node, err := (&HTTP{TLS: &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{clientCert}}}).DialNode(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.Execute(context.Background(), &ExecuteRequest{Epoch: 1}); err != nil {
		t.Fatalf("Execute with a client certificate: %v", err)
	}

	refused := map[string]*HTTP{
		"no client certificate": {TLS: &tls.Config{RootCAs: serverPool}},
		// GetClientCertificate: the client presents it even though the
		// server did not name its issuer as acceptable.
		"untrusted client certificate": {TLS: &tls.Config{RootCAs: serverPool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strangerCert, nil }}},
		"plain http": {},
	}
	for name, tr := range refused {
		node, err := tr.DialNode(addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = node.Execute(context.Background(), &ExecuteRequest{Epoch: 2})
		t.Logf("%s: %v", name, err)
		checkHTTPNoSentinel(t, err)
	}
	if got := f.requests(); len(got) != 1 {
		t.Errorf("the service got %d requests, want the 1 with a trusted client certificate", len(got))
	}
}

func TestServeHTTPTLSWithoutCertificate(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = ServeHTTP(context.Background(), l, NodeHandler(&httpFake{}, HTTPOptions{}), HTTPOptions{TLS: &tls.Config{}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("ServeHTTP with a TLS config without certificate: %v, want an error naming it", err)
	}
}

// FuzzNodeHandler: whatever the body, the service is called only when
// the answer is 200, and every other answer is an error body.
func FuzzNodeHandler(f *testing.F) {
	for _, seed := range []string{
		`{"epoch":1,"node":"rs-1","incarnation":2,"ops":[{"id":1,"proc":2,"type":"t","payload":"AAE=","attempt":1}]}`,
		`{}`, `{"epoch":-1}`, `{"ops":[{"id":1,"prio":3}]}`, `{"epoch":1} x`, `null`, ``, `{"EPOCH":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fs := &httpFake{}
		h := NodeHandler(fs, HTTPOptions{MaxBody: 4096})
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, routeExecute, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(w, r)
		calls := len(fs.requests())
		if w.Code == http.StatusOK {
			if calls != 1 {
				t.Fatalf("200 after %d service calls", calls)
			}
			return
		}
		if calls != 0 {
			t.Fatalf("HTTP %d after %d service calls", w.Code, calls)
		}
		var e errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != "bad_request" || e.Message == "" {
			t.Fatalf("HTTP %d with body %q, want a bad_request error body", w.Code, w.Body.Bytes())
		}
	})
}

// BenchmarkHTTPExecute: one 128-operation request with 64-byte payloads
// through the client, loopback TCP and the handler.
func BenchmarkHTTPExecute(b *testing.B) {
	const ops = 128
	node, err := (&HTTP{}).DialNode(serveHTTPTest(b, NodeHandler(httpBenchNode{}, HTTPOptions{})))
	if err != nil {
		b.Fatal(err)
	}
	req := &ExecuteRequest{Epoch: 7, Node: "rs-1", Incarnation: 1 << 40, Ops: make([]Op, ops)}
	for i := range req.Ops {
		payload := make([]byte, 64)
		for j := range payload {
			payload[j] = byte(i + j)
		}
		req.Ops[i] = Op{ID: MakeOpID(7, uint32(i)), Proc: uint64(1000 + i), Type: "snapshot-region", Payload: payload, Attempt: 1}
	}
	ctx := context.Background()
	b.ReportAllocs()
	calls := 0
	for b.Loop() {
		if _, err := node.Execute(ctx, req); err != nil {
			b.Fatal(err)
		}
		calls++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(calls*ops), "ns/remote-op")
}

// httpBenchNode answers every Execute at once.
type httpBenchNode struct{}

func (httpBenchNode) Execute(context.Context, *ExecuteRequest) (*ExecuteResponse, error) {
	return &ExecuteResponse{}, nil
}

// httpExampleNode accepts requests meant for "rs-1".
type httpExampleNode struct{}

func (httpExampleNode) Execute(ctx context.Context, req *ExecuteRequest) (*ExecuteResponse, error) {
	if req.Node != "rs-1" {
		return nil, fmt.Errorf("rs-1 got a request for %q: %w", req.Node, ErrWrongNode)
	}
	return &ExecuteResponse{}, nil
}

// A node serves its NodeService over HTTP; the master dials it with the
// HTTP transport, and the node's errors cross the wire.
func ExampleServeHTTP() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	opts := HTTPOptions{} // set TLS to serve HTTPS
	go ServeHTTP(ctx, l, NodeHandler(httpExampleNode{}, opts), opts)

	tr := &HTTP{} // set TLS to speak HTTPS
	node, err := tr.DialNode(l.Addr().String())
	if err != nil {
		panic(err)
	}
	_, err = node.Execute(ctx, &ExecuteRequest{Node: "rs-1", Ops: []Op{{ID: 1, Type: "flush"}}})
	fmt.Println("rs-1:", err)
	_, err = node.Execute(ctx, &ExecuteRequest{Node: "rs-2"})
	fmt.Println("rs-2:", errors.Is(err, ErrWrongNode), err)
	// Output:
	// rs-1: <nil>
	// rs-2: true rs-1 got a request for "rs-2": remote: request for another node or incarnation
}
