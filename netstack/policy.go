package netstack

import (
	"net/netip"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// verdict is what the stack does with a new flow the guest opens.
type verdict int

const (
	// allow: connect to the translated address on the host.
	allow verdict = iota
	// refuse: answer with ICMP "network unreachable" from the gateway, the
	// way slirp4netns refuses the host loopback with
	// --disable-host-loopback, so the guest's connect fails at once with
	// ENETUNREACH.
	refuse
	// drop: say nothing (broadcast, multicast and unspecified addresses).
	drop
)

func (v verdict) String() string {
	switch v {
	case allow:
		return "allow"
	case refuse:
		return "refuse"
	default:
		return "drop"
	}
}

// policy decides where a guest flow goes. It is a value computed once from
// Config and never changed, so it needs no lock.
type policy struct {
	network  netip.Prefix // the virtual IPv4 network, e.g. 10.0.2.0/24
	gateway  netip.Addr   // N+2: stands for the host's 127.0.0.1
	dns      netip.Addr   // N+3: the DNS forwarder's address
	network6 netip.Prefix // the virtual IPv6 network; invalid when IPv6 is off
	gateway6 netip.Addr   // stands for the host's ::1
	dns6     netip.Addr

	// hostLoopback allows the guest to reach the host's loopback through
	// the gateway address.
	hostLoopback bool
	// dnsServed says the daemon serves DNS on the DNS address, so that
	// address is ours and only port 53 answers there; with --disable-dns it
	// is an ordinary destination, reached on the host network as it is.
	dnsServed bool
}

var (
	hostLoopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	hostLoopback6 = netip.IPv6Loopback()
	broadcast4    = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// outbound returns the host address a new guest flow to dst is connected to,
// and the verdict. It applies to TCP and UDP alike.
func (p *policy) outbound(dst netip.AddrPort) (netip.AddrPort, verdict) {
	a := dst.Addr().Unmap()
	port := dst.Port()
	switch {
	case !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == broadcast4:
		return netip.AddrPort{}, drop
	case a.Is4() && a == p.subnetBroadcast():
		return netip.AddrPort{}, drop
	case a == p.gateway || (p.gateway6.IsValid() && a == p.gateway6):
		if !p.hostLoopback {
			return netip.AddrPort{}, refuse
		}
		if a.Is4() {
			return netip.AddrPortFrom(hostLoopback4, port), allow
		}
		return netip.AddrPortFrom(hostLoopback6, port), allow
	case p.dnsServed && (a == p.dns || (p.dns6.IsValid() && a == p.dns6)):
		// Port 53 is answered by the DNS listeners before a flow reaches
		// the forwarders; anything else sent to the DNS address is refused,
		// as libslirp does.
		return netip.AddrPort{}, refuse
	case a.IsLoopback():
		// A guest can put any destination into a frame it writes to the
		// tap, 127.0.0.1 included. Treat the host's loopback the same
		// whichever way it is named.
		if !p.hostLoopback {
			return netip.AddrPort{}, refuse
		}
		return netip.AddrPortFrom(a, port), allow
	}
	return netip.AddrPortFrom(a, port), allow
}

// subnetBroadcast is the directed broadcast address of the IPv4 network.
func (p *policy) subnetBroadcast() netip.Addr {
	if !p.network.IsValid() || !p.network.Addr().Is4() {
		return netip.Addr{}
	}
	b := p.network.Masked().Addr().As4()
	bits := p.network.Bits()
	for i := bits; i < 32; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	return netip.AddrFrom4(b)
}

// inbound maps the address of a host peer to the address the guest sees, for
// replies and forwarded connections: the host's own loopback and the
// unspecified address appear as the gateway, anything else as it is
// (slirp4netns §2.4).
func (p *policy) inbound(src netip.Addr) netip.Addr {
	a := src.Unmap()
	if a.Is4() && (a.IsLoopback() || a.IsUnspecified()) {
		return p.gateway
	}
	if a.Is6() && (a.IsLoopback() || a.IsUnspecified()) && p.gateway6.IsValid() {
		return p.gateway6
	}
	return a
}

// admit applies the outbound policy to the first packet of a new flow to
// dest. It returns the host address the flow goes to, or false when the
// packet was dropped or refused (then counted in refused and answered
// with ICMP network unreachable).
func (s *Stack) admit(dest netip.AddrPort, pkt *stack.PacketBuffer, refused *atomic.Uint64) (netip.AddrPort, bool) {
	target, v := s.policy.outbound(dest)
	switch v {
	case drop:
		return netip.AddrPort{}, false
	case refuse:
		refused.Add(1)
		s.sendUnreachable(quote(pkt), netUnreachable)
		return netip.AddrPort{}, false
	}
	return target, true
}
