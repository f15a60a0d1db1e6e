package tablestore

import (
	"encoding/json"
	"net/http"
)

// Row is a row as the row API carries it.
type Row struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

// PutRequest writes rows into a region (POST /ts/v1/rows/put on the
// region's server). Every key must fall in the region.
type PutRequest struct {
	Region string `json:"region"`
	Rows   []Row  `json:"rows"`
}

// PutResponse: the rows are durable.
type PutResponse struct{}

// GetRequest reads one row (POST /ts/v1/rows/get).
type GetRequest struct {
	Region string `json:"region"`
	Key    []byte `json:"key"`
}

// GetResponse is the row's value, if Found.
type GetResponse struct {
	Value []byte `json:"value,omitempty"`
	Found bool   `json:"found"`
}

// ScanRequest reads the rows of a region from From (inclusive) to To
// (exclusive; empty: to the region's end), at most Limit (0: all).
type ScanRequest struct {
	Region string `json:"region"`
	From   []byte `json:"from,omitempty"`
	To     []byte `json:"to,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// ScanResponse is the rows, in key order.
type ScanResponse struct {
	Rows []Row `json:"rows"`
}

// ServedRegions is the answer of GET /ts/v1/regions on a region server:
// the ids of the regions it serves, sorted.
type ServedRegions struct {
	Server  string   `json:"server"`
	Regions []string `json:"regions"`
}

// ErrorBody is the JSON body of every error answer of the table store's
// HTTP APIs: a stable code and a message for people.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON answers 200 with v as JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// WriteError answers status with an ErrorBody.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Code: code, Message: msg})
}

// AdminRequest is the body of POST /ts/v1/admin/{op} on the master.
type AdminRequest struct {
	Nonce string          `json:"nonce,omitempty"`
	Args  json.RawMessage `json:"args"`
}

// AdminResponse names the procedure started (or, for a nonce seen
// before, the one it started).
type AdminResponse struct {
	ID uint64 `json:"id"`
}

// ProcedureStatus is the answer of GET /ts/v1/procedures/{id}.
type ProcedureStatus struct {
	ID     uint64 `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	State  string `json:"state"`
	Done   bool   `json:"done"`
	Error  string `json:"error,omitempty"`
}

// TableInfo is the answer of GET /ts/v1/tables/{name}: a table and its
// regions in key order, with where they are served.
type TableInfo struct {
	Name    string       `json:"name"`
	ID      uint64       `json:"id"`
	State   string       `json:"state"`
	Regions []RegionInfo `json:"regions"`
}

// RegionInfo is a region, its state and its server.
type RegionInfo struct {
	RegionDesc
	State  string `json:"state"`
	Server string `json:"server,omitempty"`
	Addr   string `json:"addr,omitempty"` // the server's address, when the region is open
}
