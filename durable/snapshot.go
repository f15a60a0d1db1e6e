package durable

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/procyon-dev/procyon/internal/crc32c"
)

// Snapshot format constants: part of the on-disk format, never change them
// (see doc.go).
const (
	snapMagic       = "PRCYSNAP"
	snapVersion     = uint32(1)
	snapHeaderSize  = 40
	snapFlagBackup  = uint32(1) // the stream is a backup (Store.Backup)
	snapTagColl     = byte('C')
	snapTagEnd      = byte('E')
	snapMaxKeyLen   = 1 << 20
	snapMaxValueLen = 1 << 30
)

// snapHeader is the decoded snapshot header.
type snapHeader struct {
	version   uint32
	flags     uint32
	seq       uint64 // the last record the snapshot reflects, in its log
	sourceSeq uint64 // for a restored snapshot, the seq in the store it came from
}

func (h snapHeader) encode() []byte {
	b := make([]byte, snapHeaderSize)
	copy(b[0:8], snapMagic)
	binary.LittleEndian.PutUint32(b[8:12], h.version)
	binary.LittleEndian.PutUint32(b[12:16], h.flags)
	binary.LittleEndian.PutUint64(b[16:24], h.seq)
	binary.LittleEndian.PutUint64(b[24:32], h.sourceSeq)
	// b[32:36] reserved, zero.
	binary.LittleEndian.PutUint32(b[36:40], crc32c.Checksum(b[:36]))
	return b
}

func decodeSnapHeader(b []byte, file string) (snapHeader, error) {
	bad := func(reason string) error { return &CorruptionError{File: file, Offset: 0, Reason: reason} }
	if len(b) < snapHeaderSize {
		return snapHeader{}, bad(fmt.Sprintf("header of %d bytes, want %d", len(b), snapHeaderSize))
	}
	if string(b[0:8]) != snapMagic {
		return snapHeader{}, bad(fmt.Sprintf("bad magic %q (not a procyon snapshot)", b[0:8]))
	}
	if crc32c.Checksum(b[:36]) != binary.LittleEndian.Uint32(b[36:40]) {
		return snapHeader{}, bad("header checksum mismatch")
	}
	h := snapHeader{
		version:   binary.LittleEndian.Uint32(b[8:12]),
		flags:     binary.LittleEndian.Uint32(b[12:16]),
		seq:       binary.LittleEndian.Uint64(b[16:24]),
		sourceSeq: binary.LittleEndian.Uint64(b[24:32]),
	}
	if h.version > snapVersion {
		return h, fmt.Errorf("%w: snapshot %s has format version %d, this program reads up to %d", ErrVersion, file, h.version, snapVersion)
	}
	if h.version == 0 {
		return h, bad("format version 0")
	}
	return h, nil
}

// snapWriter encodes a snapshot body, with a running CRC-32C, in chunks.
type snapWriter struct {
	w     io.Writer
	buf   []byte
	crc   uint32
	n     int64
	ctx   context.Context
	chunk int
	share float64   // at most this share of wall time working (1: no pacing)
	since time.Time // when the current stretch of work began
}

func (sw *snapWriter) flush() error {
	if len(sw.buf) == 0 {
		return nil
	}
	sw.crc = crc32c.Update(sw.crc, sw.buf)
	_, err := sw.w.Write(sw.buf)
	sw.n += int64(len(sw.buf))
	sw.buf = sw.buf[:0]
	if err == nil && sw.share < 1 {
		err = sw.pace()
	}
	if err == nil && sw.ctx != nil {
		err = sw.ctx.Err()
	}
	return err
}

// pace sleeps after a stretch of work so that the writer works at most
// sw.share of the wall time. Sleeps shorter than a millisecond are added
// up instead of taken, to keep timer overhead out.
func (sw *snapWriter) pace() error {
	worked := time.Since(sw.since)
	rest := time.Duration(float64(worked) * (1 - sw.share) / sw.share)
	if rest < time.Millisecond {
		return nil // keep counting from the same start
	}
	t := time.NewTimer(rest)
	defer t.Stop()
	var done <-chan struct{}
	if sw.ctx != nil {
		done = sw.ctx.Done()
	}
	select {
	case <-t.C:
	case <-done:
		return sw.ctx.Err()
	}
	sw.since = time.Now()
	return nil
}

