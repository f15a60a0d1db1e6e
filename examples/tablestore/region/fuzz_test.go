package region

import (
	"bytes"
	"slices"
	"testing"
)

// The decoders of bytes read from disk must reject anything they did not
// write with an error, never panic, and accept what they wrote.

func FuzzDecodeRowFile(f *testing.F) {
	f.Add(encodeRowFile([]Row{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b")}}, 3, 7))
	f.Add(encodeRowFile(nil, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := decodeRowFile("f", data)
		if err != nil {
			return
		}
		if again := encodeRowFile(rf.rows, rf.from, rf.seq); !bytes.Equal(again, data) {
			t.Fatalf("decoded %d rows that encode differently", len(rf.rows))
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	m := Manifest{Region: "r1", Seq: 9, Rows: 2, Files: []FileRef{{Name: rowFileName(9), Size: 80, CRC: 1}}}
	f.Add(m.encode())
	f.Add((&Manifest{}).encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeManifest("MANIFEST", data)
		if err != nil {
			return
		}
		if again := m.encode(); !bytes.Equal(again, data) {
			t.Fatalf("decoded %+v, which encodes differently", m)
		}
	})
}

func FuzzDecodePut(f *testing.F) {
	rec := encodePut([]Row{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("k2")}})
	setPutSeq(rec, 5)
	f.Add(rec)
	f.Fuzz(func(t *testing.T, data []byte) {
		seq, rows, err := decodePut(data)
		if err != nil {
			return
		}
		// Overlong varints decode too: compare what they mean.
		again := encodePut(rows)
		setPutSeq(again, seq)
		seq2, rows2, err := decodePut(again)
		if err != nil || seq2 != seq || !slices.EqualFunc(rows, rows2, func(a, b Row) bool {
			return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
		}) {
			t.Fatalf("decoded seq %d, %d rows; re-encoded they decode as %d, %d rows, %v", seq, len(rows), seq2, len(rows2), err)
		}
	})
}
