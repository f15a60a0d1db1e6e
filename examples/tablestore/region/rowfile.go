package region

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/internal/seqname"
)

// Part of the on-disk format of row files: never change.
const (
	rowMagic      = "PRCYROWS"
	rowVersion    = 1
	rowHeaderSize = 16 // magic, version, reserved
	rowFooterSize = 28 // count, from, seq, CRC
	rowFilePrefix = "f-"
	rowFileSuffix = ".rows"
)

// Row is one row: a non-empty key and its value.
type Row struct{ Key, Value []byte }

// rowFile is a row file loaded into memory. It holds the latest value, as
// of seq, of every row written in the sequence range (from, seq]. Its
// rows are never changed.
type rowFile struct {
	name      string // base name, f-<seq>.rows
	from, seq uint64
	size      int64
	rows      []Row // sorted by key, keys unique
}

// rowFileName returns the name of the row file whose last write is seq.
func rowFileName(seq uint64) string { return rowFilePrefix + seqname.Format(seq, rowFileSuffix) }

// parseRowFileName returns the seq a row file's name claims.
func parseRowFileName(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, rowFilePrefix)
	if !ok {
		return 0, false
	}
	return seqname.Parse(rest, rowFileSuffix)
}

// encodeRowFile returns the bytes of a row file holding rows (sorted by
// key, keys unique) for the range (from, seq].
func encodeRowFile(rows []Row, from, seq uint64) []byte {
	n := rowHeaderSize + rowFooterSize
	for _, r := range rows {
		n += 2*binary.MaxVarintLen32 + len(r.Key) + len(r.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, rowMagic...)
	b = binary.LittleEndian.AppendUint32(b, rowVersion)
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range rows {
		b = binary.AppendUvarint(b, uint64(len(r.Key)))
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Key...)
		b = append(b, r.Value...)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(rows)))
	b = binary.LittleEndian.AppendUint64(b, from)
	b = binary.LittleEndian.AppendUint64(b, seq)
	return binary.LittleEndian.AppendUint32(b, crc32c.Checksum(b))
}

// decodeRowFile checks and parses the bytes of the row file at path. The
// rows it returns share data's memory.
func decodeRowFile(path string, data []byte) (*rowFile, error) {
	size := int64(len(data))
	if size < rowHeaderSize+rowFooterSize {
		return nil, corruptf(path, 0, "%d bytes is too short for a row file", size)
	}
	if string(data[:8]) != rowMagic {
		return nil, corruptf(path, 0, "bad magic %q", data[:8])
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != rowVersion {
		return nil, corruptf(path, 8, "unsupported row file version %d", v)
	}
	crcAt := size - 4
	if got, want := crc32c.Checksum(data[:crcAt]), binary.LittleEndian.Uint32(data[crcAt:]); got != want {
		return nil, corruptf(path, crcAt, "checksum mismatch: stored %08x, computed %08x", want, got)
	}
	footer := data[size-rowFooterSize:]
	count := binary.LittleEndian.Uint64(footer)
	f := &rowFile{
		from: binary.LittleEndian.Uint64(footer[8:]),
		seq:  binary.LittleEndian.Uint64(footer[16:]),
		size: size,
	}
	if f.from > f.seq {
		return nil, corruptf(path, size-rowFooterSize, "range (%d, %d] is empty", f.from, f.seq)
	}
	rows, err := decodeRecords(path, data[:size-rowFooterSize])
	if err != nil {
		return nil, err
	}
	if uint64(len(rows)) != count {
		return nil, corruptf(path, size-rowFooterSize, "footer counts %d rows, the file holds %d", count, len(rows))
	}
	f.rows = rows
	return f, nil
}

// decodeRecords parses the records of a row file, data being the file up
// to its footer.
func decodeRecords(path string, data []byte) ([]Row, error) {
	var rows []Row
	for off := rowHeaderSize; off < len(data); {
		start := int64(off)
		klen, n1 := binary.Uvarint(data[off:])
		if n1 <= 0 {
			return nil, corruptf(path, start, "bad key length")
		}
		vlen, n2 := binary.Uvarint(data[off+n1:])
		if n2 <= 0 {
			return nil, corruptf(path, start, "bad value length")
		}
		off += n1 + n2
		if klen == 0 || klen > uint64(len(data)-off) || vlen > uint64(len(data)-off)-klen {
			return nil, corruptf(path, start, "record of key length %d, value length %d does not fit", klen, vlen)
		}
		r := Row{Key: data[off : off+int(klen) : off+int(klen)], Value: data[off+int(klen) : off+int(klen+vlen) : off+int(klen+vlen)]}
		if len(rows) > 0 && bytes.Compare(rows[len(rows)-1].Key, r.Key) >= 0 {
			return nil, corruptf(path, start, "key %q out of order", r.Key)
		}
		rows = append(rows, r)
		off += int(klen + vlen)
	}
	return rows, nil
}
