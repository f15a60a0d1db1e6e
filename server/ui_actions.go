package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// The UI's actions: form posts (uiOperate checked origin and role). Each
// answers with a redirect to the page that shows the result, or with the
// page again and the error in words.

// uiStatus maps an engine error to the HTTP status the UI answers with.
func uiStatus(err error) int {
	var bad *badArgsError
	switch {
	case errors.Is(err, procedure.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, procedure.ErrFinished), errors.Is(err, procedure.ErrAbortRefused),
		errors.Is(err, procedure.ErrQuarantined), errors.Is(err, procedure.ErrNotFinished):
		return http.StatusConflict
	case errors.As(err, &bad), errors.Is(err, errNotSubmittable), errors.Is(err, procedure.ErrUnknownType):
		return http.StatusBadRequest
	case errors.Is(err, procedure.ErrNotStarted):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// uiSubmit submits a procedure from the procedures page's form and shows
// it; a refused submission shows the page again with the form as it was.
func (s *Server) uiSubmit(w http.ResponseWriter, r *http.Request, id identity) {
	form := submitForm{Type: r.PostFormValue("type"), Args: r.PostFormValue("args"),
		Nonce: strings.TrimSpace(r.PostFormValue("nonce")), Timeout: strings.TrimSpace(r.PostFormValue("timeout"))}
	pid, err := s.submitForm(r, id, form)
	if err != nil {
		s.proceduresPage(w, r, id, uiStatus(err), form, "Submit: "+err.Error())
		return
	}
	s.opts.Logger.Info("server: ui submit", "who", id.Who, "type", form.Type, "id", pid)
	http.Redirect(w, r, procURL(pid), http.StatusSeeOther)
}

func (s *Server) submitForm(r *http.Request, id identity, form submitForm) (procedure.ID, error) {
	t, ok := s.types[form.Type]
	if !ok {
		return 0, fmt.Errorf("%w: %q", errNotSubmittable, form.Type)
	}
	opts := procedure.SubmitOptions{Nonce: form.Nonce, Submitter: id.Who}
	if form.Timeout != "" {
		d, err := time.ParseDuration(form.Timeout)
		if err != nil || d <= 0 {
			return 0, &badArgsError{typ: form.Type, err: fmt.Errorf("timeout: want a positive Go duration such as 30s: %q", form.Timeout)}
		}
		opts.Timeout = d
	}
	args := strings.TrimSpace(form.Args)
	if args != "" && !json.Valid([]byte(args)) {
		return 0, &badArgsError{typ: form.Type, err: errors.New("not valid JSON")}
	}
	return t.submit(r.Context(), json.RawMessage(args), opts)
}

func procURL(id procedure.ID) string {
	return "/ui/procedures/" + strconv.FormatUint(uint64(id), 10)
}

// reasonAction runs abort or bypass (act) on procedure {id} with the
// form's reason, recording id.Who.
func (s *Server) reasonAction(w http.ResponseWriter, r *http.Request, id identity, kind string,
	act func(pid procedure.ID, who, why string) error) {
	pid, err := parseID(r.PathValue("id"))
	if err != nil {
		s.uiFail(w, r, id, http.StatusNotFound, err.Error())
		return
	}
	why := strings.TrimSpace(r.PostFormValue("why"))
	if why == "" {
		s.actionFailed(w, r, id, pid, http.StatusBadRequest, "A reason is required to "+kind+".")
		return
	}
	if err := act(pid, id.Who, why); err != nil {
		s.actionFailed(w, r, id, pid, uiStatus(err), kind+" refused: "+err.Error())
		return
	}
	s.opts.Logger.Info("server: ui "+kind, "who", id.Who, "id", pid, "why", why)
	http.Redirect(w, r, procURL(pid)+"?done="+kind, http.StatusSeeOther)
}

// actionFailed shows procedure pid's page with msg (or the error page if
// it is gone).
func (s *Server) actionFailed(w http.ResponseWriter, r *http.Request, id identity, pid procedure.ID, status int, msg string) {
	d, err := s.detail(r.Context(), pid)
	if err != nil {
		s.uiFail(w, r, id, status, msg)
		return
	}
	dd := detailData{ProcedureDetail: d, Tree: nestTree(d.Tree), Timeline: timelineOf(d.Created, d.History)}
	s.page(w, status, "procedure", id, uiPage{Title: "Procedure " + strconv.FormatUint(uint64(pid), 10),
		Nav: "procedures", Error: msg, Data: dd})
}

func (s *Server) uiAbort(w http.ResponseWriter, r *http.Request, id identity) {
	s.reasonAction(w, r, id, "abort", func(pid procedure.ID, who, why string) error {
		return s.e.Abort(r.Context(), pid, who, why)
	})
}

func (s *Server) uiBypass(w http.ResponseWriter, r *http.Request, id identity) {
	s.reasonAction(w, r, id, "bypass", func(pid procedure.ID, who, why string) error {
		return s.e.Bypass(r.Context(), pid, who, why)
	})
}

func (s *Server) uiAck(w http.ResponseWriter, r *http.Request, id identity) {
	pid, err := parseID(r.PathValue("id"))
	if err != nil {
		s.uiFail(w, r, id, http.StatusNotFound, err.Error())
		return
	}
	if err := s.e.Ack(r.Context(), pid); err != nil {
		s.actionFailed(w, r, id, pid, uiStatus(err), "ack refused: "+err.Error())
		return
	}
	http.Redirect(w, r, procURL(pid)+"?done=ack", http.StatusSeeOther)
}

// Bulk abort's modes (the button pressed).
const (
	bulkSelected = "selected" // abort the procedures ticked
	bulkDryRun   = "dry-run"  // list the roots the filter matches
	bulkMatching = "matching" // abort the roots the filter matches
)

// bulkLimit bounds the roots one bulk abort of a filter aborts.
const bulkLimit = 100

// bulkData is the bulk abort's answer page.
type bulkData struct {
	DryRun bool
	Filter url.Values // the filter (matching modes)
	Query  string     // Filter as a query string
	Why    string
	Rows   []BulkOutcome
	More   bool
}

// uiBulkAbort aborts the ticked procedures (mode "selected"), or lists
// (mode "dry-run") or aborts (mode "matching") the unfinished roots the
// posted filter matches, at most bulkLimit of them.
func (s *Server) uiBulkAbort(w http.ResponseWriter, r *http.Request, id identity) {
	if err := r.ParseForm(); err != nil {
		s.uiFail(w, r, id, http.StatusBadRequest, "Bad form: "+err.Error())
		return
	}
	mode, why := r.PostForm.Get("mode"), strings.TrimSpace(r.PostForm.Get("why"))
	filter := uiFilter(r.PostForm)
	filter.Del("before")
	d := bulkData{DryRun: mode == bulkDryRun, Filter: filter, Query: filter.Encode(), Why: why}
	var targets []procedure.Info
	switch mode {
	case bulkSelected:
		for _, v := range r.PostForm["id"] {
			pid, err := parseID(v)
			if err != nil {
				s.uiFail(w, r, id, http.StatusBadRequest, "Selection: "+err.Error())
				return
			}
			in, err := s.e.Get(pid)
			if err != nil {
				_, body := errorOf(err)
				d.Rows = append(d.Rows, BulkOutcome{ID: pid, Outcome: body.Code, Message: body.Message})
				continue
			}
			targets = append(targets, in)
		}
		if len(targets) == 0 && len(d.Rows) == 0 {
			s.uiFail(w, r, id, http.StatusBadRequest, "Nothing selected: tick the procedures to abort.")
			return
		}
	case bulkDryRun, bulkMatching:
		q, _, err := parseQuery(filter)
		if err != nil {
			s.uiFail(w, r, id, http.StatusBadRequest, "Filter: "+err.Error())
			return
		}
		targets, d.More = s.bulkRoots(q, bulkLimit)
	default:
		s.uiFail(w, r, id, http.StatusBadRequest, fmt.Sprintf("Unknown bulk action %q.", mode))
		return
	}
	if !d.DryRun && why == "" {
		s.uiFail(w, r, id, http.StatusBadRequest, "A reason is required to abort.")
		return
	}
	for _, in := range targets {
		if d.DryRun {
			d.Rows = append(d.Rows, dryRunOutcome(in))
		} else {
			d.Rows = append(d.Rows, s.abortOne(r, id, in, why))
		}
	}
	s.page(w, http.StatusOK, "bulk", id, uiPage{Title: "Bulk abort", Nav: "procedures", Data: d})
}
