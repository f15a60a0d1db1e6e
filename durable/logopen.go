package durable

import (
	"errors"
	"fmt"
	iofs "io/fs"

	"github.com/procyon-dev/procyon/internal/seqname"
	"github.com/procyon-dev/procyon/vfs"
)

// segSuffix ends a log segment's name (package wal's format).
const segSuffix = ".wal"

func parseSegName(name string) (uint64, bool) { return seqname.Parse(name, segSuffix) }

// segmentFiles lists the segment files in dir, in order; none if dir does
// not exist.
func segmentFiles(fs vfs.FS, dir string) ([]string, error) {
	names, err := fs.List(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("durable: list %s: %w", dir, err)
	}
	var out []string
	for _, n := range names {
		if _, ok := parseSegName(n); ok {
			out = append(out, n)
		}
	}
	return out, nil
}
