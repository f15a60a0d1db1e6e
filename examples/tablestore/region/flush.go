package region

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
)

// Flush writes the memstore to a new row file, f-<seq>.rows where seq is
// its last row write, and truncates the log before it. It then compacts
// when there are more than Options.MaxFiles files. An empty memstore
// writes nothing. A failed flush or compaction fails the region
// (ErrFailed): nothing acknowledged is lost, reopen it.
func (r *Region) Flush() error {
	r.maint.Lock()
	defer r.maint.Unlock()
	return r.flush()
}

// maybeFlush flushes when the memstore has reached Options.FlushBytes and
// no flush, compaction or snapshot is running (the one running, or a later
// Put, does it).
func (r *Region) maybeFlush() error {
	r.mu.RLock()
	full := r.mu.mem.bytes >= r.opts.FlushBytes
	r.mu.RUnlock()
	if !full || !r.maint.TryLock() {
		return nil
	}
	defer r.maint.Unlock()
	if err := r.flush(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// flush runs with maint held.
func (r *Region) flush() error {
	imm, err := r.freeze()
	if err != nil || imm == nil {
		return err
	}
	rows := imm.rows(nil, nil)
	f, err := r.writeRowFile(rows, imm.from, imm.seq)
	if err != nil {
		return r.fail(fmt.Errorf("flush: %w", err))
	}
	r.mu.Lock()
	r.mu.files = append([]*rowFile{f}, r.mu.files...)
	r.mu.imm = nil
	n := len(r.mu.files)
	r.mu.Unlock()
	r.opts.Logger.Debug("region: flushed", "region", r.dir, "file", f.name, "rows", len(rows))
	// The log's records up to imm.walSeq are in f now. Roll, so that the
	// segment holding them is sealed and can go.
	if err := r.log.Roll(); err != nil {
		return r.fail(fmt.Errorf("flush: roll log: %w", err))
	}
	if err := r.log.TruncateFront(imm.walSeq + 1); err != nil {
		return r.fail(fmt.Errorf("flush: truncate log: %w", err))
	}
	if n > r.opts.MaxFiles {
		return r.compact()
	}
	return nil
}

// freeze makes every appended put durable and applied, and hands the
// memstore over to the flush (it stays readable as imm). It returns nil
// if the memstore is empty.
func (r *Region) freeze() (*memtable, error) {
	// Sync first without the lock, so that readers wait at most for the
	// puts appended meanwhile, which the second Sync covers.
	r.mu.RLock()
	err := r.mu.err
	r.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if err := r.log.Sync(); err != nil {
		return nil, r.fail(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.err != nil {
		return nil, r.mu.err
	}
	if err := r.log.Sync(); err != nil {
		return nil, r.failLocked(err)
	}
	r.applyDurableLocked()
	if len(r.mu.queue) > 0 {
		return nil, r.failLocked(errors.New("puts appended before a log sync are not durable after it"))
	}
	imm := r.mu.mem
	if imm.tree.Len() == 0 {
		return nil, nil
	}
	r.mu.imm = imm
	r.mu.mem = newMemtable(imm.seq)
	return imm, nil
}

// writeRowFile writes rows as the row file for (from, seq], atomically and
// durably, and returns it loaded from the bytes written.
func (r *Region) writeRowFile(rows []Row, from, seq uint64) (*rowFile, error) {
	name := rowFileName(seq)
	data := encodeRowFile(rows, from, seq)
	if err := writeFileAtomic(r.fs, r.files, name, data); err != nil {
		return nil, err
	}
	f, err := decodeRowFile(filepath.Join(r.files, name), data)
	if err != nil {
		return nil, err
	}
	f.name = name
	return f, nil
}

// compact merges every row file into one. The output covers its inputs'
// ranges and takes the newest input's name, replacing it by rename; the
// other inputs are removed after that rename is durable. A crash leaves
// either the inputs or the output and some inputs, which Open removes
// because the output's range covers theirs.
func (r *Region) compact() error {
	r.mu.RLock()
	inputs := slices.Clone(r.mu.files)
	r.mu.RUnlock()
	srcs := make([][]Row, len(inputs))
	from := inputs[0].from
	for i, f := range inputs {
		srcs[i] = f.rows
		from = min(from, f.from)
	}
	var rows []Row
	mergeRows(srcs, func(row Row) bool {
		rows = append(rows, row)
		return true
	})
	out, err := r.writeRowFile(rows, from, inputs[0].seq)
	if err != nil {
		return r.fail(fmt.Errorf("compact: %w", err))
	}
	r.mu.Lock()
	r.mu.files = []*rowFile{out}
	r.mu.Unlock()
	for _, f := range inputs[1:] {
		if err := r.fs.Remove(filepath.Join(r.files, f.name)); err != nil {
			return r.fail(fmt.Errorf("compact: %w", err))
		}
	}
	if err := r.fs.SyncDir(r.files); err != nil {
		return r.fail(fmt.Errorf("compact: %w", err))
	}
	r.opts.Logger.Debug("region: compacted", "region", r.dir, "files", len(inputs), "rows", len(rows))
	return nil
}
