package netstack

import (
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// guardLink sits between the tap and the stack. It drops the few inbound
// frames that the stack would answer wrongly because its NIC spoofs every
// address (which it must, to terminate connections to any destination):
//
//   - ARP requests for addresses other than the gateway and DNS address:
//     with spoofing, the stack would claim every address, including the
//     one a guest probes for before it takes it (RFC 5227), so address
//     conflict detection would always fail. slirp4netns answers ARP only
//     for .2 and .3 too.
//   - IPv6 neighbour solicitations from the unspecified address, that is
//     duplicate address detection probes (RFC 4862): the stack would
//     claim the guest's own new address.
//
// It also hands router solicitations to the stack's router advertiser.
// Everything else, IPv4 data above all, passes untouched: the checks look
// only at ARP and ICMPv6 packets.
type guardLink struct {
	nested.Endpoint
	s *Stack

	// gate is held (shared) by every delivery into the stack; shut takes
	// it exclusively once to stop deliveries for good before the stack
	// is torn down. +checklocks:gate
	gate sync.RWMutex
	shut bool
}

func newGuardLink(s *Stack, child stack.LinkEndpoint) *guardLink {
	l := &guardLink{s: s}
	l.Endpoint.Init(child, l)
	return l
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (l *guardLink) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	l.gate.RLock()
	defer l.gate.RUnlock()
	if l.shut {
		return
	}
	switch proto {
	case header.ARPProtocolNumber:
		if !l.arpAllowed(pkt) {
			return
		}
	case header.IPv6ProtocolNumber:
		if !l.ipv6Allowed(pkt) {
			return
		}
	}
	l.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// stopDelivery drops every later inbound packet and waits for deliveries in
// progress. gVisor's Stack.Wait removes the NIC, and waits for the link's
// reader, while it holds the stack lock; a reader delivering a packet that
// needs that lock (to answer with a RST, say) would then never finish.
// Stopping deliveries first leaves the reader nothing to wait for.
func (l *guardLink) stopDelivery() {
	l.gate.Lock()
	l.shut = true
	l.gate.Unlock()
}

func (l *guardLink) arpAllowed(pkt *stack.PacketBuffer) bool {
	b, ok := pkt.Data().PullUp(header.ARPSize)
	if !ok {
		return false
	}
	h := header.ARP(b)
	if !h.IsValid() || h.Op() != header.ARPRequest {
		return true
	}
	target, _ := netip.AddrFromSlice(h.ProtocolAddressTarget())
	return target == l.s.cfg.Gateway || target == l.s.cfg.DNS
}

func (l *guardLink) ipv6Allowed(pkt *stack.PacketBuffer) bool {
	b, ok := pkt.Data().PullUp(header.IPv6MinimumSize + header.ICMPv6MinimumSize)
	if !ok {
		return true // let the stack count it as malformed
	}
	ip := header.IPv6(b)
	if ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
		return true
	}
	switch header.ICMPv6(b[header.IPv6MinimumSize:]).Type() {
	case header.ICMPv6NeighborSolicit:
		return ip.SourceAddress() != header.IPv6Any
	case header.ICMPv6RouterSolicit:
		if l.s.ra != nil {
			l.s.ra.solicited()
		}
		return false
	case header.ICMPv6EchoRequest:
		dst := ip.DestinationAddress()
		if header.IsV6MulticastAddress(dst) || l.s.isOwnAddress(dst) {
			return true
		}
		var mac tcpip.LinkAddress
		if lh := pkt.LinkHeader().Slice(); len(lh) >= header.EthernetMinimumSize {
			mac = header.Ethernet(lh).SourceAddress()
		}
		l.s.echo.forwardIPv6(pkt.Data().AsRange().ToSlice(), mac)
		return false
	}
	return true
}
