package netstack

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Relays wait for a side to become readable before they take a buffer
// from a pool, so an idle connection or UDP flow holds no buffer at all.
// The TCP relay's guest side does not even wait: see toHostPump.

// guestReadiness waits for data (or end of stream, or an error) on a gVisor
// endpoint.
type guestReadiness struct {
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	entry waiter.Entry
	ch    chan struct{}
}

const guestEvents = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

func newGuestReadiness(wq *waiter.Queue, ep tcpip.Endpoint) *guestReadiness {
	g := &guestReadiness{ep: ep, wq: wq}
	// The queue keeps a pointer to the entry: register the one that
	// stays in g, not a copy.
	g.entry, g.ch = waiter.NewChannelEntry(guestEvents)
	wq.EventRegister(&g.entry)
	return g
}

// wait returns true once the endpoint is readable, false when timeout
// fires first (nil: no timeout).
func (g *guestReadiness) wait(timeout <-chan time.Time) bool {
	for g.ep.Readiness(guestEvents) == 0 {
		select {
		case <-g.ch:
		case <-timeout:
			return false
		}
	}
	return true
}

func (g *guestReadiness) close() { g.wq.EventUnregister(&g.entry) }

// guestRoom waits for room in a gVisor endpoint's send buffer (or an
// error, which the next write reports).
type guestRoom struct {
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	entry waiter.Entry
	ch    chan struct{}
}

const roomEvents = waiter.WritableEvents | waiter.EventHUp | waiter.EventErr

func newGuestRoom(wq *waiter.Queue, ep tcpip.Endpoint) *guestRoom {
	g := &guestRoom{ep: ep, wq: wq}
	g.entry, g.ch = waiter.NewChannelEntry(roomEvents)
	wq.EventRegister(&g.entry)
	return g
}

// wait returns once the endpoint is writable or has failed.
func (g *guestRoom) wait() {
	for g.ep.Readiness(roomEvents) == 0 {
		<-g.ch
	}
}

func (g *guestRoom) close() { g.wq.EventUnregister(&g.entry) }
