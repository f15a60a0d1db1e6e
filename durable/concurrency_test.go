package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lazyPersistence wraps MemPersistence so that records become durable
// only when some waiter "syncs" (after a short random delay), as with
// group commit: a sync makes everything appended so far durable. durable
// is the highest durable seq; readers must never see past it.
type lazyPersistence struct {
	*MemPersistence
	mu       sync.Mutex
	appended uint64
	durable  atomic.Uint64
	// snapGate, if set, is waited on in the middle of writing a snapshot.
	snapGate chan struct{}
	inSnap   chan struct{}
}

func (p *lazyPersistence) Append(recs [][]byte) (Pending, error) {
	pd, err := p.MemPersistence.Append(recs)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.appended = pd.Seq() + uint64(len(recs)) - 1
	p.mu.Unlock()
	return lazyPending{p: p, seq: pd.Seq()}, nil
}

type lazyPending struct {
	p   *lazyPersistence
	seq uint64
}

func (l lazyPending) Seq() uint64 { return l.seq }
func (l lazyPending) Wait(ctx context.Context) error {
	time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
	l.p.mu.Lock()
	if l.p.durable.Load() < l.seq {
		l.p.durable.Store(l.p.appended)
	}
	l.p.mu.Unlock()
	return nil
}

func (p *lazyPersistence) WriteSnapshot(seq uint64, write func(io.Writer) error) (int64, error) {
	return p.MemPersistence.WriteSnapshot(seq, func(w io.Writer) error {
		if p.snapGate == nil {
			return write(w)
		}
		// Stop half-way: write into a pipe-like buffer, then wait.
		var buf bytes.Buffer
		err := write(&buf)
		close(p.inSnap)
		<-p.snapGate
		w.Write(buf.Bytes())
		return err
	})
}

// bank is a two-collection store with an invariant across them: the
// balances always sum to total, and the ledger has one entry per
// committed transfer, numbered 1..n, with meta["transfers"] = n.
type bank struct {
	*Store
	balances *Collection[string, int64]
	ledger   *Collection[uint64, string]
	meta     *Collection[string, uint64]
}

const (
	bankAccounts = 20
	bankTotal    = bankAccounts * 100
)

func openBank(t testing.TB, opts Options) *bank {
	opts.Logger = quiet()
	s := New(opts)
	b := &bank{Store: s,
		balances: NewCollection[string, int64](s, "balances", nil),
		ledger:   NewCollection[uint64, string](s, "ledger", nil),
		meta:     NewCollection[string, uint64](s, "meta", nil)}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.balances.Len(b.Latest()) == 0 {
		mustWrite(t, s, func(tx *Tx) error {
			for i := range bankAccounts {
				b.balances.Put(tx, fmt.Sprintf("acct%02d", i), 100)
			}
			return nil
		})
	}
	return b
}

func (b *bank) transfer(ctx context.Context, rng *rand.Rand) error {
	from, to := fmt.Sprintf("acct%02d", rng.IntN(bankAccounts)), fmt.Sprintf("acct%02d", rng.IntN(bankAccounts))
	amount := int64(1 + rng.IntN(10))
	return b.Write(ctx, func(tx *Tx) error {
		fb, _, err := b.balances.Get(tx, from)
		if err != nil {
			return err
		}
		tb, _, err := b.balances.Get(tx, to)
		if err != nil {
			return err
		}
		if from == to {
			return nil
		}
		b.balances.Put(tx, from, fb-amount)
		b.balances.Put(tx, to, tb+amount)
		n, _, _ := b.meta.Get(tx, "transfers")
		n++
		b.meta.Put(tx, "transfers", n)
		return b.ledger.Put(tx, n, fmt.Sprintf("%s->%s:%d", from, to, amount))
	})
}

