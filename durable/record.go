package durable

import (
	"encoding/binary"
	"fmt"
)

// The constants in this file and in snapshot.go are part of the on-disk
// format: never change them. A new format gets a new version number, and
// readers keep decoding the old ones. See doc.go for the layouts.
const (
	recordKindTx  byte = 'T' // a transaction record
	recordVersion byte = 1   // the record version written, and the newest read

	opPut    byte = 1
	opDelete byte = 2

	// maxNameLen bounds a collection name, in records and snapshots.
	maxNameLen = 1 << 10
)

// recordDecoder walks a transaction record.
type recordDecoder struct {
	b   []byte
	off int
	seq uint64
}

func (d *recordDecoder) fail(format string, args ...any) error {
	return &CorruptionError{Seq: d.seq, Offset: int64(d.off), Reason: fmt.Sprintf(format, args...)}
}

func (d *recordDecoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		return 0, d.fail("bad %s", what)
	}
	d.off += n
	return v, nil
}

func (d *recordDecoder) bytes(what string, max uint64) ([]byte, error) {
	n, err := d.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n > max || n > uint64(len(d.b)-d.off) {
		return nil, d.fail("%s length %d exceeds the record", what, n)
	}
	b := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return b, nil
}

// applyRecord applies the transaction record rec (log sequence number seq)
// to st's trees, which the caller owns (recovery). Values are copied out of rec.
// It is the one decoding path for records; a record that fails to decode
// leaves trees partly changed, and recovery then fails as a whole.
func (s *Store) applyRecord(st *loadState, seq uint64, rec []byte) error {
	d := &recordDecoder{b: rec, seq: seq}
	if len(rec) < 2 {
		return d.fail("record of %d bytes is too short", len(rec))
	}
	if rec[0] != recordKindTx {
		return d.fail("unknown record kind %#x", rec[0])
	}
	if rec[1] > recordVersion {
		return fmt.Errorf("%w: log record %d has version %d, this program reads up to %d", ErrVersion, seq, rec[1], recordVersion)
	}
	if rec[1] == 0 {
		return d.fail("record version 0")
	}
	d.off = 2
	groups, err := d.uvarint("group count")
	if err != nil {
		return err
	}
	for g := uint64(0); g < groups; g++ {
		name, err := d.bytes("collection name", maxNameLen)
		if err != nil {
			return err
		}
		id, err := s.lookup(st, string(name), fmt.Sprintf("log record %d", seq))
		if err != nil {
			return err
		}
		nops, err := d.uvarint("op count")
		if err != nil {
			return err
		}
		for i := uint64(0); i < nops; i++ {
			if d.off >= len(rec) {
				return d.fail("record ends inside collection %q", name)
			}
			kind := rec[d.off]
			d.off++
			key, err := d.bytes("key", uint64(len(rec)))
			if err != nil {
				return err
			}
			switch kind {
			case opPut:
				val, err := d.bytes("value", uint64(len(rec)))
				if err != nil {
					return err
				}
				if id < 0 {
					continue
				}
				if err := s.colls[id].loadEntry(st.trees[id], key, append([]byte(nil), val...)); err != nil {
					return d.fail("%v", err)
				}
			case opDelete:
				if id < 0 {
					continue
				}
				if err := s.colls[id].deleteEntry(st.trees[id], key); err != nil {
					return d.fail("%v", err)
				}
			default:
				return d.fail("unknown op %#x in collection %q", kind, name)
			}
		}
	}
	if d.off != len(rec) {
		return d.fail("%d bytes after the last op", len(rec)-d.off)
	}
	return nil
}
