package regionserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
)

// maxRowsBody bounds a row request's body.
const maxRowsBody = 8 << 20

// rowRoutes adds the row API: POST /ts/v1/rows/put, /get and /scan, each
// with a JSON body naming the region (tablestore.PutRequest, GetRequest,
// ScanRequest). A region the server does not serve is 404 with the code
// "not_serving": the client locates it again. GET /ts/v1/regions lists
// the regions the server serves (tablestore.ServedRegions): what the
// process tests check assignments against.
func (s *Server) rowRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /ts/v1/rows/put", s.handlePut)
	mux.HandleFunc("POST /ts/v1/rows/get", s.handleGet)
	mux.HandleFunc("POST /ts/v1/rows/scan", s.handleScan)
	mux.HandleFunc("GET /ts/v1/regions", func(w http.ResponseWriter, r *http.Request) {
		ids := s.Regions()
		slices.Sort(ids)
		tablestore.WriteJSON(w, tablestore.ServedRegions{Server: s.opts.Name, Regions: ids})
	})
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	var req tablestore.PutRequest
	if !decode(w, r, &req) {
		return
	}
	sv, ok := s.servedFor(w, req.Region)
	if !ok {
		return
	}
	rows := make([]region.Row, len(req.Rows))
	for i, row := range req.Rows {
		if !sv.desc.Contains(row.Key) || len(row.Key) == 0 {
			tablestore.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("key %q is not in region %s", row.Key, req.Region))
			return
		}
		rows[i] = region.Row{Key: row.Key, Value: row.Value}
	}
	if err := sv.r.Put(r.Context(), rows...); err != nil {
		tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	tablestore.WriteJSON(w, tablestore.PutResponse{})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	var req tablestore.GetRequest
	if !decode(w, r, &req) {
		return
	}
	sv, ok := s.servedFor(w, req.Region)
	if !ok {
		return
	}
	v, found, err := sv.r.Get(req.Key)
	if err != nil {
		tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	tablestore.WriteJSON(w, tablestore.GetResponse{Value: v, Found: found})
}

func (s *Server) handleScan(w http.ResponseWriter, r *http.Request) {
	var req tablestore.ScanRequest
	if !decode(w, r, &req) {
		return
	}
	sv, ok := s.servedFor(w, req.Region)
	if !ok {
		return
	}
	var resp tablestore.ScanResponse
	for row, err := range sv.r.Scan(req.From, req.To) {
		if err != nil {
			tablestore.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		resp.Rows = append(resp.Rows, tablestore.Row{Key: row.Key, Value: row.Value})
		if req.Limit > 0 && len(resp.Rows) == req.Limit {
			break
		}
	}
	tablestore.WriteJSON(w, resp)
}

// servedFor returns the open region, or answers 404 not_serving.
func (s *Server) servedFor(w http.ResponseWriter, id string) (*served, bool) {
	sv, err := s.region(id)
	if errors.Is(err, errNotServing) {
		tablestore.WriteError(w, http.StatusNotFound, "not_serving", err.Error())
		return nil, false
	}
	return sv, err == nil
}

// decode reads a strict JSON body into v, or answers 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRowsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tablestore.WriteError(w, http.StatusBadRequest, "bad_request", "bad request body: "+err.Error())
		return false
	}
	if dec.More() {
		tablestore.WriteError(w, http.StatusBadRequest, "bad_request", "bad request body: data after the JSON value")
		return false
	}
	return true
}
