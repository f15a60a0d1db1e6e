package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseQuery: any query is parsed or refused, never a panic; what is
// accepted is in bounds.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "status=runnable,failed&type=t&limit=5", "root=1&parent=2&before=3",
		"since=2026-12-05T17:00:00Z&until=2026-12-06T17:00:00.5+01:00", "error=x%20y", "limit=1000", "limit=0",
		"status=", "a=1&a=2", "before=18446744073709551615", "root=18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, limit, err := parseQuery(v)
		if err != nil {
			return
		}
		if limit < 1 || limit > maxLimit {
			t.Fatalf("%q: limit %d", raw, limit)
		}
		for _, st := range q.Status {
			if statusNames[st.String()] != st {
				t.Fatalf("%q: status %v", raw, st)
			}
		}
		for key := range v {
			if !slices.Contains([]string{"status", "type", "root", "parent", "error", "since", "until", "before", "limit"}, key) {
				t.Fatalf("%q: unknown parameter %q accepted", raw, key)
			}
		}
	})
}

// FuzzAPI: any method, path and body as the operator: never a panic,
// never a 500, an error is a JSON Error, and a refused request changes
// nothing in the store.
func FuzzAPI(f *testing.F) {
	fx := newFixture(f, func(o *Options) { o.MaxBody = 4096 })
	fx.submit(f, fx.stuck, job{})
	fx.submit(f, fx.ponr, job{})
	fx.submit(f, fx.parent, job{N: 2})
	fx.finished(f, fx.submit(f, fx.finish, job{N: 1}))
	for _, s := range [][3]string{
		{"GET", "/api/v1/procedures?status=suspended&limit=2", ""},
		{"POST", "/api/v1/procedures", `{"type":"stuck","args":{"n":1},"nonce":"n1","timeout":"1h"}`},
		{"POST", "/api/v1/procedures", `{"type":"finish","args":{"n":"x"}}`},
		{"POST", "/api/v1/procedures/1/abort", `{"why":"fuzz"}`},
		{"POST", "/api/v1/procedures/2/abort", `{"why":"fuzz"}`},
		{"POST", "/api/v1/procedures/3/bypass", `{"why":"fuzz"}`},
		{"POST", "/api/v1/procedures/6/ack", `{}`},
		{"POST", "/api/v1/procedures/abort", `{"filter":{"type":"stuck"},"why":"fuzz","dryRun":true}`},
		{"POST", "/api/v1/procedures/abort", `{"filter":{"status":"suspended"},"why":"fuzz","limit":1}`},
		{"GET", "/api/v1/procedures/1/wait?timeout=10ms", ""},
		{"GET", "/api/v1/procedures/4", ""},
		{"GET", "/api/v1/audit?before=3&limit=2", ""},
		{"DELETE", "/api/v1/locks", ""},
		{"GET", "/readyz", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond) // long polls end
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, "http://procyon.test"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+operateSecret)
		before := fx.seq()
		rec := httptest.NewRecorder()
		fx.srv.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusInternalServerError:
			t.Fatalf("%s %q %q: 500 %s", method, path, body, rec.Body)
		case rec.Code >= 400:
			fx.unchanged(t, before, method+" "+path+" refused")
			var e Error
			if ownsPath(req.URL.Path) && (json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code == "") && !strings.HasPrefix(req.URL.Path, "/debug/") {
				t.Fatalf("%s %q: %d without an Error body: %q", method, path, rec.Code, rec.Body)
			}
		case rec.Code < 300 && method != "GET" && method != "HEAD":
			fx.settle(t)
		}
	})
}
