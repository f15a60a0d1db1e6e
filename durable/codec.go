package durable

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"unsafe"
)

// Codec turns a collection's values into bytes and back. The store keeps
// values encoded: Put encodes at once (so a caller's later change to v is
// never seen), and every Get decodes a fresh value (so a reader never sees
// a later change through a value it holds).
//
// Encode must return a slice the codec does not keep or change afterwards.
// Decode must not keep data nor return a value that aliases it.
type Codec[V any] interface {
	Encode(v V) ([]byte, error)
	Decode(data []byte) (V, error)
}

// JSON returns a codec that encodes values with encoding/json. It is the
// default for value types other than []byte and string.
func JSON[V any]() Codec[V] { return jsonCodec[V]{} }

type jsonCodec[V any] struct{}

func (jsonCodec[V]) Encode(v V) ([]byte, error) { return json.Marshal(v) }
func (jsonCodec[V]) Decode(data []byte) (V, error) {
	var v V
	err := json.Unmarshal(data, &v)
	return v, err
}

// Bytes returns the codec for []byte values: the bytes themselves, copied
// both ways. It is the default for []byte. It never fails: reads of its
// collections have no decoding error to check.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

func (bytesCodec) Encode(v []byte) ([]byte, error) { return bytes.Clone(v), nil }
func (bytesCodec) Decode(data []byte) ([]byte, error) {
	return append(make([]byte, 0, len(data)), data...), nil
}

// String returns the codec for string values. It is the default for
// string. It never fails: reads of its collections have no decoding error
// to check.
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

func (stringCodec) Encode(v string) ([]byte, error)    { return []byte(v), nil }
func (stringCodec) Decode(data []byte) (string, error) { return string(data), nil }

// CodecFunc makes a codec of two functions: a hand-written encoding, or
// protobuf's:
//
//	durable.CodecFunc(
//		func(m *pb.Region) ([]byte, error) { return proto.Marshal(m) },
//		func(b []byte) (*pb.Region, error) { m := new(pb.Region); return m, proto.Unmarshal(b, m) })
//
// The functions must follow the rules of Codec.
func CodecFunc[V any](encode func(V) ([]byte, error), decode func([]byte) (V, error)) Codec[V] {
	return funcCodec[V]{encode, decode}
}

type funcCodec[V any] struct {
	enc func(V) ([]byte, error)
	dec func([]byte) (V, error)
}

func (c funcCodec[V]) Encode(v V) ([]byte, error)    { return c.enc(v) }
func (c funcCodec[V]) Decode(data []byte) (V, error) { return c.dec(data) }

// defaultCodec returns the codec used when NewCollection is given nil.
func defaultCodec[V any]() Codec[V] {
	var zero V
	switch any(zero).(type) {
	case []byte:
		return any(bytesCodec{}).(Codec[V])
	case string:
		return any(stringCodec{}).(Codec[V])
	}
	return jsonCodec[V]{}
}

// keyCodec encodes keys for records and snapshots. The tree orders items by
// K itself, so the order of encoded keys does not matter; the encoding only
// has to round-trip. Part of the on-disk format (see doc.go): never change
// it.
//
//	string kinds:   the bytes of the string
//	signed ints:    zig-zag varint (encoding/binary AppendVarint)
//	unsigned ints:  varint (encoding/binary AppendUvarint)
//	floats:         8 bytes, little-endian IEEE-754 bits (float32 widened)
type keyCodec[K cmp.Ordered] struct {
	kind reflect.Kind
	bits int // size of K in bits, for range checks of integers
}

func newKeyCodec[K cmp.Ordered]() keyCodec[K] {
	t := reflect.TypeFor[K]()
	c := keyCodec[K]{kind: t.Kind()}
	if c.kind != reflect.String {
		c.bits = t.Bits()
	}
	return c
}

// The conversions below reinterpret K as its underlying type. They are
// sound because cmp.Ordered only admits types whose underlying type is
// the one the kind names (~int, ~string, ...), which share its layout.

func (c keyCodec[K]) append(dst []byte, k K) []byte {
	p := unsafe.Pointer(&k)
	switch c.kind {
	case reflect.String:
		return append(dst, *(*string)(p)...)
	case reflect.Int:
		return binary.AppendVarint(dst, int64(*(*int)(p)))
	case reflect.Int8:
		return binary.AppendVarint(dst, int64(*(*int8)(p)))
	case reflect.Int16:
		return binary.AppendVarint(dst, int64(*(*int16)(p)))
	case reflect.Int32:
		return binary.AppendVarint(dst, int64(*(*int32)(p)))
	case reflect.Int64:
		return binary.AppendVarint(dst, *(*int64)(p))
	case reflect.Uint:
		return binary.AppendUvarint(dst, uint64(*(*uint)(p)))
	case reflect.Uint8:
		return binary.AppendUvarint(dst, uint64(*(*uint8)(p)))
	case reflect.Uint16:
		return binary.AppendUvarint(dst, uint64(*(*uint16)(p)))
	case reflect.Uint32:
		return binary.AppendUvarint(dst, uint64(*(*uint32)(p)))
	case reflect.Uint64:
		return binary.AppendUvarint(dst, *(*uint64)(p))
	case reflect.Uintptr:
		return binary.AppendUvarint(dst, uint64(*(*uintptr)(p)))
	case reflect.Float32:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(*(*float32)(p))))
	case reflect.Float64:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(*(*float64)(p)))
	}
	panic(fmt.Sprintf("durable: unsupported key kind %v", c.kind))
}

var errKey = errors.New("malformed key")

func (c keyCodec[K]) decode(b []byte) (K, error) {
	var k K
	p := unsafe.Pointer(&k)
	switch c.kind {
	case reflect.String:
		*(*string)(p) = string(b)
		return k, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v, n := binary.Varint(b)
		if n <= 0 || n != len(b) {
			return k, errKey
		}
		if c.bits < 64 && (v < -1<<(c.bits-1) || v >= 1<<(c.bits-1)) {
			return k, fmt.Errorf("%w: %d out of range for %d bits", errKey, v, c.bits)
		}
		switch c.kind {
		case reflect.Int:
			*(*int)(p) = int(v)
		case reflect.Int8:
			*(*int8)(p) = int8(v)
		case reflect.Int16:
			*(*int16)(p) = int16(v)
		case reflect.Int32:
			*(*int32)(p) = int32(v)
		default:
			*(*int64)(p) = v
		}
		return k, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v, n := binary.Uvarint(b)
		if n <= 0 || n != len(b) {
			return k, errKey
		}
		if c.bits < 64 && v >= 1<<c.bits {
			return k, fmt.Errorf("%w: %d out of range for %d bits", errKey, v, c.bits)
		}
		switch c.kind {
		case reflect.Uint:
			*(*uint)(p) = uint(v)
		case reflect.Uint8:
			*(*uint8)(p) = uint8(v)
		case reflect.Uint16:
			*(*uint16)(p) = uint16(v)
		case reflect.Uint32:
			*(*uint32)(p) = uint32(v)
		case reflect.Uintptr:
			*(*uintptr)(p) = uintptr(v)
		default:
			*(*uint64)(p) = v
		}
		return k, nil
	case reflect.Float32, reflect.Float64:
		if len(b) != 8 {
			return k, errKey
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(b))
		if c.kind == reflect.Float32 {
			*(*float32)(p) = float32(f)
		} else {
			*(*float64)(p) = f
		}
		return k, nil
	}
	panic(fmt.Sprintf("durable: unsupported key kind %v", c.kind))
}
