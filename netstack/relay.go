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
)

// A relay copies through a small buffer first and moves to a large one
// once a read fills the small one: most connections are short and never
// need more than a few KiB, while a bulk transfer moves a 64 KiB segment
// (or several) per read and write with the large one. Allocating the large
// buffer for every connection cost a third of the connection rate.
const (
	relaySmallBuf = 16 << 10
	relayLargeBuf = 256 << 10
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
		r.pipe(r.host, r.guest, &r.sentToHost, r.toHost)
	}()
	r.pipe(r.guest, r.host, &r.sentToGuest, r.toGuest)
	<-done
	r.guest.Close()
	r.host.Close()
}

// pipe copies src to dst. On EOF it half-closes dst; on any error it aborts
// the whole relay so that the other direction ends too.
func (r *tcpRelay) pipe(dst, src net.Conn, count, total *atomic.Uint64) {
	small := relaySmallBufs.Get().(*[]byte)
	defer relaySmallBufs.Put(small)
	var large *[]byte
	defer func() {
		if large != nil {
			relayLargeBufs.Put(large)
		}
	}()
	buf := *small
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				r.abort()
				return
			}
			count.Add(uint64(n))
			total.Add(uint64(n))
			if n == len(buf) && large == nil {
				large = relayLargeBufs.Get().(*[]byte)
				buf = *large
			}
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
		if tc, ok := r.host.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		r.host.Close()
		r.guest.Close()
	})
}
