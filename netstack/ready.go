package netstack

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Relays wait for a side to become readable before they take a buffer
// from a pool, so an idle connection or UDP flow holds no buffer at all.
// The TCP relay's guest side does not even wait: see toHostPump.

// guestWait waits for events on a gVisor endpoint: data (or end of
// stream, or an error) with guestEvents, room to write (or an error) with
// roomEvents.
type guestWait struct {
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	mask  waiter.EventMask
	entry waiter.Entry
	ch    chan struct{}
}

const (
	guestEvents = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr
	roomEvents  = waiter.WritableEvents | waiter.EventHUp | waiter.EventErr
)

func newGuestWait(wq *waiter.Queue, ep tcpip.Endpoint, mask waiter.EventMask) *guestWait {
	g := &guestWait{ep: ep, wq: wq, mask: mask}
	// The queue keeps a pointer to the entry: register the one that
	// stays in g, not a copy.
	g.entry, g.ch = waiter.NewChannelEntry(mask)
	wq.EventRegister(&g.entry)
	return g
}

// newGuestReadiness waits for data, end of stream or an error.
func newGuestReadiness(wq *waiter.Queue, ep tcpip.Endpoint) *guestWait {
	return newGuestWait(wq, ep, guestEvents)
}

// wait returns true once one of the events is there, false when timeout
// fires first (nil: no timeout).
func (g *guestWait) wait(timeout <-chan time.Time) bool {
	for g.ep.Readiness(g.mask) == 0 {
		select {
		case <-g.ch:
		case <-timeout:
			return false
		}
	}
	return true
}

func (g *guestWait) close() { g.wq.EventUnregister(&g.entry) }
