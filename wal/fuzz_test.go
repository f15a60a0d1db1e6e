package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// validSegment returns a segment starting at firstSeq with the given
// records, sealed or not.
func validSegment(firstSeq uint64, recs [][]byte, sealed bool) []byte {
	b := encodeHeader(firstSeq)
	for i, r := range recs {
		b = appendFrame(b, typeData, firstSeq+uint64(i), uint32(i%3), r)
	}
	if sealed {
		last := firstSeq + uint64(len(recs)) - 1
		b = appendFrame(b, typeTrailer, last, 0, encodeTrailer(last, uint64(len(recs))))
	}
	return b
}

func fuzzSeeds() [][]byte {
	recs := [][]byte{[]byte("alpha"), []byte(""), bytes.Repeat([]byte("z"), 300), []byte("omega")}
	good := validSegment(1, recs, false)
	sealed := validSegment(1, recs, true)
	flipped := bytes.Clone(good)
	flipped[headerSize+30] ^= 1
	return [][]byte{
		good, sealed, flipped,
		good[:len(good)-3],
		good[:headerSize],
		append(bytes.Clone(good), make([]byte, 100)...),
		append(bytes.Clone(sealed), []byte("trailing garbage")...),
		encodeHeaderVersion(1, 9),
		{},
	}
}

// FuzzOpenSegment feeds arbitrary bytes to the log as its only segment.
// Open must never panic; it either fails with ErrCorrupt or ErrVersion, or
// recovers a log whose every record is a whole, checksummed frame that was
// in the input at the place the scan found it.
func FuzzOpenSegment(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		if err := fs.MkdirAll("/log"); err != nil {
			t.Fatal(err)
		}
		if err := fs.WriteFile("/log/"+segmentName(1), data); err != nil {
			t.Fatal(err)
		}
		var frames []DumpFrame
		if _, err := Dump(fs, "/log", CheckOptions{}, func(d DumpFrame) { frames = append(frames, d) }); err != nil {
			t.Fatalf("Dump: %v", err)
		}
		okFrames := map[uint64][]byte{}
		for _, d := range frames {
			if d.Type != "data" {
				continue
			}
			end := d.Offset + frameHeaderSize + int64(d.Size)
			if end > int64(len(data)) {
				t.Fatalf("frame at %d runs past the input", d.Offset)
			}
			raw := data[d.Offset:end]
			fr, n, p := decodeFrame(raw)
			if p != frameOK || n != len(raw) {
				t.Fatalf("Dump reported a frame at %d that does not decode: %v", d.Offset, p)
			}
			okFrames[fr.seq] = fr.payload
		}
		w, err := Open("/log", Options{FS: fs, Logger: quiet()})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("Open: unexpected error %v", err)
			}
			return
		}
		defer w.Close()
		r, err := w.NewReader(1)
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			want, ok := okFrames[rec.Seq]
			if !ok || !bytes.Equal(want, rec.Data) {
				t.Fatalf("recovered record %d is not a checked frame of the input", rec.Seq)
			}
		}
	})
}

// FuzzDecodeFrame: decodeFrame never panics, and whatever it accepts
// re-encodes to the same bytes (so its checksum holds).
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, typeData, 7, 1, []byte("hello")))
	f.Add(appendFrame(nil, typeTrailer, 7, 0, encodeTrailer(7, 3)))
	f.Add(make([]byte, 30))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, p := decodeFrame(b)
		if p != frameOK {
			return
		}
		if again := appendFrame(nil, fr.typ, fr.seq, fr.stream, fr.payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("accepted a frame that does not re-encode to its bytes")
		}
	})
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus:
// PROCYON_WRITE_CORPUS=1 go test ./wal -run TestWriteFuzzCorpus
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PROCYON_WRITE_CORPUS") == "" {
		t.Skip("set PROCYON_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpenSegment")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds() {
		content := "go test fuzz v1\n[]byte(" + quoteGo(s) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed"+string(rune('a'+i))), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func quoteGo(b []byte) string {
	var buf bytes.Buffer
	buf.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			buf.WriteByte('\\')
			buf.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			buf.WriteByte(c)
		default:
			buf.WriteString(`\x`)
			buf.WriteByte("0123456789abcdef"[c>>4])
			buf.WriteByte("0123456789abcdef"[c&15])
		}
	}
	buf.WriteByte('"')
	return buf.String()
}
