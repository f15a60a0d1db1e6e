package procedure

import (
	"iter"
	"maps"
)

// eventWaits owns the engine's in-memory state of events: the procedures
// suspended on each event, and those an event woke whose records still
// say suspended. Engine.mu guards it: every method is called with mu
// held. It reads the engine's live procedures to skip stale entries, and
// wakes procedures through the engine (wake).
type eventWaits struct {
	suspended map[string]map[*proc]struct{} // procedures suspended on each event (may hold stale entries)
	woken     map[string]map[*proc]struct{} // procedures an event woke whose records still say suspended
	procs     map[ID]*proc                  // the engine's live procedures, read only

	// wake makes suspended p runnable and queues it at the front.
	wake func(p *proc)
}

// newEventWaits returns event waits with nobody waiting.
func newEventWaits(procs map[ID]*proc, wake func(*proc)) *eventWaits {
	return &eventWaits{
		suspended: map[string]map[*proc]struct{}{},
		woken:     map[string]map[*proc]struct{}{},
		procs:     procs,
		wake:      wake,
	}
}

// suspend registers p, just suspended on event.
func (ev *eventWaits) suspend(p *proc, event string) {
	m := ev.suspended[event]
	if m == nil {
		m = map[*proc]struct{}{}
		ev.suspended[event] = m
	}
	m[p] = struct{}{}
}

// unsuspend forgets p's registration, if it is suspended on an event.
func (ev *eventWaits) unsuspend(p *proc) {
	if p.ps.wait().kind == waitEvent {
		delete(ev.suspended[p.ps.wait().event], p)
	}
}

// signal wakes the procedures suspended on event, to the front of the
// run queue. Their records still say suspended until their next commit;
// the event being signalled is what makes a restart wake them too (and
// ResetEvent rewrites them first).
func (ev *eventWaits) signal(event string) {
	for p := range ev.suspended[event] {
		if ev.procs[p.id] != p || p.ps.status != Suspended || p.ps.wait().kind != waitEvent || p.ps.wait().event != event {
			continue // stale: woken, failed or finished since
		}
		ev.wake(p)
		ev.markWoken(p, event)
	}
	delete(ev.suspended, event)
}

func (ev *eventWaits) markWoken(p *proc, event string) {
	ev.clearWoken(p)
	p.sched().wokenBy = event
	m := ev.woken[event]
	if m == nil {
		m = map[*proc]struct{}{}
		ev.woken[event] = m
	}
	m[p] = struct{}{}
}

// clearWoken: p's record was written since an event woke it.
func (ev *eventWaits) clearWoken(p *proc) {
	if p.rd().wokenBy == "" {
		return
	}
	if m := ev.woken[p.rd().wokenBy]; m != nil {
		delete(m, p)
		if len(m) == 0 {
			delete(ev.woken, p.rd().wokenBy)
		}
	}
	p.sched().wokenBy = ""
}

// wokenBy returns the procedures event woke whose records still say
// suspended (some may be stale).
func (ev *eventWaits) wokenBy(event string) iter.Seq[*proc] {
	return maps.Keys(ev.woken[event])
}

// reset forgets the procedures event woke: ResetEvent stored those of
// rewritten as runnable.
func (ev *eventWaits) reset(event string, rewritten []*proc) {
	for _, p := range rewritten {
		if p.rd().wokenBy == event {
			ev.clearWoken(p)
		}
	}
	delete(ev.woken, event)
}
