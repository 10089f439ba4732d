package lazyclose

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counted records its closes and reports the first on done.
type counted struct {
	n    atomic.Int32
	done chan struct{}
}

func newCounted() *counted { return &counted{done: make(chan struct{})} }

func (c *counted) Close() error {
	if c.n.Add(1) == 1 {
		close(c.done)
	}
	return nil
}

func waitClosed(t *testing.T, c *counted) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("not closed within 10s")
	}
}

func TestClosesAfterDelay(t *testing.T) {
	c := New(time.Millisecond, 100)
	defer c.Close()
	xs := []*counted{newCounted(), newCounted(), newCounted()}
	for _, x := range xs {
		c.Add(x)
	}
	for _, x := range xs {
		waitClosed(t, x)
	}
	// A later Add arms the timer again.
	y := newCounted()
	c.Add(y)
	waitClosed(t, y)
	c.Close()
	for _, x := range append(xs, y) {
		if n := x.n.Load(); n != 1 {
			t.Errorf("closed %d times, want once", n)
		}
	}
}

func TestFullBatchClosesAtOnce(t *testing.T) {
	c := New(time.Hour, 3)
	defer c.Close()
	xs := []*counted{newCounted(), newCounted(), newCounted()}
	c.Add(xs[0])
	c.Add(xs[1])
	if got := c.Pending(); got != 2 {
		t.Fatalf("Pending = %d, want 2", got)
	}
	if xs[0].n.Load() != 0 {
		t.Fatal("closed before the batch was full or the delay passed")
	}
	c.Add(xs[2]) // the third fills the batch: all three close in Add
	for i, x := range xs {
		if x.n.Load() != 1 {
			t.Errorf("item %d not closed by the Add that filled the batch", i)
		}
	}
	if got := c.Pending(); got != 0 {
		t.Errorf("Pending = %d after a full batch, want 0", got)
	}
}

func TestCloseClosesPendingAndLaterAdds(t *testing.T) {
	c := New(time.Hour, 100)
	x := newCounted()
	c.Add(x)
	c.Close()
	if x.n.Load() != 1 {
		t.Fatal("Close left a pending item open")
	}
	y := newCounted()
	c.Add(y)
	if y.n.Load() != 1 {
		t.Fatal("Add after Close did not close at once")
	}
	c.Close() // a second Close is harmless
}

// blocking is a closer whose Close waits for release.
type blocking struct {
	started, release chan struct{}
}

func (b *blocking) Close() error {
	close(b.started)
	<-b.release
	return nil
}

func TestCloseWaitsForTimerBatch(t *testing.T) {
	c := New(time.Millisecond, 100)
	b := &blocking{started: make(chan struct{}), release: make(chan struct{})}
	c.Add(b)
	select {
	case <-b.started: // the timer's batch is closing b
	case <-time.After(10 * time.Second):
		t.Fatal("timer batch did not start within 10s")
	}
	returned := make(chan struct{})
	go func() {
		c.Close()
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("Close returned while the timer's batch was still closing")
	case <-time.After(50 * time.Millisecond):
	}
	close(b.release)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the batch finished")
	}
}

// TestConcurrentAddsAndClose closes the Closer while Adds are still
// coming: everything is closed exactly once, before or after Close.
func TestConcurrentAddsAndClose(t *testing.T) {
	c := New(100*time.Microsecond, 7)
	const adders, each = 8, 200
	xs := make([]*counted, adders*each)
	for i := range xs {
		xs[i] = newCounted()
	}
	halfway := make(chan struct{})
	var wg sync.WaitGroup
	for a := range adders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, x := range xs[a*each : (a+1)*each] {
				if a == 0 && i == each/2 {
					close(halfway)
				}
				c.Add(x)
			}
		}()
	}
	<-halfway
	c.Close()
	wg.Wait()
	for i, x := range xs {
		if n := x.n.Load(); n != 1 {
			t.Fatalf("item %d closed %d times, want once", i, n)
		}
	}
	if got := c.Pending(); got != 0 {
		t.Errorf("Pending = %d after Close, want 0", got)
	}
}
