package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/server"
)

// servingProc is procyon serve running in this process.
type servingProc struct {
	t      *testing.T
	url    string
	cancel context.CancelFunc
	done   chan int
	stderr *lineWriter
}

// startServe runs procyon serve with args and waits for its ready line.
func startServe(t *testing.T, args ...string) *servingProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &lineWriter{lines: make(chan string, 16)}
	p := &servingProc{t: t, cancel: cancel, done: make(chan int, 1), stderr: &lineWriter{lines: make(chan string)}}
	go func() { p.done <- run(ctx, &env{stdout: stdout, stderr: p.stderr}, append([]string{"serve"}, args...)) }()
	select {
	case line := <-stdout.lines:
		var rl readyLine
		if err := json.Unmarshal([]byte(line), &rl); err != nil || rl.Event != "ready" || rl.Role != "master" {
			cancel()
			t.Fatalf("serve printed %q first: %v", line, err)
		}
		p.url = "http://" + rl.Addr
		if slices.Contains(args, "--tls-cert") {
			p.url = "https://" + rl.Addr
		}
	case code := <-p.done:
		cancel()
		t.Fatalf("serve exited %d before it was ready:\n%s", code, p.stderr.String())
	}
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends the process as SIGTERM would and checks that it exits 0.
func (p *servingProc) stop() {
	p.t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if code := <-p.done; code != 0 {
		p.t.Errorf("serve exited %d:\n%s", code, p.stderr.String())
	}
}

// get returns the status and body of GET path (redirects followed).
func (p *servingProc) get(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServe: procyon serve starts on an empty directory and again on the
// one it left: ready, the UI at /, /metrics with the engine's metrics, the
// API with the master's admin types submittable, and the procedures of
// the first run still there after the restart.
func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, "--dir", dir, "--listen", "127.0.0.1:0")
	p.check()
	out := cliOK(t, "proc", "submit", "create-table", "--args", `{"name": "t1"}`, "--nonce", "t1", "--endpoint", p.url)
	id := strings.TrimSpace(out)
	if code, _, errOut := runCLI(t, "proc", "submit", "create-table", "--args", `{"table": "t1"}`, "--endpoint", p.url); code != 1 || !strings.Contains(errOut, "bad_request: ") {
		t.Fatalf("create-table with a misspelt field: exit %d, %q", code, errOut)
	}
	cliOK(t, "nodes", "--endpoint", p.url)
	p.stop()

	p = startServe(t, "--dir", dir, "--listen", "127.0.0.1:0")
	p.check()
	out = cliOK(t, "proc", "list", "--type", "create-table", "--endpoint", p.url)
	if !regexp.MustCompile(`(?m)^` + id + ` +- +create-table `).MatchString(out) {
		t.Fatalf("after the restart, proc list --type create-table:\n%s", out)
	}
	if again := cliOK(t, "proc", "submit", "create-table", "--args", `{"name": "t1"}`, "--nonce", "t1", "--endpoint", p.url); strings.TrimSpace(again) != id {
		t.Fatalf("the nonce of the first run gave %s, want %s", again, id)
	}
}

// check checks the probes, the UI and /metrics of a ready server.
func (p *servingProc) check() {
	p.t.Helper()
	if code, body := p.get("/readyz"); code != http.StatusOK {
		p.t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, body := p.get("/"); code != http.StatusOK || !strings.Contains(body, "<html") {
		p.t.Fatalf("/: %d\n%.300s", code, body)
	}
	code, body := p.get("/metrics")
	if code != http.StatusOK || !regexp.MustCompile(`(?m)^procyon_\w+`).MatchString(body) {
		p.t.Fatalf("/metrics: %d\n%.300s", code, body)
	}
	if code, body := p.get("/ts/v1/servers"); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		p.t.Fatalf("the master's own API: %d %s", code, body)
	}
}

func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// TestServeCredentials: off loopback, serve refuses to start without
// credentials (exit 2); with a token file, requests need a token.
func TestServeCredentials(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "serve", "--dir", dir, "--listen", "0.0.0.0:0")
	if code != 2 || out != "" || !strings.Contains(errOut, `refusing to listen on "0.0.0.0:0" without credentials`) {
		t.Fatalf("off loopback without tokens: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	const secret = "s3cret-operator-token-0123"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("# name role secret\nalice operate "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--dir", dir, "--listen", "127.0.0.1:0", "--token-file", tokens)
	if code, _, errOut := runCLI(t, "proc", "list", "--endpoint", p.url); code != 1 || !strings.Contains(errOut, "unauthorized: ") {
		t.Fatalf("no token: exit %d, %q", code, errOut)
	}
	cliOK(t, "proc", "list", "--endpoint", p.url, "--token", secret)
	if code, _ := p.get("/metrics"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d", code)
	}
	if code, _ := p.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz needs no token: %d", code)
	}
	p.stop()
	if strings.Contains(p.stderr.String(), secret) {
		t.Fatal("a secret in the log")
	}
}

