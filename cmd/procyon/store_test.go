package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/procyon-dev/procyon/durable"
	"github.com/procyon-dev/procyon/vfs"
	"github.com/procyon-dev/procyon/wal"
)

// makeStore writes a store in dir with snapshots after transactions 80
// and 160 and the log after the first one in several segments; it returns
// the segments, oldest first.
func makeStore(t *testing.T, dir string) []string {
	t.Helper()
	s := durable.New(durable.Options{Dir: dir, SegmentSize: 4096, SnapshotBytes: -1})
	kv := durable.NewCollection[string, string](s, "kv", nil)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 240; i++ {
		err := s.Write(context.Background(), func(tx *durable.Tx) error {
			return kv.Put(tx, fmt.Sprintf("k%d", i%20), fmt.Sprintf("v%d-%s", i, strings.Repeat("x", i%37)))
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 80 || i == 160 {
			if _, err := s.Snapshot(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	slices.Sort(segs)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	return segs
}

func flip(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tree is every path under dir with its content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		} else if err == nil {
			out[p] = "/"
		}
		return nil
	})
	return out
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Fatalf("%s changed %s", what, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Fatalf("%s created %s", what, p)
		}
	}
}

func TestVerifyVerb(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	segs := makeStore(t, dir)
	code, out, errOut := runCLI(t, "verify", dir)
	if code != 0 || !strings.Contains(out, "recovery uses snapshot 00000000000000000160.snap, then replays log records 161..240") ||
		!strings.Contains(out, "fall back to [00000000000000000080.snap]") || !strings.HasSuffix(out, "ok\n") {
		t.Fatalf("verify of a sound store: exit %d\n%s%s", code, out, errOut)
	}

	flip(t, segs[0], 60) // records 81..: all older than the newest snapshot
	before := tree(t, dir)
	code, out, errOut = runCLI(t, "verify", "-json", dir)
	var j storeVerifyJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("verify -json: %v\n%s", err, out)
	}
	if code != exitDamaged || j.ExitCode != exitDamaged || !j.Opens || !j.Damaged || len(j.LogDamage) != 1 || len(j.Fallbacks) != 0 ||
		j.Uses != "00000000000000000160.snap" || len(j.Snapshots) != 2 {
		t.Fatalf("verify of damage before the newest snapshot: exit %d %+v %s", code, j, errOut)
	}
	sameTree(t, "verify", before, tree(t, dir))

	flip(t, segs[len(segs)-2], 60)
	if code, out, _ := runCLI(t, "verify", dir); code != exitNoOpen || !strings.Contains(out, "WOULD NOT OPEN") ||
		!strings.Contains(out, filepath.Base(segs[len(segs)-2])) {
		t.Fatalf("verify of damage in the needed log: exit %d\n%s", code, out)
	}
	for _, d := range []string{filepath.Join(dir, "wal"), filepath.Join(dir, "typo"), t.TempDir()} {
		code, _, errOut := runCLI(t, "verify", d)
		if code != exitUsage || !strings.Contains(errOut, "not a store") || !strings.Contains(errOut, "<20 digits>") &&
			!strings.Contains(errOut, "does not exist") && !strings.Contains(errOut, "give the store's directory") {
			t.Fatalf("verify %s: exit %d: %s", d, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); !os.IsNotExist(err) {
		t.Fatal("verify created the directory it was given")
	}
}

func TestRepairVerb(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	segs := makeStore(t, dir)
	flip(t, segs[0], 60)
	before := tree(t, dir)
	code, out, _ := runCLI(t, "repair", dir)
	if code != exitDamaged || !strings.Contains(out, "remove segment "+filepath.Join("wal", filepath.Base(segs[0]))) ||
		!strings.Contains(out, "seq 81..") || !strings.Contains(out, "nothing changed") {
		t.Fatalf("repair without -yes: exit %d\n%s", code, out)
	}
	sameTree(t, "repair without -yes", before, tree(t, dir))

	// The log's own repair refuses a store's log: it would truncate at the
	// damage and drop the intact later segments.
	if code, _, errOut := runCLI(t, "wal", "repair", "-yes", filepath.Join(dir, "wal")); code != exitUsage ||
		!strings.Contains(errOut, "procyon repair") {
		t.Fatalf("wal repair of a store's log: exit %d: %s", code, errOut)
	}
	sameTree(t, "wal repair", before, tree(t, dir))

	if code, out, errOut := runCLI(t, "repair", "-yes", dir); code != 0 || !strings.Contains(out, "repaired") {
		t.Fatalf("repair -yes: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "verify", dir); code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s", code, out)
	}

	flip(t, segs[len(segs)-2], 60)
	before = tree(t, dir)
	code, out, _ = runCLI(t, "repair", "-yes", dir)
	if code != exitNoOpen || !strings.Contains(out, "REFUSED") || !strings.Contains(out, filepath.Base(segs[len(segs)-1])) ||
		!strings.Contains(out, "backup") {
		t.Fatalf("repair of damage in the needed log: exit %d\n%s", code, out)
	}
	sameTree(t, "refused repair", before, tree(t, dir))
}

// repair of damage in the log recovery needs with no intact segment after
// it: refused, saying what would be lost, unless -accept-loss; then the
// store opens with every transaction before the damage.
func TestRepairAcceptLossVerb(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	segs := makeStore(t, dir)
	// The last segment with records (sealed; an empty one follows it):
	// flip a byte in its last record.
	sealed := segs[len(segs)-2]
	var lastSeq uint64
	var lastOff int64
	_, err := wal.Dump(vfs.OS, filepath.Dir(sealed), wal.CheckOptions{}, func(d wal.DumpFrame) {
		if d.Segment == filepath.Base(sealed) && d.Type == "data" {
			lastSeq, lastOff = d.Seq, d.Offset
		}
	})
	if err != nil || lastSeq != 240 {
		t.Fatalf("the last record of %s: seq %d, %v; want 240", sealed, lastSeq, err)
	}
	flip(t, sealed, int(lastOff)+24+2)
	before := tree(t, dir)
	code, out, errOut := runCLI(t, "repair", "-yes", dir)
	if code != exitNoOpen || !strings.Contains(out, "LOSS") || !strings.Contains(out, "seq 240..240") ||
		!strings.Contains(errOut, "-accept-loss") {
		t.Fatalf("repair -yes: exit %d\n%s%s", code, out, errOut)
	}
	sameTree(t, "repair -yes without -accept-loss", before, tree(t, dir))
	if code, out, _ := runCLI(t, "repair", "-accept-loss", dir); code != exitDamaged || !strings.Contains(out, "nothing changed") {
		t.Fatalf("repair -accept-loss without -yes: exit %d\n%s", code, out)
	}
	sameTree(t, "repair -accept-loss without -yes", before, tree(t, dir))

	if code, out, errOut := runCLI(t, "repair", "-accept-loss", "-yes", dir); code != 0 || !strings.Contains(out, "repaired") {
		t.Fatalf("repair -accept-loss -yes: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "verify", dir); code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s", code, out)
	}
	rep, err := durable.Verify(vfs.OS, dir)
	if err != nil || rep.ReplayTo != 239 {
		t.Fatalf("after repair the log ends at %d (%v), want 239", rep.ReplayTo, err)
	}
}

func TestBackupChecksPaths(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "store")
	makeStore(t, dir)
	before := tree(t, dir)
	out := filepath.Join(tmp, "out.bak")
	for _, d := range []string{filepath.Join(tmp, "typo"), filepath.Join(dir, "wal")} {
		code, _, errOut := runCLI(t, "backup", d, out)
		if code != exitUsage || !strings.Contains(errOut, "not a store") {
			t.Fatalf("backup %s: exit %d: %s", d, code, errOut)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("backup of %s wrote %s", d, out)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "typo")); !os.IsNotExist(err) {
		t.Fatal("backup created the directory it was given")
	}
	sameTree(t, "backup of DIR/wal", before, tree(t, dir))

	if code, _, errOut := runCLI(t, "backup", dir, out); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, errOut)
	}
	sameTree(t, "backup", before, tree(t, dir))
	if code, _, errOut := runCLI(t, "backup", dir, out); code == 0 || !strings.Contains(errOut, "-force") {
		t.Fatalf("backup over an existing file: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "backup", "-force", dir, out); code != 0 {
		t.Fatalf("backup -force: exit %d: %s", code, errOut)
	}
	code, o, errOut := runCLI(t, "restore", out, filepath.Join(tmp, "restored"))
	if code != 0 || !strings.Contains(o, "20 entries") {
		t.Fatalf("restore: exit %d: %s %s", code, o, errOut)
	}
}
