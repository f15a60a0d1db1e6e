package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// buildLog writes n records into a fresh log with small segments, closes
// it, and returns the dir and the frames as Dump sees them.
func buildLog(t *testing.T, n int) (string, []DumpFrame) {
	t.Helper()
	dir := t.TempDir()
	w := openT(t, vfs.OS, dir, Options{SegmentSize: 1 << 10})
	// The last segment gets the last 5 records, whatever the rolls before.
	for i := 1; i <= n; i++ {
		if i == n-4 {
			if err := w.Roll(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var frames []DumpFrame
	rep, err := Dump(vfs.OS, dir, func(d DumpFrame) { frames = append(frames, d) })
	if err != nil || rep.Corruption != nil {
		t.Fatalf("fresh log: %v %v", err, rep.Corruption)
	}
	if len(rep.Segments) < 3 || rep.Segments[len(rep.Segments)-1].Records != 5 {
		t.Fatalf("want at least 3 segments, the last with 5 records: %+v", rep.Segments)
	}
	return dir, frames
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, _ := vfs.OS.List(dir)
	var segs []string
	for _, n := range names {
		if strings.HasSuffix(n, ".wal") {
			segs = append(segs, n)
		}
	}
	return segs
}

// dirState captures every file's content, to check that a failed Open
// changed nothing.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	names, _ := vfs.OS.List(dir)
	for _, n := range names {
		if n == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		m[n] = string(b)
	}
	return m
}

func mutate(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func framesOf(frames []DumpFrame, seg string, typ string) []DumpFrame {
	var out []DumpFrame
	for _, f := range frames {
		if f.Segment == seg && (typ == "" || f.Type == typ) {
			out = append(out, f)
		}
	}
	return out
}

func TestCorruption(t *testing.T) {
	const n = 60
	type outcome struct {
		corrupt    bool   // Open fails with ErrCorrupt
		version    bool   // Open fails with ErrVersion
		reason     string // substring of the error
		segIndex   int    // damaged segment (index into the segment files), for corrupt
		atFrame    int    // damaged frame's index in that segment (-1: header/offset 0, -2: end of file)
		keepPrefix int    // when Open succeeds: records 1..keepPrefix must be there and nothing else
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, segs []string, frames []DumpFrame) int // returns keepPrefix if Open succeeds
		want   outcome
	}{
		{"flipped byte in a sealed segment", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			f := framesOf(frames, segs[0], "data")[2]
			mutate(t, filepath.Join(dir, segs[0]), func(b []byte) []byte { b[f.Offset+30] ^= 0x40; return b })
			return 0
		}, outcome{corrupt: true, reason: "checksum mismatch", segIndex: 0, atFrame: 2}},
		{"flipped byte in the last record of the last segment (torn tail)", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			last := segs[len(segs)-1]
			fs := framesOf(frames, last, "data")
			mutate(t, filepath.Join(dir, last), func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b })
			return int(fs[len(fs)-1].Seq) - 1
		}, outcome{}},
		{"last segment cut mid-record", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			last := segs[len(segs)-1]
			fs := framesOf(frames, last, "data")
			mutate(t, filepath.Join(dir, last), func(b []byte) []byte { return b[:fs[len(fs)-1].Offset+10] })
			return int(fs[len(fs)-1].Seq) - 1
		}, outcome{}},
		{"last segment cut mid-header of a record", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			last := segs[len(segs)-1]
			fs := framesOf(frames, last, "data")
			mutate(t, filepath.Join(dir, last), func(b []byte) []byte { return b[:fs[len(fs)-2].Offset+3] })
			return int(fs[len(fs)-2].Seq) - 1
		}, outcome{}},
		{"zeros after the last record", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			mutate(t, filepath.Join(dir, segs[len(segs)-1]), func(b []byte) []byte { return append(b, make([]byte, 4096)...) })
			return n
		}, outcome{}},
		{"garbage after the last record", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			mutate(t, filepath.Join(dir, segs[len(segs)-1]), func(b []byte) []byte {
				return append(b, bytes.Repeat([]byte("garbage!"), 100)...)
			})
			return n
		}, outcome{}},
		{"bad record followed by valid ones in the last segment", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			last := segs[len(segs)-1]
			f := framesOf(frames, last, "data")[0]
			mutate(t, filepath.Join(dir, last), func(b []byte) []byte { b[f.Offset+26] ^= 1; return b })
			return 0
		}, outcome{corrupt: true, reason: "followed by a valid record", segIndex: -1, atFrame: 0}},
		{"sealed segment lost its trailer", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			tr := framesOf(frames, segs[1], "trailer")[0]
			mutate(t, filepath.Join(dir, segs[1]), func(b []byte) []byte { return b[:tr.Offset] })
			return 0
		}, outcome{corrupt: true, reason: "without a trailer", segIndex: 1, atFrame: -2}},
		{"middle segment missing", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			os.Remove(filepath.Join(dir, segs[1]))
			return 0
		}, outcome{corrupt: true, reason: "sequence gap", segIndex: 1, atFrame: -1}},
		{"foreign file", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			mutate(t, filepath.Join(dir, segs[0]), func(b []byte) []byte { copy(b, "NOTAWAL!"); return b })
			return 0
		}, outcome{corrupt: true, reason: "bad magic", segIndex: 0, atFrame: -1}},
		{"damaged header", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			mutate(t, filepath.Join(dir, segs[1]), func(b []byte) []byte { b[17] ^= 1; return b })
			return 0
		}, outcome{corrupt: true, reason: "header checksum", segIndex: 1, atFrame: -1}},
		{"newer format version", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			mutate(t, filepath.Join(dir, segs[0]), func(b []byte) []byte {
				copy(b, encodeHeaderVersion(1, 2)) // version 2, checksum valid
				return b
			})
			return 0
		}, outcome{version: true, reason: "format version 2"}},
		{"renamed segment", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			last := segs[len(segs)-1]
			seq, _ := parseSegmentName(last)
			os.Rename(filepath.Join(dir, last), filepath.Join(dir, segmentName(seq+1)))
			return 0
		}, outcome{corrupt: true, reason: "file name says", segIndex: -1, atFrame: -1}},
		{"valid record with the wrong sequence at the tail", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			mutate(t, filepath.Join(dir, segs[len(segs)-1]), func(b []byte) []byte { return appendFrame(b, typeData, 7, 0, []byte("replayed")) })
			return 0
		}, outcome{corrupt: true, reason: "expected", segIndex: -1, atFrame: -2}},
		{"empty last segment (torn create)", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			os.WriteFile(filepath.Join(dir, segmentName(n+1)), nil, 0o644)
			return n
		}, outcome{}},
		{"zeroed header of last segment (torn create)", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			os.WriteFile(filepath.Join(dir, segmentName(n+1)), make([]byte, headerSize), 0o644)
			return n
		}, outcome{}},
		{"stray files are ignored", func(t *testing.T, dir string, segs []string, frames []DumpFrame) int {
			os.WriteFile(filepath.Join(dir, "notes.wal"), []byte("x"), 0o644)
			os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644)
			return n
		}, outcome{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, frames := buildLog(t, n)
			segs := segFiles(t, dir)
			keep := tc.damage(t, dir, segs, frames)
			before := dirState(t, dir)
			w, err := Open(dir, Options{Logger: quiet(), SegmentSize: 1 << 10})
			switch {
			case tc.want.version:
				if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), tc.want.reason) {
					t.Fatalf("Open: %v, want ErrVersion with %q", err, tc.want.reason)
				}
			case tc.want.corrupt:
				var ce *CorruptionError
				if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
					t.Fatalf("Open: %v, want ErrCorrupt", err)
				}
				if !strings.Contains(ce.Reason, tc.want.reason) {
					t.Fatalf("reason %q, want it to contain %q", ce.Reason, tc.want.reason)
				}
				segsNow := segFiles(t, dir)
				idx := tc.want.segIndex
				if idx < 0 {
					idx = len(segsNow) - 1
				}
				if ce.Segment != segsNow[idx] {
					t.Fatalf("error names segment %s, want %s", ce.Segment, segsNow[idx])
				}
				switch tc.want.atFrame {
				case -1:
					if ce.Offset != 0 {
						t.Fatalf("offset %d, want 0", ce.Offset)
					}
				case -2:
					old := framesOf(frames, segs[idx], "")
					if ce.Offset < old[len(old)-1].Offset {
						t.Fatalf("offset %d, want at the end of the file", ce.Offset)
					}
				default:
					if want := framesOf(frames, segs[idx], "data")[tc.want.atFrame].Offset; ce.Offset != want {
						t.Fatalf("offset %d, want %d", ce.Offset, want)
					}
				}
			default:
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				got := readAll(t, w, 1)
				if len(got) != keep {
					t.Fatalf("%d records after recovery, want %d", len(got), keep)
				}
				for i, r := range got {
					if !bytes.Equal(r.Data, rec(i+1)) {
						t.Fatalf("record %d differs", i+1)
					}
				}
				if seq, err := w.Append([]byte("after")); err != nil || seq != uint64(keep+1) {
					t.Fatalf("append after recovery: %d %v", seq, err)
				}
				w.Close()
				return
			}
			// A failed Open changed nothing.
			if after := dirState(t, dir); !equalState(before, after) {
				t.Fatal("a failed Open changed the directory")
			}
			if tc.want.version {
				if _, err := PlanRepair(vfs.OS, dir); err == nil {
					t.Fatal("PlanRepair offered to repair a newer-version log")
				}
				return
			}
			// Repair cuts at the damage; then Open works and keeps a prefix.
			plan, err := PlanRepair(vfs.OS, dir)
			if err != nil || plan == nil {
				t.Fatalf("PlanRepair: %v %v", plan, err)
			}
			if err := Repair(vfs.OS, dir, plan); err != nil {
				t.Fatalf("Repair: %v", err)
			}
			w, err = Open(dir, Options{Logger: quiet()})
			if err != nil {
				t.Fatalf("Open after repair: %v", err)
			}
			defer w.Close()
			got := readAll(t, w, w.FirstSeq())
			for _, r := range got {
				if !bytes.Equal(r.Data, rec(int(r.Seq))) {
					t.Fatalf("record %d differs after repair", r.Seq)
				}
			}
			if _, err := w.Append([]byte("after repair")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func equalState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func encodeHeaderVersion(firstSeq uint64, version uint32) []byte {
	h := encodeHeader(firstSeq)
	h[8], h[9], h[10], h[11] = byte(version), byte(version>>8), byte(version>>16), byte(version>>24)
	c := crcOf(h[:28])
	h[28], h[29], h[30], h[31] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	return h
}

func TestRepairRefusesStalePlan(t *testing.T) {
	dir, frames := buildLog(t, 40)
	segs := segFiles(t, dir)
	f := framesOf(frames, segs[0], "data")[1]
	mutate(t, filepath.Join(dir, segs[0]), func(b []byte) []byte { b[f.Offset+30] ^= 1; return b })
	plan, err := PlanRepair(vfs.OS, dir)
	if err != nil || plan == nil {
		t.Fatal(plan, err)
	}
	if !strings.Contains(plan.String(), "truncate segment "+segs[0]) {
		t.Fatalf("plan does not say what it drops:\n%s", plan)
	}
	// The log changes under the plan: the plan is refused.
	os.Remove(filepath.Join(dir, segs[len(segs)-1]))
	if err := Repair(vfs.OS, dir, plan); err == nil {
		t.Fatal("stale plan applied")
	}
}
