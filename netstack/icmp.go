package netstack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// unreachable is the kind of "destination unreachable" error sent to the
// guest; it maps to the ICMPv4 and ICMPv6 codes below.
type unreachable int

const (
	netUnreachable  unreachable = iota // v4 code 0, v6 code 0 (no route)
	hostUnreachable                    // v4 code 1, v6 code 3 (address unreachable)
	portUnreachable                    // v4 code 3, v6 code 4
)

// maxQuote bounds how much of the offending packet an ICMP error carries:
// the whole error then fits the 576-byte minimum IPv4 datagram (RFC 1812
// §4.3.2.3) and the 1280-byte IPv6 minimum MTU (RFC 4443 §2.4).
const (
	maxQuote4 = 576 - header.IPv4MinimumSize - header.ICMPv4MinimumSize
	maxQuote6 = 1280 - header.IPv6MinimumSize - header.ICMPv6MinimumSize
)

// icmpUnreachable4 builds an IPv4 packet from src to the sender of orig
// carrying ICMP destination unreachable with orig quoted. slirp4netns sends
// these from the gateway with TOS 0xc0 and TTL 255, and so do we. It returns
// nil when orig is not a well-formed IPv4 packet with 8 bytes of payload.
func icmpUnreachable4(src netip.Addr, kind unreachable, orig []byte) []byte {
	// orig may be a quote itself, shorter than its total length says, so
	// check only what the error needs: a version-4 header and 8 bytes more.
	ip := header.IPv4(orig)
	if len(orig) < header.IPv4MinimumSize || header.IPVersion(orig) != header.IPv4Version {
		return nil
	}
	hl := int(ip.HeaderLength())
	if hl < header.IPv4MinimumSize || len(orig) < hl+8 {
		return nil
	}
	var code header.ICMPv4Code
	switch kind {
	case netUnreachable:
		code = header.ICMPv4NetUnreachable
	case hostUnreachable:
		code = header.ICMPv4HostUnreachable
	default:
		code = header.ICMPv4PortUnreachable
	}
	quote := orig[:min(len(orig), maxQuote4)]
	total := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	pkt := make([]byte, total)
	out := header.IPv4(pkt)
	out.Encode(&header.IPv4Fields{
		TOS:         0xc0,
		TotalLength: uint16(total),
		TTL:         255,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     ip.SourceAddress(),
	})
	out.SetChecksum(^out.CalculateChecksum())
	icmp := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4DstUnreachable)
	icmp.SetCode(code)
	copy(icmp[header.ICMPv4MinimumSize:], quote)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return pkt
}

// icmpUnreachable6 is icmpUnreachable4 for IPv6 (ICMPv6 type 1).
func icmpUnreachable6(src netip.Addr, kind unreachable, orig []byte) []byte {
	ip := header.IPv6(orig)
	if len(orig) < header.IPv6MinimumSize+8 || header.IPVersion(orig) != header.IPv6Version {
		return nil
	}
	var code header.ICMPv6Code
	switch kind {
	case netUnreachable:
		code = header.ICMPv6NetworkUnreachable
	case hostUnreachable:
		code = header.ICMPv6AddressUnreachable
	default:
		code = header.ICMPv6PortUnreachable
	}
	quote := orig[:min(len(orig), maxQuote6)]
	plen := header.ICMPv6MinimumSize + len(quote)
	pkt := make([]byte, header.IPv6MinimumSize+plen)
	out := header.IPv6(pkt)
	srcAddr := tcpip.AddrFrom16(src.As16())
	dstAddr := ip.SourceAddress()
	out.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(plen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          255,
		SrcAddr:           srcAddr,
		DstAddr:           dstAddr,
	})
	icmp := header.ICMPv6(pkt[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6DstUnreachable)
	icmp.SetCode(code)
	copy(icmp[header.ICMPv6MinimumSize:], quote)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmp,
		Src:    srcAddr,
		Dst:    dstAddr,
	}))
	return pkt
}

// quoted is what the stack keeps of a guest packet so that it can report an
// error about it later: the network header plus the start of the transport
// header, and the guest's link address.
type quoted struct {
	packet []byte
	mac    tcpip.LinkAddress
	v6     bool
}

// quote copies what an ICMP error about pkt must carry.
func quote(pkt *stack.PacketBuffer) quoted {
	nh := pkt.NetworkHeader().Slice()
	th := pkt.TransportHeader().Slice()
	b := make([]byte, 0, len(nh)+8)
	b = append(b, nh...)
	b = append(b, th[:min(len(th), 8)]...)
	var mac tcpip.LinkAddress
	if lh := pkt.LinkHeader().Slice(); len(lh) >= header.EthernetMinimumSize {
		mac = header.Ethernet(lh).SourceAddress()
	}
	return quoted{packet: b, mac: mac, v6: pkt.NetworkProtocolNumber != ipv4.ProtocolNumber}
}

// sendUnreachable tells the guest that the packet q describes cannot be
// delivered. The error comes from the gateway, as in slirp4netns.
func (s *Stack) sendUnreachable(q quoted, kind unreachable) {
	if q.mac == "" {
		return
	}
	var pkt []byte
	proto := ipv4.ProtocolNumber
	if q.v6 {
		if !s.cfg.Gateway6.IsValid() {
			return
		}
		pkt = icmpUnreachable6(s.cfg.Gateway6, kind, q.packet)
		proto = ipv6.ProtocolNumber
	} else {
		pkt = icmpUnreachable4(s.cfg.Gateway, kind, q.packet)
	}
	if pkt == nil {
		return
	}
	if err := s.stack.WritePacketToRemote(nicID, q.mac, proto, buffer.MakeWithData(pkt)); err != nil {
		s.log.Debug("send ICMP unreachable", "err", stackErr(err))
	}
}
