package region

import (
	"encoding/binary"
	"errors"
)

// A Put batch is one log record (part of the on-disk format: never
// change):
//
//	u64 seq | uvarint n | n × (uvarint key length | key | uvarint value length | value)
//
// seq is the region's sequence number of the batch, not the log's: a
// region cloned from a snapshot starts a new log but goes on from the
// snapshot's seq.

var errBadRecord = errors.New("malformed put record")

// encodePut returns the record of rows with a zero seq; setPutSeq fills it
// in once the seq is known.
func encodePut(rows []Row) []byte {
	n := 8 + binary.MaxVarintLen64
	for _, r := range rows {
		n += 2*binary.MaxVarintLen32 + len(r.Key) + len(r.Value)
	}
	b := make([]byte, 8, n)
	b = binary.AppendUvarint(b, uint64(len(rows)))
	for _, r := range rows {
		b = binary.AppendUvarint(b, uint64(len(r.Key)))
		b = append(b, r.Key...)
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

func setPutSeq(rec []byte, seq uint64) { binary.LittleEndian.PutUint64(rec, seq) }

// decodePut parses a put record. Rows share rec's memory.
func decodePut(rec []byte) (seq uint64, rows []Row, err error) {
	if len(rec) < 8 {
		return 0, nil, errBadRecord
	}
	seq = binary.LittleEndian.Uint64(rec)
	b := rec[8:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return 0, nil, errBadRecord
	}
	b = b[k:]
	next := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(l) : k+int(l)]
		b = b[k+int(l):]
		return v, true
	}
	rows = make([]Row, 0, n)
	for range n {
		key, ok1 := next()
		val, ok2 := next()
		if !ok1 || !ok2 || len(key) == 0 {
			return 0, nil, errBadRecord
		}
		rows = append(rows, Row{Key: key, Value: val})
	}
	if len(b) != 0 || seq == 0 {
		return 0, nil, errBadRecord
	}
	return seq, rows, nil
}
