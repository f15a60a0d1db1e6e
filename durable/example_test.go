package durable_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/vfs"
)

type Table struct {
	Name    string
	Regions int
}

// A store with two collections, changed together by one transaction.
func Example() {
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s := durable.New(durable.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	tables := durable.NewCollection[string, Table](s, "tables", nil)    // JSON values
	regions := durable.NewCollection[uint64, string](s, "regions", nil) // region id -> table
	if err := s.Open(ctx); err != nil {                                 // recovers whatever dir holds
		log.Fatal(err)
	}
	defer s.Close()

	// Create a table and its regions atomically: both collections change
	// in one record, or neither does.
	err := s.Write(ctx, func(tx *durable.Tx) error {
		if err := tables.Put(tx, "users", Table{Name: "users", Regions: 2}); err != nil {
			return err
		}
		for id := uint64(1); id <= 2; id++ {
			if err := regions.Put(tx, id, "users"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// Read both at one version.
	v := s.Latest()
	t, _, err := tables.Get(v, "users")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("table %s has %d regions; %d in the regions collection\n", t.Name, t.Regions, regions.Len(v))
	for id, table := range regions.All(v) {
		fmt.Printf("region %d of %s\n", id, table)
	}
	// Output:
	// table users has 2 regions; 2 in the regions collection
	// region 1 of users
	// region 2 of users
}

// A range of keys: From, and a break at the range's end. Iterators over
// values a codec can fail to decode (JSON here) stop at such a value and
// keep its error on the View, for Err (in a Tx, the Write fails with it).
func ExampleCollection_From() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence(), Logger: slog.New(slog.DiscardHandler)})
	regions := durable.NewCollection[string, Table](s, "regions", nil)
	if err := s.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	s.Write(ctx, func(tx *durable.Tx) error {
		for _, k := range []string{"orders/1", "users/1", "users/2", "zones/1"} {
			if err := regions.Put(tx, k, Table{Name: k}); err != nil {
				return err
			}
		}
		return nil
	})

	v := s.Latest()
	for k := range regions.From(v, "users/") {
		if k >= "users0" { // '0' follows '/': past every "users/..."
			break
		}
		fmt.Println(k)
	}
	if err := v.Err(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// users/1
	// users/2
}

// A transaction that fails leaves nothing behind.
func ExampleStore_Write() {
	ctx := context.Background()
	s := durable.New(durable.Options{Persistence: durable.NewMemPersistence()})
	counters := durable.NewCollection[string, int64](s, "counters", nil)
	if err := s.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	err := s.Write(ctx, func(tx *durable.Tx) error {
		counters.Put(tx, "a", 1)
		return fmt.Errorf("changed my mind")
	})
	fmt.Println("error:", err, "- entries:", counters.Len(s.Latest()))
	// Output: error: changed my mind - entries: 0
}

// A snapshot on request; the log it covers is then deleted (up to the
// previous snapshot, kept as a fallback).
func ExampleStore_Snapshot() {
	dir, _ := os.MkdirTemp("", "durable-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s := durable.New(durable.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	kv := durable.NewCollection[string, string](s, "kv", nil)
	if err := s.Open(ctx); err != nil {
		log.Fatal(err)
	}
	for i := range 10 {
		s.Write(ctx, func(tx *durable.Tx) error { return kv.Put(tx, fmt.Sprint(i), "x") })
	}
	res, err := s.Snapshot(ctx)
	if err != nil {
		log.Fatal(err)
	}
	s.Close()
	snaps, _ := filepath.Glob(filepath.Join(dir, "*.snap"))
	fmt.Printf("snapshot at seq %d: %s\n", res.Seq, filepath.Base(snaps[0]))
	// Output: snapshot at seq 10: 00000000000000000010.snap
}

// Backup streams the latest durable version (to a file, a socket, or
// here a buffer) while the store goes on serving writes: a write made
// after the backup is not in it. Restore turns the stream into a new data
// directory (here on an in-memory file system; a real one by default),
// which a store then opens like any other.
func ExampleRestore() {
	ctx := context.Background()
	src := durable.New(durable.Options{Persistence: durable.NewMemPersistence()})
	kv := durable.NewCollection[string, string](src, "kv", nil)
	if err := src.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	src.Write(ctx, func(tx *durable.Tx) error { return kv.Put(tx, "hello", "world") })
	var backup bytes.Buffer
	b, err := src.Backup(ctx, &backup)
	if err != nil {
		log.Fatal(err)
	}
	src.Write(ctx, func(tx *durable.Tx) error { return kv.Put(tx, "later", "not in the backup") })

	fs := vfs.NewMem()
	r, err := durable.Restore(ctx, &backup, "/restored", durable.RestoreOptions{FS: fs})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("backup of seq", b.Seq, "restored:", r.Collections, r.Entries, "entries")
	dst := durable.New(durable.Options{Dir: "/restored", FS: fs, Logger: slog.New(slog.DiscardHandler)})
	kv2 := durable.NewCollection[string, string](dst, "kv", nil)
	if err := dst.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer dst.Close()
	v := dst.Latest()
	hello, _, _ := kv2.Get(v, "hello")
	_, later, _ := kv2.Get(v, "later")
	fmt.Println("hello:", hello, "later:", later)
	// Output:
	// backup of seq 1 restored: [kv] 1 entries
	// hello: world later: false
}
