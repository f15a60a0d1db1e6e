package wal

import (
	"errors"
	"io"

	"github.com/procyon-dev/procyon/vfs"
)

// scanner reads the frames of one segment file in order, with large reads
// into a reusable buffer. It never reads at or past limit, which callers
// move forward as more of the file becomes durable; so a reader of the live
// log never looks at bytes still being written.
type scanner struct {
	f     vfs.File
	limit int64  // read nothing at or past this file offset
	buf   []byte // buf[r:w] holds file bytes [pos, pos+w-r)
	r, w  int
	pos   int64 // file offset of buf[r]
}

const scanChunk = 1 << 20

func newScanner(f vfs.File, start, limit int64) *scanner {
	return &scanner{f: f, pos: start, limit: limit, buf: make([]byte, scanChunk)}
}

// newFileScanner is newScanner for a file whose size is final: its buffer
// is no larger than the file.
func newFileScanner(f vfs.File, start, size int64) *scanner {
	return &scanner{f: f, pos: start, limit: size, buf: make([]byte, max(min(scanChunk, size-start), frameHeaderSize))}
}

// offset is the file offset of the next frame.
func (s *scanner) offset() int64 { return s.pos }

// fill tries to make n bytes available in buf[r:w]. It reads no further
// than limit; if the limit or the end of the file comes first, buf holds
// what there is and no error is returned.
func (s *scanner) fill(n int) error {
	if s.w-s.r >= n {
		return nil
	}
	if s.r > 0 {
		copy(s.buf, s.buf[s.r:s.w])
		s.w -= s.r
		s.r = 0
	}
	if n > len(s.buf) {
		nb := make([]byte, max(n, 2*len(s.buf)))
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	for s.w < n {
		end := s.pos + int64(s.w)
		want := min(int64(len(s.buf)-s.w), s.limit-end)
		if want <= 0 {
			return nil
		}
		m, err := s.f.ReadAt(s.buf[s.w:s.w+int(want)], end)
		s.w += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The file ends before limit: its end is the limit.
				s.limit = end + int64(m)
				return nil
			}
			return err
		}
	}
	return nil
}

// next decodes the next frame. At the limit it returns atEnd. Bytes before
// the limit that do not decode return their problem (frameShort when the
// limit or the end of the file cuts a frame off). The returned payload is
// valid until the next call.
func (s *scanner) next() (f frame, problem frameProblem, atEnd bool, err error) {
	if s.pos >= s.limit {
		return frame{}, frameOK, true, nil
	}
	if err := s.fill(frameHeaderSize); err != nil {
		return frame{}, frameOK, false, err
	}
	if s.w == s.r {
		return frame{}, frameOK, true, nil
	}
	fr, n, p := decodeFrame(s.buf[s.r:s.w])
	if p == frameShort && s.w-s.r >= frameHeaderSize {
		// The header is whole and plausible; fetch the payload, unless the
		// length runs past the limit (a torn or damaged length must not
		// make us allocate for it).
		need := frameHeaderSize + int(le32(s.buf[s.r+4:]))
		if s.pos+int64(need) > s.limit {
			return frame{}, frameShort, false, nil
		}
		if err := s.fill(need); err != nil {
			return frame{}, frameOK, false, err
		}
		fr, n, p = decodeFrame(s.buf[s.r:s.w])
	}
	if p != frameOK {
		return frame{}, p, false, nil
	}
	s.r += n
	s.pos += int64(n)
	return fr, frameOK, false, nil
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
