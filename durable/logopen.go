package durable

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path/filepath"
	"slices"

	"github.com/procyon-dev/procyon/internal/seqname"
	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// segSuffix ends a log segment's name (package wal's format).
const segSuffix = ".wal"

func parseSegName(name string) (uint64, bool) { return seqname.Parse(name, segSuffix) }

// openedLog is a log opened for recovery, and the damage set aside.
type openedLog struct {
	w *wal.WAL
	// damage lists the corruption found in segments holding only records
	// before needFrom; hidden names those segments (and any before them),
	// which the log was opened without.
	damage []*wal.CorruptionError
	hidden []string
}

// openLog opens the log in dir for a store that needs only the records from
// needFrom on. Damage in segments that hold only earlier records does not
// fail it: the log is opened without those segments (and those before
// them), and the damage is returned. Damage anywhere else fails it. The
// last segment is never set aside.
//
// The log is opened once when it is sound; each damaged segment costs one
// more scan of the segments after it.
func openLog(fs vfs.FS, dir string, opts wal.Options, needFrom uint64, readOnly bool) (*openedLog, error) {
	out := &openedLog{}
	var err error
	out.damage, out.hidden, err = setAside(fs, dir, needFrom, readOnly, func(view vfs.FS) error {
		o := opts
		o.FS = view
		w, err := wal.Open(dir, o)
		out.w = w
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// verifyLog is openLog for wal.Verify: it changes nothing.
func verifyLog(fs vfs.FS, dir string, needFrom uint64) (*wal.Report, []*wal.CorruptionError, []string, error) {
	var rep *wal.Report
	damage, hidden, err := setAside(fs, dir, needFrom, true, func(view vfs.FS) error {
		r, err := wal.Verify(view, dir)
		if err != nil {
			ce := asSegmentDamage(err, dir)
			if ce == nil {
				return err
			}
			r = &wal.Report{Corruption: ce}
		}
		rep = r
		return r.Corruption
	})
	if err != nil && rep == nil {
		return nil, nil, nil, err
	}
	return rep, damage, hidden, nil
}

// setAside calls try with a view of fs that hides more and more leading
// segments of the log in dir, as long as try fails with corruption in
// segments that hold only records before needFrom. It returns the
// corruption so set aside and the hidden segments; err is try's last
// error.
func setAside(fs vfs.FS, dir string, needFrom uint64, readOnly bool, try func(view vfs.FS) error) (
	damage []*wal.CorruptionError, hidden []string, err error) {
	files, err := segmentFiles(fs, dir)
	if err != nil {
		return nil, nil, err
	}
	view := &logView{FS: fs, dir: dir, hidden: map[string]bool{}, readOnly: readOnly}
	for {
		err := try(view)
		ce := asSegmentDamage(err, dir)
		if ce == nil {
			return damage, hidden, err
		}
		n := unneededPrefix(files, ce.Segment, needFrom)
		if n <= len(hidden) {
			return damage, hidden, err
		}
		damage = append(damage, ce)
		hidden = files[:n]
		for _, f := range hidden {
			view.hidden[f] = true
		}
	}
}

// asSegmentDamage returns err as damage to a segment of the log in dir: a
// *wal.CorruptionError, or a failure to open or read a segment file (a
// directory where it belongs, say). Nil for other errors.
func asSegmentDamage(err error, dir string) *wal.CorruptionError {
	var ce *wal.CorruptionError
	if errors.As(err, &ce) {
		return ce
	}
	var pe *iofs.PathError
	if errors.As(err, &pe) && filepath.Clean(filepath.Dir(pe.Path)) == filepath.Clean(dir) {
		if _, ok := parseSegName(filepath.Base(pe.Path)); ok {
			return &wal.CorruptionError{Segment: filepath.Base(pe.Path), Reason: pe.Err.Error()}
		}
	}
	return nil
}

// unneededPrefix returns how many leading segment files can be set aside
// because of damage reported in bad: all of them up to bad if bad holds
// only records before needFrom (the next segment starts at or before it),
// else those before bad if bad starts at or before needFrom (the damage is
// a gap before it). It returns 0 when nothing can be set aside.
func unneededPrefix(files []string, bad string, needFrom uint64) int {
	i := slices.Index(files, bad)
	if i < 0 {
		return 0
	}
	if i+1 < len(files) {
		if next, _ := parseSegName(files[i+1]); next <= needFrom {
			return i + 1
		}
	}
	if first, _ := parseSegName(bad); first <= needFrom {
		return i
	}
	return 0
}

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

// logView is the file system the log is opened on: it hides the damaged
// segments set aside by openLog, and, read-only, changes nothing on disk
// (no lock file, no truncation of a torn tail: the log reads up to its last
// whole record all the same).
type logView struct {
	vfs.FS
	dir      string
	hidden   map[string]bool
	readOnly bool
}

func (v *logView) List(dir string) ([]string, error) {
	names, err := v.FS.List(dir)
	if err != nil || filepath.Clean(dir) != filepath.Clean(v.dir) {
		return names, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return v.hidden[n] }), nil
}

func (v *logView) refuse(op, name string) error {
	return fmt.Errorf("%w: %s %s", ErrReadOnly, op, name)
}

func (v *logView) Create(name string) (vfs.File, error) {
	if v.readOnly {
		return nil, v.refuse("create", name)
	}
	return v.FS.Create(name)
}

func (v *logView) OpenReadWrite(name string) (vfs.File, error) {
	if v.readOnly {
		f, err := v.FS.Open(name)
		if err != nil {
			return nil, err
		}
		return readOnlyFile{f}, nil
	}
	return v.FS.OpenReadWrite(name)
}

func (v *logView) Remove(name string) error {
	if v.readOnly {
		return v.refuse("remove", name)
	}
	return v.FS.Remove(name)
}

func (v *logView) Rename(oldname, newname string) error {
	if v.readOnly {
		return v.refuse("rename", oldname)
	}
	return v.FS.Rename(oldname, newname)
}

func (v *logView) MkdirAll(dir string) error {
	if v.readOnly {
		if _, err := v.FS.List(dir); err != nil {
			return v.refuse("create", dir)
		}
		return nil
	}
	return v.FS.MkdirAll(dir)
}

func (v *logView) Lock(name string) (io.Closer, error) {
	if v.readOnly {
		return io.NopCloser(nil), nil
	}
	return v.FS.Lock(name)
}

func (v *logView) SyncDir(dir string) error {
	if v.readOnly {
		return nil
	}
	return v.FS.SyncDir(dir)
}

// readOnlyFile is the log's active segment opened read-only: writes are
// refused, and cutting a torn tail (Truncate, then Sync) leaves the file as
// it is.
type readOnlyFile struct{ vfs.File }

func (f readOnlyFile) Write([]byte) (int, error) { return 0, fmt.Errorf("%w: write", ErrReadOnly) }
func (f readOnlyFile) Truncate(int64) error      { return nil }
func (f readOnlyFile) Sync() error               { return nil }
func (f readOnlyFile) Preallocate(int64) error   { return fmt.Errorf("%w: preallocate", ErrReadOnly) }
