package procedure

import (
	"sync"
	"time"
)

// item is one entry of the run queue: a step of p, or (rollback) the next
// rollback step of the tree whose root is p.
type item struct {
	p        *proc
	rollback bool
}

// runQueue is the set of runnable work (the seed's ProcedureRunnableSet):
// a deque with condition signalling. Procedures resuming work (the next
// step of a running procedure, new children, a parent whose children
// finished, a rollback) go to the front; new submissions and yields go to
// the back. It holds only runnable work: a procedure waiting for
// children, a lock, an event, a time or a retry is parked outside it and
// pushed to the front when woken. So nothing that waits holds a worker,
// and every worker can be busy with work that waits while progress still
// happens (HBASE-19976).
//
// Its size is bounded by the number of live procedures plus live trees:
// every proc and tree is queued at most once (proc.queued, tree.rbQueued).
type runQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []item // ring buffer
	head   int
	n      int
	closed bool
}

func newRunQueue() *runQueue {
	q := &runQueue{buf: make([]item, 64)}
	q.cond.L = &q.mu
	return q
}

func (q *runQueue) grow() {
	nb := make([]item, 2*len(q.buf))
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

func (q *runQueue) pushBack(it item) {
	q.mu.Lock()
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *runQueue) pushFront(it item) {
	q.mu.Lock()
	if q.n == len(q.buf) {
		q.grow()
	}
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = it
	q.n++
	q.mu.Unlock()
	q.cond.Signal()
}

// pop returns the item at the front, waiting for one. It returns false
// once the queue is closed, or when idle (if positive) passes without
// work.
func (q *runQueue) pop(idle time.Duration) (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var deadline time.Time
	var timer *time.Timer
	for q.n == 0 && !q.closed {
		if idle > 0 {
			if timer == nil {
				deadline = time.Now().Add(idle)
				timer = time.AfterFunc(idle, func() {
					q.mu.Lock()
					q.cond.Broadcast()
					q.mu.Unlock()
				})
				defer timer.Stop()
			} else if !time.Now().Before(deadline) {
				return item{}, false
			}
		}
		q.cond.Wait()
	}
	if q.closed {
		return item{}, false
	}
	it := q.buf[q.head]
	q.buf[q.head] = item{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return it, true
}

func (q *runQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// close wakes every waiting pop; later pops return false.
func (q *runQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
