package region

import (
	"context"
	"errors"
	"fmt"

	"github.com/procyon-dev/procyon/wal"
)

// Put writes rows as one batch, all or nothing, and returns once the batch
// is durable: concurrent Puts share the log's fsyncs (group commit). A
// row's value replaces the key's earlier one. Rows are copied; the caller
// may reuse them. A row with an empty key fails the whole Put with
// ErrBadRow, writing nothing. If ctx ends first, Put returns its error and
// the batch may still become durable. A Put may flush the memstore (see
// Options.FlushBytes); if that flush fails, Put returns its error
// (ErrFailed) though the batch is durable.
func (r *Region) Put(ctx context.Context, rows ...Row) error {
	for _, row := range rows {
		if len(row.Key) == 0 {
			return ErrBadRow
		}
	}
	if len(rows) == 0 {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return r.mu.err
	}
	rec := encodePut(rows)
	p, err := r.append(rec)
	if err != nil {
		return err
	}
	if err := p.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return r.fail(err)
	}
	r.mu.Lock()
	r.applyDurableLocked()
	r.mu.Unlock()
	return r.maybeFlush()
}

// append gives rec the next seq and appends it to the log, in one step
// under the lock, so that log order is seq order.
func (r *Region) append(rec []byte) (*wal.Pending, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.err != nil {
		return nil, r.mu.err
	}
	seq := r.mu.lastSeq + 1
	setPutSeq(rec, seq)
	p, err := r.log.AppendAsync(wal.Entry{Data: rec})
	if errors.Is(err, wal.ErrTooLarge) {
		return nil, fmt.Errorf("region: put: %w", err)
	}
	if err != nil {
		return nil, r.failLocked(err)
	}
	r.mu.lastSeq = seq
	r.mu.queue = append(r.mu.queue, queuedPut{rec: rec, p: p})
	return p, nil
}

// applyDurableLocked applies the queued puts that are durable, in order.
// The log makes its records durable in order (DurableSeq), so once a
// put's Wait returns, it and every put before it are applied here. (Not
// Pending.Durable: the log may close a later batch's done before an
// earlier one's.)
func (r *Region) applyDurableLocked() {
	q := r.mu.queue
	durable := r.log.DurableSeq()
	n := 0
	for ; n < len(q) && q[n].p.LastSeq() <= durable; n++ {
		seq, rows, err := decodePut(q[n].rec)
		if err != nil {
			panic(fmt.Sprintf("region: decoding a put this process encoded: %v", err))
		}
		r.mu.mem.apply(seq, q[n].p.LastSeq(), rows)
		q[n] = queuedPut{}
	}
	r.mu.queue = q[n:]
	if len(r.mu.queue) == 0 {
		r.mu.queue = q[:0]
	}
}
