package procedure

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/procyon-dev/procyon/durable"
)

type verV1 struct{ N int }
type verV2 struct{ M int }

type replaySM struct {
	StateMachineFuncs[int, verV2]
	mu   sync.Mutex
	seen map[ID]int
}

func (r *replaySM) AfterReplay(id ID, state int, d *verV2) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[id] = d.M*100 + state
}

// Procedures of unknown types, with undecodable data, data of a newer
// version or a failing upgrade are quarantined and reported, never run
// and never dropped; the rest load and run, older data is upgraded, and
// the replay hooks see what was loaded. Once the program knows them
// again, they run.
func TestQuarantineAndUpgrade(t *testing.T) {
	var poison atomic.Bool
	gated := func(w *world, name string) func(ctx context.Context, env *Env, s int, d *verV1) (Next, error) {
		return func(ctx context.Context, env *Env, s int, d *verV1) (Next, error) {
			if err := w.gates.wait(ctx, "exec:"+name+":0"); err != nil {
				return Next{}, err
			}
			return Done(), nil
		}
	}
	picky := durable.CodecFunc(func(v verV1) ([]byte, error) { return json.Marshal(v) },
		func(b []byte) (verV1, error) {
			var v verV1
			if poison.Load() {
				return v, errors.New("poisoned")
			}
			return v, json.Unmarshal(b, &v)
		})
	stage := 0
	var rsm *replaySM
	var ver *Type[int, verV2]
	ids := map[string]ID{}
	w := &world{t: t, gates: &gates{}, running: map[ID]bool{}, fs: newMemFS()}
	w.extra = func(w *world) {
		// "gone" exists only in stages 0 and 2; "future" is at version 3,
		// then 2 (data newer than the program), then 3 again; "ver" moves
		// from version 1 to 2 with an upgrade; "broken" has an upgrade that
		// fails until stage 2.
		if stage != 1 {
			Register[int, verV1](w.e, "gone", StateMachineFuncs[int, verV1]{Exec: gated(w, "gone")}, nil)
		}
		Register[int, verV1](w.e, "picky", StateMachineFuncs[int, verV1]{Exec: gated(w, "picky")}, &TypeOptions[verV1]{Codec: picky})
		Register[int, verV1](w.e, "future", StateMachineFuncs[int, verV1]{Exec: gated(w, "future")}, &TypeOptions[verV1]{Version: uint32(3 - stage%2)})
		upgrade := func(from uint32, b []byte) ([]byte, error) {
			var v1 verV1
			if err := json.Unmarshal(b, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(verV2{M: v1.N * 2})
		}
		if stage == 0 {
			Register[int, verV1](w.e, "ver", StateMachineFuncs[int, verV1]{Exec: gated(w, "ver")}, nil)
			Register[int, verV1](w.e, "broken", StateMachineFuncs[int, verV1]{Exec: gated(w, "broken")}, nil)
			return
		}
		rsm = &replaySM{seen: map[ID]int{}, StateMachineFuncs: StateMachineFuncs[int, verV2]{
			Exec: func(ctx context.Context, env *Env, s int, d *verV2) (Next, error) {
				if err := w.gates.wait(ctx, "exec:ver:0"); err != nil {
					return Next{}, err
				}
				return Done(), nil
			}}}
		ver = Register[int, verV2](w.e, "ver", rsm, &TypeOptions[verV2]{Version: 2, Upgrade: upgrade})
		Register[int, verV2](w.e, "broken", StateMachineFuncs[int, verV2]{Exec: func(ctx context.Context, env *Env, s int, d *verV2) (Next, error) {
			return Done(), nil
		}}, &TypeOptions[verV2]{Version: 2, Upgrade: func(from uint32, b []byte) ([]byte, error) {
			if stage < 2 {
				return nil, errors.New("cannot upgrade yet")
			}
			return upgrade(from, b)
		}})
	}
	w.open()
	for _, name := range []string{"gone", "picky", "future", "ver", "broken"} {
		w.gates.set("exec:" + name + ":0")
		id, err := w.e.SubmitRaw(context.Background(), name, []byte(`{"N":21}`), SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
		reach(t, w.gates, "exec:"+name+":0")
	}
	w.close()

	stage = 1
	poison.Store(true)
	w.open()
	for name, want := range map[string]string{
		"gone":   `unknown type "gone"`,
		"picky":  "poisoned",
		"future": "newer than this program's 2",
		"broken": "cannot upgrade yet",
	} {
		in, err := w.e.Get(ids[name])
		if err != nil || !strings.Contains(in.Quarantined, want) {
			t.Fatalf("%s: %+v %v; want quarantined with %q", name, in, err, want)
		}
	}
	if s := w.e.Stats(); s.Quarantined != 4 || s.Live != 5 {
		t.Fatalf("stats %+v", s)
	}
	if got := rsm.seen[ids["ver"]]; got != 4200 {
		t.Fatalf("AfterReplay saw %d, want the upgraded data (42) at state 0", got)
	}
	w.gates.open("exec:ver:0")
	d, err := ver.Result(w.e.Wait(context.Background(), ids["ver"]))
	if err != nil || d.M != 42 {
		t.Fatalf("upgraded: %+v %v", d, err)
	}
	// Others run while some are quarantined.
	if r := w.wait(w.submit(newScript("other", 2))); r.Err() != nil {
		t.Fatal(r.Err())
	}
	list := slices.Collect(w.e.List(Query{}))
	q := 0
	for _, in := range list {
		if in.Quarantined != "" {
			q++
		}
	}
	if q != 4 {
		t.Fatalf("List shows %d quarantined", q)
	}
	w.close()

	stage = 2
	poison.Store(false)
	w.open()
	defer w.close()
	for _, name := range []string{"gone", "picky", "future", "broken"} {
		w.gates.open("exec:" + name + ":0")
		if r := w.wait(ids[name]); r.Err() != nil || r.Status != Succeeded {
			t.Fatalf("%s: %+v", name, r)
		}
	}
}

// A record that cannot be decoded at all is reported and kept as it is.
func TestUndecodableRecord(t *testing.T) {
	w := newWorld(t, Options{})
	w.gates.set("exec:a:1")
	id := w.submit(newScript("a", 2))
	reach(t, w.gates, "exec:a:1")
	w.close()
	w.noStart = true
	w.open()
	err := w.store.Write(context.Background(), func(tx *durable.Tx) error {
		return w.e.procsC.Put(tx, uint64(id), []byte{9, 9, 9})
	})
	if err != nil {
		t.Fatal(err)
	}
	w.store.Close()
	w.noStart = false
	w.open()
	defer w.close()
	in, err := w.e.Get(id)
	if err != nil || !strings.Contains(in.Quarantined, "undecodable record") {
		t.Fatalf("%+v %v", in, err)
	}
	if err := w.e.Bypass(context.Background(), id, "ops", "x"); !errors.Is(err, ErrQuarantined) {
		t.Fatalf("bypass: %v", err)
	}
	other := w.submit(newScript("b", 2))
	if r := w.wait(other); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if b, _, _ := w.e.procsC.Get(w.store.Latest(), uint64(id)); string(b) != "\x09\x09\x09" {
		t.Fatal("record changed")
	}
}
