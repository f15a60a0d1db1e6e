package server

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// Every Client method against the handler, and its errors matched with
// errors.Is.
func TestClient(t *testing.T) {
	f := newFixture(t, nil)
	hs := httptest.NewServer(f.srv)
	t.Cleanup(hs.Close)
	ctx := context.Background()
	c := &Client{Endpoint: hs.URL + "/", Token: operateSecret}

	id, err := c.Submit(ctx, SubmitRequest{Type: "finish", Args: []byte(`{"n":2}`), Nonce: "c-1"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Wait(ctx, id, time.Minute)
	if err != nil || !w.Done || w.Procedure.Status != "succeeded" {
		t.Fatalf("Wait: %+v, %v", w, err)
	}
	d, err := c.Get(ctx, id)
	if err != nil || string(d.Result) != `{"n":2,"out":"xx"}` {
		t.Fatalf("Get: %+v, %v", d, err)
	}
	if p, err := c.Ack(ctx, id); err != nil || p.Acked == nil {
		t.Fatalf("Ack: %+v, %v", p, err)
	}
	stuck := f.submit(t, f.stuck, job{})
	other := f.submit(t, f.stuck, job{})
	past := f.submit(t, f.ponr, job{})
	l, err := c.List(ctx, url.Values{"type": {"stuck"}})
	if err != nil || len(l.Procedures) != 2 || l.Procedures[0].ID != other {
		t.Fatalf("List: %+v, %v", l, err)
	}
	if w, err := c.Wait(ctx, stuck, 0); err != nil || w.Done {
		t.Fatalf("Wait on a stuck one: %+v, %v", w, err)
	}
	if p, err := c.Bypass(ctx, stuck, "stuck"); err != nil || p.Bypass == nil {
		t.Fatalf("Bypass: %+v, %v", p, err)
	}
	if p, err := c.Abort(ctx, other, "not needed"); err != nil || !p.Aborted {
		t.Fatalf("Abort: %+v, %v", p, err)
	}
	bulk, err := c.BulkAbort(ctx, BulkAbortRequest{Filter: map[string]string{"type": "ponr"}, Why: "drain", DryRun: true})
	if err != nil || len(bulk.Results) != 1 || bulk.Results[0].ID != past {
		t.Fatalf("BulkAbort: %+v, %v", bulk, err)
	}
	if locks, err := c.Locks(ctx); err != nil || len(locks) != 1 {
		t.Fatalf("Locks: %+v, %v", locks, err)
	}
	if nodes, err := c.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("Nodes: %+v, %v", nodes, err)
	}
	if a, err := c.Audit(ctx, 0); err != nil || a.Actions == nil {
		t.Fatalf("Audit: %+v, %v", a, err)
	}
	if _, err := c.Audit(ctx, 1); err != nil {
		t.Fatalf("Audit before 1: %v", err)
	}
	if st, err := c.Store(ctx); err != nil || st.Seq == 0 {
		t.Fatalf("Store: %+v, %v", st, err)
	}
	if e, err := c.Engine(ctx); err != nil || e.Types["stuck"].Submitted != 2 {
		t.Fatalf("Engine: %+v, %v", e, err)
	}

	for _, c := range []struct {
		err  error
		want error
	}{
		{second(c.Get(ctx, 999999)), ErrNotFound},
		{second(c.Abort(ctx, past, "too late")), ErrConflict},
		{second(c.Submit(ctx, SubmitRequest{Type: "nope"})), ErrBadRequest},
		{second(c.Abort(ctx, past, "")), ErrBadRequest},
		{second(c.List(ctx, url.Values{"limit": {"0"}})), ErrBadRequest},
		{second((&Client{Endpoint: hs.URL}).Locks(ctx)), ErrUnauthorized},
		{second((&Client{Endpoint: hs.URL, Token: readSecret}).Ack(ctx, id)), ErrForbidden},
	} {
		var ae *APIError
		if !errors.Is(c.err, c.want) || !errors.As(c.err, &ae) || ae.Body.Message == "" {
			t.Errorf("error %v, want %v", c.err, c.want)
		}
		if errors.Is(c.err, ErrInternal) || errors.Is(c.err, procedure.ErrNotFound) {
			t.Errorf("error %v matches a wrong sentinel", c.err)
		}
	}
}

func second[T any](_ T, err error) error { return err }
