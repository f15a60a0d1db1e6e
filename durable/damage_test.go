package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// The damage test damages one file (or adds one) of the damage store at
// random, and checks what Open, a read-only Open with a backup, and Verify
// make of it. See TestDamage for the rules.

// role is what a damaged file is to recovery.
type role int

const (
	roleOldSnap      role = iota // the older snapshot
	roleNewSnap                  // the newest snapshot
	roleUnneededSeg              // a segment holding only records the newest snapshot covers
	roleNeededSeg                // a segment recovery replays, not the last
	roleLastSeg                  // the last segment
	roleLock                     // wal/LOCK
	roleTmp                      // an unfinished snapshot
	roleForeignSeg               // an added file or directory named like the next segment
	roleForeignSnap              // an added file named like a newer snapshot
	roleForeignOther             // an added file with another name
	roleLogDir                   // the log's directory, all of it (a disk not mounted)
	numRoles
)

var roleNames = [numRoles]string{"old snapshot", "new snapshot", "unneeded segment", "needed segment", "last segment",
	"LOCK", ".snap.tmp", "foreign segment", "foreign snapshot", "foreign file", "log directory"}

// mustOpen says whether Open must succeed with every acknowledged
// transaction when only a file of this role is damaged, this way. (A lock
// file that is a directory cannot be locked.)
func (r role) mustOpen(how string) bool {
	switch {
	case r == roleNeededSeg, r == roleLastSeg, r == roleForeignSeg, r == roleLogDir:
		return false
	case r == roleLock && how == "directory":
		return false
	}
	return true
}

// dmgCase is one damaged disk.
type dmgCase struct {
	fs      *vfs.MemFS
	crashed bool   // the base store crashed (else it was closed)
	file    string // the damaged or added path
	role    role
	how     string
	acked   int // transactions acknowledged
	minN    int // the fewest transactions a successful Open may hold
	maxN    int
	needed  uint64 // first record the newest snapshot leaves needed
	// goOnToo: after a successful Open, write on, snapshot and reopen.
	goOnToo bool
}

// classify gives the role of a path on a clean copy of the disk.
func classify(fs *vfs.MemFS, path string) (role, uint64) {
	snaps := dmgFiles(fs, func(n string) bool { _, ok := parseSnapName(n); return ok })
	segs := dmgFiles(fs, func(n string) bool { _, ok := parseSegName(n); return ok })
	slices.Sort(snaps)
	slices.Sort(segs)
	newest, _ := parseSnapName(filepath.Base(snaps[len(snaps)-1]))
	need := newest + 1
	base := filepath.Base(path)
	switch {
	case base == "LOCK":
		return roleLock, need
	case strings.HasSuffix(base, tmpSuffix):
		return roleTmp, need
	case path == snaps[len(snaps)-1]:
		return roleNewSnap, need
	case strings.HasSuffix(base, snapSuffix):
		return roleOldSnap, need
	}
	i := slices.Index(segs, path)
	switch {
	case i == len(segs)-1:
		return roleLastSeg, need
	case i >= 0:
		if next, _ := parseSegName(filepath.Base(segs[i+1])); next <= need {
			return roleUnneededSeg, need
		}
		return roleNeededSeg, need
	}
	return roleForeignOther, need
}

// damage applies one random damage to a copy of the base disk.
func (b *dmgBase) damage(rng *rand.Rand, seed int64) *dmgCase {
	fs := b.fs.CrashClone(seed)
	c := &dmgCase{fs: fs, crashed: b.crashed, acked: b.acked, minN: b.acked, maxN: b.tried, goOnToo: rng.IntN(4) == 0}
	files := dmgFiles(fs, func(string) bool { return true })
	switch rng.IntN(40) {
	case 0, 1, 2, 3:
		c.addForeign(rng, files)
	case 4:
		c.file, c.role, c.how = filepath.Join(dmgDir, walSubdir), roleLogDir, "missing"
		for _, f := range dmgFiles(fs, func(string) bool { return true }) {
			if filepath.Dir(f) == c.file {
				fs.Remove(f)
			}
		}
		fs.Remove(c.file)
	default:
		c.file = files[rng.IntN(len(files))]
		c.role, c.needed = classify(fs, c.file)
		c.how = damageFile(rng, fs, c.file)
	}
	if c.role == roleLastSeg && (b.crashed || c.how == "missing") {
		// The unsynced tail of a crashed process cannot be told from
		// damage to it, and nothing tells that a last segment is gone:
		// Open may drop the records from the damage on.
		first, _ := parseSegName(filepath.Base(c.file))
		c.minN = min(c.minN, int(first)-1)
	}
	return c
}

