package wal

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/vfs"
)

// The damage tests build a log on a MemFS, cleanly closed or crashed, and
// damage it every way the table below knows: each segment truncated to 0,
// to every frame boundary and inside frames; bytes flipped in headers,
// frames and trailers; ranges zeroed; files replaced by garbage or by a
// directory; files removed; garbage files and directories added under
// segment names. For each, they check the invariants in checkDamage.

const damageRecords = 40

// baseLog is an undamaged log to clone and damage.
type baseLog struct {
	fs    *vfs.MemFS // durable state; clone it with CrashClone(1)
	clean bool       // closed cleanly (else crashed with the last segment active)
	files []baseFile
}

type baseFile struct {
	name     string
	firstSeq uint64
	records  int
	size     int64
	sealed   bool
	frames   []DumpFrame // data frames and trailer, in order
}

// end returns the offset just past frame i.
func (f baseFile) frameEnd(i int) int64 {
	return f.frames[i].Offset + frameHeaderSize + int64(f.frames[i].Size)
}

// frameAt returns the index of the frame holding byte off (-1: header).
func (f baseFile) frameAt(off int64) int {
	i := -1
	for j, fr := range f.frames {
		if fr.Offset <= off {
			i = j
		}
	}
	return i
}

// freshBase builds the base and fills in its files (Dump visits frames per
// file, so the file list is made first).
func freshBase(t *testing.T, clean bool) *baseLog {
	t.Helper()
	b := buildBaseFiles(t, clean)
	if b.clean {
		last := b.files[len(b.files)-1]
		if last.records != 0 || last.sealed || !b.files[len(b.files)-2].sealed {
			t.Fatalf("a cleanly closed log must end with a sealed segment and an empty one: %+v", b.files)
		}
	} else if last := b.files[len(b.files)-1]; last.records == 0 || last.sealed {
		t.Fatalf("a crashed log must end with an unsealed segment holding records: %+v", last)
	}
	if len(b.files) < 4 {
		t.Fatalf("want at least 4 segments: %+v", b.files)
	}
	return b
}

