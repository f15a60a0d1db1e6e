package tablestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Client talks to a table store: the admin API on the master, and the
// row API on the region servers, which it finds through the master (and
// finds again when a region moves: a server that does not serve a region
// any more, or cannot be reached, makes the client locate it again and
// retry until its context ends).
type Client struct {
	master string
	http   *http.Client

	mu     sync.Mutex
	tables map[string]TableInfo // located tables
}

// NewClient returns a client of the master at addr (host:port).
func NewClient(addr string) *Client {
	return &Client{
		master: addr,
		http:   &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
		tables: map[string]TableInfo{},
	}
}

// APIError is an error answer of the table store's HTTP APIs.
type APIError struct {
	Status int
	ErrorBody
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// Admin starts an admin operation on the master (create-table,
// disable-table, enable-table, delete-table, split-region,
// snapshot-table) with args (the procedure's data) and returns the
// procedure's id. A nonce makes the call safe to repeat: the same nonce
// returns the same procedure.
func (c *Client) Admin(ctx context.Context, op string, args any, nonce string) (uint64, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return 0, err
	}
	var resp AdminResponse
	err = c.call(ctx, http.MethodPost, c.master, "/ts/v1/admin/"+op, AdminRequest{Nonce: nonce, Args: b}, &resp)
	return resp.ID, err
}

// Wait waits until procedure id finishes and returns its status; a
// procedure that failed is returned with an error carrying its message.
// While the master cannot be reached (it restarts), Wait retries until
// ctx ends.
func (c *Client) Wait(ctx context.Context, id uint64) (ProcedureStatus, error) {
	for {
		var st ProcedureStatus
		err := c.call(ctx, http.MethodGet, c.master, "/ts/v1/procedures/"+strconv.FormatUint(id, 10)+"?wait=10s", nil, &st)
		if err != nil && transient(err) {
			if serr := sleepCtx(ctx, 50*time.Millisecond); serr != nil {
				return st, fmt.Errorf("procedure %d: %w (last error: %v)", id, serr, err)
			}
			continue
		}
		if err != nil {
			return st, err
		}
		if st.Done {
			if st.Error != "" {
				return st, fmt.Errorf("procedure %d (%s): %s", id, st.Type, st.Error)
			}
			return st, nil
		}
	}
}

// Table returns a table's layout as the master has it now.
func (c *Client) Table(ctx context.Context, name string) (TableInfo, error) {
	var t TableInfo
	err := c.call(ctx, http.MethodGet, c.master, "/ts/v1/tables/"+name, nil, &t)
	if err == nil {
		c.mu.Lock()
		c.tables[name] = t
		c.mu.Unlock()
	}
	return t, err
}

// Put writes rows into table; it returns once every row is durable on
// its region's server.
func (c *Client) Put(ctx context.Context, table string, rows ...Row) error {
	for len(rows) > 0 {
		t, err := c.located(ctx, table)
		if err != nil {
			return err
		}
		byRegion := map[int][]Row{}
		for _, row := range rows {
			i := t.regionOf(row.Key)
			byRegion[i] = append(byRegion[i], row)
		}
		var retry []Row
		for i, rs := range byRegion {
			r := t.Regions[i]
			err := c.call(ctx, http.MethodPost, r.Addr, "/ts/v1/rows/put", PutRequest{Region: r.ID, Rows: rs}, &PutResponse{})
			if err != nil {
				if !c.relocate(ctx, table, err) {
					return err
				}
				retry = append(retry, rs...)
			}
		}
		rows = retry
	}
	return nil
}

// Get reads one row of table.
func (c *Client) Get(ctx context.Context, table string, key []byte) ([]byte, bool, error) {
	for {
		t, err := c.located(ctx, table)
		if err != nil {
			return nil, false, err
		}
		r := t.Regions[t.regionOf(key)]
		var resp GetResponse
		err = c.call(ctx, http.MethodPost, r.Addr, "/ts/v1/rows/get", GetRequest{Region: r.ID, Key: key}, &resp)
		if err == nil {
			return resp.Value, resp.Found, nil
		}
		if !c.relocate(ctx, table, err) {
			return nil, false, err
		}
	}
}

// Scan reads every row of table, in key order.
func (c *Client) Scan(ctx context.Context, table string) ([]Row, error) {
	var out []Row
	var from []byte
	for {
		t, err := c.located(ctx, table)
		if err != nil {
			return nil, err
		}
		i := t.regionOf(from)
		r := t.Regions[i]
		var resp ScanResponse
		err = c.call(ctx, http.MethodPost, r.Addr, "/ts/v1/rows/scan", ScanRequest{Region: r.ID, From: from}, &resp)
		if err != nil {
			if !c.relocate(ctx, table, err) {
				return nil, err
			}
			continue
		}
		out = append(out, resp.Rows...)
		if len(r.End) == 0 {
			return out, nil
		}
		from = r.End
	}
}

// located returns table's cached layout, locating it if every region is
// not open somewhere (and retrying while the master cannot be reached).
func (c *Client) located(ctx context.Context, table string) (TableInfo, error) {
	c.mu.Lock()
	t, ok := c.tables[table]
	c.mu.Unlock()
	if ok && t.allOpen() {
		return t, nil
	}
	for {
		t, err := c.Table(ctx, table)
		if err != nil && !transient(err) {
			return t, err
		}
		if err == nil && t.allOpen() {
			return t, nil
		}
		if serr := sleepCtx(ctx, 50*time.Millisecond); serr != nil {
			if err == nil {
				err = errors.New("regions not all open")
			}
			return t, fmt.Errorf("table %s: %w (last: %v)", table, serr, err)
		}
	}
}

// transient reports whether an error of a call to the master may pass:
// the master could not be reached (it restarts) or is unavailable.
func transient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code == "unavailable"
	}
	return true
}

// relocate decides whether err means the region moved (or its server is
// unreachable): then it forgets table's layout and says to retry.
func (c *Client) relocate(ctx context.Context, table string, err error) bool {
	var ae *APIError
	if errors.As(err, &ae) && ae.Code != "not_serving" && ae.Code != "unavailable" {
		return false
	}
	if ctx.Err() != nil {
		return false
	}
	c.mu.Lock()
	delete(c.tables, table)
	c.mu.Unlock()
	return sleepCtx(ctx, 20*time.Millisecond) == nil
}

func (t TableInfo) allOpen() bool {
	for _, r := range t.Regions {
		if r.Addr == "" {
			return false
		}
	}
	return len(t.Regions) > 0
}

// regionOf returns the index of the region holding key.
func (t TableInfo) regionOf(key []byte) int {
	i := sort.Search(len(t.Regions), func(i int) bool {
		return len(t.Regions[i].End) == 0 || bytes.Compare(key, t.Regions[i].End) < 0
	})
	return min(i, len(t.Regions)-1)
}

// call sends one request (body as JSON unless nil) and decodes the answer
// into out, or returns an *APIError or a transport error.
func (c *Client) call(ctx context.Context, method, addr, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ae := &APIError{Status: resp.StatusCode}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ae.ErrorBody); err != nil {
			ae.Code, ae.Message = "unavailable", resp.Status
		}
		return ae
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
