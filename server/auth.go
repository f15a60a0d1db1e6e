package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Role is what a credential may do.
type Role int

const (
	// Read may see everything: procedures, locks, nodes, the store, the
	// audit log, metrics.
	Read Role = 1
	// Operate may also act: submit, abort, bypass, ack, bulk abort, pprof.
	Operate Role = 2
)

func (r Role) String() string {
	switch r {
	case Read:
		return "read"
	case Operate:
		return "operate"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole parses "read" or "operate".
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return Read, nil
	case "operate":
		return Operate, nil
	}
	return 0, fmt.Errorf("server: unknown role %q (read, operate)", s)
}

// Token is a bearer token: Name is who it is (recorded as "who" in the
// audit log and the logs; never the secret), Secret what the client sends
// (Authorization: Bearer <Secret>), Role what it may do.
type Token struct {
	Name   string
	Secret string
	Role   Role
}

// identity is who made a request and what they may do.
type identity struct {
	Who  string
	Role Role
}

// Errors of identify.
var (
	errNoCredentials  = errors.New("no credentials: send Authorization: Bearer <token>")
	errBadCredentials = errors.New("unknown token")
)

// hashedToken keeps a token's secret as its SHA-256: compared in constant
// time, and of one length whatever the secret's.
type hashedToken struct {
	name string
	sum  [sha256.Size]byte
	role Role
}

func (s *Server) setTokens(tokens []Token) error {
	seen := map[string]bool{}
	for _, t := range tokens {
		switch {
		case t.Name == "" || t.Secret == "":
			return errors.New("server: a token needs a name and a secret")
		case t.Role != Read && t.Role != Operate:
			return fmt.Errorf("server: token %q: role must be Read or Operate", t.Name)
		case len(t.Secret) < 16:
			return fmt.Errorf("server: token %q: secret shorter than 16 bytes", t.Name)
		case seen[t.Secret]:
			return fmt.Errorf("server: token %q: secret given twice", t.Name)
		}
		seen[t.Secret] = true
		s.hashed = append(s.hashed, hashedToken{name: t.Name, sum: sha256.Sum256([]byte(t.Secret)), role: t.Role})
	}
	return nil
}

// open reports whether the server checks no credentials at all.
func (s *Server) open() bool { return len(s.hashed) == 0 && len(s.opts.ClientCerts) == 0 }

// identify returns who sent r: a verified client certificate named in
// ClientCerts, else a bearer token (the Authorization header, or the UI's
// session cookie), compared in constant time against every token.
func (s *Server) identify(r *http.Request) (identity, error) {
	if s.open() {
		return identity{Who: "local", Role: Operate}, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if role, ok := s.opts.ClientCerts[cn]; ok {
			return identity{Who: "cert:" + cn, Role: role}, nil
		}
	}
	secret, ok := bearer(r)
	if !ok {
		return identity{}, errNoCredentials
	}
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range s.hashed {
		if subtle.ConstantTimeCompare(sum[:], s.hashed[i].sum[:]) == 1 {
			found = i // no early exit: every token is compared
		}
	}
	if found < 0 {
		return identity{}, errBadCredentials
	}
	return identity{Who: s.hashed[found].name, Role: s.hashed[found].role}, nil
}

// sessionCookie is the UI's cookie holding the token a person signed in
// with (HttpOnly, SameSite=Strict).
const sessionCookie = "procyon_token"

func bearer(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", false
		}
		return tok, true
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		return c.Value, true
	}
	return "", false
}

// CheckListen refuses to serve opts on addr off loopback without
// credentials (Tokens or ClientCerts): bind to 127.0.0.1 or ::1, or
// configure tokens. Programs call it before they listen.
func CheckListen(addr string, opts Options) error {
	if len(opts.Tokens) > 0 || len(opts.ClientCerts) > 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("server: refusing to listen on %q without credentials: bind to loopback (127.0.0.1) or give tokens or client certificates", addr)
}
