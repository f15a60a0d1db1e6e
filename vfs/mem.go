package vfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/procyon-dev/procyon/internal/crc32c"
)

// MemFS is an in-memory FS that simulates crashes. It is safe for
// concurrent use. The package documentation describes its crash model.
//
// Paths are cleaned with filepath.Clean; relative paths are taken relative
// to the root, so "log" and "/log" name the same directory.
type MemFS struct {
	// mu guards the whole tree, every node's content and every open
	// handle's state. One lock keeps a crash point atomic with the
	// operation it stops, and lets ReadAt see only whole Writes.
	mu struct {
		sync.Mutex
		root  *memNode
		locks map[string]bool // cleaned path -> held; see Lock
		// ops counts the mutating operations that ran (took effect or
		// failed for their own reasons), not the one stopped by the
		// crash point.
		ops int
		// lastChange numbers directory entry changes; see dirOp.id.
		lastChange uint64
		// crashLeft is the number of mutating operations until the crash
		// point, counting the crashing one; 0 means no crash point.
		crashLeft int
		crashed   bool
	}
}

var _ FS = (*MemFS)(nil)

// memNode is an inode: a file or a directory. A file node outlives its
// directory entries while a handle refers to it.
type memNode struct {
	dir *memDir // non-nil for a directory

	// File content. data is the current content; synced is the content at
	// the last successful Sync. They never share a backing array, and
	// synced is never handed out (readers get copies), so Sync may
	// update it in place.
	data   []byte
	synced []byte
	// dirty is a lower bound of the first offset at which data and
	// synced may differ: data[:dirty] == synced[:dirty]. It lets Sync copy
	// only what changed, so a log that appends and syncs costs O(bytes
	// written) rather than O(file size) per sync.
	dirty int
}

// memDir holds a directory's entries. Subdirectories are durable at once
// (MkdirAll, and Remove or Rename of a directory, need no SyncDir), so
// they are always in both entries and durable and never in pending; only
// file entries wait for SyncDir.
type memDir struct {
	entries map[string]*memNode // current
	durable map[string]*memNode // as of the last successful SyncDir
	pending []dirOp             // file entry changes since then, in order
}

type dirOpKind int

const (
	dirCreate    dirOpKind = iota // name -> node appears
	dirRemove                     // name -> node disappears
	dirRename                     // name -> node moves to newName, same directory
	dirRenameIn                   // name -> node arrives from another directory
	dirRenameOut                  // name -> node leaves for another directory
)

// dirOp is an entry change. It records the state of the names it touched
// as it found them, so that a crash state replays it only where that state
// still holds.
type dirOp struct {
	kind     dirOpKind
	name     string
	newName  string // dirRename only
	node     *memNode
	replaced *memNode // dirRename, dirRenameIn: the file the target name held, or nil
	// id identifies the change; the two halves of a rename between
	// directories share it, so that a crash keeps or loses both together
	// (while both are pending), as a journaling file system would.
	id uint64
}

func newDirNode() *memNode {
	return &memNode{dir: &memDir{
		entries: make(map[string]*memNode),
		durable: make(map[string]*memNode),
	}}
}

// NewMem returns an empty MemFS holding only the root directory "/", with
// no crash point.
func NewMem() *MemFS {
	m := &MemFS{}
	m.mu.root = newDirNode()
	m.mu.locks = make(map[string]bool)
	return m
}

// SetCrashAfter sets the crash point: the k-th mutating operation from now
// (Create, OpenReadWrite, File.Write, File.Sync, File.Truncate, Rename,
// Remove, MkdirAll, SyncDir; every call counts, whether or not it would
// succeed) does not take effect, and it and every later operation on the
// FS and its files, reads included, fail with an error wrapping
// ErrCrashed. k == 0 removes the crash point. It has no effect once the FS
// has crashed.
func (m *MemFS) SetCrashAfter(k int) {
	if k < 0 {
		panic("vfs: SetCrashAfter: negative crash point")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.crashLeft = k
}

// Crash crashes the FS now, as a power cut would: every later operation
// fails with an error wrapping ErrCrashed.
func (m *MemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.crashed = true
}

// Crashed reports whether the FS has crashed (crash point reached, Crash
// or CrashClone called).
func (m *MemFS) Crashed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.crashed
}

