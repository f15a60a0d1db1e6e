package remote

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// NodeInfo is one node of the liveness table (Dispatcher.Nodes), or the
// dead incarnation OnNodeDead is called for.
type NodeInfo struct {
	Name, Addr    string
	Incarnation   uint64
	Live          bool
	LastHeartbeat time.Time // in memory only: Start gives live nodes a fresh lease
	Registered    time.Time
	Died          time.Time // zero while live
}

// Node record format constants. Part of the on-disk format: never change
// them.
const (
	nodeRecordV1 = 1
	nodeLive     = 1 // flags bit
)

// nodeRecord is a node as "<Name>.nodes" keeps it: its current
// incarnation, and the dead incarnations whose OnNodeDead has not yet
// returned nil (the current one too, once dead).
type nodeRecord struct {
	Addr        string
	Incarnation uint64
	Live        bool
	Registered  int64 // unix ns
	Died        int64 // unix ns; 0 while live
	Unhandled   []deadIncarnation
}

type deadIncarnation struct {
	Addr        string
	Incarnation uint64
	Registered  int64
	Died        int64
}

// maxUnhandled bounds a record's list of deaths not yet handled: a node
// that keeps dying while OnNodeDead keeps failing loses its oldest ones
// (logged).
const maxUnhandled = 64

func (r nodeRecord) encode() ([]byte, error) {
	b := make([]byte, 0, 32+len(r.Addr))
	var flags uint8
	if r.Live {
		flags |= nodeLive
	}
	b = append(b, nodeRecordV1, flags)
	b = binary.AppendUvarint(b, r.Incarnation)
	b = binary.AppendVarint(b, r.Registered)
	b = binary.AppendVarint(b, r.Died)
	b = appendBytes(b, []byte(r.Addr))
	b = binary.AppendUvarint(b, uint64(len(r.Unhandled)))
	for _, u := range r.Unhandled {
		b = binary.AppendUvarint(b, u.Incarnation)
		b = binary.AppendVarint(b, u.Registered)
		b = binary.AppendVarint(b, u.Died)
		b = appendBytes(b, []byte(u.Addr))
	}
	return b, nil
}

