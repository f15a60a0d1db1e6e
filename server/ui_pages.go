package server

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/procyon-dev/procyon/procedure"
)

// The UI's pages (GET): each builds its data from the model (model.go)
// and renders it.

// procsData is the procedures page's, and its rows fragment's.
type procsData struct {
	Filter   url.Values // the filter as the visitor gave it (the form's values)
	Clean    url.Values // the filter, cleaned (no cursor)
	Query    string     // Clean as a query string
	Poll     string     // the rows fragment's URL (with the cursor)
	List     ProcedureList
	Older    string // the next page's URL ("": last page)
	Paged    bool   // this is not the first page
	Statuses []string
	Types    []string // every type the engine knows of
	Submit   submitForm
}

// submitForm is the submit form's values.
type submitForm struct {
	Types   []string // the submittable types
	Type    string
	Args    string
	Nonce   string
	Timeout string
}

// uiFilterKeys are the list's query parameters the UI's filter form sets.
var uiFilterKeys = []string{"status", "type", "error", "root", "before", "limit"}

// uiFilter keeps the filter parameters of v that are set; a status given
// several times (the form's checkboxes) becomes the list's comma form.
func uiFilter(v url.Values) url.Values {
	out := url.Values{}
	for _, k := range uiFilterKeys {
		var vals []string
		for _, x := range v[k] {
			if x = strings.TrimSpace(x); x != "" {
				vals = append(vals, x)
			}
		}
		if len(vals) > 0 {
			out.Set(k, strings.Join(vals, ","))
		}
	}
	return out
}

// procsFor reads the filter of v and lists its page; err is the filter's
// error, in words.
func (s *Server) procsFor(v url.Values) (procsData, error) {
	f := uiFilter(v)
	d := procsData{Filter: v, Statuses: statusList(), List: ProcedureList{Procedures: []Procedure{}}}
	d.Paged = f.Get("before") != ""
	d.Poll = "/ui/procedures/list?" + f.Encode()
	q, limit, err := parseQuery(f)
	f.Del("before")
	d.Clean, d.Query = f, f.Encode()
	if err != nil {
		return d, err
	}
	d.List = s.list(q, limit)
	if d.List.Next != "" {
		older := url.Values{}
		for k, v := range f {
			older[k] = v
		}
		older.Set("before", d.List.Next)
		d.Older = "/ui/?" + older.Encode()
	}
	return d, nil
}

func statusList() []string {
	return []string{"runnable", "waiting", "suspended", "failed", "succeeded", "rolled-back"}
}

// uiTypeNames returns the engine's types, and the submittable ones.
func (s *Server) uiTypeNames() (all, submittable []string) {
	for name, ti := range s.engineInfo().Types {
		all = append(all, name)
		if ti.Submittable {
			submittable = append(submittable, name)
		}
	}
	slices.Sort(all)
	slices.Sort(submittable)
	return all, submittable
}

func (s *Server) uiProcedures(w http.ResponseWriter, r *http.Request, id identity) {
	s.proceduresPage(w, r, id, http.StatusOK, submitForm{}, "")
}

// proceduresPage renders the procedures page with the submit form's
// values and an error (a failed submission).
func (s *Server) proceduresPage(w http.ResponseWriter, r *http.Request, id identity, status int, form submitForm, msg string) {
	d, err := s.procsFor(r.URL.Query())
	if err != nil && msg == "" {
		status, msg = http.StatusBadRequest, "Filter: "+err.Error()
	}
	d.Types, form.Types = s.uiTypeNames()
	d.Submit = form
	s.page(w, status, "procedures", id, uiPage{Title: "Procedures", Nav: "procedures", Error: msg, Data: d})
}

// uiProcedureRows is the procedures table, polled by the page.
func (s *Server) uiProcedureRows(w http.ResponseWriter, r *http.Request, id identity) {
	d, err := s.procsFor(r.URL.Query())
	p := uiPage{Data: d, Who: id.Who, Operate: id.Role == Operate}
	if err != nil {
		p.Error = "Filter: " + err.Error()
	}
	s.render(w, http.StatusOK, "procedures", "rows", p)
}

// detailData is a procedure page's.
type detailData struct {
	ProcedureDetail
	Tree     []*treeItem
	Timeline timeline
	Finished bool
	CanAck   bool
	Notice   string
}

