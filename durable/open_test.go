package durable

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// cleanDmgStore returns a copy of a cleanly closed damage-test store, with
// its snapshots (oldest first) and log segments.
func cleanDmgStore(t *testing.T) (fs *vfs.MemFS, snaps, segs []string) {
	t.Helper()
	base := buildDmgBase(t, rand.New(rand.NewPCG(1, 2)), false)
	fs = base.fs.CrashClone(1)
	for _, tmp := range dmgFiles(fs, func(n string) bool { return strings.HasSuffix(n, tmpSuffix) }) {
		fs.Remove(tmp)
	}
	snaps = dmgFiles(fs, func(n string) bool { _, ok := parseSnapName(n); return ok })
	segs = dmgFiles(fs, func(n string) bool { _, ok := parseSegName(n); return ok })
	slices.Sort(snaps)
	slices.Sort(segs)
	if len(snaps) != 2 || len(segs) < 4 {
		t.Fatalf("want 2 snapshots and at least 4 segments, have %v %v", snaps, segs)
	}
	return fs, snaps, segs
}

func flipByte(t *testing.T, fs *vfs.MemFS, path string, off int) {
	t.Helper()
	data, err := fs.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0x40
	if err := fs.WriteFile(path, data); err != nil {
		t.Fatal(err)
	}
}

// Damage in log segments that hold only records the newest snapshot covers
// does not keep the store from opening; it is reported, and once the
// newest snapshot is damaged too, the error names both files.
func TestOpenWithDamageBeforeNewestSnapshot(t *testing.T) {
	fs, snaps, segs := cleanDmgStore(t)
	flipByte(t, fs, segs[0], 100) // records 81.. : all before the newest snapshot (160)

	s := newDmgStore(fs, false)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open with damage only in the log before the newest snapshot: %v", err)
	}
	if _, err := s.check(dmgTxns, dmgTxns); err != nil {
		t.Fatal(err)
	}
	d := s.Damage()
	if len(d) != 1 || !strings.Contains(d[0].Error(), filepath.Base(segs[0])) || !errors.Is(d[0], ErrCorrupt) {
		t.Fatalf("Damage() = %v, want the damaged segment %s", d, filepath.Base(segs[0]))
	}
	if got := s.Stats().Damaged; got != 1 {
		t.Fatalf("Stats().Damaged = %d, want 1", got)
	}
	s.Close()

	flipByte(t, fs, snaps[1], snapHeaderSize+3)
	before := diskState(fs)
	s = newDmgStore(fs, false)
	err := s.Open(context.Background())
	if err == nil || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open needing a damaged log: %v, want ErrCorrupt", err)
	}
	for _, f := range []string{snaps[1], segs[0]} {
		if !strings.Contains(err.Error(), filepath.Base(f)) {
			t.Errorf("the error does not name %s: %v", filepath.Base(f), err)
		}
	}
	if d := diffState(before, diskState(fs)); d != "" {
		t.Fatalf("refused Open changed the disk: %s", d)
	}
}