func buildBaseFiles(t *testing.T, clean bool) *baseLog {
	t.Helper()
	mem := vfs.NewMem()
	w := openT(t, mem, crashDir, Options{SegmentSize: 600, Preallocate: 256})
	for i := 1; i <= damageRecords; i++ {
		if i == 30 {
			if err := w.Roll(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if clean {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b := &baseLog{fs: mem.CrashClone(1), clean: clean}
	if !clean {
		w.Close() // fails: the FS crashed
	}
	rep, err := Verify(b.fs, crashDir, CheckOptions{})
	if err != nil || rep.Verdict() != Clean {
		t.Fatalf("base log: %v %+v", err, rep)
	}
	byName := map[string]int{}
	for i, s := range rep.Segments {
		byName[s.Name] = i
		b.files = append(b.files, baseFile{name: s.Name, firstSeq: s.FirstSeq, records: int(s.Records), size: s.Size, sealed: s.Sealed})
	}
	if _, err := Dump(b.fs, crashDir, CheckOptions{}, func(d DumpFrame) {
		f := &b.files[byName[d.Segment]]
		f.frames = append(f.frames, d)
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

// damage is one way to damage a base log.
type damage struct {
	name    string
	file    int    // index of the damaged base file; for an added file, the one it sorts after
	at      int64  // first damaged byte (0 for a whole-file change)
	added   string // the name of an added file
	removed bool   // the file was removed
	apply   func(t *testing.T, fs *vfs.MemFS)
}

func editFile(t *testing.T, fs *vfs.MemFS, path string, f func([]byte) []byte) {
	t.Helper()
	data, err := fs.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.WriteFile(path, f(data)); err != nil {
		t.Fatal(err)
	}
}

// damages lists every damage of the class for base b.
func damages(b *baseLog) []damage {
	var out []damage
	for i, f := range b.files {
		path := filepath.Join(crashDir, f.name)
		add := func(name string, at int64, edit func([]byte) []byte) {
			out = append(out, damage{name: fmt.Sprintf("%s: %s", f.name, name), file: i, at: at,
				apply: func(t *testing.T, fs *vfs.MemFS) { editFile(t, fs, path, edit) }})
		}
		cut := func(n int64) func([]byte) []byte { return func(b []byte) []byte { return b[:n] } }
		flip := func(n int64) func([]byte) []byte { return func(b []byte) []byte { b[n] ^= 0x21; return b } }
		add("truncated to 0", 0, cut(0))
		add("truncated inside the header", 0, cut(headerSize/2))
		for _, n := range []int64{0, 9, 17, 29} {
			add(fmt.Sprintf("header byte %d flipped", n), 0, flip(n))
		}
		bounds := []int64{headerSize}
		for j := range f.frames {
			bounds = append(bounds, f.frameEnd(j))
		}
		for _, n := range bounds[:len(bounds)-1] {
			add(fmt.Sprintf("truncated at boundary %d", n), n, cut(n))
		}
		for j, fr := range f.frames {
			add(fmt.Sprintf("truncated inside frame %d", j), fr.Offset+5, cut(fr.Offset+5))
			add(fmt.Sprintf("truncated inside frame %d's payload", j), fr.Offset+frameHeaderSize+1, cut(fr.Offset+frameHeaderSize+1))
			add(fmt.Sprintf("frame %d: length flipped", j), fr.Offset+5, flip(fr.Offset+5))
			add(fmt.Sprintf("frame %d: payload flipped", j), f.frameEnd(j)-1, flip(f.frameEnd(j)-1))
			zero := func(b []byte) []byte { clear(b[fr.Offset+2 : fr.Offset+12]); return b }
			add(fmt.Sprintf("frame %d: bytes 2..12 zeroed", j), fr.Offset+2, zero)
		}
		add("replaced by garbage", 0, func(b []byte) []byte { return bytes.Repeat([]byte("garbage!"), 40) })
		out = append(out, damage{name: f.name + ": replaced by a directory", file: i, apply: func(t *testing.T, fs *vfs.MemFS) {
			if err := fs.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := fs.MkdirAll(path); err != nil {
				t.Fatal(err)
			}
		}})
		out = append(out, damage{name: f.name + ": removed", file: i, removed: true, apply: func(t *testing.T, fs *vfs.MemFS) {
			if err := fs.Remove(path); err != nil {
				t.Fatal(err)
			}
		}})
		// A file that sorts right after this one (unless a segment has that name).
		stray := segmentName(f.firstSeq + 1)
		if i+1 < len(b.files) && b.files[i+1].name == stray {
			continue
		}
		strayPath := filepath.Join(crashDir, stray)
		out = append(out, damage{name: stray + ": garbage added after " + f.name, file: i, added: stray, apply: func(t *testing.T, fs *vfs.MemFS) {
			if err := fs.WriteFile(strayPath, []byte("not a segment")); err != nil {
				t.Fatal(err)
			}
		}})
		out = append(out, damage{name: stray + ": directory added after " + f.name, file: i, added: stray, apply: func(t *testing.T, fs *vfs.MemFS) {
			if err := fs.MkdirAll(strayPath); err != nil {
				t.Fatal(err)
			}
		}})
	}
	return out
}

// memState captures every entry of dir (name, kind, content), to check
// that an operation changed nothing.
func memState(t *testing.T, fs *vfs.MemFS, dir string) map[string]string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, n := range names {
		b, err := fs.ReadFile(filepath.Join(dir, n))
		switch {
		case errors.Is(err, syscall.EISDIR):
			m[n] = "<dir>"
		case err != nil:
			t.Fatal(err)
		default:
			m[n] = string(b)
		}
	}
	return m
}

func sameState(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		t.Fatalf("%s changed the directory: before %v, after %v", what, slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
}

// damageOutcome classifies what happened to one damaged log.
type damageOutcome struct {
	refused, opened, openedShort, repaired, repairRefused, skippedOK int
}

// TestDamage applies every damage of the class to a cleanly closed and to a
// crashed log and checks: Open returns every acknowledged record or fails
// naming the damaged file and offset; a refused Open and every read-only
// operation leave the directory as it was; damage before NeedFrom never
// fails Open; Repair never deletes an intact later segment, and drops
// exactly from where its plan says.
func TestDamage(t *testing.T) {
	for _, clean := range []bool{true, false} {
		name := "crashed"
		if clean {
			name = "clean"
		}
		t.Run(name, func(t *testing.T) {
			b := freshBase(t, clean)
			var o damageOutcome
			for _, d := range damages(b) {
				if !t.Run(d.name, func(t *testing.T) { checkDamage(t, b, d, &o) }) {
					t.FailNow()
				}
			}
			t.Logf("%s log, %d segments: Open refused %d (repaired %d, repair refused %d, opened with NeedFrom %d); opened whole %d, opened with a crash's loss %d",
				name, len(b.files), o.refused, o.repaired, o.repairRefused, o.skippedOK, o.opened, o.openedShort)
			if o.refused == 0 || o.repaired == 0 || o.repairRefused == 0 || o.skippedOK == 0 {
				t.Fatalf("the damage table does not reach every outcome: %+v", o)
			}
		})
	}
}

// expectedOffset is where the damage must be reported in the damaged file.
func (d damage) expectedOffset(b *baseLog) int64 {
	f := b.files[d.file]
	if d.at < headerSize {
		return 0
	}
	if i := f.frameAt(d.at); i >= 0 && d.at < f.frameEnd(i) {
		return f.frames[i].Offset
	}
	return d.at // a cut at a frame boundary
}

// blamed is the file the error must name.
func (d damage) blamed(b *baseLog) string {
	switch {
	case d.added != "":
		return d.added
	case d.removed:
		if d.file+1 < len(b.files) {
			return b.files[d.file+1].name // the gap is reported on the file after it
		}
		return ""
	}
	return b.files[d.file].name
}

// mayLose returns the records Open may lose without failing: what a crash
// could have cut (the unsealed last segment's records from the damage on),
// and the segments before a removed first one (TruncateFront looks the
// same). from..to inclusive; to < from: nothing.
func (d damage) mayLose(b *baseLog) (from, to uint64) {
	last := len(b.files) - 1
	f := b.files[d.file]
	switch {
	case d.added != "":
		return 1, 0
	case d.removed && d.file == 0:
		return 1, b.files[1].firstSeq - 1
	case b.clean || d.file != last:
		return 1, 0
	case d.removed || d.at < headerSize:
		return f.firstSeq, damageRecords
	}
	i := f.frameAt(d.at)
	if i < 0 || d.at >= f.frameEnd(i) {
		i++ // a cut at a boundary loses the frame that started there
	}
	if i >= len(f.frames) {
		return 1, 0
	}
	return f.frames[i].Seq, damageRecords
}

// checkRecords reads w and checks it holds exactly the records from
// FirstSeq on, with at most the allowed loss.
func checkRecords(t *testing.T, w *WAL, loseFrom, loseTo uint64) (first, last uint64) {
	t.Helper()
	first = w.FirstSeq()
	recs := readAll(t, w, first)
	for i, r := range recs {
		if r.Seq != first+uint64(i) || !bytes.Equal(r.Data, rec(int(r.Seq))) {
			t.Fatalf("record %d: seq %d, %q", i, r.Seq, r.Data)
		}
	}
	last = first + uint64(len(recs)) - 1
	for seq := uint64(1); seq <= damageRecords; seq++ {
		if (seq < first || seq > last) && (seq < loseFrom || seq > loseTo) {
			t.Fatalf("acknowledged record %d silently dropped: the log holds %d..%d", seq, first, last)
		}
	}
	return first, last
}

func checkDamage(t *testing.T, b *baseLog, d damage, o *damageOutcome) {
	t.Helper()
	fs := b.fs.CrashClone(1)
	d.apply(t, fs)
	before := memState(t, fs, crashDir)

	rep, err := Verify(fs, crashDir, CheckOptions{})
	if err != nil {
		t.Fatalf("%s: Verify: %v", d.name, err)
	}
	listed := map[string]bool{}
	if _, err := Dump(fs, crashDir, CheckOptions{}, func(DumpFrame) {}); err != nil {
		t.Fatalf("%s: Dump: %v", d.name, err)
	}
	for _, s := range rep.Segments {
		listed[s.Name] = true
	}
	for i, f := range b.files {
		if i != d.file && !listed[f.name] {
			t.Fatalf("%s: Verify does not list the intact segment %s", d.name, f.name)
		}
	}
	ro, roErr := Open(crashDir, Options{FS: fs, ReadOnly: true, Logger: quiet()})
	if roErr == nil {
		ro.Close()
	}
	sameState(t, d.name+": Verify, Dump and a read-only Open", before, memState(t, fs, crashDir))

	loseFrom, loseTo := d.mayLose(b)
	w, err := Open(crashDir, Options{FS: fs, Logger: quiet()})
	if (err == nil) != (roErr == nil) || (err == nil) != (rep.Verdict() != Corrupt) {
		t.Fatalf("%s: Open: %v; read-only Open: %v; Verify: %v", d.name, err, roErr, rep.Corruption)
	}
	if err == nil {
		_, last := checkRecords(t, w, loseFrom, loseTo)
		if last < damageRecords {
			o.openedShort++
		} else {
			o.opened++
		}
		if _, err := w.Append(Entry{Data: []byte("after")}); err != nil {
			t.Fatalf("%s: append after Open: %v", d.name, err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("%s: Close: %v", d.name, err)
		}
		return
	}
	o.refused++
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: Open: %v, want a *CorruptionError", d.name, err)
	}
	if want := d.blamed(b); ce.Segment != want {
		t.Fatalf("%s: Open: %v; want it to name %s", d.name, err, want)
	}
	if d.added == "" && !d.removed && ce.Offset != d.expectedOffset(b) {
		t.Fatalf("%s: Open: %v; want offset %d", d.name, err, d.expectedOffset(b))
	}
	sameState(t, d.name+": a refused Open", before, memState(t, fs, crashDir))

	checkNeedFrom(t, b, d, o)
	checkRepair(t, b, d, fs, before, o)
}

// intactAfter lists the base files after the damaged one that hold records
// and were not touched.
func (d damage) intactAfter(b *baseLog) []string {
	var out []string
	for _, f := range b.files[d.file+1:] {
		if f.records > 0 {
			out = append(out, f.name)
		}
	}
	return out
}

// checkNeedFrom opens the damaged log with NeedFrom just past the damaged
// file: Open must skip the damage, and TruncateFront must delete it.
func checkNeedFrom(t *testing.T, b *baseLog, d damage, o *damageOutcome) {
	t.Helper()
	if d.file+1 >= len(b.files) {
		return
	}
	need := b.files[d.file+1].firstSeq
	fs := b.fs.CrashClone(1)
	d.apply(t, fs)
	w, err := Open(crashDir, Options{FS: fs, Logger: quiet(), NeedFrom: need})
	if err != nil {
		t.Fatalf("%s: Open with NeedFrom %d: %v", d.name, need, err)
	}
	o.skippedOK++
	first, _ := checkRecords(t, w, 1, need-1)
	if first > need {
		t.Fatalf("%s: NeedFrom %d, but the log starts at %d", d.name, need, first)
	}
	dmg := w.Damage()
	if len(dmg) == 0 || dmg[len(dmg)-1].Segment != d.blamed(b) {
		t.Fatalf("%s: Damage() = %v, want it to name %s", d.name, dmg, d.blamed(b))
	}
	if err := w.TruncateFront(need); err != nil {
		t.Fatalf("%s: TruncateFront: %v", d.name, err)
	}
	names, _ := fs.List(crashDir)
	for _, f := range b.files[:d.file+1] {
		if slices.Contains(names, f.name) {
			t.Fatalf("%s: TruncateFront(%d) left %s, which Open skipped", d.name, need, f.name)
		}
	}
	if d.added != "" && slices.Contains(names, d.added) {
		t.Fatalf("%s: TruncateFront(%d) left the stray %s, which Open skipped", d.name, need, d.added)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = Open(crashDir, Options{FS: fs, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: Open after TruncateFront passed the damage: %v", d.name, err)
	}
	checkRecords(t, w, 1, need-1)
	w.Close()

	// Repair with the same NeedFrom deletes the damaged prefix and no
	// segment at or after NeedFrom.
	fs = b.fs.CrashClone(1)
	d.apply(t, fs)
	plan, err := PlanRepair(fs, crashDir, CheckOptions{NeedFrom: need})
	if err != nil || plan == nil || plan.Cut != nil {
		t.Fatalf("%s: PlanRepair with NeedFrom %d: %v\n%v", d.name, need, err, plan)
	}
	for _, del := range plan.Delete {
		if seq, _ := parseSegmentName(del.Name); seq >= need {
			t.Fatalf("%s: the plan deletes %s, at or after NeedFrom %d:\n%s", d.name, del.Name, need, plan)
		}
	}
	if err := Repair(fs, crashDir, plan); err != nil {
		t.Fatalf("%s: Repair with NeedFrom: %v", d.name, err)
	}
	w, err = Open(crashDir, Options{FS: fs, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: Open after Repair with NeedFrom: %v\n%s", d.name, err, plan)
	}
	checkRecords(t, w, 1, need-1)
	w.Close()
}

// checkRepair plans and applies a repair of the damaged log fs.
func checkRepair(t *testing.T, b *baseLog, d damage, fs *vfs.MemFS, before map[string]string, o *damageOutcome) {
	t.Helper()
	plan, err := PlanRepair(fs, crashDir, CheckOptions{})
	sameState(t, d.name+": PlanRepair", before, memState(t, fs, crashDir))
	intact := d.intactAfter(b)
	if d.removed {
		// The gap is reported on the next file: cutting there would drop
		// it and every later one.
		intact = nil
		for _, f := range b.files[d.file+1:] {
			if f.records > 0 {
				intact = append(intact, f.name)
			}
		}
	}
	if errors.Is(err, ErrRepairRefused) {
		if len(intact) == 0 {
			t.Fatalf("%s: repair refused, but no intact segment with records follows the damage: %v", d.name, err)
		}
		if !strings.Contains(err.Error(), intact[0]) {
			t.Fatalf("%s: the refusal does not name the intact segment %s: %v", d.name, intact[0], err)
		}
		o.repairRefused++
		return
	}
	if err != nil || plan == nil {
		t.Fatalf("%s: PlanRepair: %v %v", d.name, plan, err)
	}
	if len(intact) > 0 {
		t.Fatalf("%s: PlanRepair offers to drop the intact %v:\n%s", d.name, intact, plan)
	}
	if err := Repair(fs, crashDir, plan); err != nil {
		t.Fatalf("%s: Repair: %v", d.name, err)
	}
	w, err := Open(crashDir, Options{FS: fs, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: Open after Repair: %v\nplan:\n%s", d.name, err, plan)
	}
	defer w.Close()
	first, last := checkRecords(t, w, plan.firstDropped(), damageRecords)
	if first != 1 {
		t.Fatalf("%s: after Repair the log starts at %d", d.name, first)
	}
	if last < damageRecords && plan.firstDropped() != last+1 {
		t.Fatalf("%s: the log ends at %d after Repair, but the plan says it drops from %d:\n%s", d.name, last, plan.firstDropped(), plan)
	}
	if plan.Records() > damageRecords-last {
		t.Fatalf("%s: the plan says it drops %d records, but %d were lost:\n%s", d.name, plan.Records(), damageRecords-last, plan)
	}
	o.repaired++
}

// firstDropped is the first sequence number the plan says it drops.
func (p *RepairPlan) firstDropped() uint64 {
	if p.Cut != nil {
		return p.Cut.FirstSeq
	}
	first := uint64(1<<63 - 1)
	if p.Gap != nil {
		first = p.Gap.FirstSeq
	}
	for _, d := range p.Delete {
		first = min(first, d.FirstSeq)
	}
	return first
}

func encodeHeaderVersion(firstSeq uint64, version uint32) []byte {
	h := encodeHeader(firstSeq)
	h[8], h[9], h[10], h[11] = byte(version), byte(version>>8), byte(version>>16), byte(version>>24)
	c := crc32c.Checksum(h[:28])
	h[28], h[29], h[30], h[31] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	return h
}

// TestRepairPlanCountsEveryLaterRecord: a repair's cut at a damaged
// record recognises every whole record after it, however far into the
// segment (the bound on the sequence numbers a frame may carry moves
// with each frame found; it used to shrink with the bytes left, and
// records near the segment's end were not counted).
func TestRepairPlanCountsEveryLaterRecord(t *testing.T) {
	const n, bad = 240, 230
	for _, at := range []int{1, 100, bad, n - 1} {
		mem := vfs.NewMem()
		w := openT(t, mem, crashDir, Options{})
		off := int64(headerSize)
		for i := 1; i <= n; i++ {
			if i == at {
				off += frameHeaderSize / 2 // inside record at's header
			} else if i < at {
				off += int64(frameHeaderSize + len(rec(i)))
			}
			if _, err := w.Append(Entry{Data: rec(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		editFile(t, mem, filepath.Join(crashDir, segmentName(1)), func(b []byte) []byte {
			b[off] ^= 0xff
			return b
		})
		plan, err := PlanRepair(mem, crashDir, CheckOptions{})
		if err != nil {
			t.Fatalf("record %d damaged: %v", at, err)
		}
		c := plan.Cut
		if c == nil || c.FirstSeq != uint64(at) || c.LastSeq != n || c.Records != uint64(n-at) {
			t.Fatalf("record %d of %d damaged: cut %+v, want seq %d..%d dropped, %d records after the damage recognised", at, n, c, at, n, n-at)
		}
	}
}
