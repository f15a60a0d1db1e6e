package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/procyon-dev/procyon/procedure"
)

// apiError is a refusal the handlers decide themselves, with its status
// and stable code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: CodeBadRequest, msg: fmt.Sprintf(format, args...)}
}

// errorOf maps err to its status and body: the handlers' own refusals,
// the body limit, and the engine's sentinels.
func errorOf(err error) (int, Error) {
	var ae *apiError
	var tooLarge *http.MaxBytesError
	var badArgs *badArgsError
	switch {
	case errors.As(err, &ae):
		return ae.status, Error{Code: ae.code, Message: ae.msg}
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, Error{Code: CodeTooLarge, Message: fmt.Sprintf("request body over %d bytes", tooLarge.Limit)}
	case errors.As(err, &badArgs), errors.Is(err, procedure.ErrUnknownType):
		return http.StatusBadRequest, Error{Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, procedure.ErrNotFound):
		return http.StatusNotFound, Error{Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, procedure.ErrAbortRefused), errors.Is(err, procedure.ErrFinished),
		errors.Is(err, procedure.ErrNotFinished), errors.Is(err, procedure.ErrQuarantined):
		return http.StatusConflict, Error{Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, procedure.ErrNotStarted), errors.Is(err, procedure.ErrEngineFailed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, Error{Code: CodeUnavailable, Message: err.Error()}
	}
	return http.StatusInternalServerError, Error{Code: CodeInternal, Message: err.Error()}
}

// fail writes err as an Error body. Internal errors are logged.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorOf(err)
	switch status {
	case http.StatusInternalServerError:
		s.opts.Logger.Error("server: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="procyon"`)
	}
	s.writeJSON(w, status, body)
}

// writeJSON writes v as the JSON body of a status answer.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.opts.Logger.Debug("server: writing an answer", "err", err)
	}
}

// decodeBody decodes r's body, at most Options.MaxBody bytes, strictly
// into v: one JSON value, no unknown field.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return bodyError(err)
	}
	return nil
}

// decodeEmpty checks that a body, if any, is an empty JSON object.
func (s *Server) decodeEmpty(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
	b, err := io.ReadAll(body)
	if err != nil {
		return bodyError(err)
	}
	if len(b) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return s.decodeBody(w, r, &struct{}{})
}

func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return err
	case errors.Is(err, io.EOF):
		return badRequest("empty body: want a JSON object")
	}
	return badRequest("body: %v", err)
}
