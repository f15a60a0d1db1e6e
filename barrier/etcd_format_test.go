package barrier

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	k := etcdKeys{"/p/"}
	ref := Ref{"snap-1", 42}
	key := k.mark(ref, "rs.1", PhaseAcquired)
	if key != "/p/run/snap-1/42/rs.1/acquired" {
		t.Fatalf("mark key %q", key)
	}
	if m, p, ok := splitMarkKey(k.run(ref), key); !ok || m != "rs.1" || p != PhaseAcquired {
		t.Fatalf("splitMarkKey = %q %v %v", m, p, ok)
	}
	for _, bad := range []string{"/p/run/snap-1/42/rs.1", "/p/run/snap-1/42//done", "/p/run/snap-1/42/rs.1/other", "/q/run/snap-1/42/rs.1/done"} {
		if _, _, ok := splitMarkKey(k.run(ref), bad); ok {
			t.Errorf("splitMarkKey accepted %q", bad)
		}
	}
	if n, leaf, ok := k.splitProcKey(k.proc("snap-1", leafAbort)); !ok || n != "snap-1" || leaf != leafAbort {
		t.Fatalf("splitProcKey = %q %q %v", n, leaf, ok)
	}
	for _, bad := range []string{"/p/proc/x", "/p/proc//record", "/p/proc/x/a/b", "/p/run/x/record"} {
		if _, _, ok := k.splitProcKey(bad); ok {
			t.Errorf("splitProcKey accepted %q", bad)
		}
	}
}

// FuzzDecode feeds the decoders of etcd values arbitrary bytes: they must
// not panic, and what they accept must survive a re-encoding.
func FuzzDecode(f *testing.F) {
	rec, _ := json.Marshal(recordValue{Version: 1, Type: "flush", Args: []byte{0, 1}, Members: []string{"a", "b"}, Lease: 7, Coordinator: "/p/coord/7"})
	f.Add(rec)
	f.Add([]byte(encodeAbort(12, &AbortError{Source: "m1", Kind: KindFailed, Message: "disk full"})))
	f.Add([]byte(encodeMark(Mark{Phase: PhaseDone, Took: 5, Result: []byte("r")})))
	f.Add([]byte(`{"instance":3}`))
	f.Add([]byte(`{"v":2,"type":"x","members":["a"]}`))
	f.Add([]byte(`{"v":1,"type":"x","members":["b","a"]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRecord(b); err == nil {
			again, _ := json.Marshal(r)
			r2, err := decodeRecord(again)
			if err != nil || !reflect.DeepEqual(normalizeRecord(r), normalizeRecord(r2)) {
				t.Fatalf("record %q: re-decoded %+v, %v", b, r2, err)
			}
		}
		if inst, ae, err := decodeAbort(b); err == nil {
			inst2, ae2, err := decodeAbort([]byte(encodeAbort(inst, ae)))
			if err != nil || inst2 != inst || *ae2 != *ae {
				t.Fatalf("abort %q: re-decoded %d %+v, %v", b, inst2, ae2, err)
			}
		}
		if m, err := decodeMark(b); err == nil {
			m2, err := decodeMark([]byte(encodeMark(Mark{Took: time.Duration(m.TookNS), Result: m.Result})))
			if err != nil || m2.TookNS != m.TookNS || string(m2.Result) != string(m.Result) {
				t.Fatalf("mark %q: re-decoded %+v, %v", b, m2, err)
			}
		}
		decodeDecision(b)
	})
}

func normalizeRecord(r recordValue) recordValue {
	if len(r.Args) == 0 {
		r.Args = nil
	}
	return r
}

func TestRefSetBounded(t *testing.T) {
	s := newRefSet(3)
	for i := range int64(5) {
		s.add(Ref{"p", i})
	}
	for i := range int64(5) {
		if got, want := s.has(Ref{"p", i}), i >= 2; got != want {
			t.Errorf("has(%d) = %v, want %v", i, got, want)
		}
	}
	if len(s.set) != 3 || len(s.order) != 3 {
		t.Errorf("set grew to %d/%d", len(s.set), len(s.order))
	}
}
