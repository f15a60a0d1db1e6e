// Package crc32c is the checksum of procyon's on-disk formats (the log's
// frames and segment headers, the store's snapshots): CRC-32C
// (Castagnoli), which Go computes with the CPU's CRC instructions on amd64
// and arm64. Part of those formats: never change it.
package crc32c

import "hash/crc32"

var table = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, table) }

// Update returns the CRC-32C of the bytes summed into crc followed by b;
// Update(0, b) == Checksum(b).
func Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, table, b) }
