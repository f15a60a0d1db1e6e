package wal

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"syscall"

	"github.com/procyon-dev/procyon/vfs"
)

// fileScan is what a scan learned about one file with a segment's name.
type fileScan struct {
	name     string
	firstSeq uint64 // from the name
	size     int64
	segment  bool   // the header is valid (and of a version this build reads)
	lastSeq  uint64 // last valid data record's seq; firstSeq-1 if none
	count    uint64 // valid data records before any damage
	validEnd int64  // offset just past the last valid frame
	sealed   bool   // a valid trailer ends the records
	streams  map[uint32]uint64

	// damage is damage inside the file: not a segment (bad header, a
	// directory), a bad frame followed by valid ones, a whole frame out of
	// place, bytes after the trailer. For a newer format it wraps
	// ErrVersion instead.
	damage error
	// tear, when not "", says why the bytes at validEnd do not decode,
	// with no valid frame after them: the torn tail of a crash if this is
	// the log's last segment, damage otherwise. zeroTail says the bytes
	// past validEnd are all zeros (preallocated space; not a tear).
	tear     string
	zeroTail bool

	// What lies past the damage or tear and a cut there drops: valid data
	// frames found after it and the highest sequence number they (or a
	// trailer after it) name.
	lostRecords uint64
	lostLast    uint64
}

// damageAt is one piece of damage in a log, in file order.
type damageAt struct {
	index int   // the file it is reported on
	err   error // *CorruptionError, or an error wrapping ErrVersion
	// resume is the index of the first file the log could start at to
	// leave the damage behind (len(files) if none can): the damaged file's
	// next segment, or for a gap the file after the gap.
	resume int
}

// scanResult is the read-only verdict on a log directory: what Open would
// keep, what it would cut, and the damage it would skip or fail on.
type scanResult struct {
	files  []*fileScan // every file with a segment's name, in name order
	lastOK int         // index of the last file that is a segment; -1 if none
	damage []damageAt
	// start is the index of the first file Open keeps. Files before it
	// hold only records before NeedFrom and some damage; they stay on
	// disk until TruncateFront passes them.
	start int
	// fatal is the damage Open fails on (nil if it opens): the first
	// damage that is not wholly before NeedFrom.
	fatal      error
	fatalIndex int
	skipped    []*CorruptionError // damage before start
	lockFile   bool               // the directory has a LOCK file
}

// kept returns the files Open keeps, oldest first (fatal must be nil).
func (r *scanResult) kept() []*fileScan { return r.files[r.start:] }

// tornTail returns the last segment if its tail is torn (bytes past its
// records that are neither whole frames nor zeros), else nil.
func (r *scanResult) tornTail() *fileScan {
	if r.lastOK < 0 {
		return nil
	}
	f := r.files[r.lastOK]
	if f.damage != nil || f.tear == "" || f.sealed {
		return nil
	}
	return f
}

// frameVisitor, when set, sees every frame a scan decodes (dump uses it),
// and a bad frame at offset 0 for a file that is not a segment.
type frameVisitor func(seg string, off int64, f frame, problem frameProblem)

// scanDir reads and checks every file with a segment's name in dir and
// judges the log as Open with needFrom would. It changes nothing. It fails
// with ErrNotLog if dir is missing or not a directory, or holds no
// segment file and no LOCK file.
func scanDir(fs vfs.FS, dir string, needFrom uint64, visit frameVisitor) (*scanResult, error) {
	// List returns names sorted, so segments come in sequence order.
	names, err := fs.List(dir)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("%w: %s: %v", ErrNotLog, dir, err)
		}
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	res := &scanResult{lastOK: -1}
	for _, n := range names {
		if _, ok := parseSegmentName(n); ok {
			f, err := scanFile(fs, dir, n, visit)
			if err != nil {
				return nil, err
			}
			res.files = append(res.files, f)
		}
		if n == lockName {
			res.lockFile = true
		}
	}
	if len(res.files) == 0 && !res.lockFile {
		return nil, notLogError(dir)
	}
	res.judge(needFrom)
	return res, nil
}

func notLogError(dir string) error {
	return fmt.Errorf("%w: %s has no %s segment files and no LOCK file (the log of a store is in its %s subdirectory)",
		ErrNotLog, dir, "<20 digits>"+segmentSuffix, "wal")
}

