package master

import (
	"context"
	"errors"
	"fmt"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/procedure"
	"github.com/procyon-dev/procyon/remote"
)

// SnapshotRegion is the data of snapshot-region (HBase's
// SnapshotRegionProcedure): it asks the server that holds the region to
// snapshot it into Dir. While the region is in transition (its server died
// and it is being reassigned) it waits; when the operation fails (the
// server died, or no longer serves the region) it finds the region's
// server again and retries, with a backoff, until it succeeds.
type SnapshotRegion struct {
	Snapshot string      `json:"snapshot"`
	Region   string      `json:"region"`
	Dir      string      `json:"dir"`
	Server   string      `json:"server,omitempty"`
	Op       remote.OpID `json:"op,omitempty"`
	Tries    int         `json:"tries,omitempty"`
	Rows     int64       `json:"rows,omitempty"`
	LastErr  string      `json:"last_err,omitempty"`
}

type snapRegionState int

const (
	snapRegionLocate snapRegionState = iota
	snapRegionDone
)

func (s snapRegionState) String() string { return [...]string{"locate", "done"}[s] }

type snapRegionSM struct{ m *Master }

func (sm snapRegionSM) Execute(ctx context.Context, env *procedure.Env, s snapRegionState, d *SnapshotRegion) (procedure.Next, error) {
	m := sm.m
	switch s {
	case snapRegionLocate:
		r, ok, err := m.cat.regions.Get(m.store.Latest(), d.Region)
		if err != nil {
			return procedure.Next{}, err
		}
		if !ok {
			return procedure.Next{}, fmt.Errorf("snapshot %s: region %s has no record", d.Snapshot, d.Region)
		}
		live, err := m.isLive(r.Server, r.Incarnation)
		if err != nil {
			return procedure.Next{}, err
		}
		if r.State != RegionOpen || !live {
			d.Tries++
			return procedure.Sleep(snapRegionLocate, backoff(d.Tries)), nil // in transition
		}
		op, err := tablestore.SnapshotRegion.Call(m.disp, env, r.Server, tablestore.SnapshotRegionReq{Region: d.Region, Dir: d.Dir})
		if err != nil {
			return procedure.Next{}, err
		}
		d.Server, d.Op = r.Server, op
		return remote.Await(snapRegionDone, op), nil
	case snapRegionDone:
		resp, err := tablestore.SnapshotRegion.Outcome(m.disp, env, d.Op)
		if err != nil {
			d.Tries++
			d.LastErr = err.Error()
			env.Logger().Warn("tablestore: region snapshot failed; retrying on the region's server", "snapshot", d.Snapshot, "region", d.Region, "server", d.Server, "err", err)
			return procedure.Sleep(snapRegionLocate, backoff(d.Tries)), nil
		}
		d.Rows = resp.Rows
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("snapshot-region: unknown state %d", s)
}

// Rollback forgets the region snapshot operation, if one may still be
// outstanding: sent later, it would write into the working directory
// that the snapshot's rollback removes (which removes every region
// snapshot written before).
func (sm snapRegionSM) Rollback(_ context.Context, env *procedure.Env, _ snapRegionState, d *SnapshotRegion) error {
	if d.Op != 0 {
		sm.m.disp.Cancel(env, d.Op)
	}
	return nil
}

// VerifySnapshot is the data of verify-snapshot (HBase's
// SnapshotVerifyProcedure): one server checks a share of the region
// snapshots (each manifest against its files). If the server dies, another
// live server takes the share; a corrupt region snapshot fails the
// procedure, and with it the snapshot, with an error naming the file.
type VerifySnapshot struct {
	Snapshot string      `json:"snapshot"`
	Dirs     []string    `json:"dirs"`
	Server   string      `json:"server,omitempty"`
	Op       remote.OpID `json:"op,omitempty"`
	Tries    int         `json:"tries,omitempty"`
}

type verifyState int

const (
	verifyChoose verifyState = iota
	verifyCheck
)

func (s verifyState) String() string { return [...]string{"choose", "check"}[s] }

type verifySM struct{ m *Master }

func (sm verifySM) Execute(ctx context.Context, env *procedure.Env, s verifyState, d *VerifySnapshot) (procedure.Next, error) {
	m := sm.m
	switch s {
	case verifyChoose:
		live, err := m.isLive(d.Server, 0)
		if err != nil {
			return procedure.Next{}, err
		}
		if !live {
			server, release, err := m.pickServer()
			if err != nil {
				return procedure.Next{}, procedure.Retryable(err)
			}
			release() // a verifier opens no region
			d.Server = server.Name
		}
		op, err := tablestore.VerifyRegions.Call(m.disp, env, d.Server, tablestore.VerifyRegionsReq{Dirs: d.Dirs})
		if err != nil {
			return procedure.Next{}, err
		}
		d.Op = op
		return remote.Await(verifyCheck, op), nil
	case verifyCheck:
		_, err := tablestore.VerifyRegions.Outcome(m.disp, env, d.Op)
		switch {
		case errors.Is(err, remote.ErrNodeDied):
			d.Tries++
			env.Logger().Warn("tablestore: verifier died; another server verifies its share", "snapshot", d.Snapshot, "server", d.Server)
			d.Server = ""
			return procedure.Sleep(verifyChoose, backoff(d.Tries)), nil
		case err != nil:
			return procedure.Next{}, fmt.Errorf("snapshot %s: verify: %w", d.Snapshot, err)
		}
		return procedure.Done(), nil
	}
	return procedure.Next{}, fmt.Errorf("verify-snapshot: unknown state %d", s)
}

// Rollback forgets the verify operation, if one may still be
// outstanding (as snapshot-region's).
func (sm verifySM) Rollback(_ context.Context, env *procedure.Env, _ verifyState, d *VerifySnapshot) error {
	if d.Op != 0 {
		sm.m.disp.Cancel(env, d.Op)
	}
	return nil
}

// verifyChildren spreads the region snapshots of work over the live
// servers: one verify-snapshot child per server, each with its share.
func (m *Master) verifyChildren(name, work string, regions []tablestore.RegionDesc) ([]procedure.Child, error) {
	live, err := m.liveServers()
	if err != nil {
		return nil, err
	}
	if len(live) == 0 {
		return nil, errors.New("no live region server to verify the snapshot")
	}
	shares := make([][]string, len(live))
	for i, r := range regions {
		shares[i%len(live)] = append(shares[i%len(live)], tablestore.RegionSnapshotDir(work, r.ID))
	}
	var cs []procedure.Child
	for i, dirs := range shares {
		if len(dirs) > 0 {
			cs = append(cs, m.verify.Child(VerifySnapshot{Snapshot: name, Dirs: dirs, Server: live[i]}))
		}
	}
	return cs, nil
}