// check verifies the invariant in one view.
func (b *bank) check(v *View) error {
	var sum int64
	for _, bal := range b.balances.All(v) {
		sum += bal
	}
	if err := v.Err(); err != nil {
		return err
	}
	if sum != bankTotal {
		return fmt.Errorf("seq %d: balances sum to %d, want %d", v.Seq(), sum, bankTotal)
	}
	n, _, err := b.meta.Get(v, "transfers")
	if err != nil {
		return err
	}
	if l := b.ledger.Len(v); uint64(l) != n {
		return fmt.Errorf("seq %d: ledger has %d entries, meta says %d", v.Seq(), l, n)
	}
	if n > 0 {
		if _, ok, _ := b.ledger.Get(v, n); !ok {
			return fmt.Errorf("seq %d: ledger entry %d missing", v.Seq(), n)
		}
	}
	return nil
}

// TestReadersSeeDurableConsistentStates runs writers, readers, snapshots
// and backups at once: every view readers get satisfies the invariant, is
// never ahead of what the persistence made durable, and never goes back.
func TestReadersSeeDurableConsistentStates(t *testing.T) {
	lp := &lazyPersistence{MemPersistence: NewMemPersistence()}
	b := openBank(t, Options{Persistence: lp, SnapshotBytes: 4 << 10})
	defer b.Close()
	// The run ends after a number of transfers, not after a time: on a
	// loaded machine it takes longer, it never checks less.
	const transfers = 500
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seed := testSeed(t)
	var wg sync.WaitGroup
	var commits atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				if err := b.transfer(context.Background(), rng); err != nil {
					t.Errorf("transfer: %v", err)
					return
				}
				if commits.Add(1) >= transfers {
					cancel()
				}
			}
		}()
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for ctx.Err() == nil {
				v := b.Latest()
				if d := lp.durable.Load(); v.Seq() > d {
					t.Errorf("reader sees seq %d, durable is %d", v.Seq(), d)
					return
				}
				if v.Seq() < last {
					t.Errorf("reader went back from seq %d to %d", last, v.Seq())
					return
				}
				last = v.Seq()
				if err := b.check(v); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := b.Snapshot(context.Background()); err != nil {
				t.Errorf("snapshot: %v", err)
			}
			var buf bytes.Buffer
			if _, err := b.Backup(context.Background(), &buf); err != nil {
				t.Errorf("backup: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Wait()
	if err := b.check(b.Latest()); err != nil {
		t.Fatal(err)
	}
	// Reopen: same state.
	seq := b.Seq()
	b.Close()
	b2 := openBank(t, Options{Persistence: lp})
	defer b2.Close()
	if b2.Seq() != seq {
		t.Fatalf("reopened at seq %d, closed at %d", b2.Seq(), seq)
	}
	if err := b2.check(b2.Latest()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d transfers, %d snapshots", commits.Load(), b.Stats().Snapshots)
}

// TestSnapshotDoesNotBlockWriters holds a snapshot half-written and checks
// that transactions commit meanwhile.
func TestSnapshotDoesNotBlockWriters(t *testing.T) {
	lp := &lazyPersistence{MemPersistence: NewMemPersistence(), snapGate: make(chan struct{}), inSnap: make(chan struct{})}
	b := openBank(t, Options{Persistence: lp, SnapshotBytes: -1})
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		_, err := b.Snapshot(context.Background())
		done <- err
	}()
	<-lp.inSnap
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		if err := b.transfer(context.Background(), rng); err != nil {
			t.Fatal(err)
		}
	}
	close(lp.snapGate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.check(b.Latest()); err != nil {
		t.Fatal(err)
	}
}

// TestWriteContext: a context that ends while waiting for the lock leaves
// nothing; one that ends while waiting for the disk reports an unknown
// outcome, and the transaction is published once durable.
func TestWriteContext(t *testing.T) {
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	// Hold the lock with a slow transaction.
	started := make(chan struct{})
	release := make(chan struct{})
	go s.Write(context.Background(), func(tx *Tx) error {
		close(started)
		<-release
		return s.counts.Put(tx, 1, 1)
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := s.Write(ctx, func(tx *Tx) error { return s.counts.Put(tx, 2, 2) })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write with an expiring context: %v", err)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for !has(s.counts, s.Latest(), 1) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if has(s.counts, s.Latest(), 2) || !has(s.counts, s.Latest(), 1) {
		t.Fatalf("has(1)=%v has(2)=%v", has(s.counts, s.Latest(), 1), has(s.counts, s.Latest(), 2))
	}
}

// TestCombinedWrites: transactions of many writers run one after another
// on whichever writer holds the lock (flat combining); each writer still
// gets its own outcome: its error, its panic, or its commit.
func TestCombinedWrites(t *testing.T) {
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	const writers = 32
	var wg sync.WaitGroup
	errBad := errors.New("bad")
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := int64(w*1000 + i)
				switch i % 10 {
				case 3:
					if err := s.Write(context.Background(), func(tx *Tx) error {
						s.counts.Put(tx, k, k)
						return errBad
					}); !errors.Is(err, errBad) {
						t.Errorf("writer %d: %v, want its own error", w, err)
					}
				case 7:
					func() {
						defer func() {
							if r := recover(); r != k {
								t.Errorf("writer %d: recovered %v, want its own panic %d", w, r, k)
							}
						}()
						s.Write(context.Background(), func(tx *Tx) error {
							s.counts.Put(tx, k, k)
							panic(k)
						})
					}()
				default:
					if err := s.Write(context.Background(), func(tx *Tx) error { return s.counts.Put(tx, k, k) }); err != nil {
						t.Errorf("writer %d: %v", w, err)
					}
					if v, ok, _ := s.counts.Get(s.Latest(), k); !ok || v != k {
						t.Errorf("writer %d: its write not visible after Write returned", w)
					}
				}
			}
		}()
	}
	wg.Wait()
	for w := range writers {
		for i := range 50 {
			k := int64(w*1000 + i)
			if want := i%10 != 3 && i%10 != 7; has(s.counts, s.Latest(), k) != want {
				t.Fatalf("key %d present %v, want %v", k, !want, want)
			}
		}
	}
}

