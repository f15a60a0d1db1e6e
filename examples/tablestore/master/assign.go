package master

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

// AssignRegion is the data of assign-region (HBase's
// TransitRegionStateProcedure, assign half): it picks the live server with
// the fewest regions, asks it to open the region, and records the region
// open there. If the server dies or fails to open it, it picks again
// (after a backoff): an assignment never fails and is never rolled back.
// It holds the region's lock until the region is open, so that one
// assignment of a region runs at a time; a region already open on a live
// server, or of a table that is not (being) enabled, is left as it is.
type AssignRegion struct {
	Table       string      `json:"table"`
	Region      string      `json:"region"`
	Server      string      `json:"server,omitempty"`
	Incarnation uint64      `json:"incarnation,omitempty"` // Server's, when it was asked
	Op          remote.OpID `json:"op,omitempty"`
	Failures    int         `json:"failures,omitempty"`
	LastErr     string      `json:"last_err,omitempty"`
}

type assignState int

const (
	assignChoose assignState = iota
	assignOpened
)

func (s assignState) String() string { return [...]string{"choose", "opened"}[s] }

type assignSM struct{ m *Master }

var (
	_ procedure.Locker[assignState, AssignRegion] = assignSM{}
	_ procedure.NoReturner[assignState]           = assignSM{}
)

func (assignSM) Locks(_ assignState, d *AssignRegion) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(regionLock(d.Table, d.Region))}
}

func (assignSM) NoReturn(assignState) bool { return true }

func (sm assignSM) Execute(ctx context.Context, env *procedure.Env, s assignState, d *AssignRegion) (procedure.Next, error) {
	m := sm.m
	switch s {
	case assignChoose:
		r, t, ok, err := m.regionAndTable(d.Region)
		if err != nil {
			return procedure.Next{}, err
		}
		live, err := m.isLive(r.Server, r.Incarnation)
		if err != nil {
			return procedure.Next{}, err
		}
		if !ok || !t.wantsOpen() || r.State == RegionOpen && live {
			return procedure.Done(), nil
		}
		server, release, err := m.pickServer()
		if err != nil {
			return procedure.Next{}, procedure.Retryable(err)
		}
		env.AfterCommit(release) // from then on the region's record counts on the server
		op, err := tablestore.OpenRegion.Call(m.disp, env, server.Name, tablestore.OpenRegionReq{Region: r.RegionDesc})
		if err != nil {
			release()
			return procedure.Next{}, err
		}
		d.Server, d.Incarnation, d.Op = server.Name, server.Incarnation, op
		env.Write(func(tx *durable.Tx) error {
			return m.updateRegion(tx, d.Region, func(r *Region) {
				r.State, r.Server, r.Incarnation = RegionOpening, server.Name, server.Incarnation
			})
		})
		return remote.Await(assignOpened, op), nil
	case assignOpened:
		_, err := tablestore.OpenRegion.Outcome(m.disp, env, d.Op)
		if err != nil {
			d.Failures++
			d.LastErr = err.Error()
			env.Logger().Warn("tablestore: open region failed; assigning it again", "region", d.Region, "server", d.Server, "err", err)
			env.Write(func(tx *durable.Tx) error {
				return m.updateRegion(tx, d.Region, func(r *Region) {
					if r.Server == d.Server && r.Incarnation == d.Incarnation {
						r.State, r.Server, r.Incarnation = RegionOffline, "", 0
					}
				})
			})
			return procedure.Sleep(assignChoose, backoff(d.Failures)), nil
		}
		server, inc := d.Server, d.Incarnation
		env.Write(func(tx *durable.Tx) error {
			return m.updateRegion(tx, d.Region, func(r *Region) { r.State, r.Server, r.Incarnation = RegionOpen, server, inc })
		})
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("assign-region: unknown state %d", s)
}

// Rollback does nothing: an assignment is past its tree's point of no
// return from its first state.
func (assignSM) Rollback(context.Context, *procedure.Env, assignState, *AssignRegion) error {
	return nil
}

// UnassignRegion is the data of unassign-region (the unassign half): it
// asks the region's server to close it and records it offline. A region
// on a dead server is offline already (the server's crash procedure
// reassigns it only if its table is enabled).
type UnassignRegion struct {
	Table    string      `json:"table"`
	Region   string      `json:"region"`
	Server   string      `json:"server,omitempty"`
	Op       remote.OpID `json:"op,omitempty"`
	Failures int         `json:"failures,omitempty"`
}

type unassignState int

const (
	unassignClose unassignState = iota
	unassignClosed
)

func (s unassignState) String() string { return [...]string{"close", "closed"}[s] }

type unassignSM struct{ m *Master }

var (
	_ procedure.Locker[unassignState, UnassignRegion] = unassignSM{}
	_ procedure.NoReturner[unassignState]             = unassignSM{}
)

func (unassignSM) Locks(_ unassignState, d *UnassignRegion) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(regionLock(d.Table, d.Region))}
}

