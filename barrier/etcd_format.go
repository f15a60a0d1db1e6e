package barrier

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The etcd key layout and value formats. Key segments and JSON field names
// are part of the wire format shared by every process of a deployment;
// never change them (add new fields instead). See doc.go for the tree.
const (
	dirCoord   = "coord/"   // concurrency.Mutex electing the active coordinator
	dirMembers = "members/" // one key per live member session
	dirProc    = "proc/"    // per procedure: record and the coordinator-side decisions
	dirRun     = "run/"     // per procedure run: member markers

	leafRecord   = "record"
	leafReached  = "reached"
	leafComplete = "complete"
	leafAbort    = "abort"

	markJoined   = "joined"
	markAcquired = "acquired"
	markDone     = "done"

	// formatVersion is written in every record; a reader refuses records
	// of a newer version.
	formatVersion = 1
)

// etcdKeys builds keys under a prefix that ends in "/".
type etcdKeys struct{ prefix string }

func (k etcdKeys) coord() string                 { return k.prefix + dirCoord }
func (k etcdKeys) member(name string) string     { return k.prefix + dirMembers + name }
func (k etcdKeys) procs() string                 { return k.prefix + dirProc }
func (k etcdKeys) proc(name, leaf string) string { return k.prefix + dirProc + name + "/" + leaf }

// runs is the prefix of every run of procedure name; run of one instance.
func (k etcdKeys) runs(name string) string { return k.prefix + dirRun + name + "/" }
func (k etcdKeys) run(ref Ref) string {
	return k.runs(ref.Name) + strconv.FormatInt(ref.Instance, 10) + "/"
}
func (k etcdKeys) mark(ref Ref, member string, p Phase) string {
	return k.run(ref) + member + "/" + phaseLeaf(p)
}

func phaseLeaf(p Phase) string {
	switch p {
	case PhaseJoined:
		return markJoined
	case PhaseAcquired:
		return markAcquired
	case PhaseDone:
		return markDone
	}
	return "phase-" + strconv.Itoa(int(p))
}

func leafPhase(s string) (Phase, bool) {
	switch s {
	case markJoined:
		return PhaseJoined, true
	case markAcquired:
		return PhaseAcquired, true
	case markDone:
		return PhaseDone, true
	}
	return 0, false
}

// splitProcKey splits "<prefix>proc/<name>/<leaf>".
func (k etcdKeys) splitProcKey(key string) (name, leaf string, ok bool) {
	rest, ok := strings.CutPrefix(key, k.procs())
	if !ok {
		return "", "", false
	}
	name, leaf, ok = strings.Cut(rest, "/")
	return name, leaf, ok && name != "" && !strings.Contains(leaf, "/")
}

// splitMarkKey splits "<run prefix><member>/<phase>".
func splitMarkKey(runPrefix, key string) (member string, p Phase, ok bool) {
	rest, ok := strings.CutPrefix(key, runPrefix)
	if !ok {
		return "", 0, false
	}
	member, leaf, ok := strings.Cut(rest, "/")
	if !ok || member == "" {
		return "", 0, false
	}
	p, ok = leafPhase(leaf)
	return member, p, ok
}

// recordValue is the value of proc/<name>/record.
type recordValue struct {
	Version int      `json:"v"`
	Type    string   `json:"type"`
	Args    []byte   `json:"args,omitempty"`
	Members []string `json:"members"`
	// Lease is the coordinator's session lease: aborts are written under
	// it, so everything about the procedure vanishes with the coordinator.
	Lease int64 `json:"lease"`
	// Coordinator is the coordinator's election key, for operators.
	Coordinator string `json:"coordinator"`
}

func decodeRecord(b []byte) (recordValue, error) {
	var r recordValue
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("barrier: etcd: bad procedure record: %w", err)
	}
	if r.Version < 1 || r.Version > formatVersion {
		return r, fmt.Errorf("barrier: etcd: procedure record version %d, this build reads up to %d", r.Version, formatVersion)
	}
	if err := checkName("procedure type", r.Type); err != nil {
		return r, fmt.Errorf("barrier: etcd: bad procedure record: %w", err)
	}
	if len(r.Members) == 0 || !slices.IsSorted(r.Members) {
		return r, fmt.Errorf("barrier: etcd: bad procedure record: members %q not sorted", r.Members)
	}
	return r, nil
}

// decisionValue is the value of proc/<name>/reached and /complete.
type decisionValue struct {
	Instance int64 `json:"instance"`
}

// abortValue is the value of proc/<name>/abort.
type abortValue struct {
	Instance int64 `json:"instance"`
	AbortError
}

func decodeDecision(b []byte) (int64, error) {
	var d decisionValue
	if err := json.Unmarshal(b, &d); err != nil {
		return 0, fmt.Errorf("barrier: etcd: bad decision: %w", err)
	}
	return d.Instance, nil
}

func encodeAbort(instance int64, ae *AbortError) string {
	b, _ := json.Marshal(abortValue{Instance: instance, AbortError: AbortError{Source: ae.Source, Kind: ae.Kind, Message: ae.Message}})
	return string(b)
}

func decodeAbort(b []byte) (int64, *AbortError, error) {
	var a abortValue
	if err := json.Unmarshal(b, &a); err != nil {
		return 0, nil, fmt.Errorf("barrier: etcd: bad abort: %w", err)
	}
	if a.Source == "" || a.Kind == "" {
		return 0, nil, fmt.Errorf("barrier: etcd: bad abort %q: no source or kind", b)
	}
	return a.Instance, &AbortError{Source: a.Source, Kind: a.Kind, Message: a.Message}, nil
}

// markValue is the value of a member marker.
type markValue struct {
	TookNS int64  `json:"took_ns,omitempty"`
	Result []byte `json:"result,omitempty"`
}

func encodeMark(mk Mark) string {
	b, _ := json.Marshal(markValue{TookNS: int64(mk.Took), Result: mk.Result})
	return string(b)
}

func decodeMark(b []byte) (markValue, error) {
	var m markValue
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("barrier: etcd: bad member marker: %w", err)
	}
	return m, nil
}

// memberValue is the value of members/<name>, for operators.
type memberValue struct {
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}
