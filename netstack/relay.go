package netstack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slirp-dev/slirp/internal/relaycopy"
	"github.com/slirp-dev/slirp/internal/sockconn"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"
)

// tcpRelay copies one guest connection to its host connection and back.
// A FIN in one direction is passed on as a FIN (half-close); an error or
// RST on either side resets both.
type tcpRelay struct {
	guest   *gonet.TCPConn
	guestEP tcpip.Endpoint
	guestWQ *waiter.Queue
	host    net.Conn

	// guestAddr, dest and target name the flow (guest side, where the
	// guest sent it, and the host address it went to); started is when.
	guestAddr, dest, target netip.AddrPort
	started                 time.Time

	// sentToHost and sentToGuest count this connection's bytes; toHost and
	// toGuest are the stack-wide totals they are also added to.
	sentToHost, sentToGuest atomic.Uint64
	toHost, toGuest         *atomic.Uint64

	abortOnce sync.Once
}

type closeWriter interface{ CloseWrite() error }

// run copies both ways until both directions end, then closes both sides.
func (r *tcpRelay) run() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		g := newGuestReadiness(r.guestWQ, r.guestEP)
		defer g.close()
		r.pipe(r.host, r.guest, func() error {
			g.wait(nil)
			return nil
		}, &r.sentToHost, r.toHost)
	}()
	r.pipe(r.guest, r.host, func() error { return sockconn.WaitReadable(r.host) }, &r.sentToGuest, r.toGuest)
	<-done
	r.guest.Close()
	r.host.Close()
}

// pipe copies src to dst (package relaycopy: a pooled buffer only while
// there are bytes to move). On EOF it half-closes dst; on any error it
// aborts the whole relay so that the other direction ends too. ready blocks
// until src can be read without blocking.
func (r *tcpRelay) pipe(dst, src net.Conn, ready func() error, count, total *atomic.Uint64) {
	err := relaycopy.Copy(dst, src, ready, func(n int) {
		count.Add(uint64(n))
		total.Add(uint64(n))
	})
	if errors.Is(err, io.EOF) {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	r.abort()
}

// abort resets both sides: the guest gets a RST from the stack and the host
// peer a RST from the kernel (SO_LINGER 0).
func (r *tcpRelay) abort() {
	r.abortOnce.Do(func() {
		r.guestEP.Abort()
		if tc, ok := r.host.(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0)
		}
		r.host.Close()
		r.guest.Close()
	})
}
