package master

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/metrics"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
	"github.com/procyon-dev/procyon/server"
)

// Handler serves the master's admin API and the dispatcher's service to
// region servers, on one mux:
//
//	POST /ts/v1/admin/{op}          start create-table, disable-table, enable-table,
//	                                delete-table, split-region or snapshot-table:
//	                                body {"nonce": "...", "args": {the procedure's data}}
//	                                -> {"id": N}
//	GET  /ts/v1/procedures/{id}     a procedure's status; ?wait=10s waits for it to finish
//	GET  /ts/v1/tables/{name}       a table and its regions, with their servers' addresses
//	GET  /ts/v1/snapshots/{name}    a snapshot's record
//	GET  /ts/v1/servers             the region servers' liveness
//	GET  /metrics                   Prometheus metrics of the engine, store and dispatcher (package metrics)
//	POST /remote/v1/...             the dispatcher (package remote)
//
// Errors are tablestore.ErrorBody with a stable code: bad_request (400),
// not_found (404), conflict (409), unavailable (503).
func (m *Master) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/remote/", remote.MasterHandler(m.disp.Service(), remote.HTTPOptions{}))
	mux.HandleFunc("POST /ts/v1/admin/{op}", m.handleAdmin)
	mux.HandleFunc("GET /ts/v1/procedures/{id}", m.handleProcedure)
	mux.HandleFunc("GET /ts/v1/tables/{name}", m.handleTable)
	mux.HandleFunc("GET /ts/v1/snapshots/{name}", m.handleSnapshot)
	mux.HandleFunc("GET /ts/v1/servers", func(w http.ResponseWriter, r *http.Request) {
		tablestore.WriteJSON(w, m.disp.Nodes())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

// newRegistry returns the registry of the master's metrics: the engine's,
// the store's and the dispatcher's (package metrics).
func (m *Master) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(metrics.Options{Engine: m.engine, Store: m.store, Dispatcher: m.disp}))
	return reg
}

// Metrics returns the registry /metrics serves: serve it elsewhere (a
// server.Server's Gatherer), or register more collectors on it.
func (m *Master) Metrics() *prometheus.Registry { return m.reg }

// SubmitTypes returns the admin procedure types (those the admin API
// starts) for a server.Server's Options.Types: an operator submits them
// with JSON arguments from the server's API or UI.
func (m *Master) SubmitTypes() []server.SubmitType {
	return []server.SubmitType{
		server.JSONType(m.create), server.JSONType(m.disable), server.JSONType(m.enable),
		server.JSONType(m.drop), server.JSONType(m.split), server.JSONType(m.snapshot),
	}
}

// adminOps are the procedure types the admin API may start.
var adminOps = map[string]bool{
	"create-table": true, "disable-table": true, "enable-table": true,
	"delete-table": true, "split-region": true, "snapshot-table": true,
}

func (m *Master) handleAdmin(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	if !adminOps[op] {
		tablestore.WriteError(w, http.StatusNotFound, "not_found", "no admin operation "+strconv.Quote(op))
		return
	}
	var req tablestore.AdminRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() || len(req.Args) == 0 {
		tablestore.WriteError(w, http.StatusBadRequest, "bad_request", "body must be {\"nonce\": ..., \"args\": {...}}")
		return
	}
	if err := checkArgs(op, req.Args); err != nil {
		tablestore.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	id, err := m.engine.SubmitRaw(r.Context(), op, req.Args, procedure.SubmitOptions{Nonce: req.Nonce, Submitter: "admin-api"})
	if err != nil {
		tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	tablestore.WriteJSON(w, tablestore.AdminResponse{ID: uint64(id)})
}

// checkArgs decodes args strictly as op's data: a misspelt field is an
// error, not a procedure that fails later.
func checkArgs(op string, args json.RawMessage) error {
	var v any
	switch op {
	case "create-table":
		v = &CreateTable{}
	case "disable-table":
		v = &DisableTable{}
	case "enable-table":
		v = &EnableTable{}
	case "delete-table":
		v = &DeleteTable{}
	case "split-region":
		v = &SplitRegion{}
	case "snapshot-table":
		v = &SnapshotTable{}
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("args of " + op + ": " + err.Error())
	}
	return nil
}

func (m *Master) handleProcedure(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		tablestore.WriteError(w, http.StatusBadRequest, "bad_request", "bad procedure id")
		return
	}
	id := procedure.ID(n)
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 || d > time.Minute {
			tablestore.WriteError(w, http.StatusBadRequest, "bad_request", "wait must be a duration up to 1m")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		_, _ = m.engine.Wait(ctx, id)
		cancel()
	}
	in, err := m.engine.Get(id)
	if errors.Is(err, procedure.ErrNotFound) {
		tablestore.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	} else if err != nil {
		tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	st := tablestore.ProcedureStatus{ID: uint64(id), Type: in.Type, Status: in.Status.String(), State: in.StateName, Done: !in.Completed.IsZero()}
	if in.Err != nil {
		st.Error = in.Err.Error()
	}
	tablestore.WriteJSON(w, st)
}

func (m *Master) handleTable(w http.ResponseWriter, r *http.Request) {
	t, rs, err := m.Table(r.PathValue("name"))
	if errors.Is(err, ErrNoTable) {
		tablestore.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	} else if err != nil {
		tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	live := map[string]remote.NodeInfo{}
	for _, n := range m.disp.Nodes() {
		if n.Live {
			live[n.Name] = n
		}
	}
	st := tablestore.TableInfo{Name: t.Name, ID: t.ID, State: string(t.State)}
	for _, reg := range rs {
		ri := tablestore.RegionInfo{RegionDesc: reg.RegionDesc, State: string(reg.State), Server: reg.Server}
		if n, ok := live[reg.Server]; ok && reg.State == RegionOpen && n.Incarnation == reg.Incarnation {
			ri.Addr = n.Addr
		}
		st.Regions = append(st.Regions, ri)
	}
	tablestore.WriteJSON(w, st)
}

func (m *Master) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	s, err := m.Snapshot(r.PathValue("name"))
	if errors.Is(err, ErrNoSnapshot) {
		tablestore.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	} else if err != nil {
		tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	tablestore.WriteJSON(w, s)
}
