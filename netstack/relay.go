package netstack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slirp-dev/slirp/internal/lazyclose"
	"github.com/slirp-dev/slirp/internal/relaycopy"
	"github.com/slirp-dev/slirp/internal/sockconn"
	"github.com/slirp-dev/slirp/internal/workpool"
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

	// workers runs the pump's bursts (the stack's pool).
	workers *workpool.Pool
	// hostCloser closes the host socket once both directions have ended
	// (the stack's; nil closes it at once). See package lazyclose.
	hostCloser *lazyclose.Closer

	abortOnce sync.Once
	aborted   atomic.Bool
}

type closeWriter interface{ CloseWrite() error }

// run copies both ways until both directions end, then closes both sides.
// The host's bytes are copied on the calling goroutine, which waits in the
// runtime's poller while the host is quiet; the guest's are copied by a
// toHostPump, which has no goroutine while the guest is quiet.
func (r *tcpRelay) run() {
	toHost := startToHostPump(r)
	r.finish(r.guest, r.copyToGuest())
	<-toHost.done
	if r.aborted.Load() {
		return // abort closed both sides
	}
	r.guest.Close()
	if r.hostCloser == nil {
		r.host.Close()
		return
	}
	// Both directions ended with a FIN: the socket has nothing left to
	// send or receive, and closing it can wait for the next batch.
	r.hostCloser.Add(r.host)
}

func (r *tcpRelay) countToGuest(n int) {
	r.sentToGuest.Add(uint64(n))
	r.toGuest.Add(uint64(n))
}

// copyToGuest copies the host's bytes to the guest until the host's stream
// ends (io.EOF) or fails; see copySocketToGuest.
func (r *tcpRelay) copyToGuest() error {
	return copySocketToGuest(r.guestEP, r.guestWQ, r.guest, r.host, r.countToGuest)
}

// finish ends one direction after its copy returned err: io.EOF is passed
// on as a half-close of dst; anything else aborts the whole relay so that
// the other direction ends too.
func (r *tcpRelay) finish(dst net.Conn, err error) {
	if errors.Is(err, io.EOF) {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	r.abort()
}

// toHostPump copies the guest's bytes to the host in bursts. The guest
// endpoint's waiter queue calls NotifyEvent when data, the end of the
// stream or an error arrives; that hands a burst to one of the stack's
// workers unless one is running, and the burst drains the endpoint and
// ends. A goroutine
// parked per connection for this direction cost every idle connection
// 4 KiB of stack (a third of what it held).
type toHostPump struct {
	r     *tcpRelay
	entry waiter.Entry
	// w writes the endpoint's buffers straight to the host socket; when
	// the host connection has no descriptor (nil), burst copies through
	// a pooled buffer instead.
	w     *sockconn.GatherWriter
	burst relaycopy.Burst
	// state is pumpIdle, pumpRunning, pumpAgain (running, and notified
	// since its last read) or pumpStopped.
	state atomic.Int32
	// done is closed when the direction is over and no goroutine of the
	// pump is left but the one closing it.
	done chan struct{}
}

const (
	pumpIdle int32 = iota
	pumpRunning
	pumpAgain
	pumpStopped
)

func startToHostPump(r *tcpRelay) *toHostPump {
	p := &toHostPump{r: r, done: make(chan struct{})}
	p.w, _ = sockconn.NewGatherWriter(r.host)
	p.entry.Init(p, guestEvents)
	r.guestWQ.EventRegister(&p.entry)
	// Bytes that arrived before the registration notified nobody.
	p.NotifyEvent(guestEvents)
	return p
}

// NotifyEvent implements waiter.EventListener. gVisor calls it with the
// endpoint's lock held, so it only starts (or re-arms) the goroutine that
// reads.
func (p *toHostPump) NotifyEvent(waiter.EventMask) {
	for {
		switch p.state.Load() {
		case pumpIdle:
			if p.state.CompareAndSwap(pumpIdle, pumpRunning) {
				p.r.workers.Go(p.run)
				return
			}
		case pumpRunning:
			if p.state.CompareAndSwap(pumpRunning, pumpAgain) {
				return
			}
		default: // pumpAgain, pumpStopped
			return
		}
	}
}

// run drains the endpoint until it is empty and no notification came in
// meanwhile, or until the direction ends.
func (p *toHostPump) run() {
	for {
		if err := p.drain(); err != nil {
			p.state.Store(pumpStopped)
			p.r.guestWQ.EventUnregister(&p.entry)
			p.r.finish(p.r.host, err)
			close(p.done)
			return
		}
		// A notification after the last read set pumpAgain: read again
		// rather than miss it. One after this CAS starts a new goroutine.
		if p.state.CompareAndSwap(pumpRunning, pumpIdle) {
			return
		}
		p.state.Store(pumpRunning)
	}
}

// drain copies what the guest endpoint holds to the host. It returns nil
// once the endpoint is empty, io.EOF at the guest's FIN, or the error that
// ends the direction.
func (p *toHostPump) drain() error {
	if p.w == nil {
		return p.burst.Drain(p.r.host, p.read, p.counted)
	}
	return drainToSocket(p.r.guestEP, p.w, p.counted)
}

func (p *toHostPump) counted(n int) {
	p.r.sentToHost.Add(uint64(n))
	p.r.toHost.Add(uint64(n))
}

// read reads what the guest endpoint holds without blocking, as
// gonet.TCPConn.Read does when there is data.
func (p *toHostPump) read(b []byte) (int, error) {
	w := tcpip.SliceWriter(b)
	res, err := p.r.guestEP.Read(&w, tcpip.ReadOptions{})
	switch err.(type) {
	case nil:
		// Receive-buffer auto-tuning counts what the application read.
		p.r.guestEP.ModerateRecvBuf(res.Count)
		return res.Count, nil
	case *tcpip.ErrWouldBlock:
		return 0, relaycopy.ErrEmpty
	case *tcpip.ErrClosedForReceive:
		return 0, io.EOF
	}
	return 0, stackErr(err)
}

// abort resets both sides: the guest gets a RST from the stack and the host
// peer a RST from the kernel (SO_LINGER 0).
func (r *tcpRelay) abort() {
	r.abortOnce.Do(func() {
		r.aborted.Store(true)
		r.guestEP.Abort()
		if tc, ok := r.host.(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0)
		}
		r.host.Close()
		r.guest.Close()
	})
}
