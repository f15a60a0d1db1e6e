package master

import (
	"context"
	"fmt"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/procedure"
)

// ServerCrash is the data of server-crash (HBase's ServerCrashProcedure),
// started once per dead region-server incarnation: the regions recorded
// on that incarnation are marked offline (not those a newer incarnation of
// the server, restarted under its name, opened since), and those of
// tables that want them open are assigned again (one assign-region child
// each). The remote operations outstanding on the incarnation have
// already failed with remote.ErrNodeDied when it starts (the dispatcher
// does that with the death); the procedures waiting for them decide (an
// assignment picks another server, a region snapshot finds the region's
// new server). A region's rows survive: its log and files are in the
// shared root, and the next server replays them. It never rolls back.
type ServerCrash struct {
	Server      string   `json:"server"`
	Incarnation uint64   `json:"incarnation"`
	Regions     []string `json:"regions,omitempty"` // the regions it found on the server
}

type crashState int

const (
	crashFind crashState = iota
	crashAssign
	crashDone
)

func (s crashState) String() string { return [...]string{"find", "assign", "done"}[s] }

type crashSM struct{ m *Master }

var (
	_ procedure.Locker[crashState, ServerCrash] = crashSM{}
	_ procedure.NoReturner[crashState]          = crashSM{}
)

func (crashSM) Locks(_ crashState, d *ServerCrash) []procedure.Lock {
	return []procedure.Lock{procedure.ExclusiveLock(serverLock(d.Server))}
}

func (crashSM) NoReturn(crashState) bool { return true }

func (sm crashSM) Execute(ctx context.Context, env *procedure.Env, s crashState, d *ServerCrash) (procedure.Next, error) {
	m := sm.m
	switch s {
	case crashFind:
		d.Regions = d.Regions[:0]
		for id, r := range m.cat.regions.All(m.store.Latest()) {
			if r.Server == d.Server && r.Incarnation == d.Incarnation && r.State != RegionOffline {
				d.Regions = append(d.Regions, id)
			}
		}
		server, inc := d.Server, d.Incarnation
		regions := d.Regions
		env.Write(func(tx *durable.Tx) error {
			for _, id := range regions {
				err := m.updateRegion(tx, id, func(r *Region) {
					if r.Server == server && r.Incarnation == inc {
						r.State, r.Server, r.Incarnation = RegionOffline, "", 0
					}
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		env.Logger().Info("tablestore: region server died; reassigning its regions", "server", d.Server, "incarnation", d.Incarnation, "regions", len(d.Regions))
		return procedure.GoTo(crashAssign), nil
	case crashAssign:
		cs := make([]procedure.Child, 0, len(d.Regions))
		v := m.store.Latest()
		for _, id := range d.Regions {
			r, ok, err := m.cat.regions.Get(v, id)
			if err != nil {
				return procedure.Next{}, err
			}
			if ok {
				cs = append(cs, m.assign.Child(AssignRegion{Table: r.Table, Region: id}))
			}
		}
		return procedure.Spawn(crashDone, cs...), nil
	case crashDone:
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("server-crash: unknown state %d", s)
}

// Rollback does nothing: server-crash never rolls back.
func (crashSM) Rollback(context.Context, *procedure.Env, crashState, *ServerCrash) error { return nil }
