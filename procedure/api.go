package procedure

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procyon-dev/procyon/durable"
)

// SubmitOptions describe a submission.
type SubmitOptions struct {
	// Nonce, if set, makes the submission idempotent (HBase's nonce): a
	// later Submit with the same nonce returns the first one's id instead
	// of starting another procedure, also after a restart, for as long as
	// that procedure's result is kept.
	Nonce string
	// Submitter names who submitted (shown in Info); children inherit it.
	Submitter string
	// Timeout, if positive, is the procedure's deadline, counted from the
	// submission (default: its type's TypeOptions.Timeout). It is stored
	// with the procedure, so a restart does not restart it. When it passes
	// before the procedure finished, the procedure fails and its tree
	// rolls back, unless its type has an OnTimeout method: then OnTimeout
	// runs as its next step and decides (a procedure waiting for its
	// children fails all the same). A tree past its point of no return
	// cannot roll back: there a timeout is only logged. A step's own
	// timeout (Env.SetTimeout) is independent of it: whichever passes
	// first fires.
	Timeout time.Duration
}

// nonceWait is a submission with a nonce in flight: a concurrent one with
// the same nonce waits for its outcome.
type nonceWait struct {
	done chan struct{}
	id   ID
	err  error
}

func (e *Engine) notRunning() error {
	if err := e.Err(); err != nil {
		return err
	}
	return ErrNotStarted
}

// SubmitRaw submits a procedure of the type named typeName with data
// already encoded by the type's codec (for tools and servers that do not
// know the Go type). The data must decode.
func (e *Engine) SubmitRaw(ctx context.Context, typeName string, data []byte, opts SubmitOptions) (ID, error) {
	ti := e.types[typeName]
	if ti == nil {
		return 0, fmt.Errorf("%w %q", ErrUnknownType, typeName)
	}
	if _, err := e.decodeData(ti, ti.version, data); err != nil {
		return 0, fmt.Errorf("procedure: submit %s: %w", typeName, err)
	}
	return e.submit(ctx, ti, data, opts)
}

func (e *Engine) submit(ctx context.Context, ti *typeInfo, data []byte, opts SubmitOptions) (ID, error) {
	if !e.running() {
		return 0, e.notRunning()
	}
	if opts.Nonce != "" {
		nw, id, err := e.claimNonce(ctx, opts.Nonce)
		if nw == nil {
			return id, err
		}
		defer func() {
			e.mu.Lock()
			delete(e.nonceIn, opts.Nonce)
			e.mu.Unlock()
			close(nw.done)
		}()
		id, err = e.submitOnce(ctx, ti, data, opts)
		nw.id, nw.err = id, err
		return id, err
	}
	return e.submitOnce(ctx, ti, data, opts)
}

