package wal

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/procyon-dev/procyon/internal/testseed"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/vfs"
)

func testSeed(t *testing.T) uint64 { return testseed.Seed(t) }

const crashDir = "/log"

// payload makes a self-describing record: its id and a body derived from it.
func payload(id int) []byte {
	n := 8 + id*37%300
	b := fmt.Appendf(make([]byte, 0, n+16), "id=%d;", id)
	for len(b) < n {
		b = append(b, byte('a'+(id+len(b))%26))
	}
	return b
}

func payloadID(b []byte) (int, bool) {
	var id int
	if _, err := fmt.Sscanf(string(b), "id=%d;", &id); err != nil {
		return 0, false
	}
	return id, bytes.Equal(b, payload(id))
}

// crashModel is what a workload knows about the log when the crash hits.
type crashModel struct {
	mu        sync.Mutex
	bySeq     map[uint64]int // seq -> id, for every record whose seq the workload learnt
	stream    map[uint64]uint32
	acked     map[uint64]bool // seqs acknowledged durable
	attempted map[int]bool    // every id ever handed to the log
	truncate  uint64          // TruncateFront permission (max)
	flushed   map[uint32]uint64
}

func newCrashModel() *crashModel {
	return &crashModel{bySeq: map[uint64]int{}, stream: map[uint64]uint32{}, acked: map[uint64]bool{}, attempted: map[int]bool{}, flushed: map[uint32]uint64{}}
}

func (m *crashModel) learnt(seq uint64, id int, stream uint32, acked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bySeq[seq] = id
	m.stream[seq] = stream
	if acked {
		m.acked[seq] = true
	}
}

func (m *crashModel) ackUpTo(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.bySeq {
		if s <= seq {
			m.acked[s] = true
		}
	}
}

// needed reports whether an acknowledged record must survive: nobody gave
// the log permission to delete it.
func (m *crashModel) needed(seq uint64) bool {
	return seq >= m.truncate && seq > m.flushed[m.stream[seq]]
}

// crashed reports whether err comes from the simulated crash (directly or
// as the cause of the log's failure).
func crashed(fs *vfs.MemFS, err error) bool { return err != nil && fs.Crashed() }

// runWorkload drives a seeded mix of every kind of append, rolls,
// truncations and clean reopens until it finishes or the FS crashes.
func runWorkload(t *testing.T, fs *vfs.MemFS, seed uint64, steps int) *crashModel {
	m := newCrashModel()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	opts := Options{FS: fs, SegmentSize: 2 << 10, Logger: quiet()}
	w, err := Open(crashDir, opts)
	if err != nil {
		if crashed(fs, err) {
			return m
		}
		t.Fatalf("seed %d: Open: %v", seed, err)
	}
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	nextID := 1
	newID := func() int {
		id := nextID
		nextID++
		m.mu.Lock()
		m.attempted[id] = true
		m.mu.Unlock()
		return id
	}
	fail := func(what string, err error) bool {
		if crashed(fs, err) {
			return true
		}
		t.Fatalf("seed %d: %s: %v", seed, what, err)
		return true
	}
	for step := 0; step < steps; step++ {
		switch op := rng.IntN(100); {
		case op < 35:
			id := newID()
			seq, err := w.Append(Entry{Data: payload(id)})
			if err != nil {
				if fail("Append", err) {
					return m
				}
			}
			m.learnt(seq, id, 0, true)
		case op < 50:
			n := 1 + rng.IntN(5)
			entries := make([]Entry, n)
			ids := make([]int, n)
			for i := range entries {
				ids[i] = newID()
				entries[i] = Entry{Stream: uint32(rng.IntN(3)), Data: payload(ids[i])}
			}
			first, err := w.Append(entries...)
			if err != nil {
				if fail("Append batch", err) {
					return m
				}
			}
			for i := range entries {
				m.learnt(first+uint64(i), ids[i], entries[i].Stream, true)
			}
		case op < 75:
			n := 1 + rng.IntN(8)
			var last *Pending
			for range n {
				id := newID()
				p, err := w.AppendAsync(Entry{Data: payload(id)})
				if err != nil {
					if fail("AppendAsync", err) {
						return m
					}
				}
				m.learnt(p.Seq(), id, 0, false)
				last = p
			}
			if rng.IntN(2) == 0 {
				if err := w.Sync(); err != nil {
					if fail("Sync", err) {
						return m
					}
				}
				m.ackUpTo(last.Seq())
			} else if rng.IntN(2) == 0 {
				if err := last.Wait(t.Context()); err != nil {
					if fail("Wait", err) {
						return m
					}
				}
				m.ackUpTo(last.Seq())
			}
		case op < 82:
			if err := w.Roll(); err != nil {
				if fail("Roll", err) {
					return m
				}
			}
		case op < 88:
			last := w.DurableSeq()
			if last == 0 {
				continue
			}
			to := 1 + rng.Uint64N(last)
			m.mu.Lock()
			m.truncate = max(m.truncate, to)
			m.mu.Unlock()
			if err := w.TruncateFront(to); err != nil {
				if fail("TruncateFront", err) {
					return m
				}
			}
		case op < 94:
			stream := uint32(rng.IntN(3))
			to := w.DurableSeq()
			m.mu.Lock()
			m.flushed[stream] = max(m.flushed[stream], to)
			m.mu.Unlock()
			if err := w.MarkFlushed(stream, to); err != nil {
				if fail("MarkFlushed", err) {
					return m
				}
			}
		default:
			// A clean restart in the middle of the workload.
			if err := w.Close(); err != nil {
				if fail("Close", err) {
					return m
				}
			}
			m.ackUpTo(1 << 62)
			if w, err = Open(crashDir, opts); err != nil {
				w = nil
				if fail("reopen", err) {
					return m
				}
			}
		}
	}
	if err := w.Sync(); err != nil {
		fail("final Sync", err)
	}
	return m
}

