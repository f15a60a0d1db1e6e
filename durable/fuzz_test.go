package durable

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzRecord feeds arbitrary bytes to the record decoder: it must never
// panic, and must reject what it cannot decode with ErrCorrupt, ErrVersion
// or ErrUnknownCollection.
func FuzzRecord(f *testing.F) {
	s := newTestStore(Options{Persistence: NewMemPersistence()})
	tx := &Tx{s: s.Store, ops: make([]any, 2)}
	s.w.trees = []any{s.colls[0].newTree(), s.colls[1].newTree()}
	s.w.forming = make([]any, 2)
	s.w.formHint = make([]int, 2)
	s.users.Put(tx, "a", user{Name: "x"})
	s.counts.Delete(tx, -3)
	f.Add(tx.encode(nil))
	f.Add([]byte{recordKindTx, 1, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		st := &loadState{trees: []any{s.colls[0].newTree(), s.colls[1].newTree()}}
		err := s.applyRecord(st, 1, rec)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrUnknownCollection) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

// FuzzSnapshot feeds arbitrary bytes to Restore's checker and to the
// snapshot loader.
func FuzzSnapshot(f *testing.F) {
	mp := NewMemPersistence()
	s := openTestStore(f, Options{Persistence: mp})
	s.Write(context.Background(), func(tx *Tx) error {
		s.users.Put(tx, "a", user{Name: "x"})
		return s.counts.Put(tx, 5, 6)
	})
	var buf bytes.Buffer
	s.Backup(context.Background(), &buf)
	s.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		ls := newTestStore(Options{Persistence: NewMemPersistence()})
		st := &loadState{trees: []any{ls.colls[0].newTree(), ls.colls[1].newTree()}}
		sink := &storeSink{s: ls.Store, st: st, file: "fuzz"}
		if len(data) < snapHeaderSize {
			return
		}
		if _, err := decodeSnapHeader(data[:snapHeaderSize], "fuzz"); err != nil {
			return
		}
		err := readSnapshotBody(newSnapReader(bytes.NewReader(data[snapHeaderSize:]), "fuzz"), sink)
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownCollection) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}