func TestReadAccessFile(t *testing.T) {
	const secret = "a-secret-that-is-long-enough"
	for _, c := range []struct {
		text, want string
	}{
		{"alice operate", "line 1: want \"NAME ROLE SECRET\" (2 words)"},
		{"# comment\n\nalice admin " + secret, `line 3: server: unknown role "admin"`},
		{"cert:ops", `line 1: want "cert:CN ROLE"`},
		{"# only comments\n", "holds no credentials"},
		{"alice operate " + secret + " extra", "line 1: want \"NAME ROLE SECRET\" (4 words)"},
	} {
		path := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := readAccessFile(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), secret) {
			t.Errorf("%q: %v; want %q and no secret", c.text, err, c.want)
		}
	}
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte("alice operate "+secret+" # the on-call\nbob read "+secret+"-2\ncert:ops-laptop operate\n"), 0o600)
	tokens, certs, err := readAccessFile(path)
	if err != nil || len(tokens) != 2 || tokens[0] != (server.Token{Name: "alice", Role: server.Operate, Secret: secret}) ||
		tokens[1].Role != server.Read || certs["ops-laptop"] != server.Operate {
		t.Fatalf("readAccessFile: %v %+v %v", err, tokens, certs)
	}
	// --client-ca and cert: lines go together.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--token-file", path}, "--client-ca is not given"},
		{[]string{"--tls-cert", path}, "--tls-cert and --tls-key go together"},
		{[]string{"--client-ca", path}, "--client-ca needs --tls-cert"},
		{[]string{"--tls-cert", path, "--tls-key", path}, "--tls-cert/--tls-key: "},
	} {
		code, _, errOut := runCLI(t, append([]string{"serve", "--dir", t.TempDir()}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("serve %v: exit %d, %q; want exit 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// TestUntilStarted: before the master recovered only the probes reach
// the server; everything else is a 503 with an error body.
func TestUntilStarted(t *testing.T) {
	var started atomic.Bool
	h := untilStarted(&started, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) }))
	serve := func(path string) (int, server.Error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var e server.Error
		json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, e
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := serve(path); code != 299 {
			t.Errorf("%s while recovering: %d", path, code)
		}
	}
	for _, path := range []string{"/", "/api/v1/procedures", "/metrics", "/remote/v1/register", "/ts/v1/servers"} {
		if code, e := serve(path); code != http.StatusServiceUnavailable || e.Code != server.CodeUnavailable || !strings.Contains(e.Message, "recovering") {
			t.Errorf("%s while recovering: %d %+v", path, code, e)
		}
	}
	started.Store(true)
	if code, _ := serve("/api/v1/procedures"); code != 299 {
		t.Errorf("after start: %d", code)
	}
}

// TestServeMutualTLS: with --tls-cert, --tls-key and --client-ca, a
// client certificate named in the credentials file is its identity, and a
// client without one is refused (no token either).
func TestServeMutualTLS(t *testing.T) {
	pki := t.TempDir()
	ca, caKey := newTestCert(t, pki, "ca", "procyon test CA", nil, nil)
	newTestCert(t, pki, "server", "127.0.0.1", ca, caKey)
	newTestCert(t, pki, "ops", "ops", ca, caKey)
	newTestCert(t, pki, "stranger", "stranger", ca, caKey)
	access := filepath.Join(pki, "access")
	if err := os.WriteFile(access, []byte("cert:ops operate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := func(name string) string { return filepath.Join(pki, name) }
	p := startServe(t, "--dir", t.TempDir(), "--listen", "127.0.0.1:0", "--token-file", access,
		"--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--client-ca", file("ca.pem"))
	tlsArgs := func(who string) []string {
		return []string{"--endpoint", p.url, "--ca-file", file("ca.pem"), "--cert-file", file(who + ".pem"), "--key-file", file(who + ".key")}
	}
	cliOK(t, append([]string{"proc", "submit", "create-table", "--args", `{"name": "t"}`}, tlsArgs("ops")...)...)
	code, _, errOut := runCLI(t, append([]string{"proc", "list"}, tlsArgs("stranger")...)...)
	if code != 1 || !strings.Contains(errOut, "unauthorized: ") {
		t.Fatalf("a certificate without a role: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "proc", "list", "--endpoint", p.url, "--ca-file", file("ca.pem"))
	if code != 1 || !strings.Contains(errOut, "unauthorized: ") {
		t.Fatalf("no certificate, no token: exit %d, %q", code, errOut)
	}
}

// newTestCert writes name.pem and name.key: a certificate for cn signed
// by parent (nil: self-signed, a CA), valid for 127.0.0.1.
func newTestCert(t *testing.T, dir, name, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(name)) + time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", kb)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
