package netstack

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// tcpForwarder turns each connection the guest opens into a host
// connection. The guest's SYN is answered only once the host connect has
// succeeded, so the guest sees the host's own answer: a refused connect
// becomes a RST, an unreachable host an ICMP error, a silent host a timeout.
type tcpForwarder struct {
	s   *Stack
	fwd *tcp.Forwarder

	mu sync.Mutex
	// pending holds the SYNs whose host connect is in progress, with what
	// an ICMP error about them must quote. +checklocks:mu
	pending map[stack.TransportEndpointID]pendingSYN
	// conns holds the live relays, so Close can end them. +checklocks:mu
	conns map[*tcpRelay]struct{}
	// closed is set by close; no relay starts afterwards. +checklocks:mu
	closed bool
	// limitLog rate-limits the "too many pending" warning. +checklocks:mu
	limitLog logLimit
}

// limitLogInterval is the least time between two log lines about the same
// limit being hit: a flood must not flood the log too.
const limitLogInterval = 10 * time.Second

// logLimit lets a log line through at most once per limitLogInterval. Its
// owner's lock guards it.
type logLimit struct{ last time.Time }

func (l *logLimit) allow() bool {
	if time.Since(l.last) <= limitLogInterval {
		return false
	}
	l.last = time.Now()
	return true
}

type pendingSYN struct {
	target netip.AddrPort
	quote  quoted
}

func newTCPForwarder(s *Stack) *tcpForwarder {
	f := &tcpForwarder{
		s:       s,
		pending: make(map[stack.TransportEndpointID]pendingSYN),
		conns:   make(map[*tcpRelay]struct{}),
	}
	// rcvWnd 0 keeps the stack's default receive buffer (see tune).
	f.fwd = tcp.NewForwarder(s.stack, 0, s.cfg.MaxPendingTCP, f.handleRequest)
	return f
}

// handlePacket sees every TCP segment that matches no endpoint. It applies
// the policy to new connections before gVisor's forwarder sees them.
func (f *tcpForwarder) handlePacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		return false
	}
	if flags := th.Flags(); !flags.Contains(header.TCPFlagSyn) || flags.Contains(header.TCPFlagAck) {
		// A stray segment: returning false makes the stack answer RST.
		return false
	}
	target, ok := f.s.admit(addrPort(id.LocalAddress, id.LocalPort), pkt, &f.s.counters.tcpRefused)
	if !ok {
		return true
	}

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return true
	}
	if _, dup := f.pending[id]; dup {
		// A retransmitted SYN while the host connect is in progress.
		f.mu.Unlock()
		return true
	}
	if len(f.pending) >= f.s.cfg.MaxPendingTCP {
		warn := f.limitLog.allow()
		f.mu.Unlock()
		f.s.counters.tcpDropped.Add(1)
		if warn {
			f.s.log.Warn("TCP connection dropped: too many connections being set up (logged at most every 10s; see tcp_dropped in the stats)",
				"limit", f.s.cfg.MaxPendingTCP, "flow", flowString(id))
		}
		return true
	}
	f.pending[id] = pendingSYN{target: target, quote: quote(pkt)}
	// The request's goroutine is gVisor's; count it as ours before it
	// exists so Close waits for it.
	f.s.wg.Add(1)
	f.mu.Unlock()

	if !f.fwd.HandlePacket(id, pkt) {
		// Not a valid SYN after all (bad checksum): gVisor started nothing.
		f.finish(id)
		f.s.wg.Done()
		return false
	}
	return true
}

// finish forgets a pending SYN once its request is complete.
func (f *tcpForwarder) finish(id stack.TransportEndpointID) {
	f.mu.Lock()
	delete(f.pending, id)
	f.mu.Unlock()
}

// handleRequest runs in a goroutine gVisor starts for each new
// connection. It hands the request to one of the stack's workers, whose
// stack a connection set-up before this one has grown to what the dial and
// the handshake need, and ends on the small stack it was given.
func (f *tcpForwarder) handleRequest(r *tcp.ForwarderRequest) {
	f.s.workers.Go(func() { f.setUp(r) })
}