// addForeign adds a file that does not belong.
func (c *dmgCase) addForeign(rng *rand.Rand, files []string) {
	segs, snaps := 0, uint64(0)
	var last string
	for _, f := range files {
		if _, ok := parseSegName(filepath.Base(f)); ok {
			segs++
			last = f
		}
		if s, ok := parseSnapName(filepath.Base(f)); ok {
			snaps = max(snaps, s)
		}
	}
	_, c.needed = classify(c.fs, last)
	garbage := make([]byte, rng.IntN(200))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	switch rng.IntN(4) {
	case 0:
		first, _ := parseSegName(filepath.Base(last))
		c.file, c.role, c.how = filepath.Join(dmgDir, walSubdir, seqNameSeg(first+100000)), roleForeignSeg, "garbage file"
		c.fs.WriteFile(c.file, garbage)
	case 1:
		first, _ := parseSegName(filepath.Base(last))
		c.file, c.role, c.how = filepath.Join(dmgDir, walSubdir, seqNameSeg(first+100000)), roleForeignSeg, "directory"
		c.fs.MkdirAll(c.file)
	case 2:
		c.file, c.role, c.how = filepath.Join(dmgDir, snapName(snaps+1000)), roleForeignSnap, "garbage file"
		c.fs.WriteFile(c.file, garbage)
	default:
		dir := dmgDir
		if rng.IntN(2) == 0 {
			dir = filepath.Join(dmgDir, walSubdir)
		}
		c.file, c.role, c.how = filepath.Join(dir, "notes.txt"), roleForeignOther, "garbage file"
		c.fs.WriteFile(c.file, garbage)
	}
}

func seqNameSeg(seq uint64) string { return snapName(seq)[:20] + segSuffix }

// damageFile damages path in one of several ways and says how.
func damageFile(rng *rand.Rand, fs *vfs.MemFS, path string) string {
	data, _ := fs.ReadFile(path)
	kinds := []string{"flip", "truncate", "truncate at boundary", "zero range", "garbage", "directory", "missing"}
	how := kinds[rng.IntN(len(kinds))]
	if len(data) == 0 && how != "directory" && how != "missing" {
		how = "garbage"
	}
	switch how {
	case "flip":
		data[rng.IntN(len(data))] ^= 1 << rng.IntN(8)
	case "truncate":
		data = data[:rng.IntN(len(data))]
	case "truncate at boundary":
		data = data[:boundary(rng, fs, path, len(data))]
	case "zero range":
		from := rng.IntN(len(data))
		to := from + 1 + rng.IntN(min(64, len(data)-from))
		clear(data[from:to])
	case "garbage":
		data = make([]byte, 1+rng.IntN(300))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
	case "directory":
		fs.Remove(path)
		fs.MkdirAll(path)
		return how
	case "missing":
		fs.Remove(path)
		return how
	}
	fs.WriteFile(path, data)
	return how
}

// boundary picks a frame boundary of a segment (a header or section
// boundary elsewhere).
func boundary(rng *rand.Rand, fs *vfs.MemFS, path string, size int) int {
	if _, ok := parseSegName(filepath.Base(path)); !ok {
		return min(size, []int{0, snapHeaderSize, size - 4}[rng.IntN(3)])
	}
	var offs []int
	wal.Dump(fs, filepath.Dir(path), wal.CheckOptions{}, func(d wal.DumpFrame) {
		if d.Segment == filepath.Base(path) {
			offs = append(offs, int(d.Offset))
		}
	})
	if len(offs) == 0 {
		return 0
	}
	return offs[rng.IntN(len(offs))]
}