// An Open that fails leaves the disk as it found it; a read-write Open
// creates a store only in a missing or empty directory.
func TestRefusedOpenWritesNothing(t *testing.T) {
	t.Run("log missing", func(t *testing.T) {
		fs, _, segs := cleanDmgStore(t)
		for _, seg := range segs {
			fs.Remove(seg)
		}
		fs.Remove(filepath.Join(dmgDir, walSubdir, "LOCK"))
		fs.Remove(filepath.Join(dmgDir, walSubdir))
		before := diskState(fs)
		err := newDmgStore(fs, false).Open(context.Background())
		if !errors.Is(err, ErrNoState) {
			t.Fatalf("Open without the log: %v, want ErrNoState", err)
		}
		if d := diffState(before, diskState(fs)); d != "" {
			t.Fatalf("refused Open changed the disk: %s", d)
		}
	})
	t.Run("not a store", func(t *testing.T) {
		fs := vfs.NewMem()
		fs.MkdirAll(dmgDir)
		fs.WriteFile(filepath.Join(dmgDir, "lost+found"), []byte("x"))
		before := diskState(fs)
		err := newDmgStore(fs, false).Open(context.Background())
		if !errors.Is(err, ErrNotStore) || !strings.Contains(err.Error(), "lost+found") {
			t.Fatalf("Open of a directory holding other files: %v, want ErrNotStore", err)
		}
		if d := diffState(before, diskState(fs)); d != "" {
			t.Fatalf("refused Open changed the disk: %s", d)
		}
	})
	t.Run("log given for the store", func(t *testing.T) {
		fs, _, _ := cleanDmgStore(t)
		before := diskState(fs)
		s := New(Options{Dir: filepath.Join(dmgDir, walSubdir), FS: fs, Logger: quiet()})
		err := s.Open(context.Background())
		if !errors.Is(err, ErrNotStore) || !strings.Contains(err.Error(), "give the store's directory") {
			t.Fatalf("Open of DIR/wal: %v, want ErrNotStore", err)
		}
		if d := diffState(before, diskState(fs)); d != "" {
			t.Fatalf("refused Open changed the disk: %s", d)
		}
	})
	for _, c := range lateRefusals() {
		for _, sealed := range []bool{false, true} {
			name := c.name + ", torn tail"
			if sealed {
				name = c.name + ", sealed last segment"
			}
			t.Run(name, func(t *testing.T) { c.check(t, sealed) })
		}
	}
	t.Run("new store", func(t *testing.T) {
		fs := vfs.NewMem()
		s := newDmgStore(fs, false)
		if err := s.Open(context.Background()); err != nil {
			t.Fatalf("Open in a missing directory: %v", err)
		}
		if err := s.txn(1); err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
}

// A read-only Open changes nothing on disk, even with a torn tail and an
// unfinished snapshot to clean up, and refuses writes and snapshots.
func TestReadOnlyOpen(t *testing.T) {
	base := buildDmgBase(t, rand.New(rand.NewPCG(3, 4)), true)
	fs := base.fs.CrashClone(5)
	segs := dmgFiles(fs, func(n string) bool { _, ok := parseSegName(n); return ok })
	slices.Sort(segs)
	last := segs[len(segs)-1]
	data, _ := fs.ReadFile(last)
	fs.WriteFile(last, append(data, 1, 2, 3, 4, 5, 6, 7)) // a torn frame
	fs.Remove(filepath.Join(dmgDir, walSubdir, "LOCK"))
	before := diskState(fs)

	s := newDmgStore(fs, true)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	if _, err := s.check(base.acked, base.tried); err != nil {
		t.Fatal(err)
	}
	if err := s.txn(base.tried + 1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Write on a read-only store: %v, want ErrReadOnly", err)
	}
	if _, err := s.Snapshot(context.Background()); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Snapshot on a read-only store: %v, want ErrReadOnly", err)
	}
	s.Close()
	if d := diffState(before, diskState(fs)); d != "" {
		t.Fatalf("read-only Open changed the disk: %s", d)
	}

	empty := vfs.NewMem()
	if err := newDmgStore(empty, true).Open(context.Background()); !errors.Is(err, ErrNotStore) {
		t.Fatalf("read-only Open of a missing directory: %v, want ErrNotStore", err)
	}
	if names, _ := empty.List("/"); len(names) != 0 {
		t.Fatalf("read-only Open created %v", names)
	}
}

// Verify reports every snapshot and what recovery would use and could fall
// back to, and changes nothing.
func TestVerifyStore(t *testing.T) {
	fs, snaps, segs := cleanDmgStore(t)
	rep, err := Verify(fs, dmgDir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Err != nil || rep.Damaged() || rep.Uses != filepath.Base(snaps[1]) ||
		!slices.Equal(rep.Fallbacks, []string{filepath.Base(snaps[0])}) ||
		rep.ReplayFrom != dmgSnapAt2+1 || rep.ReplayTo != dmgTxns {
		t.Fatalf("clean store: %+v", rep)
	}
	for _, sc := range rep.Snapshots {
		if sc.Err != nil || sc.Collections != 2 {
			t.Fatalf("snapshot %s: %+v", sc.Name, sc)
		}
	}

	flipByte(t, fs, snaps[0], snapHeaderSize+5)
	flipByte(t, fs, segs[0], 60)
	before := diskState(fs)
	rep, err = Verify(fs, dmgDir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Err != nil || !rep.Damaged() || len(rep.Fallbacks) != 0 || len(rep.LogDamage) != 1 ||
		rep.LogDamage[0].Segment != filepath.Base(segs[0]) || !errors.Is(rep.Snapshots[1].Err, ErrCorrupt) {
		t.Fatalf("damaged older snapshot and log prefix: %+v", rep)
	}
	if d := diffState(before, diskState(fs)); d != "" {
		t.Fatalf("Verify changed the disk: %s", d)
	}

	flipByte(t, fs, segs[len(segs)-2], 60)
	if rep, err = Verify(fs, dmgDir); err != nil || rep.Err == nil || !strings.Contains(rep.Err.Error(), filepath.Base(segs[len(segs)-2])) {
		t.Fatalf("damage in the needed log: %v, %+v", err, rep)
	}
	if _, err := Verify(fs, "/nowhere"); !errors.Is(err, ErrNotStore) {
		t.Fatalf("Verify of a missing directory: %v", err)
	}
}

// PlanRepair removes damaged log segments the newest snapshot covers,
// keeps damaged snapshots unless told, and refuses damage in the log
// recovery needs when intact segments follow it.
func TestRepairStore(t *testing.T) {
	fs, snaps, segs := cleanDmgStore(t)
	flipByte(t, fs, segs[0], 60)
	flipByte(t, fs, snaps[0], snapHeaderSize+1)
	plan, err := PlanRepair(dmgDir, RepairOptions{FS: fs})
	if err != nil || plan.Refusal != nil {
		t.Fatalf("PlanRepair: %v, %v", err, plan)
	}
	next, _ := parseSegName(filepath.Base(segs[1]))
	want := RepairAction{Op: "remove segment", File: filepath.Join(walSubdir, filepath.Base(segs[0])), FirstSeq: dmgSnapAt1 + 1, LastSeq: next - 1}
	if len(plan.Actions) != 1 || plan.Actions[0].Op != want.Op || plan.Actions[0].File != want.File ||
		plan.Actions[0].FirstSeq != want.FirstSeq || plan.Actions[0].LastSeq != want.LastSeq || len(plan.Kept) != 1 {
		t.Fatalf("plan:\n%s\nwant one action %+v and the damaged snapshot kept", plan, want)
	}
	if !strings.Contains(plan.String(), "seq 81..") {
		t.Fatalf("plan does not state the sequence numbers it drops:\n%s", plan)
	}
	if err := Repair(plan); err != nil {
		t.Fatal(err)
	}
	rep, _ := Verify(fs, dmgDir)
	if len(rep.LogDamage) != 0 || rep.Err != nil || rep.Snapshots[1].Err == nil {
		t.Fatalf("after repair: %+v", rep)
	}
	plan, _ = PlanRepair(dmgDir, RepairOptions{FS: fs, RemoveDamagedSnapshots: true})
	if len(plan.Actions) != 1 || plan.Actions[0].File != filepath.Base(snaps[0]) {
		t.Fatalf("plan with RemoveDamagedSnapshots:\n%s", plan)
	}
	if err := Repair(plan); err != nil {
		t.Fatal(err)
	}
	s := newDmgStore(fs, false)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.check(dmgTxns, dmgTxns); err != nil {
		t.Fatal(err)
	}
	if d := s.Damage(); len(d) != 0 {
		t.Fatalf("damage after repair: %v", d)
	}
	s.Close()

	// Damage in the needed log with an intact segment after it.
	flipByte(t, fs, segs[len(segs)-2], 60)
	before := diskState(fs)
	plan, err = PlanRepair(dmgDir, RepairOptions{FS: fs})
	if err != nil || !errors.Is(plan.Refusal, ErrNeedBackup) || !strings.Contains(plan.Refusal.Error(), filepath.Base(segs[len(segs)-1])) {
		t.Fatalf("PlanRepair of damage in the needed log: %v\n%v", err, plan)
	}
	if err := Repair(plan); !errors.Is(err, ErrNeedBackup) {
		t.Fatalf("Repair of a refused plan: %v", err)
	}
	if d := diffState(before, diskState(fs)); d != "" {
		t.Fatalf("refused repair changed the disk: %s", d)
	}
}

// The damaged segments Open did without go with the next snapshot; the
// store then reopens without damage.
func TestDamagedSegmentsGoWithNextSnapshot(t *testing.T) {
	fs, _, segs := cleanDmgStore(t)
	flipByte(t, fs, segs[0], 100)
	s := newDmgStore(fs, false)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.txn(dmgTxns + 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := fs.Stat(segs[0]); err == nil {
		t.Fatalf("%s is still there after a snapshot", segs[0])
	}
	s = newDmgStore(fs, false)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.check(dmgTxns+1, dmgTxns+1); err != nil {
		t.Fatal(err)
	}
	if d := s.Damage(); len(d) != 0 {
		t.Fatalf("damage after the snapshot: %v", d)
	}
}

// A restored store's state before its log is only in its snapshot: if that
// is damaged, Open refuses rather than replay the log on an empty state.
func TestDamagedRestoredSnapshotRefuses(t *testing.T) {
	fs, _, _ := cleanDmgStore(t)
	s := newDmgStore(fs, true)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if _, err := s.Backup(context.Background(), &backup); err != nil {
		t.Fatal(err)
	}
	s.Close()
	dst := vfs.NewMem()
	if _, err := Restore(context.Background(), &backup, dmgDir, RestoreOptions{FS: dst}); err != nil {
		t.Fatal(err)
	}
	s = newDmgStore(dst, false)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.txn(dmgTxns + 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	snap := filepath.Join(dmgDir, snapName(0))
	flipByte(t, dst, snap, snapHeaderSize+2)
	err := newDmgStore(dst, false).Open(context.Background())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), snapName(0)) {
		t.Fatalf("Open of a restored store with its snapshot damaged: %v, want ErrCorrupt naming %s", err, snapName(0))
	}
	if rep, err := Verify(dst, dmgDir); err != nil || rep.Err == nil {
		t.Fatalf("Verify: %v, %+v: want would not open", err, rep)
	}
}

// lateRefusal is an Open that recovery refuses, after the log was opened.
type lateRefusal struct {
	name string
	want error
	// spoil makes Open refuse and returns what undoes it (nil: nothing
	// to undo).
	spoil func(t *testing.T, fs *vfs.MemFS, snaps []string) (open func() *Store, undo func())
}

func lateRefusals() []lateRefusal {
	rightProgram := func(fs *vfs.MemFS) func() *Store {
		return func() *Store { return newDmgStore(fs, false).Store }
	}
	restore := func(fs *vfs.MemFS, paths ...string) func() {
		saved := map[string][]byte{}
		for _, p := range paths {
			saved[p], _ = fs.ReadFile(p)
		}
		return func() {
			for p, data := range saved {
				fs.WriteFile(p, data)
			}
		}
	}
	return []lateRefusal{
		{name: "unregistered collection", want: ErrUnknownCollection,
			spoil: func(t *testing.T, fs *vfs.MemFS, snaps []string) (func() *Store, func()) {
				return func() *Store { return newKVOnlyStore(fs) }, nil
			}},
		{name: "newer format", want: ErrVersion,
			spoil: func(t *testing.T, fs *vfs.MemFS, snaps []string) (func() *Store, func()) {
				newest := snaps[len(snaps)-1]
				undo := restore(fs, newest)
				data, _ := fs.ReadFile(newest)
				h, err := decodeSnapHeader(data, newest)
				if err != nil {
					t.Fatal(err)
				}
				h.version = snapVersion + 1
				copy(data, h.encode())
				fs.WriteFile(newest, data)
				return rightProgram(fs), undo
			}},
		{name: "every snapshot damaged", want: ErrCorrupt,
			spoil: func(t *testing.T, fs *vfs.MemFS, snaps []string) (func() *Store, func()) {
				undo := restore(fs, snaps...)
				for _, sn := range snaps {
					flipByte(t, fs, sn, snapHeaderSize+3)
				}
				return rightProgram(fs), undo
			}},
	}
}

// check refuses an Open of a store left as a crash leaves it (sealed: in
// Close, after the last segment's trailer; else with a torn tail) and
// checks that nothing on disk changed; then undoes the cause and opens it.
func (c lateRefusal) check(t *testing.T, sealed bool) {
	fs, snaps, segs := cleanDmgStore(t)
	crashLeftovers(t, fs, segs, sealed)
	open, undo := c.spoil(t, fs, snaps)
	before := diskState(fs)
	s := open()
	err := s.Open(context.Background())
	if !errors.Is(err, c.want) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open: %v, want %v", err, c.want)
	}
	if d := diffState(before, diskState(fs)); d != "" {
		t.Fatalf("refused Open changed the disk: %s (%v)", d, err)
	}
	if undo != nil {
		undo()
	}
	ds := newDmgStore(fs, false)
	if err := ds.Open(context.Background()); err != nil {
		t.Fatalf("Open with the cause undone: %v", err)
	}
	defer ds.Close()
	if _, err := ds.check(dmgTxns, dmgTxns); err != nil {
		t.Fatal(err)
	}
	if err := ds.txn(dmgTxns + 1); err != nil {
		t.Fatal(err)
	}
}

// crashLeftovers makes a cleanly closed damage store look as a crash
// leaves it: no LOCK file, an unfinished segment creation, and either a
// torn frame after the last segment's records or (sealed) a last segment
// sealed with no segment after it (a crash inside Close).
func crashLeftovers(t *testing.T, fs *vfs.MemFS, segs []string, sealed bool) {
	t.Helper()
	last := segs[len(segs)-1]
	if first, _ := parseSegName(filepath.Base(last)); first != dmgTxns+1 {
		t.Fatalf("the last segment is %s, want the empty one after a clean Close", last)
	}
	if err := fs.Remove(filepath.Join(dmgDir, walSubdir, "LOCK")); err != nil {
		t.Fatal(err)
	}
	if sealed {
		fs.Remove(last)
	} else {
		data, _ := fs.ReadFile(last)
		fs.WriteFile(last, append(data, 1, 2, 3, 4, 5, 6, 7))
	}
	fs.WriteFile(last+tmpSuffix, []byte("PRCYNWAL"))
}