// TestCombinerHandOff: a combiner whose own transaction has run hands the
// combining over to the next queued writer instead of working on for
// others, and a writer whose context ends around that moment neither
// loses its outcome nor leaves the store without a combiner (a later
// write would hang).
func TestCombinerHandOff(t *testing.T) {
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	bg := context.Background()
	for i := range 100 {
		base := int64(i * 10)
		inA, inB := make(chan struct{}), make(chan struct{})
		releaseA, releaseB := make(chan struct{}), make(chan struct{})
		errs := make(chan error, 3)
		// A becomes the combiner and blocks in its own transaction.
		go func() {
			errs <- s.Write(bg, func(tx *Tx) error {
				close(inA)
				<-releaseA
				return s.counts.Put(tx, base+1, 1)
			})
		}()
		<-inA
		// B queues behind A; A runs it in the same round, where it blocks.
		go func() {
			errs <- s.Write(bg, func(tx *Tx) error {
				close(inB)
				<-releaseB
				return s.counts.Put(tx, base+2, 2)
			})
		}()
		for s.queued() < 1 {
			runtime.Gosched()
		}
		close(releaseA)
		<-inB
		// C queues while A's round runs B: A's next round hands off to C.
		// C's context ends around then, every other time.
		ctx, cancel := context.WithCancel(bg)
		cDone := make(chan error, 1)
		go func() { cDone <- s.Write(ctx, func(tx *Tx) error { return s.counts.Put(tx, base+3, 3) }) }()
		for s.queued() < 1 {
			runtime.Gosched()
		}
		if i%2 == 1 {
			cancel()
		}
		close(releaseB)
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		errC := <-cDone
		cancel()
		switch {
		case errC == nil:
			if !has(s.counts, s.Latest(), base+3) {
				t.Fatalf("round %d: C returned nil but its write is not visible", i)
			}
		case errors.Is(errC, context.Canceled):
			// Nothing happened, or it did: both are allowed once ctx ended
			// (ErrOutcomeUnknown wraps context.Canceled).
		default:
			t.Fatalf("round %d: C: %v", i, errC)
		}
		// The store still has a combiner when needed.
		wctx, wcancel := context.WithTimeout(bg, 10*time.Second)
		if err := s.Write(wctx, func(tx *Tx) error { return s.counts.Put(tx, base+4, 4) }); err != nil {
			t.Fatalf("round %d: a later write: %v", i, err)
		}
		wcancel()
	}
}
