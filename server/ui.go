package server

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
)

// The web UI: html/template pages under /ui/ and a vendored htmx
// (static/htmx.min.js: htmx 2.0.11 from the npm package htmx.org, Zero-Clause
// BSD, static/htmx.LICENSE), all from embed.FS: no CDN, no build step.
// Live parts of a page poll an HTML fragment every 2 s (hx-get,
// hx-trigger="every 2s"); actions are plain HTML form posts to /ui/
// handlers, not to the JSON API.
//
// Access: an open server (no Tokens, no ClientCerts) asks no one to sign
// in. Otherwise /ui/signin takes a token and keeps it in the session
// cookie (HttpOnly, SameSite=Strict, Secure over TLS, Path=/), which
// identify reads as it reads a bearer token. Pages need Read; actions need
// Operate (a read-only visitor sees no action, and the action handlers
// answer 403).
//
// Cross-site requests: actions are POST only, and a POST whose Origin (or,
// without one, Referer) names another host than the request's is refused
// with 403 before anything else; a request with neither header is not
// from a browser and is let through to the credential check. The cookie
// being SameSite=Strict, a cross-site form never carries it either; the
// Origin check is what protects an open server, which has no cookie.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// uiPages are the templates of the UI, each parsed with the layout.
var uiPages = []string{"procedures", "procedure", "locks", "nodes", "engine", "audit", "signin", "bulk", "error"}

// uiTemplates holds each page's template set (layout + page), parsed once.
var uiTemplates = parseUITemplates()

func parseUITemplates() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(uiFuncs).ParseFS(templateFS, "templates/layout.html"))
	out := map[string]*template.Template{}
	for _, p := range uiPages {
		t := template.Must(base.Clone())
		out[p] = template.Must(t.ParseFS(templateFS, "templates/"+p+".html"))
	}
	return out
}

// routeUI registers the web UI.
func (s *Server) routeUI() {
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	s.mux.HandleFunc("GET /ui/signin", s.uiSigninPage)
	s.mux.HandleFunc("POST /ui/signin", s.uiSignin)
	s.mux.HandleFunc("POST /ui/signout", s.uiSignout)

	s.mux.HandleFunc("GET /ui/{$}", s.uiRead(s.uiProcedures))
	s.mux.HandleFunc("GET /ui/procedures/list", s.uiRead(s.uiProcedureRows))
	s.mux.HandleFunc("GET /ui/procedures/{id}", s.uiRead(s.uiProcedure))
	s.mux.HandleFunc("GET /ui/procedures/{id}/live", s.uiRead(s.uiProcedureLive))
	s.mux.HandleFunc("GET /ui/locks", s.uiRead(s.uiLocks))
	s.mux.HandleFunc("GET /ui/nodes", s.uiRead(s.uiNodes))
	s.mux.HandleFunc("GET /ui/engine", s.uiRead(s.uiEngine))
	s.mux.HandleFunc("GET /ui/engine/live", s.uiRead(s.uiEngineLive))
	s.mux.HandleFunc("GET /ui/audit", s.uiRead(s.uiAudit))

	s.mux.HandleFunc("POST /ui/procedures", s.uiOperate(s.uiSubmit))
	s.mux.HandleFunc("POST /ui/procedures/abort", s.uiOperate(s.uiBulkAbort))
	s.mux.HandleFunc("POST /ui/procedures/{id}/abort", s.uiOperate(s.uiAbort))
	s.mux.HandleFunc("POST /ui/procedures/{id}/bypass", s.uiOperate(s.uiBypass))
	s.mux.HandleFunc("POST /ui/procedures/{id}/ack", s.uiOperate(s.uiAck))
}

// uiPage is what every page's layout needs, and the page's own data.
type uiPage struct {
	Title   string
	Nav     string // the nav entry to highlight
	Who     string
	Operate bool // the visitor may act: action forms are shown
	Signin  bool // the server checks credentials: show sign out
	Error   string
	Notice  string
	Data    any
}

// uiHandler is a UI handler given who is asking.
type uiHandler func(w http.ResponseWriter, r *http.Request, id identity)

// uiRead wraps a page: the visitor must have signed in (any role).
// Without credentials a page redirects to the sign-in form; a fragment
// (an htmx request) answers 401 with HX-Redirect, so the browser goes
// there.
func (s *Server) uiRead(h uiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.identify(r)
		if err != nil {
			to := "/ui/signin?next=" + url.QueryEscape(r.URL.RequestURI())
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", to)
				http.Error(w, "sign in", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		h(w, r, id)
	}
}

// uiOperate wraps an action: a same-origin POST by an Operate visitor.
func (s *Server) uiOperate(h uiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.sameOrigin(r); err != nil {
			s.uiFail(w, r, identity{}, http.StatusForbidden, err.Error())
			return
		}
		id, err := s.identify(r)
		if err != nil {
			s.uiFail(w, r, id, http.StatusUnauthorized, "Sign in to act: "+err.Error()+".")
			return
		}
		if id.Role != Operate {
			s.uiFail(w, r, id, http.StatusForbidden, id.Who+" may only read: this needs an operate token.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
		h(w, r, id)
	}
}

// render executes page tmpl's template name with p into a buffer first,
// so that a failing template answers 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, status int, tmpl, name string, p uiPage) {
	var buf bytes.Buffer
	if err := uiTemplates[tmpl].ExecuteTemplate(&buf, name, p); err != nil {
		s.opts.Logger.Error("server: ui template", "page", tmpl, "template", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// page renders a whole page (its layout) for visitor id.
func (s *Server) page(w http.ResponseWriter, status int, tmpl string, id identity, p uiPage) {
	p.Who, p.Operate, p.Signin = id.Who, id.Role == Operate, !s.open()
	s.render(w, status, tmpl, "layout", p)
}

// uiFail answers with the error page, msg in words.
func (s *Server) uiFail(w http.ResponseWriter, r *http.Request, id identity, status int, msg string) {
	s.page(w, status, "error", id, uiPage{Title: http.StatusText(status), Error: msg})
}
