package wal

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/procyon-dev/procyon/vfs"
)

// segInfo is what a scan learned about one segment.
type segInfo struct {
	name     string
	firstSeq uint64
	lastSeq  uint64 // last data record's seq; firstSeq-1 if none
	count    uint64
	size     int64 // file size
	validEnd int64 // offset just past the last valid frame
	sealed   bool  // ends with a trailer
	streams  map[uint32]uint64
}

// scanResult is the read-only verdict on a log directory: what Open would
// keep, what it would repair, or the corruption that stops it.
type scanResult struct {
	segs []segInfo // valid segments, in order (a torn create excluded)

	// tornCreate names a last segment whose header never landed: it holds
	// no records and Open removes it.
	tornCreate string
	// tornTail, when set, says the last segment ends in a torn frame at
	// tornOffset; Open truncates it there.
	tornTail   bool
	tornOffset int64
	tornBytes  int64
	tornReason string
	// zeroTail says the "torn tail" is only preallocated zeros (nothing
	// was written there, or nothing of it reached the disk): not worth a
	// warning, but cut off all the same so that appends go on there.
	zeroTail bool

	// corrupt is the first corruption found (a *CorruptionError, or
	// ErrVersion-wrapping error); scanning stops there. corruptIndex is
	// the index of the damaged segment among all segment files found and
	// corruptOffset the offset where Repair would cut.
	corrupt       error
	corruptIndex  int
	corruptOffset int64
	files         []string // every segment file found, in order
}

// frameVisitor, when set, sees every frame a scan decodes (dump uses it).
type frameVisitor func(seg string, off int64, f frame, problem frameProblem)

