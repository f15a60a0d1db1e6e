package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/vfs"
)

// This file is the table store workload and its checks, shared by the
// demo and the process-level crash test: writers that record what the
// store acknowledged, calls that ride out a master or region server being
// killed, and readers of region data from disk.

// tsTransient reports whether err may pass when the call is made again:
// a process that is down or restarting, a region in transition.
func tsTransient(err error) bool {
	var ae *tablestore.APIError
	if errors.As(err, &ae) {
		return ae.Code == "unavailable" || ae.Code == "not_serving"
	}
	return true // transport errors and timeouts: the request may not have arrived
}

// tsRetry calls fn, each attempt bounded by attempt, until it succeeds,
// fails with an answer that will not change, or ctx ends.
func tsRetry(ctx context.Context, attempt time.Duration, fn func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := fn(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case !tsTransient(err):
			return err
		}
		if err := sleepCtx(ctx, 25*time.Millisecond); err != nil {
			return err
		}
	}
}

// tsAdmin starts an admin operation with a nonce, retrying across master
// restarts (the nonce makes a retry return the procedure the first
// attempt started).
func tsAdmin(ctx context.Context, cl *tablestore.Client, op string, args any, nonce string) (uint64, error) {
	var id uint64
	err := tsRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		var err error
		id, err = cl.Admin(ctx, op, args, nonce)
		return err
	})
	return id, err
}

// tsWait waits for procedure id to finish, across master restarts, and
// returns its final status (Error set if it failed).
func tsWait(ctx context.Context, cl *tablestore.Client, id uint64) (tablestore.ProcedureStatus, error) {
	var st tablestore.ProcedureStatus
	err := tsRetry(ctx, 30*time.Second, func(ctx context.Context) error {
		s, err := cl.Wait(ctx, id)
		if s.Done {
			st = s
			return nil
		}
		if err == nil {
			err = fmt.Errorf("procedure %d not done", id)
		}
		return err
	})
	return st, err
}

// tsHTTP is the client of tsGet.
var tsHTTP = &http.Client{Timeout: 10 * time.Second}

// tsGet reads a JSON answer of GET http://addr/path into out, or returns
// a *tablestore.APIError or a transport error.
func tsGet(ctx context.Context, addr, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := tsHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		ae := &tablestore.APIError{Status: resp.StatusCode}
		if json.Unmarshal(body, &ae.ErrorBody) != nil {
			ae.Code, ae.Message = "unavailable", resp.Status
		}
		return ae
	}
	return json.Unmarshal(body, out)
}

// tsProcStatus reads procedure id's status once (no waiting).
func tsProcStatus(ctx context.Context, masterAddr string, id uint64) (tablestore.ProcedureStatus, error) {
	var st tablestore.ProcedureStatus
	err := tsGet(ctx, masterAddr, fmt.Sprintf("/ts/v1/procedures/%d", id), &st)
	return st, err
}

// tsAck is a row a writer wrote and the store acknowledged.
type tsAck struct{ Key, Value string }

// tsWriter writes rows into a table, one Put at a time, each retried
// until the store acknowledges it, and records the acknowledged rows in
// order. Its keys are unique (they carry its name and a counter), so what
// a snapshot holds of them can be checked against that order.
type tsWriter struct {
	name  string
	table string
	cl    *tablestore.Client
	// key returns the n-th row's key: the writer's name is in it.
	key func(n int) string

	mu    sync.Mutex
	acked []tsAck
}

// write puts rows rows, batch at a time, and records them acknowledged.
func (w *tsWriter) write(ctx context.Context, rows, batch int) error {
	for rows > 0 {
		b := min(rows, batch)
		w.mu.Lock()
		next := len(w.acked)
		w.mu.Unlock()
		acks := make([]tsAck, b)
		put := make([]tablestore.Row, b)
		for i := range acks {
			k := w.key(next + i)
			acks[i] = tsAck{Key: k, Value: fmt.Sprintf("%s=%s", w.name, k)}
			put[i] = tablestore.Row{Key: []byte(acks[i].Key), Value: []byte(acks[i].Value)}
		}
		err := tsRetry(ctx, 5*time.Second, func(ctx context.Context) error { return w.cl.Put(ctx, w.table, put...) })
		if err != nil {
			return fmt.Errorf("writer %s: put %s: %w", w.name, acks[0].Key, err)
		}
		w.mu.Lock()
		w.acked = append(w.acked, acks...)
		w.mu.Unlock()
		rows -= b
	}
	return nil
}

// run puts one row at a time until stop is closed (it ends between two
// acknowledged rows, never with one in flight) or ctx ends.
func (w *tsWriter) run(ctx context.Context, stop <-chan struct{}) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if err := w.write(ctx, 1, 1); err != nil {
			return err
		}
	}
}

