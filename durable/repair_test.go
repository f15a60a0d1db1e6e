package durable

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// frameOffsets returns the offset of each frame of a segment by seq (the
// trailer under 0).
func frameOffsets(t *testing.T, fs *vfs.MemFS, seg string) map[uint64]int64 {
	t.Helper()
	offs := map[uint64]int64{}
	_, err := wal.Dump(fs, filepath.Dir(seg), wal.CheckOptions{}, func(d wal.DumpFrame) {
		if d.Segment != filepath.Base(seg) {
			return
		}
		switch d.Type {
		case "data":
			offs[d.Seq] = d.Offset
		case "trailer":
			offs[0] = d.Offset
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func truncateFile(t *testing.T, fs *vfs.MemFS, path string, size int64) {
	t.Helper()
	data, err := fs.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.WriteFile(path, data[:size]); err != nil {
		t.Fatal(err)
	}
}

// Damage in the log recovery needs that no intact segment holding records
// follows: the plan states the loss and is refused without AcceptLoss;
// with it, Repair cuts the log there, and the store opens with every
// transaction before the cut and none after it.
func TestRepairAcceptLoss(t *testing.T) {
	const frameHeader = 24 // wal's frame header, before the payload
	cases := []struct {
		name string
		// damage damages the store, given its last segment with records
		// (seq 217..240, sealed) and the empty one after it (241).
		damage   func(t *testing.T, fs *vfs.MemFS, sealed, empty string)
		from, to uint64 // the loss; to < from: none
		known    bool
	}{
		{"flip in the last record", func(t *testing.T, fs *vfs.MemFS, sealed, _ string) {
			flipByte(t, fs, sealed, int(frameOffsets(t, fs, sealed)[240])+frameHeader+2)
		}, 240, 240, true},
		{"flip in a middle record", func(t *testing.T, fs *vfs.MemFS, sealed, _ string) {
			flipByte(t, fs, sealed, int(frameOffsets(t, fs, sealed)[230])+frameHeader+2)
		}, 230, 240, true},
		{"cut at a record boundary", func(t *testing.T, fs *vfs.MemFS, sealed, _ string) {
			truncateFile(t, fs, sealed, frameOffsets(t, fs, sealed)[225])
		}, 225, 240, true},
		{"trailer cut off", func(t *testing.T, fs *vfs.MemFS, sealed, _ string) {
			truncateFile(t, fs, sealed, frameOffsets(t, fs, sealed)[0]+5)
		}, 241, 240, true},
		{"header of the empty last segment damaged", func(t *testing.T, fs *vfs.MemFS, _, empty string) {
			flipByte(t, fs, empty, 3)
		}, 241, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs, _, segs := cleanDmgStore(t)
			sealed, empty := segs[len(segs)-2], segs[len(segs)-1]
			if first, _ := parseSegName(filepath.Base(sealed)); first != 217 {
				t.Fatalf("the last segment with records is %s, want the one from seq 217", sealed)
			}
			c.damage(t, fs, sealed, empty)
			if err := newDmgStore(fs, false).Open(context.Background()); err == nil {
				t.Fatal("the damaged store opens")
			}
			before := diskState(fs)
			plan, err := PlanRepair(dmgDir, RepairOptions{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			l := plan.Loss
			if l == nil || l.From != c.from || l.Known != c.known || c.known && l.To != c.to {
				t.Fatalf("loss %+v, want from %d to %d (known %v)\n%s", l, c.from, c.to, c.known, plan)
			}
			none := c.known && c.to < c.from
			if !none {
				if !errors.Is(plan.Refusal, ErrNeedBackup) || !strings.Contains(plan.String(), "-accept-loss") ||
					!strings.Contains(plan.String(), l.String()) {
					t.Fatalf("plan without AcceptLoss:\n%s", plan)
				}
				if err := Repair(plan); !errors.Is(err, ErrNeedBackup) {
					t.Fatalf("Repair without AcceptLoss: %v", err)
				}
				if d := diffState(before, diskState(fs)); d != "" {
					t.Fatalf("refused repair changed the disk: %s", d)
				}
				if plan, err = PlanRepair(dmgDir, RepairOptions{FS: fs, AcceptLoss: true}); err != nil {
					t.Fatal(err)
				}
			}
			if plan.Refusal != nil || plan.Loss == nil || plan.Loss.From != c.from {
				t.Fatalf("plan with AcceptLoss:\n%s", plan)
			}
			if err := Repair(plan); err != nil {
				t.Fatal(err)
			}
			s := newDmgStore(fs, false)
			if err := s.Open(context.Background()); err != nil {
				t.Fatalf("Open after the repair: %v", err)
			}
			defer s.Close()
			keep := int(c.from) - 1
			if _, err := s.check(keep, keep); err != nil {
				t.Fatal(err)
			}
			if err := s.txn(keep + 1); err != nil || s.Seq() != uint64(keep+1) {
				t.Fatalf("write after the repair: %v, seq %d, want %d", err, s.Seq(), keep+1)
			}
		})
	}
}

// Damage in the log recovery needs with an intact segment holding records
// after it is refused even with AcceptLoss: repair never drops an intact
// later segment.
func TestRepairAcceptLossKeepsIntactLaterSegments(t *testing.T) {
	fs, _, segs := cleanDmgStore(t)
	damaged, intact := segs[len(segs)-3], segs[len(segs)-2]
	flipByte(t, fs, damaged, int(frameOffsets(t, fs, damaged)[200])+30)
	before := diskState(fs)
	plan, err := PlanRepair(dmgDir, RepairOptions{FS: fs, AcceptLoss: true})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(plan.Refusal, ErrNeedBackup) || plan.Loss != nil || !strings.Contains(plan.Refusal.Error(), filepath.Base(intact)) {
		t.Fatalf("plan with an intact segment after the damage:\n%s", plan)
	}
	if err := Repair(plan); !errors.Is(err, ErrNeedBackup) {
		t.Fatalf("Repair: %v", err)
	}
	if d := diffState(before, diskState(fs)); d != "" {
		t.Fatalf("refused repair changed the disk: %s", d)
	}
}