// judge finds the damage in the scanned files and decides where the log
// starts and whether Open fails.
func (r *scanResult) judge(needFrom uint64) {
	n := len(r.files)
	for i, f := range r.files {
		if f.segment {
			r.lastOK = i
		}
	}
	nextSegment := func(i int) int {
		for j := i + 1; j < n; j++ {
			if r.files[j].segment {
				return j
			}
		}
		return n
	}
	for i, f := range r.files {
		if gap := r.gapBefore(i); gap != nil {
			r.damage = append(r.damage, damageAt{index: i, err: gap, resume: i})
		}
		switch {
		case f.damage != nil:
			r.damage = append(r.damage, damageAt{index: i, err: f.damage, resume: nextSegment(i)})
		case i < r.lastOK && !f.sealed:
			// A later segment exists, so this one was rolled and sealed:
			// what ended it early is damage, not a crash.
			var err *CorruptionError
			if f.tear != "" {
				err = corruptf(f.name, f.validEnd, "%s, in a segment that is not the last", f.tear)
			} else {
				err = corruptf(f.name, f.validEnd, "segment ends without a trailer (truncated), but later segments exist")
			}
			f.damage = err
			r.damage = append(r.damage, damageAt{index: i, err: err, resume: nextSegment(i)})
		}
	}
	r.fatalIndex = -1
	for _, d := range r.damage {
		ce, isCorrupt := d.err.(*CorruptionError)
		if !isCorrupt || d.resume >= n || r.files[d.resume].firstSeq > needFrom {
			r.fatal, r.fatalIndex = d.err, d.index
			return
		}
		r.skipped = append(r.skipped, ce)
		r.start = max(r.start, d.resume)
	}
}

// gapBefore returns the damage between file i and the one before it when
// both are intact segments whose sequence numbers do not follow on.
func (r *scanResult) gapBefore(i int) *CorruptionError {
	if i == 0 {
		return nil
	}
	prev, f := r.files[i-1], r.files[i]
	if !prev.segment || !f.segment || prev.damage != nil || f.firstSeq == prev.lastSeq+1 {
		return nil
	}
	if f.firstSeq <= prev.lastSeq {
		return corruptf(f.name, 0, "segment starts at %d, but the previous one (%s) holds records up to %d", f.firstSeq, prev.name, prev.lastSeq)
	}
	return corruptf(f.name, 0, "sequence gap: segment starts at %d but the previous one (%s) ends at %d (a segment is missing)",
		f.firstSeq, prev.name, prev.lastSeq)
}

