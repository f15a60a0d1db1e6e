package region_test

import (
	"context"
	"fmt"

	"github.com/procyon-dev/procyon/examples/tablestore/region"
	"github.com/procyon-dev/procyon/vfs"
)

func Example() {
	fs := vfs.NewMem() // vfs.OS in a region server
	r, err := region.Open("/root/data/t1/r1", region.Options{FS: fs})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	// One batch: durable, all or nothing, when Put returns.
	err = r.Put(ctx, region.Row{Key: []byte("a"), Value: []byte("1")}, region.Row{Key: []byte("b"), Value: []byte("1")})
	if err != nil {
		panic(err)
	}
	m, err := r.Snapshot("/root/.snapshot/s1/r1")
	if err != nil {
		panic(err)
	}
	// Written after the snapshot: not in it.
	if err := r.Put(ctx, region.Row{Key: []byte("a"), Value: []byte("2")}); err != nil {
		panic(err)
	}
	r.Close()
	fmt.Printf("snapshot of %s: %d rows up to write %d\n", m.Region, m.Rows, m.Seq)

	// Whoever checks or restores the snapshot needs only the shared FS.
	if _, err := region.VerifyManifest(fs, "/root/.snapshot/s1/r1"); err != nil {
		panic(err)
	}
	if err := region.Clone(fs, "/root/.snapshot/s1/r1", "/root/data/t2/r1"); err != nil {
		panic(err)
	}
	c, err := region.Open("/root/data/t2/r1", region.Options{FS: fs})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for row, err := range c.Scan(nil, nil) {
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s=%s\n", row.Key, row.Value)
	}
	// Output:
	// snapshot of r1: 2 rows up to write 1
	// a=1
	// b=1
}
