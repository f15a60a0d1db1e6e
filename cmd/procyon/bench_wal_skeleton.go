package main

import (
	"context"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// skeletonBaseline says in bench wal's output and JSON what the skeleton
// run is.
const skeletonBaseline = "the least a group commit for blocked writers does, with no log around it: the same writers append k × (size + 24) bytes to a forming batch under a mutex and block on its done channel; one goroutine waits until all k joined, writes the batch with one pwrite over zeros written ahead, fdatasyncs and wakes them"

// skeletonLog is the structure of a group commit and nothing else: no
// framing, checksums, segments, sequence numbers or error paths. Run by
// the same writers as the log, it shows what blocking and waking them
// costs on this machine, apart from anything the log does.
type skeletonLog struct {
	f       *os.File
	writers int
	zeros   []byte

	mu       sync.Mutex
	forming  *skeletonBatch
	full     chan struct{} // capacity 1: the forming batch has every writer
	stopping chan struct{} // closed once the writers are told to stop
	off      int64         // where the next batch goes (the flusher's)
	allocEnd int64         // zeros written up to here (the flusher's)
	syncs    int64
	syncTime time.Duration
}

type skeletonBatch struct {
	buf  []byte
	n    int // writers in the batch
	done chan struct{}
	err  error
}

func newSkeletonLog(path string, writers int) (*skeletonLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &skeletonLog{f: f, writers: writers, zeros: make([]byte, rawPrealloc),
		forming: &skeletonBatch{done: make(chan struct{})}, full: make(chan struct{}, 1), stopping: make(chan struct{})}, nil
}

// append adds rec to the forming batch and waits until it is durable.
func (s *skeletonLog) append(rec []byte) error {
	s.mu.Lock()
	b := s.forming
	b.buf = append(b.buf, rec...)
	b.n++
	if b.n == s.writers {
		s.full <- struct{}{}
	}
	s.mu.Unlock()
	<-b.done
	return b.err
}

// flush runs until done is closed: it writes each batch once every writer
// joined it, or, after stopping is closed (when writers leave one by one),
// whatever has formed.
func (s *skeletonLog) flush(done <-chan struct{}) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.full:
		case <-tick.C:
			select {
			case <-s.stopping:
			default:
				continue
			}
		case <-done:
			return
		}
		s.mu.Lock()
		b := s.forming
		s.forming = &skeletonBatch{done: make(chan struct{}), buf: make([]byte, 0, cap(b.buf))}
		s.mu.Unlock()
		if len(b.buf) > 0 {
			b.err = s.write(b.buf)
		}
		close(b.done)
	}
}

// write writes buf at the end of the file, over zeros written ahead, and
// fdatasyncs.
func (s *skeletonLog) write(buf []byte) error {
	for s.allocEnd < s.off+int64(len(buf)) {
		if _, err := s.f.WriteAt(s.zeros, s.allocEnd); err != nil {
			return err
		}
		s.allocEnd += int64(len(s.zeros))
	}
	if _, err := s.f.WriteAt(buf, s.off); err != nil {
		return err
	}
	s.off += int64(len(buf))
	t := time.Now()
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		return err
	}
	s.syncTime += time.Since(t)
	s.syncs++
	return nil
}

// skeletonRun is what a skeleton run did: records appended, and its
// fdatasync rounds and times.
type skeletonRun struct {
	records int64
	rawRun
}

func (r skeletonRun) add(o skeletonRun) skeletonRun {
	return skeletonRun{r.records + o.records, r.rawRun.add(o.rawRun)}
}

// runSkeleton runs writers on a skeletonLog at path for d, each appending
// records of size bytes plus the log's frame header.
func runSkeleton(ctx context.Context, path string, writers, size int, d time.Duration) (skeletonRun, error) {
	var res skeletonRun
	s, err := newSkeletonLog(path, writers)
	if err != nil {
		return res, err
	}
	defer os.Remove(path)
	defer s.f.Close()
	flushDone, flusherExited := make(chan struct{}), make(chan struct{})
	go func() { defer close(flusherExited); s.flush(flushDone) }()
	rec := make([]byte, size+walFrameHeader)
	run := startWorkers(ctx, writers, func(int) worker {
		return func(uint64) error { return s.append(rec) }
	})
	sleepCtx(ctx, d)
	close(s.stopping)
	err = run.stop()
	res.elapsed = time.Since(run.start)
	close(flushDone)
	<-flusherExited
	res.records, res.rounds, res.syncTime = int64(len(run.latencies())), s.syncs, s.syncTime
	return res, err
}
