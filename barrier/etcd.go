package barrier

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// EtcdOptions configure the etcd transport. The zero value gives the
// defaults written on each field.
type EtcdOptions struct {
	// Prefix is the key prefix every key lives under; it must end in "/".
	// Default "/procyon/barrier/".
	Prefix string
	// TTL is each session's lease time to live: how long after a party
	// dies or is cut off its keys vanish and the others abort. Rounded up
	// to whole seconds (etcd's lease granularity). Default 10 s.
	TTL time.Duration
	// MaxTxnOps must match the etcd server's --max-txn-ops. The reached
	// transaction compares one key per member plus three, so a procedure
	// may name at most MaxTxnOps-3 members. Default 128 (etcd's default).
	MaxTxnOps int
}

// EnsureDefaults fills unset fields with their defaults.
func (o *EtcdOptions) EnsureDefaults() {
	if o.Prefix == "" {
		o.Prefix = "/procyon/barrier/"
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = 128
	}
}

// Etcd is the etcd transport. Each coordinator and member session holds an
// etcd lease kept alive by the client; what a party writes lives under its
// lease, so its death shows as deleted keys within TTL. Decisions are
// transactions: see doc.go for the layout and the rules.
type Etcd struct {
	cli  *clientv3.Client
	opts EtcdOptions
	keys etcdKeys
}

var _ Transport = (*Etcd)(nil)

// NewEtcd returns the etcd transport on cli; the caller keeps ownership of
// cli and closes it after the sessions it opened.
func NewEtcd(cli *clientv3.Client, opts EtcdOptions) (*Etcd, error) {
	opts.EnsureDefaults()
	if !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("%w: etcd prefix %q must end in /", ErrInvalid, opts.Prefix)
	}
	if opts.MaxTxnOps < 4 {
		return nil, fmt.Errorf("%w: MaxTxnOps %d < 4", ErrInvalid, opts.MaxTxnOps)
	}
	return &Etcd{cli: cli, opts: opts, keys: etcdKeys{opts.Prefix}}, nil
}

// MaxMembers returns how many members one procedure may name.
func (t *Etcd) MaxMembers() int { return t.opts.MaxTxnOps - 3 }

// LiveMembers returns the names of the members whose sessions are open
// (their members/ key, held under their lease, exists), in name order:
// the members a procedure started now can reach. A member's key is gone
// once its session closes or its lease expires.
func (t *Etcd) LiveMembers(ctx context.Context) ([]string, error) {
	prefix := t.keys.member("")
	resp, err := t.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		names = append(names, strings.TrimPrefix(string(kv.Key), prefix))
	}
	return names, nil
}

// session grants a lease and keeps it alive until the session is closed.
func (t *Etcd) session(ctx context.Context) (*concurrency.Session, error) {
	ttl := int64(math.Ceil(t.opts.TTL.Seconds()))
	lease, err := t.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("barrier: etcd: grant lease: %w", err)
	}
	// The session's context only stops the keepalives; the session lives
	// until Close, not until the opener's ctx ends.
	// WithTTL bounds the revoke in Close: it is pointless to wait longer
	// than the lease would take to expire.
	s, err := concurrency.NewSession(t.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(ttl)),
		concurrency.WithContext(context.Background()))
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.cli.Revoke(rctx, lease.ID)
		cancel()
		return nil, fmt.Errorf("barrier: etcd: session: %w", err)
	}
	return s, nil
}

func isLeaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// abort implements first-writer-wins for both sides: the abort is written
// under the coordinator's lease (lease), so it vanishes with the procedure.
func (t *Etcd) abort(ctx context.Context, ref Ref, ae *AbortError, lease clientv3.LeaseID) (*AbortError, error) {
	k := t.keys
	rec, ab, done := k.proc(ref.Name, leafRecord), k.proc(ref.Name, leafAbort), k.proc(ref.Name, leafComplete)
	resp, err := t.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(rec), "=", ref.Instance),
		clientv3.Compare(clientv3.CreateRevision(ab), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(done), "=", 0),
	).Then(
		clientv3.OpPut(ab, encodeAbort(ref.Instance, ae), clientv3.WithLease(lease)),
	).Else(
		clientv3.OpGet(rec), clientv3.OpGet(ab), clientv3.OpGet(done),
	).Commit()
	switch {
	case isLeaseGone(err):
		return nil, fmt.Errorf("%w: %s: the coordinator's lease is gone", ErrNoProcedure, ref)
	case err != nil:
		return nil, fmt.Errorf("barrier: etcd: record abort of %s: %w", ref, err)
	case resp.Succeeded:
		return ae, nil
	}
	r := resp.Responses
	if kv := first(r[0]); kv == nil || kv.CreateRevision != ref.Instance {
		return nil, fmt.Errorf("%w: %s", ErrNoProcedure, ref)
	}
	if kv := first(r[1]); kv != nil {
		if inst, winner, err := decodeAbort(kv.Value); err == nil && inst == ref.Instance {
			return winner, nil
		}
	}
	if kv := first(r[2]); kv != nil {
		return nil, nil
	}
	return nil, fmt.Errorf("barrier: etcd: abort of %s refused for no known reason", ref)
}

func first(r *etcdserverpb.ResponseOp) *mvccpb.KeyValue {
	if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
		return rr.Kvs[0]
	}
	return nil
}

// watchFailure describes a watch that ended on its own.
func watchFailure(source string, what string, resp *clientv3.WatchResponse, err error) *AbortError {
	if resp != nil && resp.CompactRevision != 0 {
		return newAbort(source, KindTransport, err, "etcd watch of %s compacted at revision %d", what, resp.CompactRevision)
	}
	return newAbort(source, KindTransport, err, "etcd watch of %s failed", what)
}

// ---- coordinator ----

// OpenCoordinator opens a session and waits until it holds the coordinator
// election (a concurrency.Mutex under coord/); the procedures it creates
// check that it still holds it (IsOwner) in every decision.
func (t *Etcd) OpenCoordinator(ctx context.Context) (CoordinatorConn, error) {
	s, err := t.session(ctx)
	if err != nil {
		return nil, err
	}
	mu := concurrency.NewMutex(s, t.keys.coord())
	if err := mu.Lock(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("barrier: etcd: become the coordinator: %w", err)
	}
	c := &etcdCoord{t: t, sess: s, mu: mu}
	c.procs.m = make(map[Ref]*etcdCoordProc)
	return c, nil
}

type etcdCoord struct {
	t    *Etcd
	sess *concurrency.Session
	mu   *concurrency.Mutex

	procs struct {
		sync.Mutex
		m      map[Ref]*etcdCoordProc
		closed bool
	}
}

type etcdCoordProc struct {
	spec   Spec
	cancel context.CancelFunc // stops the watches
	wg     sync.WaitGroup     // the watch goroutines
}

var _ CoordinatorConn = (*etcdCoord)(nil)

func (c *etcdCoord) lease() clientv3.LeaseID { return c.sess.Lease() }