// checkRecovery reopens the crashed FS and checks every invariant.
func checkRecovery(t *testing.T, fs *vfs.MemFS, m *crashModel, what string) {
	t.Helper()
	checkCrashShape(t, fs, what)
	w, err := Open(crashDir, Options{FS: fs, SegmentSize: 2 << 10, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: Open after crash: %v", what, err)
	}
	recs := readAll(t, w, w.FirstSeq())
	first := w.FirstSeq()
	present := map[uint64]bool{}
	lastID := 0
	for i, r := range recs {
		if r.Seq != first+uint64(i) {
			t.Fatalf("%s: record %d has seq %d, want %d (not contiguous)", what, i, r.Seq, first+uint64(i))
		}
		id, ok := payloadID(r.Data)
		if !ok || !m.attempted[id] {
			t.Fatalf("%s: seq %d holds %q, which was never appended", what, r.Seq, r.Data)
		}
		if want, known := m.bySeq[r.Seq]; known && want != id {
			t.Fatalf("%s: seq %d holds id %d, but id %d was appended there", what, r.Seq, id, want)
		}
		if id <= lastID {
			t.Fatalf("%s: seq %d holds id %d after id %d: out of order or duplicated", what, r.Seq, id, lastID)
		}
		lastID = id
		present[r.Seq] = true
	}
	for seq := range m.acked {
		if m.needed(seq) && !present[seq] {
			t.Fatalf("%s: acknowledged record seq %d (id %d) lost; log holds %d..%d", what, seq, m.bySeq[seq], first, first+uint64(len(recs))-1)
		}
	}
	next := first + uint64(len(recs))
	if len(recs) == 0 {
		next = w.LastSeq() + 1
	}
	seq, err := w.Append(Entry{Data: []byte("after-crash")})
	if err != nil || seq != next {
		t.Fatalf("%s: append after recovery: seq %d (want %d), %v", what, seq, next, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("%s: close: %v", what, err)
	}
	w, err = Open(crashDir, Options{FS: fs, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: second reopen: %v", what, err)
	}
	again := readAll(t, w, seq)
	if len(again) != 1 || string(again[0].Data) != "after-crash" {
		t.Fatalf("%s: record appended after recovery not found after another reopen", what)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("%s: close: %v", what, err)
	}
	checkSealed(t, fs, what)
}

// checkCrashShape: a crash, wherever it hits (inside Roll and Close too),
// leaves a log that is clean or has a torn tail, never one that looks
// damaged.
func checkCrashShape(t *testing.T, fs *vfs.MemFS, what string) {
	t.Helper()
	if rep, err := Verify(fs, crashDir, CheckOptions{}); err != nil && !errors.Is(err, ErrNotLog) {
		t.Fatalf("%s: Verify after crash: %v", what, err)
	} else if err == nil && rep.Verdict() != Clean && rep.Verdict() != Torn {
		t.Logf("files after the crash:\n%s", fs)
		t.Fatalf("%s: Verify after crash: %v (%v)", what, rep.Verdict(), rep.Corruption)
	}
}

// checkSealed checks the shape of a cleanly closed log: every segment
// holding records is sealed, and the last one is empty.
func checkSealed(t *testing.T, fs vfs.FS, what string) {
	t.Helper()
	rep, err := Verify(fs, crashDir, CheckOptions{})
	if err != nil || rep.Verdict() != Clean {
		t.Fatalf("%s: Verify after Close: %v %v", what, err, rep.Corruption)
	}
	for i, s := range rep.Segments {
		if last := i == len(rep.Segments)-1; last && (s.Sealed || s.Records != 0) || !last && !s.Sealed {
			t.Fatalf("%s: after Close, segment %s (%d of %d) has %d records, sealed %v", what, s.Name, i+1, len(rep.Segments), s.Records, s.Sealed)
		}
	}
}

// TestCrashAtEveryOp crashes a seeded workload at its k-th file operation
// for every k until a run completes, and checks recovery from several
// crash states at each point.
func TestCrashAtEveryOp(t *testing.T) {
	seed := testSeed(t)
	steps, clones := 120, 4
	if testing.Short() {
		steps, clones = 60, 2
	}
	points := 0
	for k := 1; ; k++ {
		fs := vfs.NewMem()
		fs.SetCrashAfter(k)
		m := runWorkload(t, fs, seed, steps)
		if !fs.Crashed() {
			t.Logf("workload completed after %d file operations; checked %d crash states", k-1, points)
			if k < 50 {
				t.Fatalf("only %d file operations: the workload is too small to test anything", k)
			}
			return
		}
		for c := range clones {
			cs := seed ^ uint64(k)<<20 ^ uint64(c)
			checkRecovery(t, fs.CrashClone(int64(cs)), m, fmt.Sprintf("seed %d, crash at op %d, clone seed %d", seed, k, cs))
			points++
		}
	}
}

// TestCrashConcurrent crashes concurrent appenders (waiting, non-waiting
// and batched) at random operations while rolls and truncations run.
func TestCrashConcurrent(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	for round := range rounds {
		fs := vfs.NewMem()
		fs.SetCrashAfter(20 + rng.IntN(600))
		m := newCrashModel()
		w, err := Open(crashDir, Options{FS: fs, SegmentSize: 4 << 10, Logger: quiet()})
		if err != nil {
			if crashed(fs, err) {
				continue
			}
			t.Fatal(err)
		}
		var idMu sync.Mutex
		nextID := 1
		newID := func() int {
			idMu.Lock()
			defer idMu.Unlock()
			id := nextID
			nextID++
			m.mu.Lock()
			m.attempted[id] = true
			m.mu.Unlock()
			return id
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !fs.Crashed() && i < 400; i++ {
					id := newID()
					switch (g + i) % 3 {
					case 0:
						seq, err := w.Append(Entry{Data: payload(id)})
						if err != nil {
							return
						}
						m.learnt(seq, id, 0, true)
					case 1:
						p, err := w.AppendAsync(Entry{Data: payload(id)})
						if err != nil {
							return
						}
						m.learnt(p.Seq(), id, 0, false)
						if p.Wait(t.Context()) == nil {
							m.ackUpTo(p.Seq())
						}
					case 2:
						id2 := newID()
						first, err := w.Append(Entry{Stream: 1, Data: payload(id)}, Entry{Stream: 2, Data: payload(id2)})
						if err != nil {
							return
						}
						m.learnt(first, id, 1, true)
						m.learnt(first+1, id2, 2, true)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !fs.Crashed() {
				if w.Roll() != nil {
					return
				}
				d := w.DurableSeq()
				if d > 50 {
					m.mu.Lock()
					m.truncate = max(m.truncate, d-50)
					m.mu.Unlock()
					if w.TruncateFront(d-50) != nil {
						return
					}
				}
				if w.Err() != nil || w.LastSeq() > 1500 {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		wg.Wait()
		w.Close()
		if !fs.Crashed() {
			fs.Crash()
		}
		cs := seed + uint64(round)
		// Appends ids are handed out concurrently, so order ids by seq
		// rather than by id for the ordering check.
		checkRecoveryConcurrent(t, fs.CrashClone(int64(cs)), m, fmt.Sprintf("seed %d round %d clone seed %d", seed, round, cs))
	}
}

// checkRecoveryConcurrent is checkRecovery without the id-order check
// (concurrent appenders take ids and seqs in different orders).
func checkRecoveryConcurrent(t *testing.T, fs *vfs.MemFS, m *crashModel, what string) {
	t.Helper()
	checkCrashShape(t, fs, what)
	w, err := Open(crashDir, Options{FS: fs, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: Open after crash: %v", what, err)
	}
	defer w.Close()
	first := w.FirstSeq()
	recs := readAll(t, w, first)
	present := map[uint64]bool{}
	seen := map[int]bool{}
	for i, r := range recs {
		if r.Seq != first+uint64(i) {
			t.Fatalf("%s: not contiguous at %d", what, r.Seq)
		}
		id, ok := payloadID(r.Data)
		if !ok || !m.attempted[id] || seen[id] {
			t.Fatalf("%s: seq %d holds %q: never appended, or twice", what, r.Seq, r.Data)
		}
		seen[id] = true
		if want, known := m.bySeq[r.Seq]; known && want != id {
			t.Fatalf("%s: seq %d holds id %d, want %d", what, r.Seq, id, want)
		}
		present[r.Seq] = true
	}
	for seq := range m.acked {
		if m.needed(seq) && !present[seq] {
			t.Logf("files after the crash:\n%s", fs)
			t.Fatalf("%s: acknowledged seq %d (stream %d) lost; truncate permission %d, log holds %d..%d; acked %d", what, seq, m.stream[seq], m.truncate, first, first+uint64(len(recs))-1, len(m.acked))
		}
	}
	if _, err := w.Append(Entry{Data: []byte("after")}); err != nil {
		t.Fatalf("%s: append after recovery: %v", what, err)
	}
}