func (unassignSM) NoReturn(unassignState) bool { return true }

func (sm unassignSM) Execute(ctx context.Context, env *procedure.Env, s unassignState, d *UnassignRegion) (procedure.Next, error) {
	m := sm.m
	switch s {
	case unassignClose:
		r, ok, err := m.cat.regions.Get(m.store.Latest(), d.Region)
		if err != nil {
			return procedure.Next{}, err
		}
		if !ok || r.State == RegionOffline {
			return procedure.Done(), nil
		}
		live, err := m.isLive(r.Server, r.Incarnation)
		if err != nil {
			return procedure.Next{}, err
		}
		if !live {
			env.Write(func(tx *durable.Tx) error {
				return m.updateRegion(tx, d.Region, func(r *Region) { r.State, r.Server, r.Incarnation = RegionOffline, "", 0 })
			})
			return procedure.Done(), nil
		}
		op, err := tablestore.CloseRegion.Call(m.disp, env, r.Server, tablestore.CloseRegionReq{Region: d.Region})
		if err != nil {
			return procedure.Next{}, err
		}
		d.Server, d.Op = r.Server, op
		env.Write(func(tx *durable.Tx) error {
			return m.updateRegion(tx, d.Region, func(r *Region) { r.State = RegionClosing })
		})
		return remote.Await(unassignClosed, op), nil
	case unassignClosed:
		_, err := tablestore.CloseRegion.Outcome(m.disp, env, d.Op)
		if err != nil && !errors.Is(err, remote.ErrNodeDied) {
			d.Failures++
			env.Logger().Warn("tablestore: close region failed; trying again", "region", d.Region, "server", d.Server, "err", err)
			return procedure.Sleep(unassignClose, backoff(d.Failures)), nil
		}
		env.Write(func(tx *durable.Tx) error {
			return m.updateRegion(tx, d.Region, func(r *Region) { r.State, r.Server, r.Incarnation = RegionOffline, "", 0 })
		})
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("unassign-region: unknown state %d", s)
}

// Rollback does nothing: an unassignment is past its tree's point of no
// return from its first state.
func (unassignSM) Rollback(context.Context, *procedure.Env, unassignState, *UnassignRegion) error {
	return nil
}

// wantsOpen reports whether the table's regions should be open.
func (t Table) wantsOpen() bool {
	return t.State == TableCreating || t.State == TableEnabled || t.State == TableEnabling
}

// regionAndTable reads region id and its table (ok false: either is gone).
func (m *Master) regionAndTable(id string) (Region, Table, bool, error) {
	v := m.store.Latest()
	r, ok, err := m.cat.regions.Get(v, id)
	if err != nil || !ok {
		return r, Table{}, false, err
	}
	t, ok, err := m.cat.tables.Get(v, r.Table)
	return r, t, ok, err
}

// updateRegion changes region id's record in tx (nothing if it is gone).
func (m *Master) updateRegion(tx *durable.Tx, id string, change func(*Region)) error {
	r, ok, err := m.cat.regions.Get(tx, id)
	if err != nil || !ok {
		return err
	}
	change(&r)
	return m.cat.regions.Put(tx, id, r)
}

// backoff is the delay before the n-th retry of a remote operation: 50 ms
// doubling up to 2 s.
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond
	for i := 1; i < n && d < 2*time.Second; i++ {
		d *= 2
	}
	return min(d, 2*time.Second)
}
