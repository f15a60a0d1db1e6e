package wal

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/procyon-dev/procyon/vfs"
)

// BenchmarkAppend measures durable appends on the OS file system over
// record size × concurrent writers × records per append call. One op is one
// record made durable.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		for _, writers := range []int{1, 16, 64} {
			for _, batch := range []int{1, 16} {
				b.Run(fmt.Sprintf("size=%d/writers=%d/batch=%d", size, writers, batch), func(b *testing.B) {
					benchAppend(b, size, writers, batch)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, size, writers, batch int) {
	w, err := Open(b.TempDir(), Options{Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	entries := make([]Entry, batch)
	for i := range entries {
		entries[i].Data = make([]byte, size)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + writers - 1) / writers
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < per; n += batch {
				var err error
				if batch == 1 {
					_, err = w.Append(Entry{Data: entries[0].Data})
				} else {
					_, err = w.Append(entries...)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := w.Stats()
	if st.Syncs > 0 {
		b.ReportMetric(st.RecordsPerSync, "records/sync")
	}
}

// BenchmarkAppendAsync measures non-waiting appends with one Sync per 4096.
func BenchmarkAppendAsync(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			w, err := Open(b.TempDir(), Options{Logger: quiet()})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			rec := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := range b.N {
				if _, err := w.AppendAsync(Entry{Data: rec}); err != nil {
					b.Fatal(err)
				}
				if i%4096 == 4095 {
					if err := w.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkReplay measures reading back records with checksums verified
// (Open's full check of the log is outside the timer).
func BenchmarkReplay(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			dir := b.TempDir()
			w, err := Open(dir, Options{Logger: quiet(), FS: vfs.OS})
			if err != nil {
				b.Fatal(err)
			}
			const n = 100_000
			entries := make([]Entry, 1000)
			for i := range entries {
				entries[i].Data = make([]byte, size)
			}
			for i := 0; i < n; i += len(entries) {
				if _, err := w.AppendAsync(entries...); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ResetTimer()
			read := 0
			for read < b.N {
				r, err := w.NewReader(1)
				if err != nil {
					b.Fatal(err)
				}
				for read < b.N {
					if _, err := r.Next(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					read++
				}
				r.Close()
			}
			b.StopTimer()
			w.Close()
		})
	}
}