// Ops returns how many mutating operations have run since NewMem. The one
// stopped by the crash point is not counted: after a crash at the k-th
// operation from SetCrashAfter, Ops has grown by k-1.
func (m *MemFS) Ops() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.ops
}

// mutateLocked is the gate of every mutating operation: it fails if the FS
// has crashed or if this operation is the crash point, and counts it
// otherwise.
func (m *MemFS) mutateLocked(op, path string) error {
	if m.mu.crashed {
		return crashErr(op, path)
	}
	if m.mu.crashLeft > 0 {
		m.mu.crashLeft--
		if m.mu.crashLeft == 0 {
			m.mu.crashed = true
			return crashErr(op, path)
		}
	}
	m.mu.ops++
	return nil
}

// liveLocked is the gate of every other operation.
func (m *MemFS) liveLocked(op, path string) error {
	if m.mu.crashed {
		return crashErr(op, path)
	}
	return nil
}

// gate says which gate an operation passes.
type gate int

const (
	uncounted gate = iota // liveLocked: fails only after a crash
	counted               // mutateLocked: counted; may be the crash point
)

func (m *MemFS) gateLocked(g gate, op, path string) error {
	if g == counted {
		return m.mutateLocked(op, path)
	}
	return m.liveLocked(op, path)
}

// nodeLocked opens an operation op on the existing node name: it passes
// gate g, then looks name up; errors are *fs.PathError, as from package os.
func (m *MemFS) nodeLocked(g gate, op, name string) (*memNode, error) {
	if err := m.gateLocked(g, op, name); err != nil {
		return nil, err
	}
	n, err := m.lookupLocked(cleanPath(name))
	if err != nil {
		return nil, pathErr(op, name, err)
	}
	return n, nil
}

// parentOfLocked is nodeLocked for the directory that holds name: it
// returns that directory and name's last element.
func (m *MemFS) parentOfLocked(g gate, op, name string) (*memDir, string, error) {
	if err := m.gateLocked(g, op, name); err != nil {
		return nil, "", err
	}
	d, base, err := m.parentLocked(cleanPath(name))
	if err != nil {
		return nil, "", pathErr(op, name, err)
	}
	return d, base, nil
}

func crashErr(op, path string) error {
	return &fs.PathError{Op: op, Path: path, Err: ErrCrashed}
}

