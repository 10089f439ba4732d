// Package lazyclose closes things a batch at a time, a short while after
// they were handed over.
//
// It exists for the host sockets of connections that have already ended
// both ways. Closing a descriptor is one of the few system calls the
// daemon still makes through the Go runtime's syscall entry (os.File and
// net close with syscall.Close), and that entry wakes the runtime's sysmon
// thread whenever the process was idle long enough for sysmon to sleep;
// woken that way, sysmon polls every 20 µs until it next finds the process
// idle. Under a stream of short connections every close did that: two
// extra thread switches per connection and about a sixth of the daemon's
// CPU on a 2-vCPU VM (docs/architecture.md). A socket both of whose
// directions have ended is only a descriptor number, so closing it up to a
// few milliseconds later changes nothing on the wire.
package lazyclose

import (
	"io"
	"sync"
	"time"
)

// Closer closes what Add hands it within its delay, all that is pending at
// once, or at once when its maximum is pending. Close closes what is
// pending and waits for a batch in progress; after it, Add closes at once.
type Closer struct {
	delay time.Duration
	max   int
	timer *time.Timer

	mu      sync.Mutex
	pending []io.Closer // +checklocks:mu
	armed   bool        // the timer will run fire; +checklocks:mu
	closed  bool        // +checklocks:mu
	// firing counts the timer's runs of fire that Close must wait for.
	firing sync.WaitGroup
}

// New returns a Closer that closes within delay, or at once when
// maxPending things are pending (below 1 counts as 1).
func New(delay time.Duration, maxPending int) *Closer {
	c := &Closer{delay: delay, max: max(1, maxPending)}
	c.timer = time.AfterFunc(time.Hour, c.fire)
	c.timer.Stop()
	return c
}

// Add closes x later: within the delay, or now if the batch is full or
// the Closer is closed. Errors from closing are dropped: x is done with.
func (c *Closer) Add(x io.Closer) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = x.Close()
		return
	}
	c.pending = append(c.pending, x)
	if len(c.pending) >= c.max {
		batch := c.take()
		c.mu.Unlock()
		closeAll(batch)
		return
	}
	if !c.armed {
		c.armed = true
		c.firing.Add(1)
		c.timer.Reset(c.delay)
	}
	c.mu.Unlock()
}

// Close closes everything pending, waits for a batch the timer is closing,
// and makes later Adds close at once. It is safe to call more than once.
func (c *Closer) Close() {
	c.mu.Lock()
	c.closed = true
	batch := c.take()
	if c.armed && c.timer.Stop() {
		// The timer will not run fire: account for the run it would
		// have made.
		c.armed = false
		c.firing.Done()
	}
	c.mu.Unlock()
	closeAll(batch)
	c.firing.Wait()
}

// Pending is how many things wait to be closed.
func (c *Closer) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// fire runs on the timer's goroutine and closes the batch.
func (c *Closer) fire() {
	defer c.firing.Done()
	c.mu.Lock()
	c.armed = false
	batch := c.take()
	c.mu.Unlock()
	closeAll(batch)
}

// take empties pending and returns what it held.
//
// +checklocks:c.mu
func (c *Closer) take() []io.Closer {
	batch := c.pending
	c.pending = nil
	return batch
}

func closeAll(batch []io.Closer) {
	for _, x := range batch {
		_ = x.Close()
	}
}
