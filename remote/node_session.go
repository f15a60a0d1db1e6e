package remote

import (
	"context"
	"errors"
	"time"
)

// nodeSession keeps a node registered with the master: it registers,
// heartbeats at the interval the master asked for, registers again when
// the master no longer knows the incarnation, and starts a new
// incarnation when the master declared this one dead.
type nodeSession struct {
	n     *Node
	kickc chan struct{} // capacity 1: register again
	tick  chan struct{} // capacity 1: time to heartbeat
	// interval is the heartbeat interval the master gave; only register
	// and run (never at once) touch it.
	interval time.Duration
}

// defaultHeartbeat is used when a master gives no heartbeat interval.
const defaultHeartbeat = time.Second

// kick asks the session to register again.
func (s *nodeSession) kick() {
	select {
	case s.kickc <- struct{}{}:
	default:
	}
}

// register registers the current incarnation, retrying with backoff
// until the master answers or ctx ends. A master that answers
// ErrUnknownNode declared the incarnation dead: a new one replaces it
// (dropping everything the dead one knew) and registers.
func (s *nodeSession) register(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		inc := s.n.ops.incarnation()
		err := s.call(ctx, func(ctx context.Context, m MasterService) error {
			resp, err := m.Register(ctx, &RegisterRequest{Node: s.n.opts.Name, Addr: s.n.opts.Addr, Incarnation: inc})
			if err == nil {
				s.registered(resp)
			}
			return err
		})
		switch {
		case err == nil:
			s.n.log.Info("remote: registered", "master", s.n.opts.Master, "incarnation", inc,
				"epoch", s.n.ops.newestEpoch(), "heartbeat", s.interval)
			return nil
		case errors.Is(err, ErrUnknownNode):
			next := newIncarnation(inc)
			s.n.log.Warn("remote: master declared this incarnation dead; starting a new one",
				"incarnation", inc, "new", next, "err", err)
			s.n.ops.reset(next)
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			s.n.log.Warn("remote: register failed; retrying", "master", s.n.opts.Master, "attempt", attempt, "err", err)
		}
		if err := sleepClock(ctx, s.n.opts.Clock, backoff(s.n.opts.Retry, attempt)); err != nil {
			return err
		}
	}
}

// registered takes the master's answer to Register.
func (s *nodeSession) registered(resp *RegisterResponse) {
	s.n.ops.observeEpoch(resp.Epoch)
	s.interval = time.Duration(resp.HeartbeatMillis) * time.Millisecond
	if s.interval <= 0 {
		s.n.log.Warn("remote: master gave no heartbeat interval; using the default", "default", defaultHeartbeat)
		s.interval = defaultHeartbeat
	}
}

// call calls the master with a CallTimeout.
func (s *nodeSession) call(ctx context.Context, f func(ctx context.Context, m MasterService) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.n.opts.CallTimeout)
	defer cancel()
	return f(ctx, s.n.master())
}

// run heartbeats, and registers again when asked, until ctx ends.
func (s *nodeSession) run(ctx context.Context) {
	for {
		t := s.n.opts.Clock.AfterFunc(s.interval, func() {
			select {
			case s.tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kickc:
			t.Stop()
			if s.register(ctx) != nil {
				return
			}
		case <-s.tick:
			s.n.ops.sweep()
			if s.heartbeat(ctx) != nil {
				return
			}
		}
	}
}

// heartbeat renews the lease; a master that does not know the
// incarnation gets it registered again. The error is ctx's.
func (s *nodeSession) heartbeat(ctx context.Context) error {
	err := s.call(ctx, func(ctx context.Context, m MasterService) error {
		resp, err := m.Heartbeat(ctx, &HeartbeatRequest{Node: s.n.opts.Name,
			Incarnation: s.n.ops.incarnation(), Epoch: s.n.ops.newestEpoch()})
		if err == nil {
			s.n.ops.observeEpoch(resp.Epoch)
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownNode):
		s.n.log.Warn("remote: master does not know this incarnation; registering again", "err", err)
		return s.register(ctx)
	case errors.Is(err, ErrStaleEpoch):
		s.n.log.Warn("remote: heartbeat to a stale master", "err", err)
	case ctx.Err() == nil:
		s.n.log.Warn("remote: heartbeat failed", "err", err)
	}
	return ctx.Err()
}
