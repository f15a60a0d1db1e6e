package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/procedure"
)

// The model: what the API returns as JSON and the UI renders as HTML,
// built from the engine (and the dispatcher) once per request.

// Page sizes of the procedure list.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// procOf converts in to its wire form.
func procOf(in procedure.Info) Procedure {
	p := Procedure{
		ID: in.ID, Parent: in.Parent, Root: in.Root, Type: in.Type,
		Status: in.Status.String(), State: in.StateName, Steps: in.Steps,
		Submitter: in.Submitter, Nonce: in.Nonce, Created: in.Created, Updated: in.Updated,
		Completed: timePtr(in.Completed), Acked: timePtr(in.Acked),
		Running: in.Running, WaitingForLocks: in.WaitingForLocks, RollingBack: in.RollingBack, NoReturn: in.NoReturn,
		Quarantined: in.Quarantined, Retries: in.Retries, LastError: in.LastError,
		Event: in.Event, WakeAt: timePtr(in.WakeAt), Deadline: timePtr(in.Deadline),
		StepDeadline: timePtr(in.StepDeadline), Aborted: in.Aborted,
	}
	if p.State == "" {
		p.State = strconv.FormatInt(in.State, 10)
	}
	if e := in.Err; e != nil {
		p.Error = &ProcError{Source: e.Source, Message: e.Message, Code: e.Code}
	}
	if b := in.Bypass; b != nil {
		p.Bypass = &Bypass{Who: b.Who, Why: b.Why, At: time.Unix(0, b.At).UTC(), Target: b.Target, Role: b.Role.String()}
	}
	return p
}

// statusNames maps the wire names of the statuses back.
var statusNames = map[string]procedure.Status{}

func init() {
	for _, st := range []procedure.Status{procedure.Runnable, procedure.Waiting, procedure.Succeeded,
		procedure.Failed, procedure.RolledBack, procedure.Suspended} {
		statusNames[st.String()] = st
	}
}

// parseQuery reads the list's filters from query parameters: status (a
// comma-separated list), type, root, parent, error, since and until
// (RFC 3339), before (the cursor) and limit (1 to 1000, default 100).
// Unknown parameters are refused.
func parseQuery(v url.Values) (q procedure.Query, limit int, err error) {
	limit = defaultLimit
	for key, vals := range v {
		if len(vals) != 1 {
			return q, 0, fmt.Errorf("parameter %q given %d times", key, len(vals))
		}
		val := vals[0]
		switch key {
		case "status":
			for _, name := range strings.Split(val, ",") {
				st, ok := statusNames[strings.TrimSpace(name)]
				if !ok {
					return q, 0, fmt.Errorf("status %q: not one of runnable, waiting, suspended, failed, succeeded, rolled-back", name)
				}
				q.Status = append(q.Status, st)
			}
		case "type":
			q.Type = val
		case "error":
			q.Error = val
		case "root", "parent", "before":
			id, err := parseID(val)
			if err != nil {
				return q, 0, fmt.Errorf("%s: %w", key, err)
			}
			switch key {
			case "root":
				q.Root = id
			case "parent":
				q.Parent = id
			default:
				q.Before = id
			}
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return q, 0, fmt.Errorf("%s: want an RFC 3339 time such as 2026-12-05T17:00:00Z: %q", key, val)
			}
			if key == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxLimit {
				return q, 0, fmt.Errorf("limit: want 1 to %d: %q", maxLimit, val)
			}
			limit = n
		default:
			return q, 0, fmt.Errorf("unknown parameter %q", key)
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, 0, fmt.Errorf("since (%s) is not before until (%s)", q.Since.Format(time.RFC3339Nano), q.Until.Format(time.RFC3339Nano))
	}
	return q, limit, nil
}

// parseID parses a procedure id (a positive decimal number).
func parseID(s string) (procedure.ID, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("not a procedure id: %q", s)
	}
	return procedure.ID(n), nil
}

// list returns a page of at most limit procedures matching q.
func (s *Server) list(q procedure.Query, limit int) ProcedureList {
	out := ProcedureList{Procedures: []Procedure{}}
	for in := range s.e.List(q) {
		if len(out.Procedures) == limit {
			out.Next = strconv.FormatUint(uint64(out.Procedures[limit-1].ID), 10)
			break
		}
		out.Procedures = append(out.Procedures, procOf(in))
	}
	return out
}

