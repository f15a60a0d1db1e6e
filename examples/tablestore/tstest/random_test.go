package tstest_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/procyon-dev/procyon/examples/tablestore"
	"github.com/procyon-dev/procyon/examples/tablestore/master"
	"github.com/procyon-dev/procyon/examples/tablestore/tstest"
	"github.com/procyon-dev/procyon/internal/testseed"
	"github.com/procyon-dev/procyon/procedure"
)

// TestRandomFaults runs a seeded sequence of faults and admin operations
// while a writer goes on: region servers killed (restarted at once under
// their name, or after the master declared them dead), master restarts,
// splits, snapshots (some with a kill or a master restart while their
// region snapshots wait), disable and enable. At the end every region is
// served by exactly one live server, every write is in the table, and
// every snapshot has the prefix property per region and clones equal to
// itself.
func TestRandomFaults(t *testing.T) {
	seed := testseed.Seed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0xfa17))
	c := tstest.New(t, tstest.Options{})
	createTable(t, c, "tr", "b", "d")
	w := startWriter(t, c, "tr", rand.New(rand.NewPCG(seed, seed^0x3717e)))
	w.waitAcked(t, c, 10)

	type snap struct {
		name                 string
		acked, startedBefore int
	}
	var snaps []snap
	for round := range 12 {
		actions := []string{"kill", "kill-restart", "master", "split", "split-kill", "snapshot", "snapshot-kill", "snapshot-master", "disable-enable"}
		action := actions[rng.IntN(len(actions))]
		t.Logf("round %d: %s (%d writes acknowledged)", round, action, w.ackedCount())
		switch action {
		case "kill", "kill-restart":
			victim := c.Servers()[rng.IntN(len(c.Servers()))].Name
			c.Kill(victim)
			if action == "kill" {
				waitDead(t, c, victim)
			}
			c.StartServer(victim)
		case "master":
			c.RestartMaster()
		case "split":
			mustProc(t, c, randomSplit(t, c, rng), "split")
		case "split-kill":
			id := randomSplit(t, c, rng)
			victim := c.Servers()[rng.IntN(len(c.Servers()))].Name
			c.Kill(victim)
			mustProc(t, c, id, "split while "+victim+" dies")
			waitDead(t, c, victim)
			c.StartServer(victim)
		case "snapshot", "snapshot-kill", "snapshot-master":
			name := fmt.Sprintf("sr%d", round)
			acked := w.ackedCount()
			regs := regionsOf(t, c, "tr")
			c.DropReports(action != "snapshot")
			id := submitSnapshot(t, c, "tr", name)
			switch action {
			case "snapshot-kill":
				waitState(t, c, id, "snapshot-offline-regions")
				waitRegionSnapshots(t, c, name, regs)
				victim := c.Servers()[rng.IntN(len(c.Servers()))].Name
				c.Kill(victim)
				waitDead(t, c, victim)
				c.DropReports(false)
				c.StartServer(victim)
			case "snapshot-master":
				waitState(t, c, id, "snapshot-offline-regions")
				c.RestartMaster()
				c.DropReports(false)
			}
			mustProc(t, c, id, "snapshot "+name)
			snaps = append(snaps, snap{name: name, acked: acked, startedBefore: w.startedCount()})
		case "disable-enable":
			disable(t, c, "tr")
			enable(t, c, "tr")
		}
		waitServing(t, c, "tr")
		w.waitAcked(t, c, w.startedCount()+3)
	}
	w.stop(t)
	t.Logf("%d writes, %d snapshots, %d regions", len(w.writes), len(snaps), len(regionsOf(t, c, "tr")))

	waitServing(t, c, "tr")
	checkScan(t, c, "tr", w.final())
	if err := checkNoDoubles(c); err != nil {
		t.Error(err)
	}
	l := tablestore.Layout{Root: c.Root}
	for i, s := range snaps {
		man := readManifest(t, l.SnapshotDir(s.name))
		var regs []master.Region
		for _, mr := range man.Regions {
			regs = append(regs, master.Region{RegionDesc: tablestore.RegionDesc{ID: mr.ID, Table: "tr", Start: mr.Start, End: mr.End}})
		}
		per := checkSnapshot(t, c, s.name, "tr", regs)
		for _, r := range regs {
			checkPrefix(t, r.RegionDesc, per[r.ID], w.writes, s.acked, s.startedBefore)
		}
		if i == len(snaps)-1 {
			clone(t, c, s.name, "tr-clone")
			waitServing(t, c, "tr-clone")
			checkScan(t, c, "tr-clone", union(per))
		}
	}
}

// randomSplit submits a split of a random region of table tr at a random
// key of the writer's key space inside it.
func randomSplit(t *testing.T, c *tstest.Cluster, rng *rand.Rand) procedure.ID {
	t.Helper()
	type cand struct {
		r   master.Region
		key string
	}
	var cands []cand
	for _, r := range regionsOf(t, c, "tr") {
		for l := 'a'; l < 'f'; l++ {
			for n := range 25 {
				k := fmt.Sprintf("%c%02d", l, n)
				if r.Contains([]byte(k)) && k > string(r.Start) {
					cands = append(cands, cand{r, k})
				}
			}
		}
	}
	if len(cands) == 0 {
		t.Fatalf("no region of tr has a key to split at")
	}
	ca := cands[rng.IntN(len(cands))]
	t.Logf("split %s at %s", ca.r.ID, ca.key)
	id, err := c.Master().SplitRegion(ctxT(t), master.SplitRegion{Table: "tr", Region: ca.r.ID, Key: []byte(ca.key)}, procedure.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