func pathErr(op, path string, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// cleanPath returns the absolute, cleaned form of name.
func cleanPath(name string) string {
	p := filepath.Clean(name)
	if !filepath.IsAbs(p) {
		p = filepath.Join(string(filepath.Separator), p)
	}
	return p
}

// lookupLocked returns the node at the cleaned path p, or an errno.
func (m *MemFS) lookupLocked(p string) (*memNode, error) {
	n := m.mu.root
	if p == string(filepath.Separator) {
		return n, nil
	}
	for _, part := range strings.Split(p[1:], string(filepath.Separator)) {
		if n.dir == nil {
			return nil, syscall.ENOTDIR
		}
		c, ok := n.dir.entries[part]
		if !ok {
			return nil, syscall.ENOENT
		}
		n = c
	}
	return n, nil
}

// parentLocked returns the directory that holds the cleaned path p and p's
// last element. The root has no parent (EBUSY, as for rename or removal of
// a mount point).
func (m *MemFS) parentLocked(p string) (*memDir, string, error) {
	if p == string(filepath.Separator) {
		return nil, "", syscall.EBUSY
	}
	d, err := m.lookupLocked(filepath.Dir(p))
	if err != nil {
		return nil, "", err
	}
	if d.dir == nil {
		return nil, "", syscall.ENOTDIR
	}
	return d.dir, filepath.Base(p), nil
}

// createLocked returns the file node at p, creating it (an unsynced
// directory entry) if it does not exist.
func (m *MemFS) createLocked(p string) (n *memNode, existed bool, err error) {
	d, base, err := m.parentLocked(p)
	if err != nil {
		return nil, false, err
	}
	if n, ok := d.entries[base]; ok {
		if n.dir != nil {
			return nil, false, syscall.EISDIR
		}
		return n, true, nil
	}
	n = &memNode{}
	d.entries[base] = n
	m.mu.lastChange++
	d.pending = append(d.pending, dirOp{kind: dirCreate, name: base, node: n, id: m.mu.lastChange})
	return n, false, nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutateLocked("open", name); err != nil {
		return nil, err
	}
	n, existed, err := m.createLocked(cleanPath(name))
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	if existed {
		n.truncate(0)
	}
	return &memFile{fs: m, node: n, name: name, writable: true}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(uncounted, "open", name)
	if err != nil {
		return nil, err
	}
	if n.dir != nil {
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	return &memFile{fs: m, node: n, name: name}, nil
}

// OpenReadWrite implements FS.
func (m *MemFS) OpenReadWrite(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(counted, "open", name)
	if err != nil {
		return nil, err
	}
	if n.dir != nil {
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	return &memFile{fs: m, node: n, name: name, writable: true, off: int64(len(n.data))}, nil
}

// Remove implements FS. Open handles of a removed file keep working. An
// empty directory can be removed too; that is durable at once.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parentOfLocked(counted, "remove", name)
	if err != nil {
		return err
	}
	n, ok := d.entries[base]
	if !ok {
		return pathErr("remove", name, syscall.ENOENT)
	}
	if n.dir != nil {
		if len(n.dir.entries) > 0 {
			return pathErr("remove", name, syscall.ENOTEMPTY)
		}
		delete(d.entries, base)
		delete(d.durable, base)
		return nil
	}
	delete(d.entries, base)
	m.mu.lastChange++
	d.pending = append(d.pending, dirOp{kind: dirRemove, name: base, node: n, id: m.mu.lastChange})
	return nil
}

// Rename implements FS. Errors are *os.LinkError, as from os.Rename. A file
// may replace a file; a directory may only move to a name that does not
// exist, and its move is durable at once. A rename between two directories
// is one entry change in each: it is durable once both are synced.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	lerr := func(err error) error {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	if err := m.mutateLocked("rename", oldname); err != nil {
		return lerr(ErrCrashed)
	}
	op, np := cleanPath(oldname), cleanPath(newname)
	sd, sbase, err := m.parentLocked(op)
	if err != nil {
		return lerr(err)
	}
	n, ok := sd.entries[sbase]
	if !ok {
		return lerr(syscall.ENOENT)
	}
	dd, dbase, err := m.parentLocked(np)
	if err != nil {
		return lerr(err)
	}
	existing := dd.entries[dbase] // replaced by the rename
	if existing == n {
		return nil // same file: POSIX says do nothing
	}
	if n.dir != nil {
		if existing != nil {
			return lerr(syscall.EEXIST)
		}
		if strings.HasPrefix(np, op+string(filepath.Separator)) {
			return lerr(syscall.EINVAL)
		}
		delete(sd.entries, sbase)
		delete(sd.durable, sbase)
		dd.entries[dbase] = n
		dd.durable[dbase] = n
		return nil
	}
	if existing != nil && existing.dir != nil {
		return lerr(syscall.EISDIR)
	}
	delete(sd.entries, sbase)
	dd.entries[dbase] = n
	m.mu.lastChange++
	id := m.mu.lastChange
	if sd == dd {
		sd.pending = append(sd.pending, dirOp{kind: dirRename, name: sbase, newName: dbase, node: n, replaced: existing, id: id})
	} else {
		sd.pending = append(sd.pending, dirOp{kind: dirRenameOut, name: sbase, node: n, id: id})
		dd.pending = append(dd.pending, dirOp{kind: dirRenameIn, name: dbase, node: n, replaced: existing, id: id})
	}
	return nil
}