// claimNonce returns a nonceWait the caller now owns, or (nil, id) if a
// submission with nonce exists already.
func (e *Engine) claimNonce(ctx context.Context, nonce string) (*nonceWait, ID, error) {
	for {
		e.mu.Lock()
		if w := e.nonceIn[nonce]; w != nil {
			e.mu.Unlock()
			select {
			case <-w.done:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
			if w.err == nil {
				return nil, w.id, nil
			}
			continue
		}
		// Not in flight: committed (durable) or never seen.
		id, ok, err := e.nonces.Get(e.store.Latest(), nonce)
		if err != nil {
			e.mu.Unlock()
			return nil, 0, fmt.Errorf("procedure: nonce %q: %w", nonce, err)
		}
		if ok {
			e.mu.Unlock()
			return nil, ID(id), nil
		}
		w := &nonceWait{done: make(chan struct{})}
		e.nonceIn[nonce] = w
		e.mu.Unlock()
		return w, 0, nil
	}
}

func (e *Engine) submitOnce(ctx context.Context, ti *typeInfo, data []byte, opts SubmitOptions) (ID, error) {
	// The commit is not cancelled halfway: once handed to the committer,
	// it is waited for, so that Submit never returns an unknown outcome.
	c := e.pipeline.newCommit()
	c.kind, c.ti, c.sdata, c.sopts, c.done = kindSubmit, ti, data, opts, make(chan struct{})
	if !e.pipeline.send(c) {
		return 0, e.notRunning()
	}
	<-c.done
	id, err := c.id, c.err
	e.pipeline.freeCommit(c) // afterBatch is done with it once done is closed
	return id, err
}

// errNoop ends a commit function that has nothing to write.
var errNoop = errors.New("procedure: nothing to do")

// liveLocked returns live procedure id, or why it is not one
// (notLiveLocked).
func (e *Engine) liveLocked(r durable.Reader, id ID) (*proc, error) {
	if p := e.procs[id]; p != nil && p.committed {
		return p, nil
	}
	return nil, e.notLiveLocked(r, id)
}

// notLiveLocked explains why id is not a live procedure: finished, or
// unknown.
func (e *Engine) notLiveLocked(r durable.Reader, id ID) error {
	b, ok, err := e.procsC.Get(r, uint64(id))
	if err != nil {
		return err
	}
	if ok {
		if rec, err := decodeRecord(b); err == nil && rec.completed != 0 {
			return fmt.Errorf("%w: procedure %d", ErrFinished, id)
		}
	}
	return fmt.Errorf("%w: procedure %d", ErrNotFound, id)
}

// Abort asks the tree of procedure id to fail and roll back (a client's
// abort; HBase aborts the root). It is accepted only where rollback is
// possible: never once a procedure of the tree reached a state past its
// point of no return (ErrAbortRefused). The abort is durable when Abort
// returns; the rollback itself runs once no step of the tree is running.
// Aborting a tree that is already rolling back does nothing.
//
// A step of the tree running when the abort commits sees its context
// cancelled, with context.Cause ErrAborted: a long step should notice and
// return. Whatever it returns commits (its writes too, unless it returns
// an error), and its state is rolled back with the rest: the abort's own
// commit puts the state of every step running at that moment on the
// rollback stack, so that even if the step's commit is lost in a crash,
// its Rollback runs (Rollback must tolerate a state that did part of its
// work, or none). Wait on the tree returns an error matching
// ErrRolledBack whose source is "abort".
//
// who and why (both required) are recorded durably with the abort, in the
// root's error and in the audit log (Engine.Audit), as for Bypass.
func (e *Engine) Abort(ctx context.Context, id ID, who, why string) error {
	if who == "" || why == "" {
		return errors.New("procedure: Abort needs who and why")
	}
	if !e.running() {
		return e.notRunning()
	}
	var t *tree
	c, err := e.adminCommit(ctx, func(tx *durable.Tx, c *commit) error {
		p, err := e.liveLocked(tx, id)
		if err != nil {
			return err
		}
		t = p.t
		switch {
		case t.quarantine != "":
			return fmt.Errorf("%w: procedure %d: %s", ErrQuarantined, id, t.quarantine)
		case t.ts.done:
			return fmt.Errorf("%w: procedure %d", ErrFinished, id)
		case t.ts.failed:
			return errNoop
		case t.ts.pastPONR:
			return fmt.Errorf("%w: procedure %d: its tree (root %d) is past its point of no return: %s", ErrAbortRefused, id, t.root.id, t.ts.ponr)
		}
		root, now := t.root, e.now()
		c.p, c.t = root, t
		c.begin(t)
		c.markDirty(root)
		root.ps.aborted = true
		root.ps.err = &Error{Source: abortSource, Message: fmt.Sprintf("aborted by %s (procedure %d): %s", who, id, why), outcome: outcomeAborted}
		root.ps.updated = now
		t.ts.failed = true
		e.stackRunningLocked(c, t, now)
		return e.appendAudit(tx, Action{Kind: "abort", Target: id, Root: root.id, Who: who, Why: why, At: timeOf(now)})
	})
	if c == nil {
		return err
	}
	if t.root.typ != nil {
		t.root.typ.stats.aborted.Add(1)
	}
	e.log.Info("procedure: aborted", "id", id, "root", t.root.id, "who", who, "why", why)
	e.mu.Lock()
	for _, q := range t.procs {
		if q.running && q.run != nil {
			q.run.cancel(ErrAborted)
		}
	}
	for _, q := range c.dirty {
		e.changedLocked(q.id)
	}
	e.maybeRollbackLocked(t)
	e.mu.Unlock()
	return nil
}

// stackRunningLocked puts the state of every step of t that runs and has
// not committed on t's rollback stack, in c: the tree is failing, and
// the step may have done its work even if its commit is lost. The
// step's own commit then finds its state on top of its entries and adds
// none, only its own time (pushEntryLocked).
func (e *Engine) stackRunningLocked(c *commit, t *tree, now int64) {
	for _, q := range t.procs {
		if q.running && q.run != nil && q.ps.steps == q.run.steps && q.ps.bypass == nil {
			c.markDirty(q)
			e.pushEntryLocked(q, entry{state: q.run.state, at: now})
		}
	}
}

// adminCommit commits an administrative change (an abort, a bypass, a
// timeout's failure) in its own store transaction: fn runs under the
// engine's lock, changes the procedures through c (begin, markDirty) and
// returns nil, or errNoop if there is nothing to do, or why it refuses.
// The records c marked are then stored. It returns c once the change is
// durable, or nil (with a nil error for errNoop).
func (e *Engine) adminCommit(ctx context.Context, fn func(tx *durable.Tx, c *commit) error) (*commit, error) {
	c := &commit{}
	err := e.store.Write(context.WithoutCancel(ctx), func(tx *durable.Tx) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if err := fn(tx, c); err != nil {
			return err
		}
		return e.putDirtyLocked(tx, c)
	})
	switch {
	case errors.Is(err, errNoop):
		return nil, nil
	case err != nil:
		return nil, e.afterFailedAdmin(c, err)
	}
	e.mu.Lock()
	for _, q := range c.dirty {
		e.indexLocked(q)
	}
	e.mu.Unlock()
	return c, nil
}