// detail returns procedure id with its tree, history, locks, remote
// operations, audit entries and result.
func (s *Server) detail(ctx context.Context, id procedure.ID) (ProcedureDetail, error) {
	in, err := s.e.Get(id)
	if err != nil {
		return ProcedureDetail{}, err
	}
	d := ProcedureDetail{Procedure: procOf(in)}
	d.Tree = s.tree(in.Root)
	for _, h := range in.History {
		hs := HistoryStep{State: h.Name, At: h.At}
		if !h.RolledBack.IsZero() {
			hs.RolledBack = &h.RolledBack
		}
		d.History = append(d.History, hs)
	}
	for _, st := range in.Executed {
		d.Executed = append(d.Executed, s.stateName(in, st))
	}
	for _, l := range in.Locks {
		d.Locks = append(d.Locks, Lock{Resource: l.Resource, Mode: l.Mode.String()})
	}
	if in.WaitingForLocks {
		for _, row := range s.e.Locks() {
			for _, w := range row.Waiters {
				if w.ID == id {
					d.Waits = append(d.Waits, Lock{Resource: row.Resource, Mode: w.Mode.String()})
				}
			}
		}
	}
	d.RemoteOps = s.remoteOps(id)
	for a := range s.e.Audit(0) {
		if a.Root == in.Root {
			d.Audit = append(d.Audit, actionOf(a))
		}
	}
	if in.Parent == 0 && !in.Completed.IsZero() {
		s.addResult(ctx, &d)
	}
	return d, nil
}

// stateName names state st of in's type as the engine does (the Info of
// a state other than its current one has no name: History has them).
func (s *Server) stateName(in procedure.Info, st int64) string {
	for _, h := range in.History {
		if h.State == st && h.Name != "" {
			return h.Name
		}
	}
	if st == in.State && in.StateName != "" {
		return in.StateName
	}
	return strconv.FormatInt(st, 10)
}

// tree returns the procedures of root's tree, root first, depth first.
func (s *Server) tree(root procedure.ID) []TreeNode {
	kids := map[procedure.ID][]procedure.Info{}
	var top *procedure.Info
	for in := range s.e.List(procedure.Query{Root: root}) {
		if in.ID == root {
			top = &in
			continue
		}
		kids[in.Parent] = append(kids[in.Parent], in)
	}
	if top == nil {
		return nil
	}
	var out []TreeNode
	var walk func(in procedure.Info, depth int)
	walk = func(in procedure.Info, depth int) {
		out = append(out, TreeNode{Procedure: procOf(in), Depth: depth})
		cs := kids[in.ID]
		slices.SortFunc(cs, func(a, b procedure.Info) int { return cmp.Compare(a.ID, b.ID) })
		for _, c := range cs {
			walk(c, depth+1)
		}
	}
	walk(*top, 0)
	return out
}

// addResult adds a finished root's result: as JSON when its type is
// submittable (JSONType), as bytes otherwise.
func (s *Server) addResult(ctx context.Context, d *ProcedureDetail) {
	ctx, cancel := context.WithTimeout(ctx, time.Second) // finished: Wait returns at once
	defer cancel()
	res, err := s.e.Wait(ctx, d.ID)
	if err != nil || res.Status != procedure.Succeeded {
		return
	}
	if t, ok := s.types[res.Type]; ok {
		if j, err := t.resultJSON(res); err == nil {
			d.Result = j
			return
		}
	}
	d.ResultBytes = res.Data
}

func actionOf(a procedure.Action) Action {
	return Action{Seq: a.Seq, Kind: a.Kind, Target: a.Target, Root: a.Root, Who: a.Who, Why: a.Why, At: a.At}
}

// audit returns a page of the audit log before seq (0: the newest).
func (s *Server) audit(before uint64, limit int) AuditList {
	out := AuditList{Actions: []Action{}}
	for a := range s.e.Audit(before) {
		if len(out.Actions) == limit {
			out.Next = strconv.FormatUint(out.Actions[limit-1].Seq, 10)
			break
		}
		out.Actions = append(out.Actions, actionOf(a))
	}
	return out
}

// locks returns the lock table, with each procedure's type.
func (s *Server) locks() []LockRow {
	types := map[procedure.ID]string{}
	typeOf := func(id procedure.ID) string {
		t, ok := types[id]
		if !ok {
			if in, err := s.e.Get(id); err == nil {
				t = in.Type
			}
			types[id] = t
		}
		return t
	}
	holders := func(hs []procedure.LockHolder) []LockHolder {
		out := make([]LockHolder, 0, len(hs))
		for _, h := range hs {
			out = append(out, LockHolder{ID: h.ID, Type: typeOf(h.ID), Mode: h.Mode.String(), Since: h.Since})
		}
		return out
	}
	rows := []LockRow{}
	for _, li := range s.e.Locks() {
		row := LockRow{Resource: li.Resource, Holders: holders(li.Holders)}
		if len(li.Waiters) > 0 {
			row.Waiters = holders(li.Waiters)
		}
		rows = append(rows, row)
	}
	return rows
}