// MkdirAll implements FS. New directories are durable at once.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutateLocked("mkdir", dir); err != nil {
		return err
	}
	p := cleanPath(dir)
	n := m.mu.root
	if p == string(filepath.Separator) {
		return nil
	}
	for _, part := range strings.Split(p[1:], string(filepath.Separator)) {
		c, ok := n.dir.entries[part]
		if !ok {
			c = newDirNode()
			n.dir.entries[part] = c
			n.dir.durable[part] = c
		} else if c.dir == nil {
			return pathErr("mkdir", dir, syscall.ENOTDIR)
		}
		n = c
	}
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(uncounted, "open", dir)
	if err != nil {
		return nil, err
	}
	if n.dir == nil {
		return nil, pathErr("readdirent", dir, syscall.ENOTDIR)
	}
	return slices.Sorted(maps.Keys(n.dir.entries)), nil
}

// Stat implements FS. A directory has size 0.
func (m *MemFS) Stat(name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(uncounted, "stat", name)
	if err != nil {
		return 0, err
	}
	return int64(len(n.data)), nil
}

// Lock implements FS with a lock table private to this MemFS: a second
// Lock of the same path fails with ErrLocked until the first is released.
// Lock creates the file if needed (an unsynced directory entry, like
// Create) but is not a counted mutating operation. Locks do not survive
// CrashClone.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.liveLocked("lock", name); err != nil {
		return nil, err
	}
	p := cleanPath(name)
	if m.mu.locks[p] {
		return nil, fmt.Errorf("%w: %s is locked", ErrLocked, name)
	}
	if _, _, err := m.createLocked(p); err != nil {
		return nil, pathErr("open", name, err)
	}
	m.mu.locks[p] = true
	return &memLock{fs: m, path: p}, nil
}

// SyncDir implements FS: the directory's current entries become durable.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(counted, "sync", dir)
	if err != nil {
		return err
	}
	if n.dir == nil {
		return pathErr("sync", dir, syscall.ENOTDIR)
	}
	n.dir.durable = maps.Clone(n.dir.entries)
	n.dir.pending = nil
	return nil
}

// ReadFile returns a copy of the current content of the named file. It is
// a test helper, not a counted operation; it fails with ErrCrashed after a
// crash.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(uncounted, "open", name)
	if err != nil {
		return nil, err
	}
	if n.dir != nil {
		return nil, pathErr("read", name, syscall.EISDIR)
	}
	return bytes.Clone(n.data), nil
}

// WriteFile creates or replaces the content of the named file, durably at
// once: content and directory entry are synced. The parent directory must
// exist. It is a test helper for setting up a state (a damaged file, say),
// not a counted operation; it fails with ErrCrashed after a crash.
func (m *MemFS) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parentOfLocked(uncounted, "open", name)
	if err != nil {
		return err
	}
	n, ok := d.entries[base]
	if ok && n.dir != nil {
		return pathErr("open", name, syscall.EISDIR)
	}
	if !ok {
		n = &memNode{}
		d.entries[base] = n
	}
	// Make this entry durable without syncing the directory's other
	// pending changes: a pending change must no longer move this name, so
	// drop those that only touch it and keep the other half of a rename
	// that involves it.
	var pending []dirOp
	for _, op := range d.pending {
		switch {
		case op.kind == dirRename && op.name == base:
			pending = append(pending, dirOp{kind: dirRenameIn, name: op.newName, node: op.node, replaced: op.replaced, id: op.id})
		case op.kind == dirRename && op.newName == base:
			pending = append(pending, dirOp{kind: dirRenameOut, name: op.name, node: op.node, id: op.id})
		case op.name != base:
			pending = append(pending, op)
		}
	}
	d.pending = pending
	d.durable[base] = n
	n.data = bytes.Clone(data)
	n.synced = bytes.Clone(data)
	n.dirty = len(data)
	return nil
}

// String lists every directory and file with its size, synced size and a
// CRC-32C of its content, and marks directory entries that are not durable.
// It works after a crash too, for debugging.
func (m *MemFS) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	if m.mu.crashed {
		b.WriteString("(crashed)\n")
	}
	var walk func(path string, d *memDir)
	walk = func(path string, d *memDir) {
		for _, name := range slices.Sorted(maps.Keys(d.entries)) {
			n := d.entries[name]
			p := filepath.Join(path, name)
			mark := ""
			if d.durable[name] != n {
				mark = " (entry not synced)"
			}
			if n.dir != nil {
				fmt.Fprintf(&b, "%s/\n", p)
				walk(p, n.dir)
				continue
			}
			fmt.Fprintf(&b, "%s size=%d synced=%d crc=%08x%s\n",
				p, len(n.data), len(n.synced), crc32c.Checksum(n.data), mark)
		}
		for _, name := range slices.Sorted(maps.Keys(d.durable)) {
			if _, ok := d.entries[name]; !ok {
				fmt.Fprintf(&b, "%s (removed, not synced)\n", filepath.Join(path, name))
			}
		}
	}
	b.WriteString("/\n")
	walk(string(filepath.Separator), m.mu.root.dir)
	return b.String()
}