// afterFailedAdmin cleans up after a failed Abort, Bypass, Ack, Signal or
// timeout commit: what the commit changed in memory is undone, and a
// store that failed stops the engine (unless it is stopping anyway).
func (e *Engine) afterFailedAdmin(c *commit, err error) error {
	if c.applied {
		e.mu.Lock()
		e.undoLocked(c)
		e.mu.Unlock()
	}
	if !e.storeHealthy(err) && e.running() {
		e.fail(err)
	}
	return err
}

// Bypass forces procedure id to finish without running its steps
// (HBCK2's bypass), for a procedure stuck for good. who and why are
// recorded durably, on every procedure the bypass reaches (Info.Bypass:
// Target is id, Role how it reached the procedure), and the bypass is
// durable when Bypass returns; from then on no procedure it reached
// starts a forward step (an ancestor is still rolled back if its tree
// fails later).
//
// In a running tree, id and its unfinished descendants finish at once,
// as succeeded (a step of theirs still running is discarded when it
// returns; its context is cancelled with cause ErrBypassed), and every
// ancestor of id is bypassed too: it runs no further state, its timeout
// is cleared, and it finishes once its other children have (the root then
// completes the tree, as succeeded but bypassed; its result keeps its own
// Bypass). Bypassing the root completes the tree at once, whatever its
// procedures were doing (running a step, waiting for locks, an event, a
// timer or children), and lets go of their locks, lock requests, timers
// and event waits. So
// nothing builds on work that never happened, and siblings still running
// finish their work. Wait on any of them returns a Result whose Err
// matches ErrBypassed. In a tree that is rolling back, the rollback of
// id and its descendants is skipped (their executed states stay as they
// are); bypassing the root there completes the tree as rolled back (Err
// matches both ErrRolledBack and ErrBypassed). Bypass of a quarantined
// tree is allowed on its root only, and completes the tree.
func (e *Engine) Bypass(ctx context.Context, id ID, who, why string) error {
	if !e.running() {
		return e.notRunning()
	}
	if who == "" || why == "" {
		return errors.New("procedure: Bypass needs who and why")
	}
	var t *tree
	c, err := e.adminCommit(ctx, func(tx *durable.Tx, c *commit) error {
		p, err := e.liveLocked(tx, id)
		if err != nil {
			return err
		}
		t = p.t
		switch {
		case t.ts.done:
			return fmt.Errorf("%w: procedure %d", ErrFinished, id)
		case t.root == nil || p.typeName == "":
			return fmt.Errorf("%w: procedure %d: %s (its record cannot be rewritten)", ErrQuarantined, id, t.quarantine)
		case t.quarantine != "" && p != t.root:
			return fmt.Errorf("%w: procedure %d: %s (bypass its root %d)", ErrQuarantined, id, t.quarantine, t.root.id)
		case p.ps.bypass != nil && p.ps.bypass.Role != BypassAncestor:
			return errNoop
		case !t.ts.failed && p.ps.status == Succeeded:
			return fmt.Errorf("%w: procedure %d", ErrFinished, id)
		}
		c.p, c.t = nil, t
		c.begin(t)
		now := e.now()
		b := Bypass{Who: who, Why: why, At: now, Target: id}
		if err := e.bypassLocked(tx, c, p, b); err != nil {
			return err
		}
		return e.appendAudit(tx, Action{Kind: "bypass", Target: id, Root: t.root.id, Who: who, Why: why, At: timeOf(now)})
	})
	if c == nil {
		return err
	}
	e.log.Warn("procedure: bypassed", "id", id, "root", t.root.id, "who", who, "why", why)
	e.mu.Lock()
	for _, q := range c.dirty {
		if q.ps.bypass == nil {
			continue
		}
		if q.running && q.run != nil && q.ps.bypass.Role != BypassAncestor {
			q.run.cancel(ErrBypassed)
		}
		if !c.completed && q.ps.bypass.Role == BypassAncestor {
			e.stopTimerLocked(q.rd().timeoutTimer) // it runs no further state
		}
	}
	e.postCommitLocked(c)
	e.mu.Unlock()
	return nil
}

