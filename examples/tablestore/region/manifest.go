package region

import (
	"encoding/binary"
	"fmt"
	"path/filepath"

	"github.com/procyon-dev/procyon/internal/crc32c"
	"github.com/procyon-dev/procyon/vfs"
)

// Part of the on-disk format of manifests: never change.
const (
	manifestMagic   = "PRCYSNAP"
	manifestVersion = 1
	manifestName    = "MANIFEST"
)

// Manifest describes a region snapshot: the region it was taken of, the
// last row write it includes, its row count and its files.
type Manifest struct {
	Region string    // base name of the region's directory
	Seq    uint64    // the region's last row write included
	Rows   int64     // distinct rows
	Files  []FileRef // the snapshot's row files, newest first
}

// FileRef names one file of a snapshot with its size and its checksum:
// the CRC-32C of its bytes before its own checksum field (the value of
// that field), so that a different intact file does not match.
type FileRef struct {
	Name string
	Size int64
	CRC  uint32
}

func (m *Manifest) encode() []byte {
	b := append([]byte(manifestMagic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[8:], manifestVersion)
	b = appendString(b, m.Region)
	b = binary.LittleEndian.AppendUint64(b, m.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Rows))
	b = binary.AppendUvarint(b, uint64(len(m.Files)))
	for _, f := range m.Files {
		b = appendString(b, f.Name)
		b = binary.LittleEndian.AppendUint64(b, uint64(f.Size))
		b = binary.LittleEndian.AppendUint32(b, f.CRC)
	}
	return binary.LittleEndian.AppendUint32(b, crc32c.Checksum(b))
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// manifestDecoder reads a manifest's fields, remembering the first error
// with its offset.
type manifestDecoder struct {
	path string
	data []byte
	off  int
	err  error
}

func (d *manifestDecoder) fail(what string) {
	if d.err == nil {
		d.err = corruptf(d.path, int64(d.off), "truncated or malformed %s", what)
	}
}

func (d *manifestDecoder) u64(what string) uint64 {
	if d.err != nil || len(d.data)-d.off < 8 {
		d.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.data[d.off:])
	d.off += 8
	return v
}

func (d *manifestDecoder) u32(what string) uint32 {
	if d.err != nil || len(d.data)-d.off < 4 {
		d.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint32(d.data[d.off:])
	d.off += 4
	return v
}

func (d *manifestDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

func (d *manifestDecoder) str(what string) string {
	start := d.off
	n := d.uvarint(what)
	if d.err == nil && n > uint64(len(d.data)-d.off) {
		d.off = start
		d.fail(what)
	}
	if d.err != nil {
		return ""
	}
	s := string(d.data[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

func decodeManifest(path string, data []byte) (Manifest, error) {
	var m Manifest
	if len(data) < 12+4 || string(data[:8]) != manifestMagic {
		return m, corruptf(path, 0, "not a region manifest")
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != manifestVersion {
		return m, corruptf(path, 8, "unsupported manifest version %d", v)
	}
	crcAt := len(data) - 4
	if got, want := crc32c.Checksum(data[:crcAt]), binary.LittleEndian.Uint32(data[crcAt:]); got != want {
		return m, corruptf(path, int64(crcAt), "checksum mismatch: stored %08x, computed %08x", want, got)
	}
	d := &manifestDecoder{path: path, data: data[:crcAt], off: 12}
	m.Region = d.str("region name")
	m.Seq = d.u64("seq")
	m.Rows = int64(d.u64("row count"))
	n := d.uvarint("file count")
	for i := uint64(0); d.err == nil && i < n; i++ {
		at := d.off
		f := FileRef{Name: d.str("file name"), Size: int64(d.u64("file size")), CRC: d.u32("file CRC")}
		if _, ok := parseRowFileName(f.Name); d.err == nil && !ok {
			d.err = corruptf(path, int64(at), "%q is not a row file name", f.Name)
		}
		m.Files = append(m.Files, f)
	}
	if d.err == nil && d.off != len(d.data) {
		d.err = corruptf(path, int64(d.off), "%d bytes after the last file", len(d.data)-d.off)
	}
	if d.err != nil {
		return Manifest{}, d.err
	}
	return m, nil
}

// ReadManifest reads and checks the manifest of the region snapshot in
// dir. It does not look at the files (VerifyManifest does).
func ReadManifest(fsys vfs.FS, dir string) (Manifest, error) {
	path := filepath.Join(dir, manifestName)
	data, err := readFile(fsys, path)
	if err != nil {
		return Manifest{}, fmt.Errorf("region: read manifest: %w", err)
	}
	return decodeManifest(path, data)
}
