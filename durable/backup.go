package durable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/procyon-dev/procyon/vfs"
)

// BackupResult describes a backup written by Store.Backup.
type BackupResult struct {
	Seq         uint64 // the last transaction the backup reflects
	Bytes       int64
	Collections int
}

// Backup streams the latest durable version to w in the snapshot format,
// marked as a backup (Aurora's snapshotWith, to a stream). Writes go on
// meanwhile: the version is immutable. Restore turns the stream back into
// a data directory. ctx cancels a long backup.
func (s *Store) Backup(ctx context.Context, w io.Writer) (BackupResult, error) {
	if s.state.Load() == stateNew {
		return BackupResult{}, fmt.Errorf("%w: not open", ErrClosed)
	}
	v := s.current()
	h := snapHeader{version: snapVersion, flags: snapFlagBackup, seq: v.seq, sourceSeq: v.seq}
	n, err := s.writeSnapshot(ctx, w, v, h)
	if err != nil {
		return BackupResult{}, fmt.Errorf("durable: backup: %w", err)
	}
	return BackupResult{Seq: v.seq, Bytes: n, Collections: len(s.colls)}, nil
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// FS is the file system of the directory. Default vfs.OS.
	FS vfs.FS
}

// RestoreResult describes a restored backup.
type RestoreResult struct {
	SourceSeq   uint64   // the seq of the backed-up store the backup reflects
	Bytes       int64    // bytes read
	Collections []string // names of the collections in the backup
	Entries     int64    // entries in all collections
}

// restoreSink counts what a backup holds.
type restoreSink struct {
	names   []string
	entries int64
}

func (k *restoreSink) collection(name string, count uint64) (bool, error) {
	k.names = append(k.names, name)
	k.entries += int64(count)
	return false, nil
}

func (k *restoreSink) entry(key, val []byte) error { return nil }

// teeCounter is a reader that counts the bytes it reads from r and copies
// them to w; the first write error is kept in err and ends the reads.
type teeCounter struct {
	r   io.Reader
	w   io.Writer
	n   int64
	err error
}

func (t *teeCounter) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if n > 0 && t.err == nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.err = werr
		}
	}
	if t.err != nil {
		return n, t.err
	}
	return n, err
}

// Restore makes dir (which must not exist or be empty: ErrNotEmpty
// otherwise) the data directory of a store holding the state of the
// backup read from r. The whole stream is checked (format and checksum)
// while it is written to a temporary file; only if it verifies is the file
// synced and renamed into place as the directory's initial snapshot, so a
// failed restore leaves the directory empty. The restored store starts a
// new log: its snapshot is at seq 0. Collection names are checked when a
// program opens the store.
func Restore(ctx context.Context, r io.Reader, dir string, opts RestoreOptions) (RestoreResult, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.OS
	}
	if err := fs.MkdirAll(dir); err != nil {
		return RestoreResult{}, fmt.Errorf("durable: restore: create %s: %w", dir, err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("durable: restore: %w", err)
	}
	if len(names) > 0 {
		return RestoreResult{}, fmt.Errorf("%w: %s holds %d entries (%s...)", ErrNotEmpty, dir, len(names), names[0])
	}
	const src = "backup stream"
	hb := make([]byte, snapHeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return RestoreResult{}, &CorruptionError{File: src, Reason: "truncated header"}
		}
		return RestoreResult{}, fmt.Errorf("durable: restore: read: %w", err)
	}
	h, err := decodeSnapHeader(hb, src)
	if err != nil {
		return RestoreResult{}, err
	}
	final := filepath.Join(dir, snapName(0))
	tmp := final + tmpSuffix
	f, err := fs.Create(tmp)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("durable: restore: %w", err)
	}
	cleanup := func() {
		f.Close()
		fs.Remove(tmp)
		fs.SyncDir(dir)
	}
	nh := snapHeader{version: snapVersion, seq: 0, sourceSeq: h.seq}
	if _, err := f.Write(nh.encode()); err != nil {
		cleanup()
		return RestoreResult{}, fmt.Errorf("durable: restore: write %s: %w", tmp, err)
	}
	tee := &teeCounter{r: r, w: f}
	sink := &restoreSink{}
	sr := newSnapReader(ctxReader{ctx, tee}, src)
	if err := readSnapshotBody(sr, sink); err != nil {
		cleanup()
		if tee.err != nil {
			return RestoreResult{}, fmt.Errorf("durable: restore: write %s: %w", tmp, tee.err)
		}
		return RestoreResult{}, err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, final)
	}
	if err == nil {
		err = fs.SyncDir(dir)
	}
	if err != nil {
		fs.Remove(tmp)
		return RestoreResult{}, fmt.Errorf("durable: restore: %w", err)
	}
	return RestoreResult{SourceSeq: h.seq, Bytes: snapHeaderSize + tee.n, Collections: sink.names, Entries: sink.entries}, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