// outcome classes, for the counts the test logs.
const (
	outClean     = "opened clean"
	outDamaged   = "opened, damage reported"
	outLost      = "opened, crash tail dropped"
	outRefused   = "refused, naming the file"
	outUntouched = "opened, damage not on recovery's path"
	// Refused, with damage in the log recovery needs (a needed or the
	// last segment): repaired by cutting the log, the loss accepted; or
	// the repair refused, as an intact segment follows the damage.
	outCut          = "refused; repaired, loss accepted"
	outRepairRefuse = "refused; repair refused, intact segment after"
)

// run checks one case and returns its outcome, or an error for a
// violation.
func (c *dmgCase) run() (string, error) {
	before := diskState(c.fs)
	rep, verr := Verify(c.fs, dmgDir)
	if d := diffState(before, diskState(c.fs)); d != "" {
		return "", fmt.Errorf("Verify changed the disk: %s", d)
	}
	if verr != nil {
		return "", fmt.Errorf("Verify: %v", verr)
	}
	if err := c.readOnly(); err != nil {
		return "", err
	}
	if d := diffState(before, diskState(c.fs)); d != "" {
		return "", fmt.Errorf("read-only Open and Backup changed the disk: %s", d)
	}
	if err := c.wrongProgram(before, rep); err != nil {
		return "", err
	}
	s := newDmgStore(c.fs, false)
	err := s.Open(context.Background())
	if (err == nil) != (rep.Err == nil) {
		return "", fmt.Errorf("Verify says the store would open: %v, but Open says %v", rep.Err, err)
	}
	if err != nil {
		if d := diffState(before, diskState(c.fs)); d != "" {
			return "", fmt.Errorf("refused Open changed the disk: %s (%v)", d, err)
		}
		if c.role.mustOpen(c.how) {
			return "", fmt.Errorf("refused, but the data recovery needs is intact: %v", err)
		}
		// A missing segment shows as a gap before the next one.
		named := strings.Contains(err.Error(), filepath.Base(c.file)) || c.how == "missing" && strings.Contains(err.Error(), "missing")
		if !named {
			return "", fmt.Errorf("refusal does not name %s: %v", filepath.Base(c.file), err)
		}
		if c.role == roleNeededSeg || c.role == roleLastSeg {
			return c.repairWithLoss(rep)
		}
		return outRefused, nil
	}
	defer s.Close()
	n, err := s.check(c.minN, c.maxN)
	if err != nil {
		return "", err
	}
	if len(s.Damage()) > 0 && !rep.Damaged() {
		return "", fmt.Errorf("Open reports damage %v that Verify does not", s.Damage())
	}
	if d := s.Damage(); len(d) > 0 && c.how != "missing" && !strings.Contains(errors.Join(d...).Error(), filepath.Base(c.file)) {
		return "", fmt.Errorf("damage reported does not name %s: %v", filepath.Base(c.file), d)
	}
	out := outClean
	switch {
	case len(s.Damage()) > 0:
		out = outDamaged
	case n < c.acked:
		out = outLost
	case c.role == roleOldSnap:
		out = outUntouched
	}
	if c.goOnToo {
		return out, c.goOn(s, n)
	}
	return out, nil
}

