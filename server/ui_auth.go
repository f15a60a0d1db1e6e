package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// errCrossOrigin: a POST from a page of another site.
var errCrossOrigin = errors.New("refused: this form was posted from another site (its Origin or Referer is not this server)")

// sameOrigin refuses an unsafe request (a POST) from a page of another
// site, for the API and the UI alike: http.CrossOriginProtection's check
// (Sec-Fetch-Site, else Origin against the request's host), and, for a
// request without Origin, its Referer's host. A request with none of
// them is not from a browser, and goes on to the credential check.
func (s *Server) sameOrigin(r *http.Request) error {
	if err := s.cop.Check(r); err != nil {
		return errCrossOrigin
	}
	ref := r.Header.Get("Referer")
	if r.Header.Get("Origin") != "" || ref == "" || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if u, err := url.Parse(ref); err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return errCrossOrigin
	}
	return nil
}

// signinData is the sign-in form's.
type signinData struct {
	Next string
	Open bool
}

// safeNext keeps a post-sign-in target within the UI.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}

func (s *Server) uiSigninPage(w http.ResponseWriter, r *http.Request) {
	s.page(w, http.StatusOK, "signin", identity{}, uiPage{Title: "Sign in",
		Data: signinData{Next: safeNext(r.URL.Query().Get("next")), Open: s.open()}})
}

// uiSignin checks the token posted and keeps it in the session cookie.
func (s *Server) uiSignin(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.FormValue("next"))
	fail := func(status int, msg string) {
		s.page(w, status, "signin", identity{}, uiPage{Title: "Sign in", Error: msg, Data: signinData{Next: next}})
	}
	if err := s.sameOrigin(r); err != nil {
		fail(http.StatusForbidden, err.Error())
		return
	}
	if s.open() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		fail(http.StatusBadRequest, "Give a token.")
		return
	}
	check := r.Clone(r.Context())
	check.TLS = nil // the token alone is checked, not a client certificate
	check.Header = http.Header{"Authorization": {"Bearer " + token}}
	id, err := s.identify(check)
	if err != nil {
		fail(http.StatusUnauthorized, "Unknown token.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.opts.Logger.Info("server: ui sign-in", "who", id.Who, "role", id.Role.String())
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// uiSignout forgets the session cookie.
func (s *Server) uiSignout(w http.ResponseWriter, r *http.Request) {
	if err := s.sameOrigin(r); err != nil {
		s.uiFail(w, r, identity{}, http.StatusForbidden, err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}
