package netstack

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp/internal/relaycopy"
	"github.com/slirp-dev/slirp/internal/sockconn"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpMaxDatagram is the largest UDP payload over IPv4 (65535 - 20 - 8).
const udpMaxDatagram = 65507

// udpForwarder is the UDP connection-tracking table: one connected host
// socket per guest flow (guest address and port, destination address and
// port), ended after an idle timeout, bounded in number.
type udpForwarder struct {
	s *Stack

	mu sync.Mutex
	// flows holds the live flows. +checklocks:mu
	flows map[stack.TransportEndpointID]*udpFlow
	// closed is set by close. +checklocks:mu
	closed bool
	// reserved counts flows being set up outside the lock: they count
	// against the limit already. +checklocks:mu
	reserved int
	// limitLog rate-limits the "table full" warning. +checklocks:mu
	limitLog logLimit
}

func newUDPForwarder(s *Stack) *udpForwarder {
	return &udpForwarder{s: s, flows: make(map[stack.TransportEndpointID]*udpFlow)}
}

// handlePacket sees every datagram that matches no endpoint, that is, the
// first datagram of each new flow; later ones go to the flow's endpoint.
func (f *udpForwarder) handlePacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	target, ok := f.s.admit(addrPort(id.LocalAddress, id.LocalPort), pkt, &f.s.counters.udpRefused)
	if !ok {
		return true
	}

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return true
	}
	if len(f.flows)+f.reserved >= f.s.cfg.MaxUDPFlows {
		f.s.counters.udpDropped.Add(1)
		warn := f.limitLog.allow()
		f.mu.Unlock()
		if warn {
			f.s.log.Warn("UDP flow dropped: connection-tracking table full",
				"limit", f.s.cfg.MaxUDPFlows, "flow", flowString(id))
		}
		return true
	}
	f.reserved++
	f.mu.Unlock()
	added := false
	defer func() {
		if !added {
			f.mu.Lock()
			f.reserved--
			f.mu.Unlock()
		}
	}()

	network := "udp4"
	if target.Addr().Is6() {
		network = "udp6"
	}
	// connect(2) on a UDP socket does not wait for the network, so this
	// runs inline on the dispatch goroutine.
	host, err := f.s.dial(f.s.ctx, network, target)
	if err != nil {
		if kind, reply := classifyDialError(err); reply == replyICMP {
			f.s.sendUnreachable(quote(pkt), kind)
		}
		f.s.log.Debug("UDP flow failed", "flow", flowString(id), "target", target.String(), "err", err)
		return true
	}
	var wq waiter.Queue
	// CreateEndpoint binds to the destination, connects to the guest and
	// delivers this first datagram to the new endpoint.
	ep, terr := udp.NewForwarderRequest(f.s.stack, id, pkt.Clone()).CreateEndpoint(&wq)
	if terr != nil {
		host.Close()
		f.s.log.Debug("UDP endpoint", "flow", flowString(id), "err", stackErr(terr))
		return true
	}
	idle := f.s.cfg.UDPIdleTimeout
	if target.Port() == 53 {
		idle = f.s.cfg.DNSIdleTimeout
	}
	fl := &udpFlow{
		f:       f,
		id:      id,
		guest:   gonet.NewUDPConn(&wq, ep),
		guestEP: ep,
		guestWQ: &wq,
		host:    host,
		idle:    idle,
		isIPv6:  target.Addr().Is6(),
		target:  target,
		started: time.Now(),
	}
	fl.touch()

	f.mu.Lock()
	f.reserved--
	added = true
	if f.closed {
		f.mu.Unlock()
		fl.guest.Close()
		host.Close()
		return true
	}
	f.flows[id] = fl
	f.s.wg.Add(2)
	f.mu.Unlock()
	f.s.counters.udpOpened.Add(1)
	f.s.log.Debug("UDP flow open", "flow", flowString(id), "target", target.String())
	go fl.toHost()
	go fl.toGuest()
	return true
}

// close ends every flow; the stack's WaitGroup waits for their goroutines.
func (f *udpForwarder) close() {
	f.mu.Lock()
	f.closed = true
	flows := make([]*udpFlow, 0, len(f.flows))
	for _, fl := range f.flows {
		flows = append(flows, fl)
	}
	f.mu.Unlock()
	for _, fl := range flows {
		fl.end()
	}
}

// udpFlow is one entry of the table.
type udpFlow struct {
	f       *udpForwarder
	id      stack.TransportEndpointID
	guest   *gonet.UDPConn
	guestEP tcpip.Endpoint
	guestWQ *waiter.Queue
	host    net.Conn
	idle    time.Duration
	isIPv6  bool
	// target is the host address the flow goes to; started is when it
	// opened; sentToHost and sentToGuest count its bytes.
	target                  netip.AddrPort
	started                 time.Time
	sentToHost, sentToGuest atomic.Uint64

	// lastActive is the time of the last datagram either way, in
	// nanoseconds since the Unix epoch.
	lastActive atomic.Int64
	endOnce    sync.Once
}

