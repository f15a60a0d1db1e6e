package durable

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"testing"
)

// readPanic runs fn and returns the error it panicked with (nil: it did
// not panic).
func readPanic(fn func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			e, ok := p.(error)
			if !ok {
				e = fmt.Errorf("panicked with a non-error: %v", p)
			}
			err = e
		}
	}()
	fn()
	return nil
}

// render returns the entries of seq as "k=v", in its order.
func render[K, V any](seq iter.Seq2[K, V]) []string {
	var out []string
	for k, v := range seq {
		out = append(out, fmt.Sprintf("%v=%v", k, v))
	}
	return out
}

// modelFrom returns the entries of m with key >= from as "k=v", in key
// order.
func modelFrom(m map[int64]int64, from int64) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k >= from {
			out = append(out, fmt.Sprintf("%d=%d", k, m[k]))
		}
	}
	return out
}

// yieldsUntil runs seq with a yield that asks to stop at its n-th call,
// and returns how many times seq called it.
func yieldsUntil[K, V any](seq iter.Seq2[K, V], n int) int {
	calls := 0
	seq(func(K, V) bool { calls++; return calls < n })
	return calls
}

// checkIter checks All and From of c in r against the model m: order,
// bounds (before the first key, between keys, on keys, past the last)
// and an early stop at every entry.
func checkIter(t *testing.T, c *Collection[int64, int64], r Reader, m map[int64]int64) {
	t.Helper()
	if got, want := render(c.All(r)), modelFrom(m, -1<<63); !slices.Equal(got, want) {
		t.Errorf("All = %v\nwant %v", got, want)
	}
	if n := c.Len(r); n != len(m) {
		t.Errorf("Len = %d, want %d", n, len(m))
	}
	for _, from := range []int64{-100, 0, 1, 5, 9, 10, 11, 20, 25, 40, 95, 99, 100, 101, 1000} {
		if got, want := render(c.From(r, from)), modelFrom(m, from); !slices.Equal(got, want) {
			t.Errorf("From(%d) = %v\nwant %v", from, got, want)
		}
	}
	for n := 1; n <= len(m)+1; n++ {
		if calls := yieldsUntil(c.All(r), n); calls != min(n, len(m)) {
			t.Errorf("All stopped at entry %d: yield called %d times", n, calls)
		}
		if calls := yieldsUntil(c.From(r, 11), n); calls != min(n, len(modelFrom(m, 11))) {
			t.Errorf("From(11) stopped at entry %d: yield called %d times", n, calls)
		}
	}
}