func decodeNodeRecord(data []byte) (nodeRecord, error) {
	d := decoder{what: "node record", b: data}
	var r nodeRecord
	if v := d.byte(); v != nodeRecordV1 && d.err == nil {
		return r, fmt.Errorf("remote: node record: unknown version %d", v)
	}
	flags := d.byte()
	if flags&^nodeLive != 0 {
		d.fail("flags %#x", flags)
	}
	r.Live = flags&nodeLive != 0
	r.Incarnation = d.uvarint()
	r.Registered = d.varint()
	r.Died = d.varint()
	r.Addr = string(d.bytes())
	n := d.uvarint()
	if n > maxUnhandled {
		d.fail("count of unhandled deaths %d", n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		u := deadIncarnation{Incarnation: d.uvarint(), Registered: d.varint(), Died: d.varint()}
		u.Addr = string(d.bytes())
		r.Unhandled = append(r.Unhandled, u)
	}
	d.end()
	return r, d.err
}

// died records the death of the current incarnation at t.
func (r *nodeRecord) died(name string, t time.Time, d *Dispatcher) {
	r.Live, r.Died = false, t.UnixNano()
	if len(r.Unhandled) == maxUnhandled {
		d.log.Error("remote: too many node deaths not handled; forgetting the oldest", "node", name,
			"incarnation", r.Unhandled[0].Incarnation)
		r.Unhandled = slices.Delete(r.Unhandled, 0, 1)
	}
	r.Unhandled = append(r.Unhandled, deadIncarnation{Addr: r.Addr, Incarnation: r.Incarnation, Registered: r.Registered, Died: r.Died})
}

func (u deadIncarnation) info(name string) NodeInfo {
	return NodeInfo{Name: name, Addr: u.Addr, Incarnation: u.Incarnation, Registered: unixTime(u.Registered), Died: unixTime(u.Died)}
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// node is a node's entry in the in-memory liveness table (Dispatcher.mu).
type node struct {
	info NodeInfo
	snd  *sender // the live incarnation's sender; nil once dead
	st   *nodeStats
}

// Bounds on what a node may send.
const (
	maxNameLen     = 255
	maxAddrLen     = 1024
	maxOutcomes    = 1 << 16
	maxResultBytes = 16 << 20
)

func checkNode(name string, inc uint64) error {
	switch {
	case name == "" || len(name) > maxNameLen:
		return fmt.Errorf("%w: node name %q (1 to %d bytes)", ErrBadRequest, name, maxNameLen)
	case inc == 0:
		return fmt.Errorf("%w: node %q: incarnation 0", ErrBadRequest, name)
	}
	return nil
}

// register serves MasterService.Register.
func (d *Dispatcher) register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	if err := checkNode(req.Node, req.Incarnation); err != nil {
		return nil, err
	}
	if req.Addr == "" || len(req.Addr) > maxAddrLen {
		return nil, fmt.Errorf("%w: node %q: address %q (1 to %d bytes)", ErrBadRequest, req.Node, req.Addr, maxAddrLen)
	}
	if err := d.serving(); err != nil {
		return nil, err
	}
	d.nodeWrites.Lock()
	defer d.nodeWrites.Unlock()
	resp := &RegisterResponse{Epoch: d.Epoch(), HeartbeatMillis: d.opts.Heartbeat.Milliseconds(), LeaseMillis: d.opts.Lease.Milliseconds()}
	now := d.clock.Now()
	known, oldLive, err := d.knownIncarnation(req, now)
	switch {
	case err != nil:
		return nil, err
	case known:
		return resp, nil
	}
	if oldLive != 0 {
		d.killLocked(ctx, req.Node, oldLive, "registered again as a new incarnation")
	}
	err = d.e.Store().Write(ctx, func(tx *durable.Tx) error {
		rec, _, err := d.nodesC.Get(tx, req.Node)
		if err != nil {
			return err
		}
		rec.Addr, rec.Incarnation, rec.Live, rec.Registered, rec.Died = req.Addr, req.Incarnation, true, now.UnixNano(), 0
		return d.nodesC.Put(tx, req.Node, rec)
	})
	if err != nil {
		return nil, fmt.Errorf("remote: register node %q: %w", req.Node, err)
	}
	d.mu.Lock()
	d.liveLocked(NodeInfo{Name: req.Node, Addr: req.Addr, Incarnation: req.Incarnation, Live: true, LastHeartbeat: now, Registered: now})
	d.mu.Unlock()
	d.log.Info("remote: node registered", "node", req.Node, "addr", req.Addr, "incarnation", req.Incarnation)
	return resp, nil
}

// knownIncarnation looks the registering incarnation up: known if it is
// the live one (its lease is renewed), ErrUnknownNode if it was declared
// dead; otherwise oldLive is the live incarnation it replaces (0: none).
func (d *Dispatcher) knownIncarnation(req *RegisterRequest, now time.Time) (known bool, oldLive uint64, err error) {
	dead := fmt.Errorf("%w: node %q incarnation %d was declared dead", ErrUnknownNode, req.Node, req.Incarnation)
	d.mu.Lock()
	n := d.mu.nodes[req.Node]
	switch {
	case n != nil && n.info.Incarnation == req.Incarnation && n.info.Live:
		n.info.LastHeartbeat = now
		d.mu.Unlock()
		return true, 0, nil
	case n != nil && n.info.Incarnation == req.Incarnation:
		d.mu.Unlock()
		return false, 0, dead
	case n != nil && n.info.Live:
		oldLive = n.info.Incarnation
	}
	d.mu.Unlock()
	rec, _, err := d.nodesC.Get(d.e.Store().Latest(), req.Node)
	if err != nil {
		return false, 0, err
	}
	for _, u := range rec.Unhandled {
		if u.Incarnation == req.Incarnation {
			return false, 0, dead
		}
	}
	return false, oldLive, nil
}

// liveLocked puts a live incarnation in the table, with a new sender.
func (d *Dispatcher) liveLocked(info NodeInfo) {
	n := d.mu.nodes[info.Name]
	if n == nil {
		n = &node{st: newNodeStats()}
		d.mu.nodes[info.Name] = n
	}
	n.info = info
	n.snd = newSender(d, info, n.st)
	d.goLocked(n.snd.run)
}

// heartbeat serves MasterService.Heartbeat.
func (d *Dispatcher) heartbeat(_ context.Context, req *HeartbeatRequest) (*HeartbeatResponse, error) {
	if err := checkNode(req.Node, req.Incarnation); err != nil {
		return nil, err
	}
	if err := d.serving(); err != nil {
		return nil, err
	}
	if err := d.checkEpoch(req.Epoch); err != nil {
		return nil, err
	}
	now := d.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.mu.nodes[req.Node]
	if n == nil || !n.info.Live || n.info.Incarnation != req.Incarnation {
		return nil, fmt.Errorf("%w: node %q incarnation %d", ErrUnknownNode, req.Node, req.Incarnation)
	}
	n.info.LastHeartbeat = now
	return &HeartbeatResponse{Epoch: d.Epoch()}, nil
}

// checkEpoch refuses a message from a node that knows a newer master.
func (d *Dispatcher) checkEpoch(epoch uint64) error {
	if mine := d.Epoch(); epoch > mine {
		return fmt.Errorf("%w: the node knows epoch %d, this master has %d", ErrStaleEpoch, epoch, mine)
	}
	return nil
}

// kill declares a node incarnation dead (see killLocked).
func (d *Dispatcher) kill(ctx context.Context, name string, inc uint64, why string) {
	d.nodeWrites.Lock()
	defer d.nodeWrites.Unlock()
	d.killLocked(ctx, name, inc, why)
}

// killLocked declares incarnation inc of node name dead, if it is the
// live one: its sender stops at once; then one transaction records it
// dead and gives each operation pending on it ErrNodeDied, waking their
// procedures; then OnNodeDead is called. d.nodeWrites is held.
func (d *Dispatcher) killLocked(ctx context.Context, name string, inc uint64, why string) {
	now := d.clock.Now()
	d.mu.Lock()
	n := d.mu.nodes[name]
	if n == nil || !n.info.Live || n.info.Incarnation != inc {
		d.mu.Unlock()
		return
	}
	n.info.Live, n.info.Died = false, now
	snd, info := n.snd, n.info
	n.snd = nil
	d.mu.Unlock()
	snd.close() // from here on, a new op for it fails at once (enqueue)
	d.log.Warn("remote: node died", "node", name, "incarnation", inc, "why", why)
	failed := 0
	err := d.e.SignalWrite(ctx, func(tx *durable.Tx, signal func(string)) error {
		rec, ok, err := d.nodesC.Get(tx, name)
		if err != nil {
			return err
		}
		if ok && rec.Live && rec.Incarnation == inc {
			rec.died(name, now, d)
			if err := d.nodesC.Put(tx, name, rec); err != nil {
				return err
			}
		}
		failed, err = d.failPendingOn(tx, signal, name, inc)
		return err
	})
	if err != nil {
		d.log.Error("remote: recording a node's death failed", "node", name, "incarnation", inc, "err", err)
		return
	}
	d.log.Info("remote: failed the operations of a dead node", "node", name, "incarnation", inc, "ops", failed)
	d.mu.Lock()
	d.goLocked(func() { d.handleDeath(info) })
	d.mu.Unlock()
}

// failPendingOn gives every operation pending on incarnation inc of node
// name the outcome ErrNodeDied in tx (or deletes it if its procedure is
// gone).
func (d *Dispatcher) failPendingOn(tx *durable.Tx, signal func(string), name string, inc uint64) (int, error) {
	var ids []uint64
	var recs []opRecord
	for id, rec := range d.ops.All(tx) {
		if rec.pendingOn(name, inc) {
			ids, recs = append(ids, id), append(recs, rec)
		}
	}
	for i, id := range ids {
		if err := d.finishOp(tx, signal, OpID(id), recs[i], outcomeNodeDied, nil, ""); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// handleDeath calls OnNodeDead for a dead incarnation and, once it
// returned nil, records the death handled. On an error it is called again
// by the next Start.
func (d *Dispatcher) handleDeath(info NodeInfo) {
	if d.opts.OnNodeDead != nil {
		if err := d.opts.OnNodeDead(d.ctx, info); err != nil {
			d.log.Error("remote: OnNodeDead failed; it is called again after a restart", "node", info.Name,
				"incarnation", info.Incarnation, "err", err)
			return
		}
	}
	d.nodeWrites.Lock()
	defer d.nodeWrites.Unlock()
	// Not d.ctx: a Stop right after OnNodeDead returned must not lose it.
	err := d.e.Store().Write(context.Background(), func(tx *durable.Tx) error {
		rec, ok, err := d.nodesC.Get(tx, info.Name)
		if err != nil || !ok {
			return err
		}
		rec.Unhandled = slices.DeleteFunc(rec.Unhandled, func(u deadIncarnation) bool { return u.Incarnation == info.Incarnation })
		return d.nodesC.Put(tx, info.Name, rec)
	})
	if err != nil {
		d.log.Error("remote: recording a node death handled failed", "node", info.Name, "err", err)
	}
}

// checkLeases declares dead the live nodes whose lease passed; it runs on
// the liveness goroutine, woken by the clock.
func (d *Dispatcher) checkLeases() {
	now := d.clock.Now()
	type victim struct {
		name string
		inc  uint64
	}
	var expired []victim
	d.mu.Lock()
	for name, n := range d.mu.nodes {
		if n.info.Live && now.Sub(n.info.LastHeartbeat) > d.opts.Lease {
			expired = append(expired, victim{name, n.info.Incarnation})
		}
	}
	d.mu.Unlock()
	for _, v := range expired {
		d.kill(d.ctx, v.name, v.inc, "lease expired")
	}
}

// armLeaseCheckLocked runs checkLeases Lease/4 from now on the clock
// (on the goroutine that moves a ManualClock, so that a test sees its
// effects when Advance returns), and again after each run, until Stop.
// d.mu is held.
func (d *Dispatcher) armLeaseCheckLocked() {
	if d.mu.stopped {
		return
	}
	d.mu.leaseT = d.clock.AfterFunc(max(d.opts.Lease/4, time.Millisecond), func() {
		d.mu.Lock()
		if d.mu.stopped {
			d.mu.Unlock()
			return
		}
		d.wg.Add(1)
		d.mu.Unlock()
		defer d.wg.Done()
		d.checkLeases()
		d.mu.Lock()
		d.armLeaseCheckLocked()
		d.mu.Unlock()
	})
}

// Nodes returns the liveness table, by name.
func (d *Dispatcher) Nodes() []NodeInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]NodeInfo, 0, len(d.mu.nodes))
	for _, n := range d.mu.nodes {
		out = append(out, n.info)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