// scanDir reads and checks every segment in dir. It changes nothing.
func scanDir(fs vfs.FS, dir string, visit frameVisitor) (*scanResult, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	res := &scanResult{corruptIndex: -1}
	for _, n := range names {
		if _, ok := parseSegmentName(n); ok {
			res.files = append(res.files, n)
		}
	}
	slices.Sort(res.files)
	// A last file no longer than a header, with no valid header, is a
	// create whose header never became durable: no record was ever written
	// to it. Set it aside before judging the segment before it.
	if n := len(res.files); n > 0 {
		name := res.files[n-1]
		torn, err := isTornCreate(fs, filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if torn {
			res.tornCreate = name
			res.files = res.files[:n-1]
		}
	}
	for i, name := range res.files {
		last := i == len(res.files)-1
		info, err := scanSegment(fs, dir, name, last, res, visit)
		if err != nil {
			return nil, err
		}
		if res.corrupt != nil {
			res.corruptIndex = i
			return res, nil
		}
		if n := len(res.segs); n > 0 && info.firstSeq != res.segs[n-1].lastSeq+1 {
			res.corrupt = corruptf(name, 0, "sequence gap: segment starts at %d but the previous one ends at %d (a segment is missing)",
				info.firstSeq, res.segs[n-1].lastSeq)
			res.corruptIndex = i
			return res, nil
		}
		res.segs = append(res.segs, info)
	}
	return res, nil
}

// scanSegment checks one segment. It records corruption or a torn tail in
// res.
func scanSegment(fs vfs.FS, dir, name string, last bool, res *scanResult, visit frameVisitor) (segInfo, error) {
	nameSeq, _ := parseSegmentName(name)
	info := segInfo{name: name, firstSeq: nameSeq, lastSeq: nameSeq - 1, streams: map[uint32]uint64{}}
	f, err := fs.Open(filepath.Join(dir, name))
	if err != nil {
		return info, fmt.Errorf("wal: open segment %s: %w", name, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return info, fmt.Errorf("wal: stat segment %s: %w", name, err)
	}
	info.size = size
	hb := make([]byte, min(size, headerSize))
	if _, err := f.ReadAt(hb, 0); err != nil && !errors.Is(err, io.EOF) {
		return info, fmt.Errorf("wal: read segment %s: %w", name, err)
	}
	h, hp := decodeHeader(hb)
	switch hp {
	case headerOK:
	case headerShort, headerZero:
		res.corrupt = corruptf(name, 0, "segment header missing or zeroed (%d bytes in file)", size)
		return info, nil
	case headerMagic:
		res.corrupt = corruptf(name, 0, "not a procyon WAL segment (bad magic %q)", hb[:8])
		return info, nil
	case headerChecksum:
		res.corrupt = corruptf(name, 0, "segment header checksum mismatch")
		return info, nil
	case headerVersion:
		res.corrupt = fmt.Errorf("%w: segment %s has format version %d; this build reads versions 1 to %d",
			ErrVersion, name, h.version, formatVersion)
		return info, nil
	}
	if h.firstSeq != nameSeq {
		res.corrupt = corruptf(name, 0, "header says first sequence %d but the file name says %d", h.firstSeq, nameSeq)
		return info, nil
	}
	sc := newScanner(f, headerSize, size)
	expected := nameSeq
	for {
		off := sc.offset()
		fr, p, atEnd, err := sc.next()
		if err != nil {
			return info, fmt.Errorf("wal: read segment %s at offset %d: %w", name, off, err)
		}
		if atEnd {
			break
		}
		if p == frameZero {
			// Zeros to the end of the file are preallocated space: the
			// segment's records end here.
			zeros, err := allZero(f, off, size)
			if err != nil {
				return info, fmt.Errorf("wal: read segment %s: %w", name, err)
			}
			if zeros {
				info.validEnd = off
				if last && !info.sealed {
					res.tornTail, res.zeroTail = true, true
					res.tornOffset, res.tornBytes, res.tornReason = off, size-off, "preallocated zeros"
					return info, nil
				}
				if !last && !info.sealed {
					res.corrupt = corruptf(name, off, "segment ends without a trailer (truncated), but later segments exist")
					res.corruptOffset = off
				}
				return info, nil
			}
		}
		reason := ""
		switch {
		case p != frameOK:
			reason = p.String()
		case info.sealed:
			reason = "record after the segment's trailer"
		case fr.typ == typeData && fr.seq != expected:
			reason = fmt.Sprintf("record has sequence %d, expected %d", fr.seq, expected)
		case fr.typ == typeTrailer:
			lastSeq, count, ok := decodeTrailer(fr.payload)
			if !ok || lastSeq != expected-1 || count != info.count || fr.seq != expected-1 {
				reason = fmt.Sprintf("trailer says last sequence %d and %d records, but the segment holds up to %d and %d", lastSeq, count, expected-1, info.count)
			}
		}
		if visit != nil {
			vp := p
			if reason != "" && p == frameOK {
				vp = frameBadHeader
			}
			visit(name, off, fr, vp)
		}
		if reason != "" {
			if !last {
				res.corrupt = corruptf(name, off, "%s", reason)
				res.corruptOffset = off
				return info, nil
			}
			if p == frameOK {
				// A whole, checksummed frame in the wrong place is not a
				// torn write.
				res.corrupt = corruptf(name, off, "%s", reason)
				res.corruptOffset = off
				return info, nil
			}
			validAt, err := findValidFrame(f, off+1, size, expected)
			if err != nil {
				return info, fmt.Errorf("wal: read segment %s: %w", name, err)
			}
			if validAt >= 0 {
				res.corrupt = corruptf(name, off, "%s, followed by a valid record at offset %d", reason, validAt)
				res.corruptOffset = off
				return info, nil
			}
			res.tornTail = true
			res.tornOffset = off
			res.tornBytes = size - off
			res.tornReason = reason
			info.validEnd = off
			return info, nil
		}
		switch fr.typ {
		case typeData:
			info.count++
			info.lastSeq = fr.seq
			info.streams[fr.stream] = fr.seq
			expected++
		case typeTrailer:
			info.sealed = true
		}
	}
	info.validEnd = size
	if !last && !info.sealed {
		res.corrupt = corruptf(name, size, "segment ends without a trailer (truncated), but later segments exist")
		res.corruptOffset = size
	}
	return info, nil
}

// findValidFrame looks for a whole, checksummed frame starting anywhere in
// [from, size) whose sequence number could follow expected-1. It tells a
// torn tail (nothing valid after the damage) from corruption (valid records
// after it). It returns the offset found, or -1.
func findValidFrame(f vfs.File, from, size int64, expected uint64) (int64, error) {
	if from >= size {
		return -1, nil
	}
	rest := make([]byte, size-from)
	if _, err := f.ReadAt(rest, from); err != nil && !errors.Is(err, io.EOF) {
		return -1, err
	}
	for p := 0; p+frameHeaderSize <= len(rest); p++ {
		h := rest[p:]
		typ := h[20]
		if (typ != typeData && typ != typeTrailer) || h[21]|h[22]|h[23] != 0 {
			continue
		}
		seq := le64(h[8:])
		if seq+1 < expected || seq > expected+uint64(len(rest)-p)/frameHeaderSize {
			continue
		}
		if _, _, prob := decodeFrame(h); prob == frameOK {
			return from + int64(p), nil
		}
	}
	return -1, nil
}

// allZero reports whether f holds only zero bytes in [from, size).
func allZero(f vfs.File, from, size int64) (bool, error) {
	buf := make([]byte, min(size-from, 64<<10))
	for off := from; off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if !isZero(buf[:n]) {
			return false, nil
		}
		off += n
	}
	return true, nil
}

func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }

func isTornCreate(fs vfs.FS, path string) (bool, error) {
	size, err := fs.Stat(path)
	if err != nil {
		return false, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	if size > headerSize {
		return false, nil
	}
	f, err := fs.Open(path)
	if err != nil {
		return false, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("wal: read %s: %w", path, err)
	}
	// Records are written only after the header is synced, so a file this
	// short holds none, whatever a torn write left in its header bytes.
	_, p := decodeHeader(b)
	return p != headerOK && p != headerVersion, nil
}