// bypassLocked bypasses p (Bypass's commit function, past its checks).
func (e *Engine) bypassLocked(tx *durable.Tx, c *commit, p *proc, b Bypass) error {
	t := p.t
	e.bypassSubtreeLocked(c, p, b)
	switch {
	case p == t.root:
		status := Succeeded
		if t.ts.failed {
			status = RolledBack
		}
		return e.completeLocked(tx, c, t, status, b.At)
	case !t.ts.failed:
		e.bypassAncestorsLocked(c, p, b)
		return e.childDoneLocked(tx, c, e.procs[p.parent], b.At)
	}
	return nil
}

// bypassSubtreeLocked bypasses p and its unfinished descendants: in a
// running tree they finish as succeeded; in a failed one their rollback
// is skipped.
func (e *Engine) bypassSubtreeLocked(c *commit, p *proc, b Bypass) {
	failed := p.t.ts.failed
	for _, q := range p.t.procs {
		role := BypassDirect
		switch {
		case q == p:
		case e.descendsLocked(q, p):
			role = BypassDescendant
		default:
			continue
		}
		if !failed && q.ps.status == Succeeded {
			continue
		}
		c.markDirty(q)
		qb := b
		qb.Role = role
		q.ps.bypass = &qb
		q.ps.updated = b.At
		if q.ps.ext != nil {
			x := q.ps.w()
			x.timeout, x.stepTimeout, x.locks = 0, 0, nil
		}
		if !failed {
			q.ps.status = Succeeded
		}
		c.finished = append(c.finished, q)
		if q.typ != nil {
			q.typ.stats.bypassed.Add(1)
		}
	}
}

// bypassAncestorsLocked bypasses the ancestors of p (which is bypassed in
// a running tree): they run no further state (their timeouts are
// cleared) and finish once their unfinished children have
// (childDoneLocked).
func (e *Engine) bypassAncestorsLocked(c *commit, p *proc, b Bypass) {
	b.Role = BypassAncestor
	for a := e.procs[p.parent]; a != nil; a = e.procs[a.parent] {
		if a.ps.bypass == nil {
			c.markDirty(a)
			ab := b
			a.ps.bypass = &ab
			a.ps.updated = b.At
			if a.ps.timeout() != 0 || a.ps.stepTimeout() != 0 {
				x := a.ps.w()
				x.timeout, x.stepTimeout = 0, 0
			}
		}
	}
}

// descendsLocked reports whether q descends from p.
func (e *Engine) descendsLocked(q, p *proc) bool {
	for n := 0; q.parent != 0 && n < 1<<20; n++ {
		if q.parent == p.id {
			return true
		}
		if q = e.procs[q.parent]; q == nil {
			return false
		}
	}
	return false
}

