package durable

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"slices"

	"github.com/procyon-dev/procyon/internal/seqname"
	"github.com/procyon-dev/procyon/vfs"
)

// layout is what a data directory holds, by name only: nothing is read or
// changed.
type layout struct {
	dir      string
	exists   bool           // dir exists
	entries  []string       // names in dir
	snaps    []SnapshotInfo // DIR/<seq>.snap, newest first
	walDir   bool           // DIR/wal is a directory
	segments []string       // DIR/wal/<seq>.wal, oldest first
	// lockIsDir: DIR/wal/LOCK is a directory, so the log cannot be locked.
	lockIsDir bool
	// segLike lists names in dir itself that look like log segments: dir
	// is then probably a log, not a store.
	segLike []string
}

func readLayout(fs vfs.FS, dir string) (*layout, error) {
	l := &layout{dir: dir}
	names, err := fs.List(dir)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("durable: list %s: %w", dir, err)
	}
	l.exists, l.entries = true, names
	if l.snaps, err = snapshotsIn(fs, dir, names); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := parseSegName(n); ok {
			l.segLike = append(l.segLike, n)
		}
	}
	if slices.Contains(names, walSubdir) {
		walPath := filepath.Join(dir, walSubdir)
		if _, err := fs.List(walPath); err == nil {
			l.walDir = true
			if l.segments, err = segmentFiles(fs, walPath); err != nil {
				return nil, err
			}
			_, err := fs.List(filepath.Join(walPath, "LOCK"))
			l.lockIsDir = err == nil
		}
	}
	return l, nil
}

// snapshotsIn returns the snapshots among names, the entries of dir,
// newest first.
func snapshotsIn(fs vfs.FS, dir string, names []string) ([]SnapshotInfo, error) {
	var out []SnapshotInfo
	for _, n := range names {
		seq, ok := parseSnapName(n)
		if !ok {
			continue
		}
		size, err := fs.Stat(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("durable: stat %s: %w", n, err)
		}
		out = append(out, SnapshotInfo{Seq: seq, Name: n, Size: size})
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return -cmpU64(a.Seq, b.Seq) })
	return out, nil
}

// isStore reports whether the directory holds a store: a snapshot or a log
// directory.
func (l *layout) isStore() bool { return len(l.snaps) > 0 || l.walDir }

// needFrom is the first log record recovery needs if the newest snapshot,
// by name, is sound: the one after it (1 without snapshots).
func (l *layout) needFrom() uint64 {
	if len(l.snaps) == 0 {
		return 1
	}
	return l.snaps[0].Seq + 1
}

// notStore explains why dir is not a store, and what a store holds.
func (l *layout) notStore() error {
	want := fmt.Sprintf("expected a store: a snapshot (%s) or a log (%s)",
		filepath.Join(l.dir, "<20 digits>"+snapSuffix), filepath.Join(l.dir, walSubdir, "<20 digits>"+segSuffix))
	switch {
	case !l.exists:
		return fmt.Errorf("%w: %s does not exist; %s", ErrNotStore, l.dir, want)
	case len(l.entries) == 0:
		return fmt.Errorf("%w: %s is empty; %s", ErrNotStore, l.dir, want)
	case len(l.segLike) > 0:
		return fmt.Errorf("%w: %s holds log segments (%s...): it is a store's log; give the store's directory, %s",
			ErrNotStore, l.dir, l.segLike[0], filepath.Dir(filepath.Clean(l.dir)))
	}
	return fmt.Errorf("%w: %s holds %d entries (%s...) but no store; %s", ErrNotStore, l.dir, len(l.entries), l.entries[0], want)
}

// checkOpen says, before anything is created, whether an Open of the
// directory may go on: a read-write Open creates a new store only in a
// missing or empty directory, a read-only one needs a store; and a store
// whose snapshots are all past seq 0 needs log segments.
func (l *layout) checkOpen(readOnly bool) error {
	if !l.isStore() {
		if !readOnly && len(l.entries) == 0 {
			return nil
		}
		return l.notStore()
	}
	if len(l.segments) == 0 && len(l.snaps) > 0 && l.snaps[0].Seq > 0 {
		return fmt.Errorf("%w: snapshot %s is at seq %d but %s holds no log segment (is it missing, or not mounted?)",
			ErrNoState, l.snaps[0].Name, l.snaps[0].Seq, filepath.Join(l.dir, walSubdir))
	}
	return nil
}

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