func (c *etcdCoord) Create(ctx context.Context, spec Spec) (Ref, <-chan Event, error) {
	t, k := c.t, c.t.keys
	if len(spec.Members) > t.MaxMembers() {
		return Ref{}, nil, fmt.Errorf("%w: %d members; one etcd transaction can check at most %d (MaxTxnOps %d)",
			ErrInvalid, len(spec.Members), t.MaxMembers(), t.opts.MaxTxnOps)
	}
	rec, err := json.Marshal(recordValue{
		Version: formatVersion, Type: spec.Type, Args: spec.Args, Members: spec.Members,
		Lease: int64(c.lease()), Coordinator: c.mu.Key(),
	})
	if err != nil {
		return Ref{}, nil, err
	}
	recKey := k.proc(spec.Name, leafRecord)
	resp, err := t.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(recKey), "=", 0),
		c.mu.IsOwner(),
	).Then(
		clientv3.OpPut(recKey, string(rec), clientv3.WithLease(c.lease())),
		// Sweep what a dead run of the same name left behind: its
		// decisions died with its coordinator's lease, but markers of
		// members that outlived it may remain.
		clientv3.OpDelete(k.proc(spec.Name, leafReached)),
		clientv3.OpDelete(k.proc(spec.Name, leafComplete)),
		clientv3.OpDelete(k.proc(spec.Name, leafAbort)),
		clientv3.OpDelete(k.runs(spec.Name), clientv3.WithPrefix()),
	).Else(
		clientv3.OpGet(recKey),
	).Commit()
	switch {
	case isLeaseGone(err):
		return Ref{}, nil, fmt.Errorf("%w: session lease expired", ErrCoordinatorLost)
	case err != nil:
		return Ref{}, nil, fmt.Errorf("barrier: etcd: create %q: %w", spec.Name, err)
	case !resp.Succeeded:
		if first(resp.Responses[0]) != nil {
			return Ref{}, nil, fmt.Errorf("%w: %q", ErrDuplicate, spec.Name)
		}
		return Ref{}, nil, fmt.Errorf("%w: no longer the elected coordinator", ErrCoordinatorLost)
	}
	ref := Ref{Name: spec.Name, Instance: resp.Header.Revision}
	spec.Instance = ref.Instance
	p := &etcdCoordProc{spec: spec}
	c.procs.Lock()
	if c.procs.closed {
		c.procs.Unlock()
		return Ref{}, nil, ErrClosed
	}
	c.procs.m[ref] = p
	c.procs.Unlock()

	// Follow the members' markers and the abort from just after the
	// creation, so nothing written since is missed.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	p.cancel = cancel
	out := make(chan Event)
	runPrefix := k.run(ref)
	p.wg.Add(2)
	go c.follow(wctx, p, out, ref, t.cli.Watch(wctx, runPrefix, clientv3.WithPrefix(), clientv3.WithRev(ref.Instance+1)),
		"member markers", func(e *clientv3.Event) (Event, bool) {
			member, phase, ok := splitMarkKey(runPrefix, string(e.Kv.Key))
			if !ok {
				return Event{}, false
			}
			if e.Type == mvccpb.DELETE {
				return Event{Kind: EventLost, Ref: ref, Member: member}, true
			}
			mv, err := decodeMark(e.Kv.Value)
			if err != nil {
				return Event{Kind: EventFailed, Ref: ref, Err: newAbort(CoordinatorSource, KindTransport, err, "member %s's %s marker", member, phase)}, true
			}
			ev := Event{Ref: ref, Member: member, Took: time.Duration(mv.TookNS)}
			switch phase {
			case PhaseJoined:
				ev.Kind = EventJoined
			case PhaseAcquired:
				ev.Kind = EventAcquired
			case PhaseDone:
				ev.Kind, ev.Result = EventDone, mv.Result
			}
			return ev, true
		})
	go c.follow(wctx, p, out, ref, t.cli.Watch(wctx, k.proc(ref.Name, leafAbort), clientv3.WithRev(ref.Instance+1)),
		"the abort", func(e *clientv3.Event) (Event, bool) {
			if e.Type != mvccpb.PUT {
				return Event{}, false
			}
			inst, ae, err := decodeAbort(e.Kv.Value)
			if err != nil {
				return Event{Kind: EventFailed, Ref: ref, Err: newAbort(CoordinatorSource, KindTransport, err, "")}, true
			}
			return Event{Kind: EventAborted, Ref: ref, Err: ae}, inst == ref.Instance
		})
	go func() {
		p.wg.Wait()
		close(out)
	}()
	return ref, out, nil
}

