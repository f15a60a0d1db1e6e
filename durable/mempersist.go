package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// MemPersistence is a Persistence in memory, for tests: every record is
// durable as soon as it is appended, and snapshots are byte slices. It
// keeps the same data across Close and Open, so a test can reopen a store
// on it as after a clean restart. Fail makes it fail like a broken disk.
type MemPersistence struct {
	mu struct {
		sync.Mutex
		open  bool
		recs  [][]byte // records first, first+1, ...
		first uint64
		snaps []memSnap // ascending seq
		err   error     // set by Fail
	}
}

type memSnap struct {
	seq  uint64
	data []byte
}

var _ Persistence = (*MemPersistence)(nil)

// NewMemPersistence returns an empty in-memory persistence.
func NewMemPersistence() *MemPersistence {
	m := &MemPersistence{}
	m.mu.first = 1
	return m
}

// Fail makes every later Append fail with an error wrapping err, as a log
// whose disk failed.
func (m *MemPersistence) Fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.err = err
}

// Open implements Persistence.
func (m *MemPersistence) Open() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.open {
		return errors.New("durable: memory persistence already open")
	}
	m.mu.open = true
	return nil
}

// Recovered implements Persistence: there is nothing to repair.
func (m *MemPersistence) Recovered() error { return nil }

// Close implements Persistence.
func (m *MemPersistence) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.open = false
	return nil
}

// LogBounds implements Persistence.
func (m *MemPersistence) LogBounds() (uint64, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.first, m.mu.first + uint64(len(m.mu.recs)) - 1, nil
}

// Replay implements Persistence.
func (m *MemPersistence) Replay(from uint64, fn func(uint64, []byte) error) error {
	m.mu.Lock()
	first, recs := m.mu.first, slices.Clone(m.mu.recs)
	m.mu.Unlock()
	if from < first {
		return fmt.Errorf("durable: memory log starts at %d, asked for %d", first, from)
	}
	for i := from - first; i < uint64(len(recs)); i++ {
		if err := fn(first+i, recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Snapshots implements Persistence.
func (m *MemPersistence) Snapshots() ([]SnapshotInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SnapshotInfo
	for i := len(m.mu.snaps) - 1; i >= 0; i-- {
		s := m.mu.snaps[i]
		out = append(out, SnapshotInfo{Seq: s.seq, Name: fmt.Sprintf("mem-snapshot-%d", s.seq), Size: int64(len(s.data))})
	}
	return out, nil
}

// ReadSnapshot implements Persistence.
func (m *MemPersistence) ReadSnapshot(seq uint64) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.mu.snaps {
		if s.seq == seq {
			return io.NopCloser(bytes.NewReader(s.data)), nil
		}
	}
	return nil, fmt.Errorf("durable: no memory snapshot at %d", seq)
}

type memPending struct {
	seq uint64
	err error
}

func (p memPending) Seq() uint64                { return p.seq }
func (p memPending) Wait(context.Context) error { return p.err }

// memMaxRecord is the largest record MemPersistence takes.
const memMaxRecord = 16 << 20

// MaxRecordSize implements Persistence.
func (m *MemPersistence) MaxRecordSize() int { return memMaxRecord }

// Append implements Persistence.
func (m *MemPersistence) Append(recs [][]byte) (Pending, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mu.open {
		return nil, ErrClosed
	}
	if m.mu.err != nil {
		return nil, fmt.Errorf("durable: memory persistence failed: %w", m.mu.err)
	}
	first := m.mu.first + uint64(len(m.mu.recs))
	for _, r := range recs {
		if len(r) > memMaxRecord {
			return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(r))
		}
	}
	for _, r := range recs {
		m.mu.recs = append(m.mu.recs, bytes.Clone(r))
	}
	return memPending{seq: first}, nil
}

// WriteSnapshot implements Persistence.
func (m *MemPersistence) WriteSnapshot(seq uint64, write func(io.Writer) error) (int64, error) {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.err != nil {
		return 0, fmt.Errorf("durable: memory persistence failed: %w", m.mu.err)
	}
	m.mu.snaps = slices.DeleteFunc(m.mu.snaps, func(s memSnap) bool { return s.seq == seq })
	m.mu.snaps = append(m.mu.snaps, memSnap{seq: seq, data: buf.Bytes()})
	slices.SortFunc(m.mu.snaps, func(a, b memSnap) int { return cmpU64(a.seq, b.seq) })
	if n := len(m.mu.snaps); n > 2 {
		m.mu.snaps = slices.Clone(m.mu.snaps[n-2:])
	}
	if len(m.mu.snaps) == 2 {
		// Drop records up to the previous snapshot.
		prev := m.mu.snaps[0].seq
		if prev >= m.mu.first {
			drop := min(prev-m.mu.first+1, uint64(len(m.mu.recs)))
			m.mu.recs = slices.Clone(m.mu.recs[drop:])
			m.mu.first += drop
		}
	}
	return int64(buf.Len()), nil
}
