package wal

import (
	"encoding/binary"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/internal/seqname"
)

// The constants in this file are part of the on-disk format: never change
// them. A new format gets a new version number, and readers keep decoding
// the old one. See doc.go for the layout.
const (
	// segmentMagic opens every segment file.
	segmentMagic = "PRCYNWAL"
	// formatVersion is the version this package writes and the newest it reads.
	formatVersion uint32 = 1
	// headerSize is the size of the segment header.
	headerSize = 32
	// frameHeaderSize is the size of a record frame's header.
	frameHeaderSize = 24
	// maxFrameLen bounds a frame's payload. A larger length field is damage.
	maxFrameLen = 1 << 30

	// Frame types. Type 0 is never written, so a zero-filled region never
	// decodes as a frame.
	typeData    byte = 1 // a record appended by a caller
	typeTrailer byte = 2 // seals a segment; always its last frame
)

// segmentSuffix ends every segment file's name; the rest of the name is the
// segment's first sequence number as 20 decimal digits, so that names sort
// in sequence order.
const segmentSuffix = ".wal"

func segmentName(firstSeq uint64) string { return seqname.Format(firstSeq, segmentSuffix) }

// parseSegmentName returns the first sequence number a segment's name
// claims, and false if name is not a segment name.
func parseSegmentName(name string) (uint64, bool) { return seqname.Parse(name, segmentSuffix) }

// segmentHeader is the decoded segment header.
type segmentHeader struct {
	version  uint32
	firstSeq uint64
}

func encodeHeader(firstSeq uint64) []byte {
	b := make([]byte, headerSize)
	copy(b[0:8], segmentMagic)
	binary.LittleEndian.PutUint32(b[8:12], formatVersion)
	// b[12:16]: flags, zero in version 1.
	binary.LittleEndian.PutUint64(b[16:24], firstSeq)
	// b[24:28]: reserved, zero.
	binary.LittleEndian.PutUint32(b[28:32], crc32c.Checksum(b[:28]))
	return b
}

// headerProblem says what is wrong with a segment header.
type headerProblem int

const (
	headerOK headerProblem = iota
	headerShort
	headerZero     // all zero: a create that was torn before the header landed
	headerMagic    // not a procyon WAL segment
	headerChecksum // damaged
	headerVersion  // written by a newer format
)

func decodeHeader(b []byte) (segmentHeader, headerProblem) {
	if len(b) < headerSize {
		return segmentHeader{}, headerShort
	}
	b = b[:headerSize]
	if isZero(b) {
		return segmentHeader{}, headerZero
	}
	if string(b[0:8]) != segmentMagic {
		return segmentHeader{}, headerMagic
	}
	if crc32c.Checksum(b[:28]) != binary.LittleEndian.Uint32(b[28:32]) {
		return segmentHeader{}, headerChecksum
	}
	h := segmentHeader{
		version:  binary.LittleEndian.Uint32(b[8:12]),
		firstSeq: binary.LittleEndian.Uint64(b[16:24]),
	}
	if h.version > formatVersion || h.version == 0 {
		return h, headerVersion
	}
	return h, headerOK
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// appendFrame appends one frame to buf.
func appendFrame(buf []byte, typ byte, seq uint64, stream uint32, payload []byte) []byte {
	off := len(buf)
	buf = append(buf, make([]byte, frameHeaderSize)...)
	h := buf[off : off+frameHeaderSize]
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	binary.LittleEndian.PutUint32(h[16:20], stream)
	h[20] = typ
	// h[21:24]: reserved, zero.
	buf = append(buf, payload...)
	crc := crc32c.Checksum(buf[off+4:])
	binary.LittleEndian.PutUint32(buf[off:off+4], crc)
	return buf
}

// frame is a decoded frame; payload aliases the buffer it was decoded from.
type frame struct {
	typ     byte
	seq     uint64
	stream  uint32
	payload []byte
}

// frameProblem says why bytes do not decode as a frame.
type frameProblem int

const (
	frameOK        frameProblem = iota
	frameShort                  // fewer bytes than the frame needs: torn, or still being written
	frameZero                   // a zero-filled header: preallocated or torn space
	frameBadLength              // length field beyond the format's bound
	frameBadHeader              // unknown type or non-zero reserved bytes
	frameChecksum               // checksum mismatch
)

func (p frameProblem) String() string {
	switch p {
	case frameOK:
		return "ok"
	case frameShort:
		return "truncated record"
	case frameZero:
		return "zeroed record header"
	case frameBadLength:
		return "bad record length"
	case frameBadHeader:
		return "bad record header"
	case frameChecksum:
		return "checksum mismatch"
	}
	return "unknown problem"
}

// decodeFrame decodes the frame at the start of b. On success it also
// returns the frame's total size.
func decodeFrame(b []byte) (frame, int, frameProblem) {
	if len(b) < frameHeaderSize {
		if isZero(b) {
			return frame{}, 0, frameZero
		}
		return frame{}, 0, frameShort
	}
	h := b[:frameHeaderSize]
	length := binary.LittleEndian.Uint32(h[4:8])
	typ := h[20]
	if typ == 0 && isZero(h) {
		return frame{}, 0, frameZero
	}
	if (typ != typeData && typ != typeTrailer) || h[21] != 0 || h[22] != 0 || h[23] != 0 {
		return frame{}, 0, frameBadHeader
	}
	if length > maxFrameLen {
		return frame{}, 0, frameBadLength
	}
	n := frameHeaderSize + int(length)
	if len(b) < n {
		return frame{}, 0, frameShort
	}
	if crc32c.Checksum(b[4:n]) != binary.LittleEndian.Uint32(h[0:4]) {
		return frame{}, 0, frameChecksum
	}
	return frame{
		typ:     typ,
		seq:     binary.LittleEndian.Uint64(h[8:16]),
		stream:  binary.LittleEndian.Uint32(h[16:20]),
		payload: b[frameHeaderSize:n],
	}, n, frameOK
}

// The trailer's payload: the segment's last data sequence number (its first
// minus one when it holds none) and its number of data records.
const trailerPayloadSize = 16

func encodeTrailer(lastSeq, count uint64) []byte {
	b := make([]byte, trailerPayloadSize)
	binary.LittleEndian.PutUint64(b[0:8], lastSeq)
	binary.LittleEndian.PutUint64(b[8:16], count)
	return b
}

func decodeTrailer(p []byte) (lastSeq, count uint64, ok bool) {
	if len(p) != trailerPayloadSize {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(p[0:8]), binary.LittleEndian.Uint64(p[8:16]), true
}