// follow turns one watch into events until it is canceled; a watch that
// ends on its own (compaction, lost leader) becomes an EventFailed, so the
// procedure aborts rather than hangs.
func (c *etcdCoord) follow(ctx context.Context, p *etcdCoordProc, out chan<- Event, ref Ref, wch clientv3.WatchChan,
	what string, translate func(*clientv3.Event) (Event, bool)) {
	defer p.wg.Done()
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				send(Event{Kind: EventFailed, Ref: ref, Err: watchFailure(CoordinatorSource, what, &resp, err)})
			}
			return
		}
		for _, e := range resp.Events {
			if ev, ok := translate(e); ok && !send(ev) {
				return
			}
		}
	}
	if ctx.Err() == nil {
		send(Event{Kind: EventFailed, Ref: ref, Err: watchFailure(CoordinatorSource, what, nil, errors.New("watch channel closed"))})
	}
}

func (c *etcdCoord) proc(ref Ref) (*etcdCoordProc, error) {
	c.procs.Lock()
	defer c.procs.Unlock()
	if p := c.procs.m[ref]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNoProcedure, ref)
}

// decide writes key if the procedure is intact, not aborted, this session
// still leads and (for the barrier) every member's acquired marker exists.
func (c *etcdCoord) decide(ctx context.Context, ref Ref, leaf string, members []string) error {
	k := c.t.keys
	rec, ab := k.proc(ref.Name, leafRecord), k.proc(ref.Name, leafAbort)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(rec), "=", ref.Instance),
		clientv3.Compare(clientv3.CreateRevision(ab), "=", 0),
		c.mu.IsOwner(),
	}
	for _, m := range members {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k.mark(ref, m, PhaseAcquired)), ">", 0))
	}
	val, _ := json.Marshal(decisionValue{Instance: ref.Instance})
	resp, err := c.t.cli.Txn(ctx).If(cmps...).Then(
		clientv3.OpPut(k.proc(ref.Name, leaf), string(val), clientv3.WithLease(c.lease())),
	).Else(
		clientv3.OpGet(rec), clientv3.OpGet(ab), clientv3.OpGet(c.mu.Key()),
		clientv3.OpGet(k.run(ref), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	switch {
	case isLeaseGone(err):
		return &AbortError{Source: CoordinatorSource, Kind: KindCoordinatorLost, Message: "the coordinator's session lease expired", cause: err}
	case err != nil:
		return fmt.Errorf("barrier: etcd: record %s of %s: %w", leaf, ref, err)
	case resp.Succeeded:
		return nil
	}
	r := resp.Responses
	if kv := first(r[0]); kv == nil || kv.CreateRevision != ref.Instance {
		return &AbortError{Source: CoordinatorSource, Kind: KindCoordinatorLost, Message: "the procedure's record vanished with the coordinator's lease"}
	}
	if kv := first(r[1]); kv != nil {
		if inst, ae, err := decodeAbort(kv.Value); err == nil && inst == ref.Instance {
			return ae
		}
	}
	if first(r[2]) == nil {
		return &AbortError{Source: CoordinatorSource, Kind: KindCoordinatorLost, Message: "this coordinator no longer holds the election"}
	}
	present := make(map[string]bool)
	for _, kv := range r[3].GetResponseRange().GetKvs() {
		present[string(kv.Key)] = true
	}
	for _, m := range members {
		if !present[k.mark(ref, m, PhaseAcquired)] {
			return &AbortError{Source: m, Kind: KindMemberLost, Message: fmt.Sprintf("member %s's acquired marker vanished: its session ended", m)}
		}
	}
	return fmt.Errorf("barrier: etcd: %s of %s refused for no known reason", leaf, ref)
}

func (c *etcdCoord) Reach(ctx context.Context, ref Ref) error {
	p, err := c.proc(ref)
	if err != nil {
		return err
	}
	return c.decide(ctx, ref, leafReached, p.spec.Members)
}

func (c *etcdCoord) Complete(ctx context.Context, ref Ref) error {
	if _, err := c.proc(ref); err != nil {
		return err
	}
	return c.decide(ctx, ref, leafComplete, nil)
}

func (c *etcdCoord) Abort(ctx context.Context, ref Ref, ae *AbortError) (*AbortError, error) {
	return c.t.abort(ctx, ref, ae, c.lease())
}

// Remove stops following the procedure and deletes its keys.
func (c *etcdCoord) Remove(ctx context.Context, ref Ref) error {
	c.procs.Lock()
	p := c.procs.m[ref]
	delete(c.procs.m, ref)
	c.procs.Unlock()
	if p != nil {
		p.cancel()
		p.wg.Wait()
	}
	k := c.t.keys
	rec := k.proc(ref.Name, leafRecord)
	_, err := c.t.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(rec), "=", ref.Instance),
	).Then(
		clientv3.OpDelete(rec),
		clientv3.OpDelete(k.proc(ref.Name, leafReached)),
		clientv3.OpDelete(k.proc(ref.Name, leafComplete)),
		clientv3.OpDelete(k.proc(ref.Name, leafAbort)),
		clientv3.OpDelete(k.runs(ref.Name), clientv3.WithPrefix()),
	).Else(
		// Another run owns the name now: remove only this run's markers.
		clientv3.OpDelete(k.run(ref), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("barrier: etcd: remove %s: %w", ref, err)
	}
	return nil
}