// Ack acknowledges that the client has seen the result of finished root
// id: it is then kept for Options.AckedResultTTL only.
func (e *Engine) Ack(ctx context.Context, id ID) error {
	if !e.running() {
		return e.notRunning()
	}
	var expiry int64
	err := e.store.Write(context.WithoutCancel(ctx), func(tx *durable.Tx) error {
		b, ok, err := e.procsC.Get(tx, uint64(id))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: procedure %d", ErrNotFound, id)
		}
		r, err := decodeRecord(b)
		if err != nil {
			return fmt.Errorf("%w: procedure %d: %v", ErrQuarantined, id, err)
		}
		if r.completed == 0 {
			return fmt.Errorf("%w: procedure %d", ErrNotFinished, id)
		}
		if r.acked != 0 {
			return errNoop
		}
		r.acked = e.now()
		expiry = e.expiry(r.completed, r.acked)
		return e.procsC.Put(tx, uint64(id), appendRecord(nil, r))
	})
	if errors.Is(err, errNoop) {
		return nil
	}
	if err != nil {
		return e.afterFailedAdmin(&commit{}, err)
	}
	e.mu.Lock()
	e.results.add(id, expiry)
	e.mu.Unlock()
	return nil
}

// HistoryStep is one executed state of a procedure (Info.History).
type HistoryStep struct {
	State int64
	Name  string    // State's name if its type is a fmt.Stringer
	At    time.Time // when the step that executed it (the last one, if it ran again) committed; zero: recorded before times were
	// RolledBack is when the rollback step that undid it committed (zero:
	// not undone).
	RolledBack time.Time
}