func (sw *snapWriter) maybeFlush() error {
	if len(sw.buf) >= sw.chunk {
		return sw.flush()
	}
	return nil
}

// writeSnapshot streams version v in the snapshot format to w. The trees
// of v are never changed, so writers go on meanwhile.
func (s *Store) writeSnapshot(ctx context.Context, w io.Writer, v *version, h snapHeader) (int64, error) {
	if _, err := w.Write(h.encode()); err != nil {
		return 0, err
	}
	sw := &snapWriter{w: w, buf: make([]byte, 0, 256<<10), ctx: ctx, chunk: 224 << 10,
		share: s.opts.SnapshotShare, since: time.Now()}
	trees := s.flatTrees(v)
	for id, c := range s.colls {
		t := trees[id]
		sw.buf = append(sw.buf, snapTagColl)
		sw.buf = binary.AppendUvarint(sw.buf, uint64(len(c.collName())))
		sw.buf = append(sw.buf, c.collName()...)
		sw.buf = binary.AppendUvarint(sw.buf, uint64(c.length(t)))
		err := c.each(t, func(key, val []byte) error {
			sw.buf = binary.AppendUvarint(sw.buf, uint64(len(key)))
			sw.buf = append(sw.buf, key...)
			sw.buf = binary.AppendUvarint(sw.buf, uint64(len(val)))
			sw.buf = append(sw.buf, val...)
			return sw.maybeFlush()
		})
		if err != nil {
			return sw.n, err
		}
	}
	sw.buf = append(sw.buf, snapTagEnd)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(s.colls)))
	if err := sw.flush(); err != nil {
		return sw.n, err
	}
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], sw.crc)
	if _, err := w.Write(tail[:]); err != nil {
		return sw.n, err
	}
	return snapHeaderSize + sw.n + 4, nil
}

// snapReader reads a snapshot body with a running CRC-32C. It keeps its
// own buffer so that the CRC is computed over large chunks.
type snapReader struct {
	r    io.Reader
	file string
	buf  []byte
	pos  int   // next byte to read in buf
	end  int   // end of valid data in buf
	base int64 // stream offset of buf[0]
	crc  uint32
	done int  // buf[:done] is already in crc
	eof  bool // r returned io.EOF
}

func newSnapReader(r io.Reader, file string) *snapReader {
	return &snapReader{r: r, file: file, buf: make([]byte, 1<<20), base: snapHeaderSize}
}

func (sr *snapReader) offset() int64 { return sr.base + int64(sr.pos) }

func (sr *snapReader) corrupt(format string, args ...any) error {
	return &CorruptionError{File: sr.file, Offset: sr.offset(), Reason: fmt.Sprintf(format, args...)}
}

// fill makes at least n bytes available (n <= len(buf)), or fails.
func (sr *snapReader) fill(n int) error {
	if sr.end-sr.pos >= n {
		return nil
	}
	// Account for consumed bytes, then move the rest to the front.
	sr.crc = crc32c.Update(sr.crc, sr.buf[sr.done:sr.pos])
	copy(sr.buf, sr.buf[sr.pos:sr.end])
	sr.base += int64(sr.pos)
	sr.end -= sr.pos
	sr.pos, sr.done = 0, 0
	for sr.end < n {
		if sr.eof {
			return sr.corrupt("snapshot ends early (truncated)")
		}
		m, err := sr.r.Read(sr.buf[sr.end:])
		sr.end += m
		if err == io.EOF {
			sr.eof = true
		} else if err != nil {
			return fmt.Errorf("durable: read snapshot %s: %w", sr.file, err)
		}
	}
	return nil
}

func (sr *snapReader) byte() (byte, error) {
	if err := sr.fill(1); err != nil {
		return 0, err
	}
	b := sr.buf[sr.pos]
	sr.pos++
	return b, nil
}

func (sr *snapReader) uvarint(what string) (uint64, error) {
	if sr.end-sr.pos < binary.MaxVarintLen64 {
		if err := sr.fill(binary.MaxVarintLen64); err != nil {
			// Near the end of the stream a varint can be shorter.
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				return 0, err
			}
		}
	}
	v, n := binary.Uvarint(sr.buf[sr.pos:sr.end])
	if n <= 0 {
		return 0, sr.corrupt("bad %s", what)
	}
	sr.pos += n
	return v, nil
}