// repairWithLoss repairs damage in the log recovery needs, accepting the
// loss: refused if an intact segment holding records follows the damage,
// else the store must open afterwards with exactly the transactions before
// the cut, and the plan must not claim to keep more than the log held.
func (c *dmgCase) repairWithLoss(rep *VerifyReport) (string, error) {
	before := diskState(c.fs)
	plan, err := PlanRepair(dmgDir, RepairOptions{FS: c.fs, AcceptLoss: true})
	if err != nil {
		return "", fmt.Errorf("PlanRepair: %v", err)
	}
	intact := ""
	for _, sg := range rep.Log.Segments {
		if sg.Name > filepath.Base(c.file) && sg.Records > 0 {
			intact = sg.Name
		}
	}
	if plan.Refusal != nil {
		if intact == "" {
			return "", fmt.Errorf("repair refused although no intact segment follows the damage:\n%s", plan)
		}
		if err := Repair(plan); err == nil {
			return "", errors.New("Repair of a refused plan succeeded")
		}
		if d := diffState(before, diskState(c.fs)); d != "" {
			return "", fmt.Errorf("refused repair changed the disk: %s", d)
		}
		return outRepairRefuse, nil
	}
	if intact != "" {
		return "", fmt.Errorf("repair cuts the log before the intact segment %s:\n%s", intact, plan)
	}
	l := plan.Loss
	if l == nil {
		return "", fmt.Errorf("repair of the needed log states no loss:\n%s", plan)
	}
	keep := int(l.From) - 1
	switch {
	case keep > c.maxN:
		return "", fmt.Errorf("repair claims to keep the transactions up to %d, only %d were written:\n%s", keep, c.maxN, plan)
	case l.Known && !c.crashed && l.To != uint64(c.acked):
		return "", fmt.Errorf("repair says the log ended at %d, it ended at %d:\n%s", l.To, c.acked, plan)
	case l.Known && int(l.To) > c.maxN || int(l.Last) > c.maxN:
		return "", fmt.Errorf("repair says it drops transactions up to %d, only %d were written:\n%s", max(l.To, l.Last), c.maxN, plan)
	}
	if err := Repair(plan); err != nil {
		return "", fmt.Errorf("Repair:\n%s: %v", plan, err)
	}
	s := newDmgStore(c.fs, false)
	if err := s.Open(context.Background()); err != nil {
		return "", fmt.Errorf("Open after the repair:\n%s: %v", plan, err)
	}
	defer s.Close()
	if _, err := s.check(keep, keep); err != nil {
		return "", fmt.Errorf("after the repair:\n%s: %v", plan, err)
	}
	return outCut, nil
}

// wrongProgram opens the store with a program that does not register a
// collection the store holds: recovery refuses it (late: the log is open
// by then), and the disk must be as it was.
func (c *dmgCase) wrongProgram(before map[string]string, rep *VerifyReport) error {
	s := newKVOnlyStore(c.fs)
	err := s.Open(context.Background())
	if err == nil {
		s.Close()
		return errors.New("Open by a program without the meta collection succeeded")
	}
	if rep.Err == nil && !errors.Is(err, ErrUnknownCollection) {
		return fmt.Errorf("Open by a program without the meta collection: %v, want ErrUnknownCollection", err)
	}
	if d := diffState(before, diskState(c.fs)); d != "" {
		return fmt.Errorf("Open refused for an unregistered collection changed the disk: %s (%v)", d, err)
	}
	return nil
}