// Info is the status of one procedure.
type Info struct {
	ID, Parent, Root ID
	Type             string
	Version          uint32
	Status           Status
	State            int64  // the state it runs next (or ran last, once finished)
	StateName        string // State's name if its type is a fmt.Stringer
	Executed         []int64
	Steps            int // committed steps, forward and rollback
	Children         []ID
	Submitter, Nonce string
	Created          time.Time
	Updated          time.Time
	Completed        time.Time // finished roots
	Acked            time.Time
	Err              *Error
	Bypass           *Bypass // nil, or who bypassed it, why, which procedure (Target) and how it reached this one (Role)
	Aborted          bool
	RollingBack      bool // its tree failed and is rolling back
	// NoReturn says which procedure of its live tree reached a state past
	// its point of no return, and which state ("": none, and Abort is
	// accepted): the reason Abort would give for ErrAbortRefused.
	NoReturn     string
	Running      bool   // a worker holds it
	Quarantined  string // why its tree does not run ("" if it does)
	Retries      int    // failed attempts of its current step (or its tree's rollback step)
	LastError    string
	Event        string    // Suspended: the event it waits for
	WakeAt       time.Time // Suspended: the time it sleeps until
	Deadline     time.Time // its timeout's deadline (zero: none)
	StepDeadline time.Time // the deadline its last step set (Env.SetTimeout; zero: none)
	Locks        []Lock    // locks it holds (across steps, or for its current step)
	// History is its timeline: the states it executed, in the order it
	// ran them, each with the time its step committed, and, for those its
	// tree's rollback undid, when that was (the others are Executed). A
	// finished root keeps its own; a finished tree's other procedures are
	// gone.
	History         []HistoryStep
	WaitingForLocks bool // parked until its locks are free
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (e *Engine) infoOf(id ID, b []byte) Info {
	in := Info{ID: id}
	r, err := decodeRecord(b)
	if err != nil {
		in.Quarantined = fmt.Sprintf("undecodable record: %v", err)
		return in
	}
	in.Parent, in.Root, in.Type, in.Version, in.Status = r.parent, r.root, r.typ, r.version, r.status
	in.State, in.StateName = r.next, fmt.Sprint(r.next)
	if ti := e.types[r.typ]; ti != nil {
		in.StateName = ti.stateName(r.next)
	}
	for _, en := range r.entries {
		in.Executed = append(in.Executed, en.state)
	}
	in.History = e.historyOf(r)
	in.Steps = int(r.steps)
	in.Submitter, in.Nonce = r.submitter, r.nonce
	in.Created, in.Updated, in.Completed, in.Acked = timeOf(r.created), timeOf(r.updated), timeOf(r.completed), timeOf(r.acked)
	in.Err, in.Bypass, in.Aborted = r.err, r.bypass, r.aborted
	if b := r.bypass; b != nil && b.Target == 0 {
		nb := *b // recorded before targets were: bypassed directly
		nb.Target = id
		in.Bypass = &nb
	}
	in.Event, in.WakeAt, in.Deadline, in.StepDeadline = r.wait.event, timeOf(r.wait.until), timeOf(r.timeout), timeOf(r.stepTimeout)
	return in
}

// historyOf returns the states r executed with their names and times:
// those on the rollback stack, then those undone (undone from the top of
// the stack down, so last first).
func (e *Engine) historyOf(r *record) []HistoryStep {
	n := len(r.entries) + len(r.undone)
	if n == 0 {
		return nil
	}
	ti := e.types[r.typ]
	name := func(s int64) string {
		if ti != nil {
			return ti.stateName(s)
		}
		return fmt.Sprint(s)
	}
	h := make([]HistoryStep, 0, n)
	for _, en := range r.entries {
		h = append(h, HistoryStep{State: en.state, Name: name(en.state), At: timeOf(en.at)})
	}
	for i := len(r.undone) - 1; i >= 0; i-- {
		u := r.undone[i]
		h = append(h, HistoryStep{State: u.state, Name: name(u.state), At: timeOf(u.at), RolledBack: timeOf(u.undoneAt)})
	}
	return h
}

// overlayLocked adds what only memory knows to in.
func (e *Engine) overlayLocked(in *Info) {
	p := e.procs[in.ID]
	if p == nil {
		return
	}
	t := p.t
	in.Running = p.running
	in.Retries, in.LastError = p.retries, p.lastErr
	if t.quarantine != "" {
		in.Quarantined = t.quarantine
	}
	if (in.Status == Waiting || in.Status == Suspended) && p.ps.status == Runnable {
		in.Status = Runnable // children done, or woken: its next commit stores it
		in.Event, in.WakeAt = "", time.Time{}
	}
	switch {
	case p.rd().holdLocks != nil:
		in.Locks = p.rd().holdLocks.locks
	case p.rd().stepLocks != nil && !p.lockWaiting:
		in.Locks = p.rd().stepLocks.locks
	}
	in.WaitingForLocks = p.lockWaiting
	in.RollingBack = t.ts.failed && !t.ts.done
	if t.ts.pastPONR && !t.ts.done {
		in.NoReturn = t.ts.ponr
	}
	if t.root == p && t.retries > 0 {
		in.Retries, in.LastError = t.retries, t.lastErr
	}
	for _, q := range t.procs {
		if q.parent == p.id && q.committed {
			in.Children = append(in.Children, q.id)
		}
	}
}

// Get returns the status of procedure id, as of its last durable commit
// (and, for live procedures, what the engine knows in memory: running,
// retries, quarantine, children). Children of a finished tree are gone
// (ErrNotFound); so is a root whose result expired.
func (e *Engine) Get(id ID) (Info, error) {
	b, ok, _ := e.procsC.Get(e.store.Latest(), uint64(id)) // Bytes values: no decoding error
	if !ok {
		return Info{}, fmt.Errorf("%w: procedure %d", ErrNotFound, id)
	}
	in := e.infoOf(id, b)
	e.mu.Lock()
	e.overlayLocked(&in)
	e.mu.Unlock()
	return in, nil
}

// Finished reports whether procedure id will run no more steps: it
// succeeded or rolled back (a finished root whose result is kept), or the
// store holds no such procedure. It reads only the stored record's status
// byte: a cheap check for code that keeps things for a procedure (package
// remote drops the outcome of an operation whose procedure is gone).
func (e *Engine) Finished(id ID) bool {
	b, ok, _ := e.procsC.Get(e.store.Latest(), uint64(id)) // Bytes values: no decoding error
	if !ok {
		return true
	}
	st, ok := storedStatus(b)
	return ok && (st == Succeeded || st == RolledBack)
}