func (c *etcdCoord) Done() <-chan struct{} { return c.sess.Done() }

func (c *etcdCoord) Err() error {
	c.procs.Lock()
	closed := c.procs.closed
	c.procs.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-c.sess.Done():
		return &AbortError{Source: CoordinatorSource, Kind: KindCoordinatorLost,
			Message: fmt.Sprintf("the coordinator's session lease %x expired", int64(c.lease()))}
	default:
		return nil
	}
}

// Close stops following every procedure and revokes the lease: the
// election key and every procedure record vanish, so members clean up.
func (c *etcdCoord) Close() error {
	c.procs.Lock()
	if c.procs.closed {
		c.procs.Unlock()
		return nil
	}
	c.procs.closed = true
	procs := c.procs.m
	c.procs.m = nil
	c.procs.Unlock()
	for _, p := range procs {
		p.cancel()
		p.wg.Wait()
	}
	return c.sess.Close()
}

// ---- member ----

// OpenMember opens name's session and claims members/<name> under its
// lease; then it reads the running procedures (the late joiner's view) and
// follows proc/ from that revision on.
func (t *Etcd) OpenMember(ctx context.Context, name string) (MemberConn, error) {
	if err := CheckMemberName(name); err != nil {
		return nil, err
	}
	s, err := t.session(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	info, _ := json.Marshal(memberValue{Host: host, PID: os.Getpid(), Started: time.Now().UTC()})
	key := t.keys.member(name)
	resp, err := t.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
	).Then(
		clientv3.OpPut(key, string(info), clientv3.WithLease(s.Lease())),
	).Commit()
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("%w: %q", ErrDuplicateMember, name)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	c := &etcdMember{t: t, name: name, sess: s, events: make(chan Event), cancel: cancel, loopDone: make(chan struct{})}
	c.mu.known = make(map[string]knownProc)
	go c.loop(lctx)
	return c, nil
}

type etcdMember struct {
	t    *Etcd
	name string
	sess *concurrency.Session

	events   chan Event
	cancel   context.CancelFunc // stops loop
	loopDone chan struct{}
	sweeps   sync.WaitGroup // deletions of this member's markers of vanished runs

	mu struct {
		sync.Mutex
		known  map[string]knownProc // procedures naming this member, by name; written by loop
		err    error                // why the session ended
		closed bool
	}
}

// knownProc is a procedure run this member takes part in.
type knownProc struct {
	instance int64
	lease    clientv3.LeaseID // the coordinator's
}

var _ MemberConn = (*etcdMember)(nil)