// readOnly opens the store read-only and backs it up; the state must be as
// a read-write Open would see it, and writes are refused.
func (c *dmgCase) readOnly() error {
	s := newDmgStore(c.fs, true)
	if err := s.Open(context.Background()); err != nil {
		return nil
	}
	defer s.Close()
	if _, err := s.check(c.minN, c.maxN); err != nil {
		return fmt.Errorf("read-only Open: %w", err)
	}
	if err := s.txn(1); !errors.Is(err, ErrReadOnly) {
		return fmt.Errorf("read-only store took a write: %v", err)
	}
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// goOn writes on after a successful Open, snapshots twice (which drops what
// recovery set aside) and reopens: nothing may be lost.
func (c *dmgCase) goOn(s *dmgStore, n int) error {
	for i := n + 1; i <= n+2; i++ {
		if err := s.txn(i); err != nil {
			return fmt.Errorf("write after recovery: %w", err)
		}
		if _, err := s.Snapshot(context.Background()); err != nil {
			return fmt.Errorf("snapshot after recovery: %w", err)
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	s2 := newDmgStore(c.fs, false)
	if err := s2.Open(context.Background()); err != nil {
		return fmt.Errorf("reopen after recovery and two snapshots: %w", err)
	}
	defer s2.Close()
	if _, err := s2.check(n+2, n+2); err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	if d := s2.Damage(); len(d) > 0 && c.role != roleForeignSnap {
		return fmt.Errorf("damage still reported after two snapshots: %v", d)
	}
	return nil
}

// TestDamage damages one file of a store (cleanly closed, or crashed after
// its second snapshot) per case, at random: byte flips, truncations at
// random offsets and at record boundaries, zeroed ranges, garbage,
// directories where files belong, missing files, and foreign files named
// like segments or snapshots. For every case, Verify, a read-only Open
// with a backup, and an Open by a program that does not register one of
// the store's collections (refused by recovery) must not change the disk
// (the LOCK file included); Open must succeed, with every
// acknowledged transaction, unless the damage is in what recovery needs,
// and then leave the disk as it was and name the damaged file (and if the
// damage is in a needed or the last log segment, a repair accepting the
// loss must be refused if an intact segment follows it, else cut the log
// so that the store opens with exactly the transactions before the cut
// the plan states); Verify must
// agree on whether it opens; and after writing on and two snapshots the
// store must reopen with nothing lost. It fails on a panic, and on a case
// that takes more than a minute (a hang).
func TestDamage(t *testing.T) {
	seed := testSeed(t)
	cases := 1500 // per mode: about 45 s under -race on 2 cores
	if testing.Short() {
		cases = 200
	}
	counts, violations := map[string]int{}, map[string]int{}
	// Half the cases on the cleanly closed store, half on three stores
	// crashed at random points after their second snapshot.
	for b := range 4 {
		rng := rand.New(rand.NewPCG(seed, uint64(b)))
		base := buildDmgBase(t, rng, b > 0)
		mode, n := "closed", cases
		if b > 0 {
			mode, n = "crashed", cases/3
		}
		t.Logf("%s store %d: %d transactions acknowledged", mode, b, base.acked)
		c := base.fs.CrashClone(0)
		snaps := dmgFiles(c, func(n string) bool { _, ok := parseSnapName(n); return ok })
		segs := dmgFiles(c, func(n string) bool { _, ok := parseSegName(n); return ok })
		if b == 0 && (len(snaps) < 2 || len(segs) < 4) {
			t.Fatalf("the store has %d snapshots and %d segments, want at least 2 and 4", len(snaps), len(segs))
		}
		t.Logf("%d snapshots, %d segments", len(snaps), len(segs))
		for i := range n {
			c := base.damage(rng, int64(rng.Uint64()))
			out, err := runBounded(c)
			if errors.Is(err, errHang) {
				t.Fatalf("%s case %d: %s of %s (%s): %v", mode, i, c.how, c.file, roleNames[c.role], err)
			}
			if err != nil {
				// Report the first case of each kind of violation.
				kind := fmt.Sprintf("%s, %s, %s: %s", mode, roleNames[c.role], c.how, firstWords(err.Error()))
				if violations[kind]++; violations[kind] == 1 {
					t.Errorf("%s case %d: %s of %s (%s): %v", mode, i, c.how, c.file, roleNames[c.role], err)
				}
				out = "VIOLATION"
			}
			counts[mode+", "+roleNames[c.role]+": "+out]++
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range counts {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		t.Logf("%5d  %s", counts[k], k)
	}
}

// firstWords shortens an error to its kind: the words before a colon or a
// number.
func firstWords(s string) string {
	if i := strings.IndexAny(s, ":0123456789"); i > 0 {
		return s[:i]
	}
	return s
}

// runBounded runs a case with a time bound, turning a panic into an error.
func runBounded(c *dmgCase) (string, error) {
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("panic: %v\n%s", p, debug.Stack())}
			}
		}()
		out, err := c.run()
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(time.Minute):
		return "", errHang
	}
}

var errHang = errors.New("hang: the case did not finish within a minute")
