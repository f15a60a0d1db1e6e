package tablestore

import "github.com/procyon-dev/procyon/remote"

// RegionDesc describes a region to the server that opens it.
type RegionDesc struct {
	ID    string `json:"id"`
	Table string `json:"table"`
	Start []byte `json:"start,omitempty"` // first key (inclusive); empty: from the first
	End   []byte `json:"end,omitempty"`   // last key (exclusive); empty: to the last
}

// Contains reports whether key falls in the region's range.
func (d RegionDesc) Contains(key []byte) bool {
	return string(key) >= string(d.Start) && (len(d.End) == 0 || string(key) < string(d.End))
}

// The operations the master asks region servers for (package remote).
var (
	// OpenRegion opens a region (replaying its log) and serves its rows.
	// Opening a region the server already serves succeeds.
	OpenRegion = remote.OpType[OpenRegionReq, OpenRegionResp]{Name: "open-region"}
	// CloseRegion flushes and closes a region; closing one the server
	// does not serve succeeds.
	CloseRegion = remote.OpType[CloseRegionReq, CloseRegionResp]{Name: "close-region"}
	// SnapshotRegion snapshots a region the server serves into Dir: a
	// consistent point in time (rows acknowledged before are in it, rows
	// written after its flush are not). Refused ("not serving") if the
	// server does not serve the region.
	SnapshotRegion = remote.OpType[SnapshotRegionReq, SnapshotRegionResp]{Name: "snapshot-region"}
	// VerifyRegions checks region snapshots' manifests against their
	// files; a corrupt one fails the operation with an error naming the
	// file.
	VerifyRegions = remote.OpType[VerifyRegionsReq, VerifyRegionsResp]{Name: "verify-regions"}
)

// OpenRegionReq asks to open a region.
type OpenRegionReq struct {
	Region RegionDesc `json:"region"`
}

// OpenRegionResp says the region is open.
type OpenRegionResp struct {
	Rows int64 `json:"rows"` // rows replayed from the region's log
}

// CloseRegionReq asks to close a region.
type CloseRegionReq struct {
	Region string `json:"region"`
}

// CloseRegionResp says the region is closed (or was not open).
type CloseRegionResp struct{}

// SnapshotRegionReq asks for a region snapshot written into Dir.
type SnapshotRegionReq struct {
	Region string `json:"region"`
	Dir    string `json:"dir"`
}

// SnapshotRegionResp describes the region snapshot written.
type SnapshotRegionResp struct {
	Seq   uint64 `json:"seq"`   // the region's last write in it
	Rows  int64  `json:"rows"`  // rows in it
	Files int    `json:"files"` // files in it
}

// VerifyRegionsReq asks to verify region snapshots (directories).
type VerifyRegionsReq struct {
	Dirs []string `json:"dirs"`
}

// VerifyRegionsResp counts what was verified.
type VerifyRegionsResp struct {
	Regions int   `json:"regions"`
	Rows    int64 `json:"rows"`
}

// NotServing is the refusal message of an operation on a region the
// server does not serve.
const NotServing = "not serving region"