func (c *etcdMember) Events() <-chan Event { return c.events }

func (c *etcdMember) fail(err error) {
	c.mu.Lock()
	if c.mu.err == nil {
		c.mu.err = err
	}
	c.mu.Unlock()
}

func (c *etcdMember) loop(ctx context.Context) {
	defer close(c.loopDone)
	defer close(c.events)
	k := c.t.keys
	emit := func(ev Event) bool {
		select {
		case c.events <- ev:
			return true
		case <-ctx.Done():
			return false
		case <-c.sess.Done():
			return false
		}
	}
	lost := func() {
		c.fail(&AbortError{Source: c.name, Kind: KindMemberLost, Message: fmt.Sprintf("member %s's session lease %x expired", c.name, int64(c.sess.Lease()))})
	}

	resp, err := c.t.cli.Get(ctx, k.procs(), clientv3.WithPrefix())
	if err != nil {
		if ctx.Err() == nil {
			c.fail(newAbort(c.name, KindTransport, err, "member %s: read the running procedures", c.name))
		}
		return
	}
	// The late joiner's view: records first (oldest run first), then the
	// decisions already taken.
	byName := map[string]map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		if name, leaf, ok := k.splitProcKey(string(kv.Key)); ok {
			if byName[name] == nil {
				byName[name] = map[string]*mvccpb.KeyValue{}
			}
			byName[name][leaf] = kv
		}
	}
	var records []*mvccpb.KeyValue
	for _, leaves := range byName {
		if kv := leaves[leafRecord]; kv != nil {
			records = append(records, kv)
		}
	}
	slices.SortFunc(records, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	for _, kv := range records {
		name, _, _ := k.splitProcKey(string(kv.Key))
		if ev, ok := c.translate(name, leafRecord, mvccpb.PUT, kv); ok && !emit(ev) {
			return
		}
		for _, leaf := range []string{leafReached, leafAbort, leafComplete} {
			if kv := byName[name][leaf]; kv != nil {
				if ev, ok := c.translate(name, leaf, mvccpb.PUT, kv); ok && !emit(ev) {
					return
				}
			}
		}
	}

	wch := c.t.cli.Watch(ctx, k.procs(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for {
		select {
		case wresp, ok := <-wch:
			if ctx.Err() != nil {
				return
			}
			if !ok {
				c.fail(watchFailure(c.name, "the procedures", nil, errors.New("watch channel closed")))
				return
			}
			if err := wresp.Err(); err != nil {
				c.fail(watchFailure(c.name, "the procedures", &wresp, err))
				return
			}
			for _, e := range wresp.Events {
				name, leaf, ok := k.splitProcKey(string(e.Kv.Key))
				if !ok {
					continue
				}
				if ev, ok := c.translate(name, leaf, e.Type, e.Kv); ok && !emit(ev) {
					if ctx.Err() == nil {
						lost()
					}
					return
				}
			}
		case <-c.sess.Done():
			if ctx.Err() == nil {
				lost()
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// translate turns a change of proc/<name>/<leaf> into an event for this
// member, if it concerns a run that names it.
func (c *etcdMember) translate(name, leaf string, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) (Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	known, isKnown := c.mu.known[name]
	ref := Ref{Name: name, Instance: known.instance}
	if leaf == leafRecord {
		if typ == mvccpb.DELETE {
			if !isKnown {
				return Event{}, false
			}
			delete(c.mu.known, name)
			c.sweep(ref)
			return Event{Kind: EventGone, Ref: ref}, true
		}
		if kv.Version != 1 {
			return Event{}, false // records are never rewritten; ignore a foreign write
		}
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			return Event{}, false // not ours to run; its coordinator fails it by timeout
		}
		if _, named := slices.BinarySearch(rec.Members, c.name); !named {
			return Event{}, false
		}
		ref.Instance = kv.CreateRevision
		c.mu.known[name] = knownProc{instance: ref.Instance, lease: clientv3.LeaseID(rec.Lease)}
		return Event{Kind: EventStarted, Ref: ref, Spec: &Spec{Name: name, Type: rec.Type, Args: rec.Args, Members: rec.Members, Instance: ref.Instance}}, true
	}
	if !isKnown || typ != mvccpb.PUT {
		return Event{}, false
	}
	switch leaf {
	case leafReached, leafComplete:
		inst, err := decodeDecision(kv.Value)
		if err != nil || inst != ref.Instance {
			return Event{}, false
		}
		if leaf == leafReached {
			return Event{Kind: EventReached, Ref: ref}, true
		}
		return Event{Kind: EventCompleted, Ref: ref}, true
	case leafAbort:
		inst, ae, err := decodeAbort(kv.Value)
		if err != nil || inst != ref.Instance {
			return Event{}, false
		}
		return Event{Kind: EventAborted, Ref: ref, Err: ae}, true
	}
	return Event{}, false
}

// sweep deletes this member's markers of a run whose record vanished. A
// coordinator that ends a run deletes them itself; one that died cannot,
// and they would otherwise stay until this member's lease ends.
func (c *etcdMember) sweep(ref Ref) {
	c.sweeps.Add(1)
	go func() {
		defer c.sweeps.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.t.cli.Delete(ctx, c.t.keys.run(ref)+c.name+"/", clientv3.WithPrefix())
	}()
}

func (c *etcdMember) Mark(ctx context.Context, ref Ref, mk Mark) error {
	k := c.t.keys
	rec, ab := k.proc(ref.Name, leafRecord), k.proc(ref.Name, leafAbort)
	reached, done := k.proc(ref.Name, leafReached), k.proc(ref.Name, leafComplete)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(rec), "=", ref.Instance),
		clientv3.Compare(clientv3.CreateRevision(ab), "=", 0),
	}
	if mk.Phase == PhaseJoined {
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(reached), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(done), "=", 0))
	}
	resp, err := c.t.cli.Txn(ctx).If(cmps...).Then(
		clientv3.OpPut(k.mark(ref, c.name, mk.Phase), encodeMark(mk), clientv3.WithLease(c.sess.Lease())),
	).Else(
		clientv3.OpGet(rec), clientv3.OpGet(ab),
	).Commit()
	switch {
	case isLeaseGone(err):
		return &AbortError{Source: c.name, Kind: KindMemberLost, Message: fmt.Sprintf("member %s's session lease expired", c.name), cause: err}
	case err != nil:
		return fmt.Errorf("barrier: etcd: mark %s %s: %w", ref, mk.Phase, err)
	case resp.Succeeded:
		return nil
	}
	r := resp.Responses
	if kv := first(r[0]); kv == nil || kv.CreateRevision != ref.Instance {
		return fmt.Errorf("%w: %s", ErrNoProcedure, ref)
	}
	if kv := first(r[1]); kv != nil {
		if inst, ae, err := decodeAbort(kv.Value); err == nil && inst == ref.Instance {
			return ae
		}
	}
	return fmt.Errorf("%w: %s", ErrLate, ref)
}

func (c *etcdMember) Abort(ctx context.Context, ref Ref, ae *AbortError) (*AbortError, error) {
	c.mu.Lock()
	known, ok := c.mu.known[ref.Name]
	c.mu.Unlock()
	if !ok || known.instance != ref.Instance {
		return nil, fmt.Errorf("%w: %s", ErrNoProcedure, ref)
	}
	return c.t.abort(ctx, ref, ae, known.lease)
}

func (c *etcdMember) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil {
		return c.mu.err
	}
	if c.mu.closed {
		return ErrClosed
	}
	return nil
}

// Close stops following procedures and revokes the lease: the member's
// markers vanish.
func (c *etcdMember) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	c.mu.Unlock()
	c.cancel()
	<-c.loopDone
	c.sweeps.Wait()
	return c.sess.Close()
}