// waits returns the events procedures are suspended on (by event name)
// and the timers (by due time).
func (s *Server) waits() (events []EventRow, timers []TimerRow) {
	byEvent := map[string][]procedure.ID{}
	for in := range s.e.List(procedure.Query{Status: []procedure.Status{procedure.Suspended}}) {
		switch {
		case in.Event != "":
			byEvent[in.Event] = append(byEvent[in.Event], in.ID)
		case !in.WakeAt.IsZero():
			timers = append(timers, TimerRow{ID: in.ID, Due: in.WakeAt})
		}
	}
	events = []EventRow{}
	for ev, ids := range byEvent {
		slices.Sort(ids)
		events = append(events, EventRow{Event: ev, Waiters: ids})
	}
	slices.SortFunc(events, func(a, b EventRow) int { return strings.Compare(a.Event, b.Event) })
	slices.SortFunc(timers, func(a, b TimerRow) int { return a.Due.Compare(b.Due) })
	if timers == nil {
		timers = []TimerRow{}
	}
	return events, timers
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// nodes returns the remote liveness table with each node's counters
// (empty without a dispatcher).
func (s *Server) nodes() []Node {
	out := []Node{}
	d := s.opts.Dispatcher
	if d == nil {
		return out
	}
	stats := map[string]int{}
	st := d.Stats()
	for i, ns := range st {
		stats[ns.Node] = i
	}
	for _, n := range d.Nodes() {
		row := Node{Name: n.Name, Addr: n.Addr, Incarnation: n.Incarnation, Live: n.Live,
			LastHeartbeat: n.LastHeartbeat, Registered: n.Registered, Died: n.Died}
		if i, ok := stats[n.Name]; ok {
			ns := st[i]
			row.Queued, row.InFlight, row.Batches, row.OpsSent, row.Failures = ns.Queued, ns.InFlight, ns.Batches, ns.OpsSent, ns.Failures
			if ns.RTT.Count > 0 {
				row.RTTp50Ms, row.RTTp99Ms = ms(ns.RTT.Quantile(0.5)), ms(ns.RTT.Quantile(0.99))
			}
		}
		out = append(out, row)
	}
	return out
}

// storeInfo returns the store's state.
func (s *Server) storeInfo() StoreInfo {
	st := s.e.Store().Stats()
	out := StoreInfo{Seq: st.Seq, Commits: st.Commits, Groups: st.Groups, SnapshotSeq: st.SnapshotSeq,
		SnapshotSize: st.SnapshotSize, SnapshotMs: ms(st.SnapshotTime), RecoverMs: ms(st.RecoverTime), Damaged: st.Damaged}
	if w := st.WAL; w != nil {
		out.LogBytes, out.LogSegments, out.RecordsPerSync = w.Bytes, int(w.Segments), w.RecordsPerSync
		if w.Syncs > 0 {
			out.FsyncP50Ms, out.FsyncP99Ms = ms(w.SyncQuantile(0.5)), ms(w.SyncQuantile(0.99))
		}
	}
	return out
}

// engineInfo returns the engine's state and per-type counters.
func (s *Server) engineInfo() EngineInfo {
	st := s.e.Stats()
	out := EngineInfo{Live: st.Live, Trees: st.Trees, Quarantined: st.Quarantined, Results: st.Results,
		Queued: st.Queued, Workers: st.Workers, Stuck: st.Stuck, LockWaiting: st.LockWaiting,
		Suspended: st.Suspended, Oldest: st.Oldest, RecoverMs: ms(st.RecoverTime),
		ByStatus: map[string]int{}, Types: map[string]TypeInfo{}}
	for k, n := range st.ByStatus {
		out.ByStatus[k.String()] = n
	}
	for name, ts := range st.Types {
		ti := TypeInfo{Submitted: ts.Submitted, Succeeded: ts.Succeeded, RolledBack: ts.RolledBack,
			Aborted: ts.Aborted, Bypassed: ts.Bypassed, Steps: ts.Steps}
		if ts.StepLatency.Count > 0 {
			ti.StepP50Ms, ti.StepP99Ms = ms(ts.StepLatency.Quantile(0.5)), ms(ts.StepLatency.Quantile(0.99))
		}
		_, ti.Submittable = s.types[name]
		out.Types[name] = ti
	}
	for name := range s.types {
		if _, ok := out.Types[name]; !ok {
			out.Types[name] = TypeInfo{Submittable: true}
		}
	}
	return out
}

// errNotSubmittable: a submission of a type not in Options.Types.
var errNotSubmittable = errors.New("type not submittable")
