package server

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// withEverything serves /metrics and pprof too.
func withEverything(o *Options) {
	o.Gatherer = prometheus.NewRegistry()
	o.Pprof = true
}

// routePath is r's path with {id} set to id.
func routePath(r route, id fmt.Stringer) string {
	return strings.ReplaceAll(r.path, "{id}", id.String())
}

// goodBody is a body that would make r act, were it allowed.
func goodBody(r route) string {
	switch {
	case r.method != "POST" || strings.HasSuffix(r.path, "/ack") || strings.HasPrefix(r.path, "/debug/"):
		return ""
	case r.path == "/api/v1/procedures":
		return `{"type":"finish"}`
	}
	return `{"why":"a test"}`
}

type idString uint64

func (i idString) String() string { return fmt.Sprint(uint64(i)) }

// Every route that acts refuses a missing, an unknown and a read-only
// token, and changes nothing: walked from the route table, so that a
// route added later is covered.
func TestMutatingRoutesNeedOperate(t *testing.T) {
	f := newFixture(t, withEverything)
	id := idString(f.submit(t, f.stuck, job{}))
	before := f.seq()
	operate := 0
	for _, r := range f.srv.routes {
		if r.method != "GET" && r.role != Operate {
			t.Errorf("%s %s: a mutating route with role %v, want operate", r.method, r.path, r.role)
		}
		if r.role != Operate {
			continue
		}
		operate++
		path, body := routePath(r, id), goodBody(r)
		a := f.do(r.method, path, "", body)
		a.refused(t, 401, CodeUnauthorized)
		if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", r.method, path)
		}
		f.do(r.method, path, "wrong-secret-0123456789", body).refused(t, 401, CodeUnauthorized)
		f.do(r.method, path, readSecret, body).refused(t, 403, CodeForbidden)
	}
	if operate < 11 { // 5 procedure routes and 6 of pprof
		t.Fatalf("%d operate routes in the table, want at least 11", operate)
	}
	f.unchanged(t, before, "unauthorized requests")
}

// Every read route refuses a request without a known token and serves a
// read token; the probes need none.
func TestReadRoutesNeedRead(t *testing.T) {
	f := newFixture(t, withEverything)
	id := idString(f.submit(t, f.stuck, job{}))
	for _, r := range f.srv.routes {
		path := routePath(r, id)
		if strings.HasSuffix(path, "/wait") {
			path += "?timeout=0s"
		}
		switch r.role {
		case 0:
			if a := f.do(r.method, path, "", ""); a.status != 200 {
				t.Errorf("%s %s without credentials: %d", r.method, path, a.status)
			}
		case Read:
			f.do(r.method, path, "", "").refused(t, 401, CodeUnauthorized)
			if a := f.do(r.method, path, readSecret, ""); a.status != 200 {
				t.Errorf("%s %s as a reader: %d %s", r.method, path, a.status, a.body)
			}
		}
	}
}