// setUp connects to the host and completes the guest's handshake, then
// starts the connection's relay.
func (f *tcpForwarder) setUp(r *tcp.ForwarderRequest) {
	defer f.s.wg.Done()
	id := r.ID()
	f.mu.Lock()
	p, ok := f.pending[id]
	f.mu.Unlock()
	if !ok {
		r.Complete(true)
		return
	}
	// Only debug lines name the flow: formatting it for every connection
	// costs more than the lines are worth at other levels.
	log := f.s.log
	if log.Enabled(f.s.ctx, slog.LevelDebug) {
		log = log.With("flow", flowString(id), "target", p.target.String())
	}

	network := "tcp4"
	if p.target.Addr().Is6() {
		network = "tcp6"
	}
	host, err := f.s.dial(f.s.ctx, network, p.target)
	if err != nil {
		f.s.counters.tcpFailed.Add(1)
		kind, reply := classifyDialError(err)
		switch reply {
		case replyReset:
			r.Complete(true)
		case replyICMP:
			f.s.sendUnreachable(p.quote, kind)
			r.Complete(false)
		default:
			r.Complete(false)
		}
		f.finish(id)
		log.Debug("TCP connect failed", "err", err)
		return
	}

	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		f.finish(id)
		host.Close()
		log.Debug("TCP handshake with guest failed", "err", stackErr(terr))
		return
	}
	r.Complete(false)
	f.finish(id)
	f.s.counters.tcpOpened.Add(1)
	// Keepalive finds guests that vanished without a FIN or RST.
	ep.SocketOptions().SetKeepAlive(true)

	rl := &tcpRelay{guest: gonet.NewTCPConn(&wq, ep), guestEP: ep, guestWQ: &wq, host: host, workers: f.s.workers, hostCloser: f.s.hostCloser,
		toHost: &f.s.counters.tcpToHost, toGuest: &f.s.counters.tcpToGuest,
		guestAddr: addrPort(id.RemoteAddress, id.RemotePort), dest: addrPort(id.LocalAddress, id.LocalPort),
		target: p.target, started: time.Now()}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		rl.abort()
		return
	}
	f.conns[rl] = struct{}{}
	f.mu.Unlock()
	log.Debug("TCP connection open")
	// The relay runs on a goroutine of its own rather than on this one,
	// whose stack the dial and the handshake grew to 8 KiB: a new
	// goroutine's stack grows only as far as relaying needs, and a
	// connection keeps its relay goroutine for life.
	f.s.wg.Add(1)
	go f.relay(rl, log)
}

// relay runs one connection's relay to its end.
func (f *tcpForwarder) relay(rl *tcpRelay, log *slog.Logger) {
	defer f.s.wg.Done()
	rl.run()
	f.mu.Lock()
	delete(f.conns, rl)
	f.mu.Unlock()
	log.Debug("TCP connection closed", "to_host", rl.sentToHost.Load(), "to_guest", rl.sentToGuest.Load())
}

// close stops accepting connections and aborts the live ones; the stack's
// WaitGroup then waits for their goroutines.
func (f *tcpForwarder) close() {
	f.mu.Lock()
	f.closed = true
	conns := make([]*tcpRelay, 0, len(f.conns))
	for rl := range f.conns {
		conns = append(conns, rl)
	}
	f.mu.Unlock()
	for _, rl := range conns {
		rl.abort()
	}
}

type dialReply int

const (
	replyNone dialReply = iota
	replyReset
	replyICMP
)

// classifyDialError maps a host connect error to what the guest is told, as
// libslirp does: refused → RST; unreachable → ICMP; anything slower (a
// timeout) → nothing, so the guest's own connect times out.
func classifyDialError(err error) (unreachable, dialReply) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return 0, replyReset
	case errors.Is(err, syscall.EHOSTUNREACH):
		return hostUnreachable, replyICMP
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return netUnreachable, replyICMP
	}
	return 0, replyNone
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip, port)
}

func toFull(ap netip.AddrPort) tcpip.FullAddress {
	a := ap.Addr().Unmap()
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: ap.Port()}
}

// flowString names a flow for logs: guest address first.
func flowString(id stack.TransportEndpointID) string {
	return addrPort(id.RemoteAddress, id.RemotePort).String() + "->" + addrPort(id.LocalAddress, id.LocalPort).String()
}

var _ net.Conn = (*gonet.TCPConn)(nil)
