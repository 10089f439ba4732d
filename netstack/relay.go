package netstack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"
)

// A relay reads into a small buffer and moves to a large one only for a
// sustained bulk transfer (several full reads in a row): most connections
// are short, and a large buffer for every connection that sent a few
// dozen KiB cost a gigabyte with two thousand of them. Buffers come from
// pools and are taken only once data is there to read (see ready.go).
const (
	relaySmallBuf = 16 << 10
	relayLargeBuf = 128 << 10
	// relayBulkReads full small reads in a row make a transfer bulk.
	relayBulkReads = 4
)

var (
	relaySmallBufs = sync.Pool{New: func() any { b := make([]byte, relaySmallBuf); return &b }}
	relayLargeBufs = sync.Pool{New: func() any { b := make([]byte, relayLargeBuf); return &b }}
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
	r.pipe(r.guest, r.host, func() error { return hostReadable(r.host) }, &r.sentToGuest, r.toGuest)
	<-done
	r.guest.Close()
	r.host.Close()
}

// pipe copies src to dst. On EOF it half-closes dst; on any error it aborts
// the whole relay so that the other direction ends too. ready blocks until
// src can be read without blocking, so that no buffer is held meanwhile.
func (r *tcpRelay) pipe(dst, src net.Conn, ready func() error, count, total *atomic.Uint64) {
	full := 0
	for {
		if err := ready(); err != nil && !errors.Is(err, errNotSyscallConn) {
			r.abort()
			return
		}
		pool := &relaySmallBufs
		if full >= relayBulkReads {
			pool = &relayLargeBufs
		}
		bp := pool.Get().(*[]byte)
		buf := *bp
		n, rerr := src.Read(buf)
		if n > 0 {
			_, werr := dst.Write(buf[:n])
			if n == len(buf) {
				full++
			} else {
				full = 0
			}
			pool.Put(bp)
			if werr != nil {
				r.abort()
				return
			}
			count.Add(uint64(n))
			total.Add(uint64(n))
		} else {
			pool.Put(bp)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
					return
				}
			}
			r.abort()
			return
		}
	}
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
