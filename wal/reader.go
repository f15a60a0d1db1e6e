package wal

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/procyon-dev/procyon/vfs"
)

// Record is a record read back from the log. Data is valid until the
// Reader's next call; copy it to keep it.
type Record struct {
	Seq    uint64
	Stream uint32
	Data   []byte
}

// Reader reads records in sequence order from a live log. It returns only
// durable records, follows the log across segment rolls, and keeps working
// when segments it has finished with are deleted. A Reader is not safe for
// concurrent use; open one per goroutine.
type Reader struct {
	w    *WAL
	next uint64 // the next seq to return

	seg *segment
	f   vfs.File
	sc  *scanner
	err error // sticky
}

// NewReader returns a reader positioned at sequence number from: its first
// record is the one numbered from (or the first appended later, if from is
// past the end). It fails with ErrTruncated if from was deleted.
func (w *WAL) NewReader(from uint64) (*Reader, error) {
	if from == 0 {
		from = 1
	}
	w.mu.Lock()
	first := w.mu.segments[0].firstSeq
	w.mu.Unlock()
	if from < first {
		return nil, fmt.Errorf("%w: asked for %d, the log starts at %d", ErrTruncated, from, first)
	}
	return &Reader{w: w, next: from}, nil
}

// Next returns the next durable record, or io.EOF when the reader has
// caught up with the durable end of the log (more may come: call Next again
// later, or use Follow to wait).
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	for {
		if r.f == nil {
			ok, err := r.openSegment()
			if err != nil {
				r.err = err
				return Record{}, err
			}
			if !ok {
				return Record{}, io.EOF
			}
		}
		// Read what is durable; a sealed segment's size is final.
		sealed := r.seg.sealed.Load()
		r.sc.limit = r.seg.durableSize.Load()
		off := r.sc.offset()
		fr, p, atEnd, err := r.sc.next()
		if err != nil {
			r.err = fmt.Errorf("wal: read segment %s at offset %d: %w", r.seg.name, off, err)
			return Record{}, r.err
		}
		if atEnd {
			if sealed {
				r.closeSegment()
				continue
			}
			return Record{}, io.EOF
		}
		if p != frameOK {
			r.err = corruptf(r.seg.name, off, "%s (in durable data)", p)
			return Record{}, r.err
		}
		if fr.typ != typeData {
			continue
		}
		if fr.seq < r.next {
			continue // seeking to the first record asked for
		}
		if fr.seq != r.next {
			r.err = corruptf(r.seg.name, off, "record has sequence %d, expected %d", fr.seq, r.next)
			return Record{}, r.err
		}
		r.next++
		return Record{Seq: fr.seq, Stream: fr.stream, Data: fr.payload}, nil
	}
}

// Follow is Next that waits, until ctx is done, for the next record to
// become durable instead of returning io.EOF. It returns ErrClosed once the
// log is closed and the reader has read everything durable.
func (r *Reader) Follow(ctx context.Context) (Record, error) {
	for {
		r.w.mu.Lock()
		notify := r.w.mu.notify
		werr := r.w.mu.err
		r.w.mu.Unlock()
		rec, err := r.Next()
		if err != io.EOF {
			return rec, err
		}
		if werr != nil {
			return Record{}, werr
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

// openSegment opens the segment holding r.next. It returns false if that
// record is not durable yet.
func (r *Reader) openSegment() (bool, error) {
	w := r.w
	if r.next > w.durableSeq.Load() {
		// Nothing to read yet. (Past the end of a sealed last segment,
		// which a read-only log may have, there is no next one to open.)
		return false, nil
	}
	w.mu.Lock()
	segs := w.mu.segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].firstSeq > r.next }) - 1
	if i < 0 {
		first := segs[0].firstSeq
		w.mu.Unlock()
		return false, fmt.Errorf("%w: reader at %d, the log now starts at %d", ErrTruncated, r.next, first)
	}
	seg := segs[i]
	w.mu.Unlock()
	f, err := w.fs.Open(filepath.Join(w.dir, seg.name))
	if err != nil {
		return false, fmt.Errorf("wal: open segment %s: %w", seg.name, err)
	}
	r.seg, r.f = seg, f
	r.sc = newScanner(f, headerSize, seg.durableSize.Load())
	return true, nil
}

func (r *Reader) closeSegment() {
	if r.f != nil {
		r.f.Close()
	}
	r.seg, r.f, r.sc = nil, nil, nil
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	r.closeSegment()
	if r.err == nil {
		r.err = ErrClosed
	}
	return nil
}