// TestIterators checks All, From and Len over the tree, layers not yet
// applied to it (the applier is held back), and a transaction's own puts
// and deletes on top.
func TestIterators(t *testing.T) {
	mp := NewMemPersistence()
	ctx := context.Background()
	s := openTestStore(t, Options{Persistence: mp})
	model := map[int64]int64{}
	mustWrite(t, s.Store, func(tx *Tx) error {
		for k := int64(0); k < 100; k += 10 {
			model[k] = k
			if err := s.counts.Put(tx, k, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened, the keys are in the trees; the applier then holds every
	// later write in layers until the test ends.
	s = newTestStore(Options{Persistence: mp})
	release := make(chan struct{})
	s.applyPause = func() { <-release }
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer close(release)
	checkIter(t, s.counts, s.Latest(), model)

	put := func(tx *Tx, k, v int64) error { model[k] = v; return s.counts.Put(tx, k, v) }
	del := func(tx *Tx, k int64) error { delete(model, k); return s.counts.Delete(tx, k) }
	mustWrite(t, s.Store, func(tx *Tx) error {
		return errors.Join(put(tx, 5, 5), put(tx, 15, 15), del(tx, 20), put(tx, 30, 300))
	})
	mustWrite(t, s.Store, func(tx *Tx) error {
		return errors.Join(put(tx, 95, 95), del(tx, 0), put(tx, 20, 2000))
	})
	v := s.Latest()
	if len(v.ver.layers) == 0 {
		t.Fatal("no layers above the trees: the test does not test them")
	}
	checkIter(t, s.counts, v, model)

	durable := maps.Clone(model)
	mustWrite(t, s.Store, func(tx *Tx) error {
		err := errors.Join(put(tx, 1, 1), del(tx, 10), put(tx, 40, 4000), del(tx, 95), put(tx, 100, 100), del(tx, 1000))
		if err != nil {
			return err
		}
		checkIter(t, s.counts, tx, model)
		checkIter(t, s.counts, s.Latest(), durable) // readers do not see tx yet
		return nil
	})
	checkIter(t, s.counts, s.Latest(), model)
	checkIter(t, s.counts, v, durable) // a View held does not change
}

// TestIteratorIsLazy: a loop's body sees each entry when it is reached,
// and a Tx's iteration reads the transaction as the loop starts.
func TestIteratorIsLazy(t *testing.T) {
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	mustWrite(t, s.Store, func(tx *Tx) error {
		for k := range int64(3) {
			if err := s.counts.Put(tx, k, k); err != nil {
				return err
			}
		}
		seq := s.counts.All(tx)
		// Written after All was called, before the loop: seen.
		if err := s.counts.Put(tx, 10, 10); err != nil {
			return err
		}
		var keys []int64
		for k := range seq {
			keys = append(keys, k)
			// Written by the loop's body: not seen by this loop.
			if err := s.counts.Put(tx, 20+k, k); err != nil {
				return err
			}
		}
		if fmt.Sprint(keys) != "[0 1 2 10]" {
			t.Errorf("keys %v, want [0 1 2 10]", keys)
		}
		if n := s.counts.Len(tx); n != 8 {
			t.Errorf("Len = %d, want 8", n)
		}
		return nil
	})
}

var errBadValue = errors.New("bad value")

// badStore is a store with a collection whose codec cannot decode the
// value "bad".
func badStore(t *testing.T, mp *MemPersistence) (*Store, *Collection[string, string]) {
	s := New(Options{Persistence: mp, Logger: quiet()})
	c := NewCollection[string](s, "picky", CodecFunc(
		func(v string) ([]byte, error) { return []byte(v), nil },
		func(b []byte) (string, error) {
			if string(b) == "bad" {
				return "", errBadValue
			}
			return string(b), nil
		}))
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, func(tx *Tx) error {
		return errors.Join(c.Put(tx, "a", "1"), c.Put(tx, "b", "bad"), c.Put(tx, "c", "3"))
	})
	return s, c
}

func TestDecodeErrorGet(t *testing.T) {
	s, c := badStore(t, NewMemPersistence())
	defer s.Close()
	v := s.Latest()
	val, ok, err := c.Get(v, "b")
	if !errors.Is(err, errBadValue) || ok || val != "" {
		t.Fatalf("Get(b) = %q, %v, %v; want errBadValue", val, ok, err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"picky"`) || !strings.Contains(msg, "key b") {
		t.Fatalf("Get(b)'s error %q does not name the collection and the key", msg)
	}
	if val, ok, err := c.Get(v, "c"); err != nil || !ok || val != "3" {
		t.Fatalf("Get(c) = %q, %v, %v", val, ok, err)
	}
	if err := v.Err(); err != nil {
		t.Fatalf("Get recorded its error on the View: %v", err)
	}
}

func TestDecodeErrorView(t *testing.T) {
	s, c := badStore(t, NewMemPersistence())
	defer s.Close()
	v, other := s.Latest(), s.Latest()
	if got := render(c.All(v)); fmt.Sprint(got) != "[a=1]" {
		t.Fatalf("All = %v, want it to stop before b", got)
	}
	if calls := yieldsUntil(c.From(v, "b"), 10); calls != 0 {
		t.Fatalf("From(b) called yield %d times, want 0", calls)
	}
	err := v.Err()
	if !errors.Is(err, errBadValue) || !strings.Contains(err.Error(), "key b") {
		t.Fatalf("View.Err = %v, want errBadValue for key b", err)
	}
	if err := other.Err(); err != nil {
		t.Fatalf("another View from Latest shares the error: %v", err)
	}
	if got := render(c.From(other, "c")); fmt.Sprint(got) != "[c=3]" || other.Err() != nil {
		t.Fatalf("From(c) = %v, Err %v", got, other.Err())
	}
	if err := s.Latest().Err(); err != nil {
		t.Fatalf("a new View from Latest has an error: %v", err)
	}
}

func TestDecodeErrorFailsTx(t *testing.T) {
	mp := NewMemPersistence()
	s, c := badStore(t, mp)
	defer s.Close()
	ctx := context.Background()
	seq, records := s.Seq(), mp.records()
	var seen []string
	err := s.Write(ctx, func(tx *Tx) error {
		if err := c.Put(tx, "z", "new"); err != nil {
			return err
		}
		for k := range c.All(tx) {
			seen = append(seen, k)
		}
		return nil // the loop's error is not checked: the Write fails anyway
	})
	if !errors.Is(err, errBadValue) || !strings.Contains(err.Error(), "key b") {
		t.Fatalf("Write = %v, want errBadValue for key b", err)
	}
	if fmt.Sprint(seen) != "[a]" {
		t.Fatalf("the loop saw %v, want [a]", seen)
	}
	// A nested Write whose loop fails fails the transaction too, even if
	// the outer function ignores the nested error.
	err = s.Write(ctx, func(tx *Tx) error {
		if err := c.Put(tx, "y", "new"); err != nil {
			return err
		}
		nested := s.Write(tx.Context(), func(tx *Tx) error {
			for range c.From(tx, "b") {
			}
			return nil
		})
		if !errors.Is(nested, errBadValue) {
			t.Errorf("nested Write = %v, want errBadValue", nested)
		}
		return nil
	})
	if !errors.Is(err, errBadValue) {
		t.Fatalf("Write with a failed nested loop = %v, want errBadValue", err)
	}
	v := s.Latest()
	if has(c, v, "z") || has(c, v, "y") || s.Seq() != seq || mp.records() != records {
		t.Fatalf("a failed transaction committed: z %v, y %v, seq %d -> %d, records %d -> %d",
			has(c, v, "z"), has(c, v, "y"), seq, s.Seq(), records, mp.records())
	}
	// The store goes on: a transaction that reads around the bad value
	// commits.
	mustWrite(t, s, func(tx *Tx) error {
		for k, val := range c.From(tx, "c") {
			if err := c.Put(tx, k+"2", val); err != nil {
				return err
			}
		}
		return nil
	})
	if val, ok, err := c.Get(s.Latest(), "c2"); err != nil || !ok || val != "3" {
		t.Fatalf("Get(c2) = %q, %v, %v", val, ok, err)
	}
}

func TestReadMisusePanics(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer s.Close()
	other := openTestStore(t, Options{Persistence: NewMemPersistence()})
	defer other.Close()
	early := newTestStore(Options{Persistence: NewMemPersistence()})
	before := early.Latest()
	if err := early.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	var done *Tx
	mustWrite(t, s.Store, func(tx *Tx) error { done = tx; return s.counts.Put(tx, 1, 1) })

	for _, tc := range []struct {
		name string
		read func()
		want string
	}{
		{"Get with a nil Reader", func() { s.counts.Get(nil, 1) }, "nil Reader"},
		{"Len with a nil Reader", func() { s.counts.Len(nil) }, "nil Reader"},
		{"All with a nil Reader", func() {
			for range s.counts.All(nil) {
			}
		}, "nil Reader"},
		{"a nil *View", func() { s.counts.Len((*View)(nil)) }, "nil View"},
		{"a View of another store", func() { s.counts.Get(other.Latest(), 1) }, "View of another store"},
		{"From in a View of another store", func() {
			for range s.counts.From(other.Latest(), 0) {
			}
		}, "View of another store"},
		{"a View taken before Open", func() { early.counts.Len(before) }, "before the store was open"},
		{"a Tx after its Write", func() {
			for range s.counts.All(done) {
			}
		}, "transaction already finished"},
		{"a Tx of another store", func() {
			other.Write(ctx, func(tx *Tx) error { s.counts.Get(tx, 1); return nil })
		}, "Tx of another store"},
	} {
		err := readPanic(tc.read)
		if !errors.Is(err, errMisuse) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"counts"`) {
			t.Errorf("%s: panicked with %v, want a misuse naming %q and the collection", tc.name, err, tc.want)
		}
	}
	// Nothing changed.
	if v, ok, err := s.counts.Get(s.Latest(), 1); err != nil || !ok || v != 1 || s.counts.Len(s.Latest()) != 1 {
		t.Fatalf("after the panics: Get(1) = %v, %v, %v", v, ok, err)
	}
}