// procDetail builds procedure {id}'s page data; an unknown id is a 404.
func (s *Server) procDetail(r *http.Request) (detailData, int, error) {
	pid, err := parseID(r.PathValue("id"))
	if err != nil {
		return detailData{}, http.StatusNotFound, err
	}
	d, err := s.detail(r.Context(), pid)
	if err != nil {
		if errors.Is(err, procedure.ErrNotFound) {
			return detailData{}, http.StatusNotFound, errors.New("no procedure " + strconv.FormatUint(uint64(pid), 10) + " (never submitted, or its result expired)")
		}
		return detailData{}, http.StatusInternalServerError, err
	}
	out := detailData{ProcedureDetail: d, Tree: nestTree(d.Tree), Timeline: timelineOf(d.Created, d.History)}
	out.Finished = d.Status == "succeeded" || d.Status == "rolled-back"
	out.CanAck = out.Finished && d.Parent == 0 && d.Acked == nil
	return out, http.StatusOK, nil
}

// uiNotices are the messages an action's redirect asks the page to show.
var uiNotices = map[string]string{
	"abort":  "Abort recorded: the tree rolls back.",
	"bypass": "Bypass recorded.",
	"ack":    "Result acknowledged.",
}

func (s *Server) uiProcedure(w http.ResponseWriter, r *http.Request, id identity) {
	d, status, err := s.procDetail(r)
	if err != nil {
		s.uiFail(w, r, id, status, err.Error())
		return
	}
	s.page(w, status, "procedure", id, uiPage{Title: "Procedure " + strconv.FormatUint(uint64(d.ID), 10),
		Nav: "procedures", Notice: uiNotices[r.URL.Query().Get("done")], Data: d})
}

// uiProcedureLive is the polled part of a procedure's page.
func (s *Server) uiProcedureLive(w http.ResponseWriter, r *http.Request, id identity) {
	d, status, err := s.procDetail(r)
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	s.render(w, http.StatusOK, "procedure", "live", uiPage{Data: d, Who: id.Who, Operate: id.Role == Operate})
}

// locksData is the locks page's.
type locksData struct {
	Locks  []LockRow
	Events []EventRow
	Timers []TimerRow
}

func (s *Server) uiLocks(w http.ResponseWriter, r *http.Request, id identity) {
	ev, tm := s.waits()
	s.page(w, http.StatusOK, "locks", id, uiPage{Title: "Locks and waits", Nav: "locks",
		Data: locksData{Locks: s.locks(), Events: ev, Timers: tm}})
}

// nodesData is the nodes page's: the remote nodes and the barrier
// procedures in progress.
type nodesData struct {
	Dispatcher  bool
	Nodes       []Node
	Coordinator bool
	Barriers    []Barrier
}

func (s *Server) uiNodes(w http.ResponseWriter, r *http.Request, id identity) {
	s.page(w, http.StatusOK, "nodes", id, uiPage{Title: "Nodes", Nav: "nodes",
		Data: nodesData{Dispatcher: s.opts.Dispatcher != nil, Nodes: s.nodes(),
			Coordinator: s.opts.Barriers != nil, Barriers: s.barriers().Barriers}})
}

// engineData is the store and engine page's.
type engineData struct {
	Store  StoreInfo
	Engine EngineInfo
	Types  []typeRow
	Charts []chart
	Status []statusCount
}

type typeRow struct {
	Name string
	TypeInfo
}

type statusCount struct {
	Status string
	N      int
}

func (s *Server) engineData() engineData {
	d := engineData{Store: s.storeInfo(), Engine: s.engineInfo(), Charts: charts(s.sampler.samples())}
	for name, ti := range d.Engine.Types {
		d.Types = append(d.Types, typeRow{Name: name, TypeInfo: ti})
	}
	slices.SortFunc(d.Types, func(a, b typeRow) int { return strings.Compare(a.Name, b.Name) })
	for _, st := range statusList() {
		d.Status = append(d.Status, statusCount{Status: st, N: d.Engine.ByStatus[st]})
	}
	return d
}

func (s *Server) uiEngine(w http.ResponseWriter, r *http.Request, id identity) {
	s.page(w, http.StatusOK, "engine", id, uiPage{Title: "Store and engine", Nav: "engine", Data: s.engineData()})
}

// uiEngineLive is the polled part of the engine page.
func (s *Server) uiEngineLive(w http.ResponseWriter, r *http.Request, id identity) {
	s.render(w, http.StatusOK, "engine", "live", uiPage{Data: s.engineData()})
}

// auditData is the audit page's.
type auditData struct {
	List  AuditList
	Older string
}

func (s *Server) uiAudit(w http.ResponseWriter, r *http.Request, id identity) {
	var before uint64
	if b := r.URL.Query().Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			s.uiFail(w, r, id, http.StatusBadRequest, "before: not a sequence number: "+strconv.Quote(b))
			return
		}
		before = n
	}
	d := auditData{List: s.audit(before, defaultLimit)}
	if d.List.Next != "" {
		d.Older = "/ui/audit?before=" + d.List.Next
	}
	s.page(w, http.StatusOK, "audit", id, uiPage{Title: "Audit log", Nav: "audit", Data: d})
}
