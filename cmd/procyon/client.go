package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/server"
)

// The client verbs (proc ..., locks, nodes, barriers, audit) call a running server's
// API (package server) with server.Client. This file holds what they
// share: the connection flags and the output.

// Environment variables the client verbs read when the flag is not given.
const (
	envEndpoint = "PROCYON_ENDPOINT"
	envToken    = "PROCYON_TOKEN"
)

const defaultEndpoint = "http://127.0.0.1:7070"

// clientFlags are the flags every client verb has.
type clientFlags struct {
	endpoint  *string
	token     *string
	tokenFile *string
	output    *string
	caFile    *string
	certFile  *string
	keyFile   *string
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	return &clientFlags{
		endpoint:  fs.String("endpoint", "", "the server's base URL (default $"+envEndpoint+", else "+defaultEndpoint+")"),
		token:     fs.String("token", "", "bearer token (visible to other users in the process list: prefer --token-file or $"+envToken+"); a flag wins over $"+envToken),
		tokenFile: fs.String("token-file", "", "file holding the bearer token (its first line that is not blank or a # comment); a flag wins over $"+envToken),
		output:    fs.String("output", "table", "output format: table or json"),
		caFile:    fs.String("ca-file", "", "PEM file of the CA that signed an https server's certificate (default: the system's)"),
		certFile:  fs.String("cert-file", "", "PEM client certificate for mutual TLS (with --key-file)"),
		keyFile:   fs.String("key-file", "", "PEM key of --cert-file"),
	}
}

// jsonOut reports whether --output json was asked for.
func (f *clientFlags) jsonOut() bool { return *f.output == "json" }

// client checks the flags and returns the API client they describe.
func (f *clientFlags) client() (*server.Client, error) {
	if *f.output != "table" && *f.output != "json" {
		return nil, usagef("--output must be table or json, got %q", *f.output)
	}
	endpoint := *f.endpoint
	if endpoint == "" {
		endpoint = os.Getenv(envEndpoint)
	}
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		return nil, usagef("--endpoint must be an http:// or https:// URL, got %q", endpoint)
	}
	token, err := f.bearer()
	if err != nil {
		return nil, err
	}
	hc, err := f.httpClient()
	if err != nil {
		return nil, err
	}
	return &server.Client{Endpoint: endpoint, Token: token, HTTP: hc}, nil
}

// bearer returns the token: --token, else --token-file, else $PROCYON_TOKEN.
func (f *clientFlags) bearer() (string, error) {
	switch {
	case *f.token != "" && *f.tokenFile != "":
		return "", usagef("give --token or --token-file, not both")
	case *f.token != "":
		return *f.token, nil
	case *f.tokenFile != "":
		return readTokenFile(*f.tokenFile)
	}
	return os.Getenv(envToken), nil
}

// readTokenFile returns the first line of path that is neither blank nor
// a comment. The error never quotes the file's content.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("token file %s holds no token", path)
}

// httpClient returns the HTTP client for the TLS flags.
func (f *clientFlags) httpClient() (*http.Client, error) {
	if *f.caFile == "" && *f.certFile == "" && *f.keyFile == "" {
		return &http.Client{}, nil
	}
	if (*f.certFile == "") != (*f.keyFile == "") {
		return nil, usagef("--cert-file and --key-file go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *f.caFile != "" {
		pem, err := os.ReadFile(*f.caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", *f.caFile)
		}
	}
	if *f.certFile != "" {
		cert, err := tls.LoadX509KeyPair(*f.certFile, *f.keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

// apiFailure makes a server's error answer one line (its code and its
// message) and exit code 1; other errors (the server unreachable) pass.
func apiFailure(err error) error {
	var ae *server.APIError
	if errors.As(err, &ae) {
		msg := strings.Join(strings.Fields(ae.Body.Message), " ")
		return &exitError{code: 1, err: fmt.Errorf("%s: %s", ae.Body.Code, msg)}
	}
	return err
}

// parseProcID parses a procedure id argument.
func parseProcID(s string) (procedure.ID, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usagef("not a procedure id: %q", s)
	}
	return procedure.ID(n), nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns the writer of a table's aligned columns (separate
// them with tabs; Flush at the end).
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
}

// ago formats how long before now t was ("-" for a zero time).
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return shortDuration(now.Sub(t))
}

// shortDuration formats d to a readable precision: 850ms, 12.3s, 4m05s,
// 3h12m, 2d04h.
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// stamp formats t for a table: UTC, to the second ("-" for zero).
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// clip shortens s to n runes for a table cell, on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}

// withClient returns the run function of a client verb: it makes the
// client from cf's flags, then runs do.
func withClient(cf *clientFlags, do func(ctx context.Context, e *env, c *server.Client, args []string) error) runFunc {
	return func(ctx context.Context, e *env, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		return do(ctx, e, c, args)
	}
}

// withProc is withClient for a verb on one procedure, whose id is its
// argument.
func withProc(cf *clientFlags, do func(ctx context.Context, e *env, c *server.Client, id procedure.ID) error) runFunc {
	return withClient(cf, func(ctx context.Context, e *env, c *server.Client, args []string) error {
		id, err := parseProcID(args[0])
		if err != nil {
			return err
		}
		return do(ctx, e, c, id)
	})
}