// scanFile checks one file with a segment's name on its own. Damage goes
// into the result; the error is for failures to read.
func scanFile(fs vfs.FS, dir, name string, visit frameVisitor) (*fileScan, error) {
	nameSeq, _ := parseSegmentName(name)
	info := &fileScan{name: name, firstSeq: nameSeq, lastSeq: nameSeq - 1, streams: map[uint32]uint64{}}
	notSegment := func(err *CorruptionError) (*fileScan, error) {
		info.damage = err
		if visit != nil {
			visit(name, 0, frame{}, frameBadHeader)
		}
		return info, nil
	}
	f, err := fs.Open(filepath.Join(dir, name))
	if errors.Is(err, syscall.EISDIR) {
		return notSegment(corruptf(name, 0, "not a segment: a directory"))
	}
	if err != nil {
		return nil, fmt.Errorf("wal: open segment %s: %w", name, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("wal: stat segment %s: %w", name, err)
	}
	info.size = size
	hb := make([]byte, min(size, headerSize))
	if _, err := f.ReadAt(hb, 0); errors.Is(err, syscall.EISDIR) {
		info.size = 0
		return notSegment(corruptf(name, 0, "not a segment: a directory"))
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("wal: read segment %s: %w", name, err)
	}
	h, hp := decodeHeader(hb)
	switch hp {
	case headerOK:
	case headerShort, headerZero:
		return notSegment(corruptf(name, 0, "segment header missing or zeroed (%d bytes in file)", size))
	case headerMagic:
		return notSegment(corruptf(name, 0, "not a procyon WAL segment (bad magic %q)", hb[:8]))
	case headerChecksum:
		return notSegment(corruptf(name, 0, "segment header checksum mismatch"))
	case headerVersion:
		info.damage = fmt.Errorf("%w: segment %s has format version %d; this build reads versions 1 to %d",
			ErrVersion, name, h.version, formatVersion)
		return info, nil
	}
	if h.firstSeq != nameSeq {
		return notSegment(corruptf(name, 0, "header says first sequence %d but the file name says %d", h.firstSeq, nameSeq))
	}
	info.segment = true
	if err := scanFrames(f, info, visit); err != nil {
		return nil, fmt.Errorf("wal: read segment %s: %w", name, err)
	}
	return info, nil
}

// scanFrames reads the frames of a segment whose header is valid.
func scanFrames(f vfs.File, info *fileScan, visit frameVisitor) error {
	sc := newFileScanner(f, headerSize, info.size)
	expected := info.firstSeq
	for {
		off := sc.offset()
		fr, p, atEnd, err := sc.next()
		if err != nil {
			return err
		}
		if atEnd {
			info.validEnd = info.size
			return nil
		}
		info.validEnd = off
		if p == frameZero {
			zeros, err := allZero(f, off, info.size)
			if err != nil {
				return err
			}
			if zeros {
				// Preallocated space: the segment's records end here.
				info.zeroTail = true
				return nil
			}
		}
		reason := frameReason(info, fr, p, expected)
		if visit != nil {
			vp := p
			if reason != "" && p == frameOK {
				vp = frameBadHeader
			}
			visit(info.name, off, fr, vp)
		}
		if reason != "" {
			return badFrame(f, info, off, p, reason, expected)
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
}

// frameReason says what is wrong with the frame at the scan position, or
// "" if it is the frame expected there.
func frameReason(info *fileScan, fr frame, p frameProblem, expected uint64) string {
	switch {
	case p != frameOK:
		return p.String()
	case info.sealed:
		return "record after the segment's trailer"
	case fr.typ == typeData && fr.seq != expected:
		return fmt.Sprintf("record has sequence %d, expected %d", fr.seq, expected)
	case fr.typ == typeTrailer:
		lastSeq, count, ok := decodeTrailer(fr.payload)
		if !ok || lastSeq != expected-1 || count != info.count || fr.seq != expected-1 {
			return fmt.Sprintf("trailer says last sequence %d and %d records, but the segment holds up to %d and %d",
				lastSeq, count, expected-1, info.count)
		}
	}
	return ""
}

// badFrame records what the bad frame at off is: damage, or a tear (bad
// bytes with no valid frame after them, in an unsealed segment).
func badFrame(f vfs.File, info *fileScan, off int64, p frameProblem, reason string, expected uint64) error {
	lost, err := salvage(f, off, info.size, expected)
	if err != nil {
		return err
	}
	info.lostRecords, info.lostLast = lost.records, lost.last
	switch {
	case p == frameOK:
		// A whole, checksummed frame in the wrong place is not a torn write.
		info.damage = corruptf(info.name, off, "%s", reason)
	case info.sealed:
		info.damage = corruptf(info.name, off, "%s after the segment's trailer", reason)
	case lost.firstValid >= 0:
		info.damage = corruptf(info.name, off, "%s, followed by a valid record at offset %d", reason, lost.firstValid)
	default:
		info.tear = reason
	}
	return nil
}

// salvaged is what salvage found past a bad frame.
type salvaged struct {
	firstValid int64  // offset of the first valid frame found, -1 if none
	records    uint64 // valid data frames found
	last       uint64 // highest sequence number they, or a trailer, name
}

// salvage looks for whole, checksummed frames anywhere in (from, size)
// whose sequence numbers could follow expected-1, as a cut at from would
// drop them. It tells a torn tail (nothing valid after the damage) from
// corruption (valid records after it).
func salvage(f vfs.File, from, size int64, expected uint64) (salvaged, error) {
	s := salvaged{firstValid: -1}
	if from+1 >= size {
		return s, nil
	}
	rest := make([]byte, size-from-1)
	if _, err := f.ReadAt(rest, from+1); err != nil && !errors.Is(err, io.EOF) {
		return s, err
	}
	// A frame at p names at most next plus one sequence number per frame
	// header that fits between the end of the last frame found (or the
	// start of the damaged one, at -1 in rest) and p.
	next, nextAt := expected, -1
	for p := 0; p+frameHeaderSize <= len(rest); {
		h := rest[p:]
		typ := h[20]
		seq := le64(h[8:])
		if (typ != typeData && typ != typeTrailer) || h[21]|h[22]|h[23] != 0 ||
			seq+1 < expected || seq > next+uint64(p-nextAt)/frameHeaderSize {
			p++
			continue
		}
		fr, n, prob := decodeFrame(h)
		if prob != frameOK {
			p++
			continue
		}
		if s.firstValid < 0 {
			s.firstValid = from + 1 + int64(p)
		}
		if fr.typ == typeData {
			s.records++
		}
		s.last = max(s.last, fr.seq)
		p += n
		next, nextAt = max(next, fr.seq+1), p
	}
	return s, nil
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