// bytes returns the next n bytes. With keep, they are a fresh copy;
// otherwise they are valid until the next call.
func (sr *snapReader) bytes(n int, keep bool) ([]byte, error) {
	if n <= len(sr.buf) {
		if err := sr.fill(n); err != nil {
			return nil, err
		}
		b := sr.buf[sr.pos : sr.pos+n]
		sr.pos += n
		if keep {
			b = append(make([]byte, 0, n), b...)
		}
		return b, nil
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		if err := sr.fill(1); err != nil {
			return nil, err
		}
		k := min(n-len(out), sr.end-sr.pos)
		out = append(out, sr.buf[sr.pos:sr.pos+k]...)
		sr.pos += k
	}
	return out, nil
}

// sum returns the CRC of everything read so far.
func (sr *snapReader) sum() uint32 {
	sr.crc = crc32c.Update(sr.crc, sr.buf[sr.done:sr.pos])
	sr.done = sr.pos
	return sr.crc
}

// atEOF reports whether nothing follows.
func (sr *snapReader) atEOF() (bool, error) {
	if sr.pos < sr.end {
		return false, nil
	}
	for !sr.eof {
		if err := sr.fill(1); err != nil {
			var ce *CorruptionError
			if errors.As(err, &ce) {
				return true, nil
			}
			return false, err
		}
		if sr.pos < sr.end {
			return false, nil
		}
	}
	return true, nil
}

// snapSink receives a snapshot's content as it is read. collection
// returns false to skip the collection's entries (they are still read and
// checked).
type snapSink interface {
	collection(name string, count uint64) (bool, error)
	entry(key, val []byte) error
}

// readSnapshotBody reads and checks a body through sr: sections, then the
// end tag, the collection count, the CRC, and nothing after. Errors of the
// sink are returned only if the checksum verifies (so that damage is
// reported as damage, not as a schema problem).
func readSnapshotBody(sr *snapReader, sink snapSink) error {
	var sinkErr error
	var key []byte
	seen := map[string]bool{}
	ncolls := uint64(0)
	for {
		tag, err := sr.byte()
		if err != nil {
			return err
		}
		if tag == snapTagEnd {
			break
		}
		if tag != snapTagColl {
			return sr.corrupt("unknown section tag %#x", tag)
		}
		ncolls++
		name, count, err := readSectionHead(sr, seen)
		if err != nil {
			return err
		}
		use := false
		if sinkErr == nil {
			use, sinkErr = sink.collection(name, count)
			use = use && sinkErr == nil
		}
		for i := uint64(0); i < count; i++ {
			var vlen int
			key, vlen, err = readEntryHead(sr, name, key)
			if err != nil {
				return err
			}
			val, err := sr.bytes(vlen, use)
			if err != nil {
				return err
			}
			if use && sinkErr == nil {
				if err := sink.entry(key, val); err != nil {
					sinkErr = err
					use = false
				}
			}
		}
	}
	if err := readSnapshotEnd(sr, ncolls); err != nil {
		return err
	}
	return sinkErr
}

// readSectionHead reads a section's collection name (not one of seen,
// which it joins) and entry count.
func readSectionHead(sr *snapReader, seen map[string]bool) (string, uint64, error) {
	nlen, err := sr.uvarint("collection name length")
	if err != nil {
		return "", 0, err
	}
	if nlen == 0 || nlen > maxNameLen {
		return "", 0, sr.corrupt("bad collection name length %d", nlen)
	}
	nb, err := sr.bytes(int(nlen), false)
	if err != nil {
		return "", 0, err
	}
	name := string(nb)
	if seen[name] {
		return "", 0, sr.corrupt("collection %q appears twice", name)
	}
	seen[name] = true
	count, err := sr.uvarint("entry count")
	if err != nil {
		return "", 0, err
	}
	return name, count, nil
}

// readEntryHead reads an entry of collection name up to its value: the
// key, copied into key's storage, and the value's length.
func readEntryHead(sr *snapReader, name string, key []byte) ([]byte, int, error) {
	klen, err := sr.uvarint("key length")
	if err != nil {
		return key, 0, err
	}
	if klen > snapMaxKeyLen {
		return key, 0, sr.corrupt("collection %q: key length %d too large", name, klen)
	}
	kb, err := sr.bytes(int(klen), false)
	if err != nil {
		return key, 0, err
	}
	// kb points into the read buffer, which the next read may refill:
	// keep a copy.
	key = append(key[:0], kb...)
	vlen, err := sr.uvarint("value length")
	if err != nil {
		return key, 0, err
	}
	if vlen > snapMaxValueLen {
		return key, 0, sr.corrupt("collection %q: value length %d too large", name, vlen)
	}
	return key, int(vlen), nil
}

