package procedure

import (
	"errors"
	"math/rand/v2"
	"time"
)

// RetryPolicy is how a failing step is retried: the first retry after
// Initial, each later one after twice the previous delay, up to Max; each
// delay is then moved by a random fraction of itself within ±Jitter (0.2:
// between 80% and 120%; negative: no jitter), so that procedures failing
// together do not retry together. Attempts bounds the retries of a forward step that
// returned a Retryable error (0: no bound); once they are used up, the
// step fails for good. Rollback steps and steps past the point of no
// return are retried without bound: they cannot fail.
//
// Retries write nothing to the store (HBASE-21233): the attempt count and
// the last error are kept in memory and shown in Info (Retries,
// LastError); after a restart the count starts again.
type RetryPolicy struct {
	Initial  time.Duration
	Max      time.Duration
	Jitter   float64
	Attempts int
}

// withDefaults fills the zero fields of p from def.
func (p RetryPolicy) withDefaults(def RetryPolicy) RetryPolicy {
	if p.Initial <= 0 {
		p.Initial = def.Initial
	}
	if p.Max <= 0 {
		p.Max = def.Max
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Jitter == 0 {
		p.Jitter = def.Jitter
	}
	if p.Attempts <= 0 {
		p.Attempts = def.Attempts
	}
	return p
}

// delay returns the delay before retry n (1 for the first).
func (p RetryPolicy) delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if p.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + min(p.Jitter, 1)*(2*rand.Float64()-1)))
	}
	return max(d, time.Millisecond)
}

// retryableError marks an error a step may be retried after.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// Retryable marks err as transient: a step (Execute) that returns it is
// retried after a delay (the type's RetryPolicy) instead of failing the
// procedure. Nothing of the failed attempt is committed: its recorded
// writes are dropped and its data is reloaded as last committed. Once
// the policy's Attempts are used up, the step fails with err. Retryable(nil)
// is nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

// IsRetryable reports whether err was marked with Retryable.
func IsRetryable(err error) bool {
	var r *retryableError
	return errors.As(err, &r)
}