// No secret reaches the log, of a request that passed or failed.
func TestNoSecretInLogs(t *testing.T) {
	f := newFixture(t, nil)
	id := f.submit(t, f.stuck, job{})
	wrong := "wrong-secret-abcdefghijklmnop"
	f.do("GET", "/api/v1/procedures", wrong, "").refused(t, 401, CodeUnauthorized)
	f.do("POST", fmt.Sprintf("/api/v1/procedures/%d/abort", id), readSecret, `{"why":"no"}`).refused(t, 403, CodeForbidden)
	f.op("POST", "/api/v1/procedures", `{"type":"finish"}`).must(t, 201, nil)
	f.op("POST", fmt.Sprintf("/api/v1/procedures/%d/bypass", id), `{"why":"stuck"}`).must(t, 200, nil)
	log := f.log.String()
	for _, want := range []string{"unauthenticated request refused", "request forbidden", "server: submitted", "server: bypass"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	for _, secret := range []string{readSecret, operateSecret, wrong} {
		if strings.Contains(log, secret) {
			t.Fatalf("the log holds a secret %q:\n%s", secret, log)
		}
	}
}

func bearerRequest(secret string) *http.Request {
	r := httptest.NewRequest("GET", "/api/v1/types", nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	return r
}

// Wrong secrets of every length, and near misses of the real ones, are
// refused; every real one, wherever in the list, is accepted with its
// name and role.
func TestTokenComparison(t *testing.T) {
	tokens := []Token{{Name: "a", Secret: "first-secret-0123456789", Role: Read},
		{Name: "b", Secret: "second-secret-0123456789-longer", Role: Operate},
		{Name: "c", Secret: "third-secret-0123456789", Role: Read}}
	f := newFixture(t, func(o *Options) { o.Tokens = tokens })
	var wrong []string
	for n := 1; n <= 80; n++ {
		wrong = append(wrong, strings.Repeat("s", n))
	}
	for _, tok := range tokens {
		for i := 1; i < len(tok.Secret); i++ {
			wrong = append(wrong, tok.Secret[:i], tok.Secret[i:])
		}
		wrong = append(wrong, tok.Secret+"x", " "+tok.Secret, strings.ToUpper(tok.Secret))
		for i := range len(tok.Secret) {
			b := []byte(tok.Secret)
			b[i] ^= 1
			wrong = append(wrong, string(b))
		}
	}
	for _, s := range wrong {
		if who, err := f.srv.identify(bearerRequest(s)); err == nil {
			t.Fatalf("secret %q accepted as %+v", s, who)
		}
	}
	for _, tok := range tokens {
		who, err := f.srv.identify(bearerRequest(tok.Secret))
		if err != nil || who.Who != tok.Name || who.Role != tok.Role {
			t.Fatalf("token %s: %+v, %v", tok.Name, who, err)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Basic "+tokens[0].Secret)
	if _, err := f.srv.identify(r); err == nil {
		t.Fatal("a Basic authorization accepted")
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: tokens[1].Secret})
	if who, err := f.srv.identify(r); err != nil || who.Who != "b" {
		t.Fatalf("session cookie: %+v, %v", who, err)
	}
}

func TestClientCertificates(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ClientCerts = map[string]Role{"ops": Operate, "viewer": Read} })
	id := f.submit(t, f.stuck, job{})
	req := func(cn string) *http.Request {
		r := httptest.NewRequest("POST", fmt.Sprintf("/api/v1/procedures/%d/bypass", id), strings.NewReader(`{"why":"cert"}`))
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
		return r
	}
	for _, c := range []struct {
		cn     string
		status int
	}{{"stranger", 401}, {"viewer", 403}, {"ops", 200}} {
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, req(c.cn))
		if rec.Code != c.status {
			t.Fatalf("certificate %s: %d %s, want %d", c.cn, rec.Code, rec.Body, c.status)
		}
	}
	in, _ := f.e.Get(id)
	if in.Bypass == nil || in.Bypass.Who != "cert:ops" {
		t.Fatalf("bypass recorded as %+v", in.Bypass)
	}
}

// Without credentials configured, everyone operates as "local" (a
// loopback server).
func TestOpenServer(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Tokens = nil })
	var sub SubmitResponse
	f.do("POST", "/api/v1/procedures", "", `{"type":"finish"}`).must(t, 201, &sub)
	if in := f.finished(t, sub.ID); in.Status.String() != "succeeded" {
		t.Fatal(in.Status)
	}
	var d ProcedureDetail
	f.do("GET", fmt.Sprintf("/api/v1/procedures/%d", sub.ID), "", "").must(t, 200, &d)
	if d.Submitter != "local" {
		t.Fatalf("submitter %q, want local", d.Submitter)
	}
}

func TestCheckListen(t *testing.T) {
	creds := Options{Tokens: []Token{{Name: "a", Secret: operateSecret, Role: Operate}}}
	for _, c := range []struct {
		addr string
		opts Options
		ok   bool
	}{{"127.0.0.1:7070", Options{}, true}, {"[::1]:7070", Options{}, true}, {"localhost:7070", Options{}, true},
		{"0.0.0.0:7070", Options{}, false}, {":7070", Options{}, false}, {"10.1.2.3:7070", Options{}, false},
		{"0.0.0.0:7070", creds, true}, {"nonsense", Options{}, false}} {
		if err := CheckListen(c.addr, c.opts); (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, tokens %d): %v", c.addr, len(c.opts.Tokens), err)
		}
	}
}

// An unsafe cross-origin request from a browser is refused before
// anything else: a web page cannot make a loopback server act.
func TestCrossOriginRefused(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Tokens = nil })
	before := f.seq()
	r := httptest.NewRequest("POST", "/api/v1/procedures", strings.NewReader(`{"type":"finish"}`))
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, r)
	answer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}.refused(t, 403, CodeForbidden)
	f.unchanged(t, before, "a cross-origin submission")
	r = httptest.NewRequest("GET", "/api/v1/types", nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	rec = httptest.NewRecorder()
	f.srv.ServeHTTP(rec, r)
	if rec.Code != 200 {
		t.Fatalf("a cross-origin GET: %d", rec.Code)
	}
}