// readSnapshotEnd reads what follows the end tag: the collection count
// (which must be ncolls) and the CRC, and checks that nothing follows.
func readSnapshotEnd(sr *snapReader, ncolls uint64) error {
	n, err := sr.uvarint("collection count")
	if err != nil {
		return err
	}
	if n != ncolls {
		return sr.corrupt("trailer says %d collections, found %d", n, ncolls)
	}
	want := sr.sum()
	tail, err := sr.bytes(4, false)
	if err != nil {
		return err
	}
	if got := binary.LittleEndian.Uint32(tail); got != want {
		return sr.corrupt("checksum mismatch (stored %08x, computed %08x)", got, want)
	}
	if end, err := sr.atEOF(); err != nil {
		return err
	} else if !end {
		return sr.corrupt("data after the end of the snapshot")
	}
	return nil
}

// storeSink loads a snapshot into recovery's trees.
type storeSink struct {
	s    *Store
	st   *loadState
	file string
	id   int
}

func (k *storeSink) collection(name string, count uint64) (bool, error) {
	id, err := k.s.lookup(k.st, name, "snapshot "+k.file)
	if err != nil {
		return false, err
	}
	k.id = id
	return id >= 0, nil
}

func (k *storeSink) entry(key, val []byte) error {
	if err := k.s.colls[k.id].loadEntry(k.st.trees[k.id], key, val); err != nil {
		return &CorruptionError{File: k.file, Reason: err.Error()}
	}
	return nil
}

// SnapshotResult describes a snapshot the store wrote.
type SnapshotResult struct {
	Seq      uint64        // the last record it reflects
	Size     int64         // bytes
	Duration time.Duration // time to write it
	Skipped  bool          // nothing changed since the last snapshot; none was written
}

// Snapshot writes a snapshot of the latest durable version now, unless one
// of that version exists already, and waits for it. Writers are not held
// up: the version's trees are immutable and are streamed to the
// persistence while transactions go on. Then the persistence drops what
// recovery no longer needs (the log up to the previous snapshot, and older
// snapshots). One snapshot runs at a time; a call waits for a running one.
func (s *Store) Snapshot(ctx context.Context) (SnapshotResult, error) {
	if s.state.Load() != stateOpen {
		return SnapshotResult{}, ErrClosed
	}
	if s.opts.ReadOnly {
		return SnapshotResult{}, ErrReadOnly
	}
	return s.snapshot(ctx)
}

func (s *Store) snapshot(ctx context.Context) (SnapshotResult, error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	v := s.current()
	if s.snap.have && s.snap.seq >= v.seq {
		return SnapshotResult{Seq: s.snap.seq, Size: s.lastSnapSize.Load(), Skipped: true}, nil
	}
	start := time.Now()
	h := snapHeader{version: snapVersion, seq: v.seq, sourceSeq: v.seq}
	size, err := s.p.WriteSnapshot(v.seq, func(w io.Writer) error {
		_, err := s.writeSnapshot(ctx, w, v, h)
		return err
	})
	if err != nil {
		s.stats.snapshotErrs.Add(1)
		return SnapshotResult{}, fmt.Errorf("durable: snapshot at %d: %w", v.seq, err)
	}
	s.snap.seq, s.snap.have = v.seq, true
	s.lastSnapSize.Store(size)
	s.stats.snapshots.Add(1)
	d := time.Since(start)
	s.lastSnapNs.Store(int64(d))
	s.log.Info("durable: snapshot written", "seq", v.seq, "bytes", size, "took", d)
	return SnapshotResult{Seq: v.seq, Size: size, Duration: d}, nil
}

// autoSnapshot is the background snapshot started by Write.
func (s *Store) autoSnapshot() {
	defer s.bg.Done()
	defer s.snapRunning.Store(false)
	if _, err := s.snapshot(context.Background()); err != nil {
		// Not fatal: the log still holds everything. The next attempt
		// comes after another threshold's worth of log.
		s.log.Warn("durable: automatic snapshot failed", "err", err)
	}
}

func (s *Store) snapshotThreshold() int64 {
	return max(s.opts.SnapshotBytes, s.lastSnapSize.Load())
}