// count returns how many rows the store has acknowledged.
func (w *tsWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// acks returns the acknowledged rows, in the order they were.
func (w *tsWriter) acks() []tsAck {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

// tsHistory is what a writer had acknowledged when a check looks, and
// how many of those it had when the snapshot being checked was submitted.
type tsHistory struct {
	writer string
	acked  []tsAck
	before int
}

// tsRegionCount counts, over the writers, a region's rows: those in its
// snapshot, those acknowledged, and those acknowledged before the
// snapshot was submitted.
type tsRegionCount struct{ held, acked, before int }

// tsCheckSnapshotRegion checks a region snapshot's rows against the
// writers' histories: restricted to the region's key range, each writer's
// rows in the snapshot are a prefix of its acknowledged rows there (a
// consistent point in time: nothing after a row missing), with the
// acknowledged values, containing every row acknowledged before the
// snapshot was submitted; and there is no other row.
func tsCheckSnapshotRegion(rows map[string]string, desc tablestore.RegionDesc, hs []tsHistory) (tsRegionCount, error) {
	var n tsRegionCount
	for _, h := range hs {
		var in []tsAck
		need := 0
		for j, a := range h.acked {
			if desc.Contains([]byte(a.Key)) {
				in = append(in, a)
				if j < h.before {
					need = len(in)
				}
			}
		}
		n.acked += len(in)
		n.before += need
		k, err := tsPrefix(rows, in)
		if err != nil {
			return n, fmt.Errorf("writer %s: %w", h.writer, err)
		}
		if k < need {
			return n, fmt.Errorf("writer %s's row %s was acknowledged before the snapshot was submitted but is not in it (%d of its rows are, %d were acknowledged before)", h.writer, in[k].Key, k, need)
		}
		n.held += k
	}
	if n.held != len(rows) {
		return n, fmt.Errorf("%d rows that no writer acknowledged", len(rows)-n.held)
	}
	return n, nil
}

// tsPrefix returns how many of seq, from its start, rows holds with
// their values; rows must hold none of the others.
func tsPrefix(rows map[string]string, seq []tsAck) (int, error) {
	k := 0
	for ; k < len(seq); k++ {
		v, ok := rows[seq[k].Key]
		if !ok {
			break
		}
		if v != seq[k].Value {
			return k, fmt.Errorf("row %s is %q, acknowledged as %q", seq[k].Key, v, seq[k].Value)
		}
	}
	for _, a := range seq[k:] {
		if _, ok := rows[a.Key]; ok {
			return k, fmt.Errorf("not a point in time: row %s is in it but the earlier %s is not", a.Key, seq[k].Key)
		}
	}
	return k, nil
}

// tsQuiet is the logger of the regions the checks open.
var tsQuiet = slog.New(slog.DiscardHandler)

// tsDiskRows reads the rows of region directories from disk, into one
// map. No process may serve those regions: Open takes their lock.
func tsDiskRows(dirs ...string) (map[string]string, error) {
	rows := map[string]string{}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("region %s: %w", dir, err)
		}
		r, err := region.Open(dir, region.Options{Logger: tsQuiet})
		if err != nil {
			return nil, err
		}
		for row, err := range r.Scan(nil, nil) {
			if err != nil {
				r.Close()
				return nil, err
			}
			rows[string(row.Key)] = string(row.Value)
		}
		if err := r.Close(); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// tsSnapshotRows reads a region snapshot's rows from disk (checking its
// manifest, files, sizes and CRCs).
func tsSnapshotRows(dir string) (map[string]string, error) {
	rows := map[string]string{}
	for row, err := range region.SnapshotRows(vfs.OS, dir) {
		if err != nil {
			return nil, err
		}
		rows[string(row.Key)] = string(row.Value)
	}
	return rows, nil
}

// tsSnapshotManifest is what the checks read of a completed snapshot's
// MANIFEST (the master's consolidation of its region manifests).
type tsSnapshotManifest struct {
	Name    string `json:"name"`
	Table   string `json:"table"`
	Regions []struct {
		ID    string `json:"id"`
		Start []byte `json:"start,omitempty"`
		End   []byte `json:"end,omitempty"`
		Rows  int64  `json:"rows"`
	} `json:"regions"`
}

// tsReadSnapshot reads completed snapshot name's MANIFEST and returns its
// regions (as descriptions) and their snapshot directories.
func tsReadSnapshot(layout tablestore.Layout, name string) ([]tablestore.RegionDesc, []string, error) {
	dir := layout.SnapshotDir(name)
	b, err := os.ReadFile(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		return nil, nil, err
	}
	var m tsSnapshotManifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, "MANIFEST"), err)
	}
	descs := make([]tablestore.RegionDesc, len(m.Regions))
	dirs := make([]string, len(m.Regions))
	for i, r := range m.Regions {
		descs[i] = tablestore.RegionDesc{ID: r.ID, Table: m.Table, Start: r.Start, End: r.End}
		dirs[i] = tablestore.RegionSnapshotDir(dir, r.ID)
	}
	return descs, dirs, nil
}

// tsEqualRows compares two tables' rows and describes the first
// differences.
func tsEqualRows(got, want map[string]string) error {
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, "missing "+k)
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("%s is %q, not %q", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	return fmt.Errorf("%d differences, e.g. %v", len(diffs), diffs[:min(len(diffs), 5)])
}

// tsCheckAssignment checks that each region of tables is open on exactly
// one live server (asking every server what it serves), that it is where
// the master says, and that no server serves a region of no table given.
func tsCheckAssignment(ctx context.Context, c *tsCluster, tables []tablestore.TableInfo) error {
	where := map[string][]string{} // region -> servers serving it
	for _, name := range c.ServerNames() {
		p := c.Proc(name)
		if p == nil {
			return fmt.Errorf("region server %s is not running", name)
		}
		var resp tablestore.ServedRegions
		if err := tsGet(ctx, p.ready.Addr, "/ts/v1/regions", &resp); err != nil {
			return fmt.Errorf("ask %s what it serves: %w", name, err)
		}
		for _, id := range resp.Regions {
			where[id] = append(where[id], name)
		}
	}
	for _, t := range tables {
		for _, r := range t.Regions {
			s := where[r.ID]
			switch {
			case len(s) != 1:
				return fmt.Errorf("table %s: region %s is open on %d servers %v", t.Name, r.ID, len(s), s)
			case s[0] != r.Server:
				return fmt.Errorf("table %s: region %s is open on %s, the master says %q (%s)", t.Name, r.ID, s[0], r.Server, r.State)
			}
			delete(where, r.ID)
		}
	}
	for id, s := range where {
		return fmt.Errorf("region %s is open on %v but is in no enabled table", id, s)
	}
	return nil
}