func (fl *udpFlow) touch() { fl.lastActive.Store(time.Now().UnixNano()) }

// expired says the flow has been idle for its whole timeout.
func (fl *udpFlow) expired() bool {
	return time.Since(time.Unix(0, fl.lastActive.Load())) >= fl.idle
}

// end closes both sockets, which ends both goroutines, and forgets the flow.
func (fl *udpFlow) end() {
	fl.endOnce.Do(func() {
		fl.guest.Close()
		fl.host.Close()
		fl.f.mu.Lock()
		delete(fl.f.flows, fl.id)
		fl.f.mu.Unlock()
	})
}

// udpBufs hold one datagram each; a flow takes one only while it moves a
// datagram, so idle flows hold none.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, udpMaxDatagram); return &b }}

// toHost copies the guest's datagrams to the host socket, and ends the
// flow once it has been idle for its timeout.
func (fl *udpFlow) toHost() {
	defer fl.f.s.wg.Done()
	defer fl.end()
	g := newGuestReadiness(fl.guestWQ, fl.guestEP)
	defer g.close()
	timer := time.NewTimer(fl.idle)
	defer timer.Stop()
	for {
		if !g.wait(timer.C) {
			if fl.expired() {
				return
			}
			timer.Reset(time.Until(time.Unix(0, fl.lastActive.Load()).Add(fl.idle)))
			continue
		}
		bp := udpBufs.Get().(*[]byte)
		n, err := fl.guest.Read(*bp)
		if err != nil {
			udpBufs.Put(bp)
			return
		}
		fl.touch()
		fl.f.s.counters.udpToHost.Add(uint64(n))
		fl.sentToHost.Add(uint64(n))
		// A write error (the host's previous ICMP error surfacing as
		// ECONNREFUSED) does not end the flow, as on a real network.
		_, _ = fl.host.Write((*bp)[:n])
		udpBufs.Put(bp)
	}
}

// toGuest copies the host's replies back to the guest. Its read deadline
// doubles as the idle timer.
func (fl *udpFlow) toGuest() {
	defer fl.f.s.wg.Done()
	defer fl.end()
	for {
		_ = fl.host.SetReadDeadline(time.Now().Add(fl.idle))
		err := sockconn.WaitReadable(fl.host)
		var n int
		var bp *[]byte
		if err == nil || errors.Is(err, relaycopy.ErrNoWait) {
			bp = udpBufs.Get().(*[]byte)
			n, err = fl.host.Read(*bp)
		}
		if err != nil {
			if bp != nil {
				udpBufs.Put(bp)
			}
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() && !fl.expired():
				continue
			case errors.Is(err, syscall.ECONNREFUSED):
				// The host got "port unreachable" for this flow: tell the
				// guest, so its connected socket sees ECONNREFUSED too.
				fl.f.s.sendUnreachable(fl.quote(), portUnreachable)
				continue
			}
			return
		}
		fl.touch()
		_, werr := fl.guest.Write((*bp)[:n])
		udpBufs.Put(bp)
		if werr != nil {
			return
		}
		fl.f.s.counters.udpToGuest.Add(uint64(n))
		fl.sentToGuest.Add(uint64(n))
	}
}

// quote rebuilds the headers of a guest datagram of this flow, for an ICMP
// error about it: the guest matches the error to its socket by addresses and
// ports alone.
func (fl *udpFlow) quote() quoted {
	src, dst := fl.id.RemoteAddress, fl.id.LocalAddress
	mac := fl.f.s.guestMAC(src)
	uh := make([]byte, header.UDPMinimumSize)
	header.UDP(uh).Encode(&header.UDPFields{SrcPort: fl.id.RemotePort, DstPort: fl.id.LocalPort, Length: header.UDPMinimumSize})
	if fl.isIPv6 {
		ip := make([]byte, header.IPv6MinimumSize)
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: header.UDPMinimumSize, TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
		return quoted{packet: append(ip, uh...), mac: mac, v6: true}
	}
	ip := make([]byte, header.IPv4MinimumSize)
	h := header.IPv4(ip)
	h.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.UDPMinimumSize, TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
	h.SetChecksum(^h.CalculateChecksum())
	return quoted{packet: append(ip, uh...), mac: mac}
}

// guestMAC returns the link address the stack has learned for a guest
// address, or "" when it has none.
func (s *Stack) guestMAC(addr tcpip.Address) tcpip.LinkAddress {
	proto := header.IPv4ProtocolNumber
	if addr.Len() == 16 {
		proto = header.IPv6ProtocolNumber
	}
	neigh, err := s.stack.Neighbors(nicID, proto)
	if err != nil {
		return ""
	}
	for _, n := range neigh {
		if n.Addr == addr {
			return n.LinkAddr
		}
	}
	return ""
}

// count is the number of tracked flows.
func (f *udpForwarder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flows)
}
