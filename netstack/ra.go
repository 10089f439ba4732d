package netstack

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The router advertisements the stack sends on the tap when IPv6 is on,
// with the values slirp4netns (libslirp) uses, plus an MTU option and the
// DNS address (RDNSS, RFC 8106) so that guests need no DHCPv6.
const (
	raRouterLifetime   = 1800 * time.Second
	raValidLifetime    = 86400 * time.Second
	raPreferedLifetime = 14400 * time.Second
	raRDNSSLifetime    = 3600 * time.Second
	// Unsolicited advertisements: a few quick ones at start so a guest
	// that brings its link up later still configures itself soon, then
	// every 200-600 s as libslirp does.
	raMinInterval = 200 * time.Second
	raMaxInterval = 600 * time.Second
	// raMinGap rate-limits advertisements sent in reply to solicitations.
	raMinGap = 500 * time.Millisecond
)

// allNodesMAC is the Ethernet address of ff02::1.
const allNodesMAC = tcpip.LinkAddress("\x33\x33\x00\x00\x00\x01")

// RouterLinkLocal is the router's link-local address, the source of its
// advertisements and the guest's IPv6 default gateway (fe80::2 as in
// slirp4netns).
var RouterLinkLocal = netip.MustParseAddr("fe80::2")

var linkLocalGateway = RouterLinkLocal

// routerAdvertiser sends router advertisements for the IPv6 network.
type routerAdvertiser struct {
	s    *Stack
	kick chan struct{} // a solicitation arrived

	mu   sync.Mutex
	last time.Time // when the last advertisement went out. +checklocks:mu
}

func newRouterAdvertiser(s *Stack) *routerAdvertiser {
	return &routerAdvertiser{s: s, kick: make(chan struct{}, 1)}
}

// solicited asks for an advertisement now; it never blocks.
func (r *routerAdvertiser) solicited() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run sends advertisements until the stack closes.
func (r *routerAdvertiser) run() {
	defer r.s.wg.Done()
	startup := []time.Duration{0, time.Second, 4 * time.Second, 16 * time.Second}
	next := time.NewTimer(0)
	defer next.Stop()
	for {
		select {
		case <-r.s.ctx.Done():
			return
		case <-r.kick:
			r.mu.Lock()
			recent := time.Since(r.last) < raMinGap
			r.mu.Unlock()
			if !recent {
				r.send()
			}
		case <-next.C:
			r.send()
			if len(startup) > 1 {
				startup = startup[1:]
				next.Reset(startup[0])
			} else {
				next.Reset(raMinInterval + rand.N(raMaxInterval-raMinInterval))
			}
		}
	}
}

func (r *routerAdvertiser) send() {
	r.mu.Lock()
	r.last = time.Now()
	r.mu.Unlock()
	pkt := buildRouterAdvert(r.s.cfg.MAC, uint32(r.s.cfg.MTU), r.s.cfg.Network6, r.s.cfg.DNS6)
	if err := r.s.stack.WritePacketToRemote(nicID, allNodesMAC, header.IPv6ProtocolNumber, buffer.MakeWithData(pkt)); err != nil {
		r.s.log.Debug("send router advertisement", "err", stackErr(err))
	}
}

// buildRouterAdvert builds the IPv6 packet of a router advertisement from
// fe80::2 to all nodes: prefix (on-link, autonomous), source link-layer
// address, MTU and RDNSS options.
func buildRouterAdvert(mac []byte, mtu uint32, prefix netip.Prefix, dns netip.Addr) []byte {
	const (
		raBody   = header.NDPRAMinimumSize
		slla     = 8
		mtuOpt   = 8
		prefOpt  = 32
		rdnssOpt = 24
	)
	plen := header.ICMPv6HeaderSize + raBody + slla + mtuOpt + prefOpt + rdnssOpt
	pkt := make([]byte, header.IPv6MinimumSize+plen)
	src := tcpip.AddrFrom16(linkLocalGateway.As16())
	dst := header.IPv6AllNodesMulticastAddress
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(plen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	icmp := header.ICMPv6(pkt[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6RouterAdvert)
	b := icmp[header.ICMPv6HeaderSize:]
	b[0] = 64 // current hop limit; flags M=O=0
	binary.BigEndian.PutUint16(b[2:], uint16(raRouterLifetime/time.Second))
	// reachable time and retransmit timer stay 0 (unspecified)
	o := b[raBody:]
	// Source link-layer address.
	o[0], o[1] = 1, 1
	copy(o[2:8], mac)
	o = o[slla:]
	// MTU.
	o[0], o[1] = 5, 1
	binary.BigEndian.PutUint32(o[4:], mtu)
	o = o[mtuOpt:]
	// Prefix information: on-link and autonomous.
	o[0], o[1], o[2], o[3] = 3, 4, byte(prefix.Bits()), 0xc0
	binary.BigEndian.PutUint32(o[4:], uint32(raValidLifetime/time.Second))
	binary.BigEndian.PutUint32(o[8:], uint32(raPreferedLifetime/time.Second))
	p := prefix.Masked().Addr().As16()
	copy(o[16:32], p[:])
	o = o[prefOpt:]
	// Recursive DNS server.
	o[0], o[1] = 25, 3
	binary.BigEndian.PutUint32(o[4:], uint32(raRDNSSLifetime/time.Second))
	d := dns.As16()
	copy(o[8:24], d[:])

	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: src, Dst: dst}))
	return pkt
}