// CrashClone returns a new MemFS holding a state a power cut could leave
// this one in, chosen by a random generator seeded with seed: the same
// seed and the same history give the same state, byte for byte. It crashes
// this FS first if it has not crashed yet; this FS stays crashed and
// unchanged, so CrashClone may be called again with other seeds. The rules
// are those of the package documentation's crash model. The clone has no
// crash point and no locks, and its whole state is durable.
func (m *MemFS) CrashClone(seed int64) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.crashed = true
	c := NewMem()
	cl := cloner{
		rng:   rand.New(rand.NewPCG(uint64(seed), 0x76667363726173)),
		nodes: make(map[*memNode]*memNode),
		kept:  make(map[uint64]bool),
	}
	cl.dir(m.mu.root.dir, c.mu.root.dir)
	return c
}

// cloner builds a crash state. Its random choices are made in a fixed order
// (directories depth-first, entries by name, pending changes in order) so
// that a seed determines the result.
type cloner struct {
	rng   *rand.Rand
	nodes map[*memNode]*memNode // original file node -> its crash state
	kept  map[uint64]bool       // dirOp.id -> kept, for changes already decided
}

func (cl *cloner) dir(src, dst *memDir) {
	entries := maps.Clone(src.durable)
	for _, op := range src.pending {
		keep, ok := cl.kept[op.id]
		if !ok {
			keep = cl.rng.IntN(2) == 0
			cl.kept[op.id] = keep
		}
		if keep {
			applyDirOp(entries, op)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		n := entries[name]
		if n.dir != nil {
			c := newDirNode()
			cl.dir(n.dir, c.dir)
			dst.entries[name] = c
			dst.durable[name] = c
			continue
		}
		c, ok := cl.nodes[n]
		if !ok {
			data := cl.content(n)
			c = &memNode{data: data, synced: bytes.Clone(data), dirty: len(data)}
			cl.nodes[n] = c
		}
		dst.entries[name] = c
		dst.durable[name] = c
	}
}

// applyDirOp replays one kept entry change on a reconstructed directory if
// the names it touches are as it found them; otherwise (an earlier change
// it depended on was lost) it no longer applies and is skipped. So a kept
// change never removes or replaces a file it did not remove or replace in
// the history.
func applyDirOp(entries map[string]*memNode, op dirOp) {
	switch op.kind {
	case dirCreate:
		if entries[op.name] == nil {
			entries[op.name] = op.node
		}
	case dirRenameIn:
		if entries[op.name] == op.replaced {
			entries[op.name] = op.node
		}
	case dirRemove, dirRenameOut:
		if entries[op.name] == op.node {
			delete(entries, op.name)
		}
	case dirRename:
		if entries[op.name] == op.node && entries[op.newName] == op.replaced {
			delete(entries, op.name)
			entries[op.newName] = op.node
		}
	}
}

// tornSector is the most a torn write damages before the cut.
const tornSector = 512

// content returns the crash state of a file's content: synced if nothing
// changed since the last Sync; otherwise, with equal odds, the synced
// content (change dropped), the current one (kept), or a torn one.
func (cl *cloner) content(n *memNode) []byte {
	cur, syn := n.data, n.synced
	if bytes.Equal(cur, syn) {
		return bytes.Clone(syn)
	}
	switch cl.rng.IntN(3) {
	case 0:
		return bytes.Clone(syn)
	case 1:
		return bytes.Clone(cur)
	}
	// Torn: the change reached the disk up to a random cut at or past the
	// first changed byte.
	p := min(n.dirty, len(syn), len(cur))
	for p < len(syn) && p < len(cur) && syn[p] == cur[p] {
		p++
	}
	if len(cur) < len(syn) {
		// An unsynced Truncate: keep one version or the other whole.
		if cl.rng.IntN(2) == 0 {
			return bytes.Clone(syn)
		}
		return bytes.Clone(cur)
	}
	// Written in order up to the cut; past it, what was synced (an
	// overwrite of synced bytes, preallocated zeros for instance, keeps
	// them there). The cut falls in the changed bytes [p, q).
	q := len(cur)
	if q == len(syn) {
		for q > p && cur[q-1] == syn[q-1] {
			q--
		}
	}
	cut := p + cl.rng.IntN(q-p+1)
	out := bytes.Clone(cur[:cut])
	if cut < len(syn) {
		out = append(out, syn[cut:]...)
	}
	if cut > p && cl.rng.IntN(2) == 0 {
		// A torn sector: the last bytes before the cut are zeros or
		// garbage. Never before p, so unchanged bytes stay intact.
		k := 1 + cl.rng.IntN(min(tornSector, cut-p))
		bad := out[cut-k : cut]
		if cl.rng.IntN(2) == 0 {
			clear(bad)
		} else {
			for i := range bad {
				bad[i] = byte(cl.rng.Uint32())
			}
		}
	}
	return out
}

// truncate sets the file's size; growing fills with zeros. Callers hold
// MemFS.mu.
func (n *memNode) truncate(size int) {
	n.dirty = min(n.dirty, size, len(n.data))
	if size <= len(n.data) {
		n.data = n.data[:size]
		return
	}
	n.data = append(n.data, make([]byte, size-len(n.data))...)
}

// memFile is an open handle. Its fields after node are guarded by
// MemFS.mu.
type memFile struct {
	fs       *MemFS
	node     *memNode
	name     string
	writable bool
	off      int64 // write offset
	closed   bool
}

var _ File = (*memFile)(nil)

// gateLocked passes the FS's gate g and checks that the handle is open.
func (f *memFile) gateLocked(g gate, op string) error {
	if err := f.fs.gateLocked(g, op, f.name); err != nil {
		return err
	}
	if f.closed {
		return pathErr(op, f.name, fs.ErrClosed)
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(uncounted, "read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(counted, "write"); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	n := f.node
	off := int(f.off)
	n.dirty = min(n.dirty, off, len(n.data))
	if end := off + len(p); end <= len(n.data) {
		copy(n.data[off:], p)
	} else {
		if off > len(n.data) {
			// Another handle truncated below our offset: pwrite leaves a
			// hole of zeros.
			n.data = append(n.data, make([]byte, off-len(n.data))...)
		}
		n.data = append(n.data[:off], p...)
	}
	f.off += int64(len(p))
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(counted, "sync"); err != nil {
		return err
	}
	n := f.node
	n.synced = append(n.synced[:n.dirty], n.data[n.dirty:]...)
	n.dirty = len(n.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(counted, "truncate"); err != nil {
		return err
	}
	if !f.writable || size < 0 {
		return pathErr("truncate", f.name, syscall.EINVAL)
	}
	f.node.truncate(int(size))
	if f.off > size {
		f.off = size
	}
	return nil
}

func (f *memFile) Preallocate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(counted, "preallocate"); err != nil {
		return err
	}
	if !f.writable || size < 0 {
		return pathErr("preallocate", f.name, syscall.EINVAL)
	}
	if int(size) > len(f.node.data) {
		f.node.truncate(int(size))
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(uncounted, "stat"); err != nil {
		return 0, err
	}
	return int64(len(f.node.data)), nil
}

// Close releases the handle. After a crash it fails with ErrCrashed like
// everything else.
func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.gateLocked(uncounted, "close"); err != nil {
		return err
	}
	f.closed = true
	return nil
}

type memLock struct {
	fs       *MemFS
	path     string
	released bool // guarded by fs.mu
}

// Close releases the lock; closing it again does nothing.
func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if err := l.fs.liveLocked("unlock", l.path); err != nil {
		return err
	}
	if !l.released {
		l.released = true
		delete(l.fs.mu.locks, l.path)
	}
	return nil
}
