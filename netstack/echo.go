package netstack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvipv4 "gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gvipv6 "gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Limits of the echo forwarder.
const (
	echoIdleTimeout = 60 * time.Second
	echoMaxFlows    = 256
)

// echoForwarder sends the guest's pings to their real destination with an
// unprivileged ICMP datagram socket of the host ("ping socket") and passes
// only real replies back. gVisor would otherwise answer every echo request
// itself in promiscuous mode, so that a ping "succeeded" for hosts that do
// not exist (gvisor-tap-vsock#428). Echo requests to the gateway and DNS
// addresses, which are the stack's own, are still answered by the stack.
type echoForwarder struct {
	s *Stack

	mu sync.Mutex
	// flows maps a guest's ping (source, identifier, destination) to its
	// host socket. +checklocks:mu
	flows map[echoKey]*echoFlow
	// denied records that the host refused ping sockets, so the warning
	// is logged once. +checklocks:mu
	denied bool
	closed bool // +checklocks:mu
	// limitLog rate-limits the "too many flows" warning. +checklocks:mu
	limitLog logLimit
}

type echoKey struct {
	src, dst netip.Addr
	ident    uint16
}

type echoFlow struct {
	key  echoKey
	conn *icmp.PacketConn
	mac  tcpip.LinkAddress
	last time.Time // +checklocks:f.mu (of the forwarder)
}

func newEchoForwarder(s *Stack) *echoForwarder {
	return &echoForwarder{s: s, flows: make(map[echoKey]*echoFlow)}
}

// handlePacket sees ICMP packets no endpoint took: echo requests to
// addresses that are not the stack's own.
func (f *echoForwarder) handlePacket(_ stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	// The stack hands echo requests to its own addresses (the gateway,
	// the DNS address) here too before it answers them itself.
	if !pkt.NetworkPacketInfo.LocalAddressTemporary {
		return false
	}
	v6 := pkt.NetworkProtocolNumber == gvipv6.ProtocolNumber
	th := pkt.TransportHeader().Slice()
	if len(th) < header.ICMPv4MinimumSize {
		return false
	}
	if (!v6 && header.ICMPv4(th).Type() != header.ICMPv4Echo) || (v6 && header.ICMPv6(th).Type() != header.ICMPv6EchoRequest) {
		return false
	}
	nh := pkt.Network()
	srcA, dstA := nh.SourceAddress(), nh.DestinationAddress()
	src, _ := netip.AddrFromSlice(srcA.AsSlice())
	dst, _ := netip.AddrFromSlice(dstA.AsSlice())
	if _, v := f.s.policy.outbound(netip.AddrPortFrom(dst, 0)); v != allow {
		return true
	}
	payload := stack.PayloadSince(pkt.TransportHeader())
	msg := payload.ToSlice()
	payload.Release()
	f.forward(src, dst, msg, quote(pkt))
	return true
}

// forwardIPv6 takes an ICMPv6 echo request from the link: gVisor answers
// IPv6 echo requests for any address itself, so they are taken out before
// it sees them (see guardLink). raw is the whole IPv6 packet.
func (f *echoForwarder) forwardIPv6(raw []byte, mac tcpip.LinkAddress) {
	if len(raw) < header.IPv6MinimumSize+header.ICMPv6EchoMinimumSize {
		return
	}
	ip := header.IPv6(raw)
	srcA, dstA := ip.SourceAddress(), ip.DestinationAddress()
	src, _ := netip.AddrFromSlice(srcA.AsSlice())
	dst, _ := netip.AddrFromSlice(dstA.AsSlice())
	if _, v := f.s.policy.outbound(netip.AddrPortFrom(dst, 0)); v != allow {
		return
	}
	end := min(len(raw), header.IPv6MinimumSize+int(ip.PayloadLength()))
	q := quoted{packet: raw[:min(end, header.IPv6MinimumSize+8)], mac: mac, v6: true}
	f.forward(src, dst, raw[header.IPv6MinimumSize:end], q)
}

// forward sends one echo request (msg is the ICMP message) from the guest
// address src to dst through the flow's ping socket.
func (f *echoForwarder) forward(src, dst netip.Addr, msg []byte, q quoted) {
	if len(msg) < 8 {
		return
	}
	ident := uint16(msg[4])<<8 | uint16(msg[5])
	seq := int(uint16(msg[6])<<8 | uint16(msg[7]))
	data := msg[8:]

	fl, err := f.flow(echoKey{src: src, dst: dst, ident: ident}, q.mac)
	if err != nil {
		return
	}
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if dst.Is6() {
		typ = ipv6.ICMPTypeEchoRequest
	}
	// The kernel puts the socket's own identifier in; the reply is mapped
	// back to the guest's.
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0, Seq: seq, Data: data}}).Marshal(nil)
	if err != nil {
		return
	}
	if _, err := fl.conn.WriteTo(b, &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}); err != nil {
		if kind, reply := classifyDialError(err); reply == replyICMP {
			f.s.sendUnreachable(q, kind)
		}
		f.s.log.Debug("ping not sent", "dst", dst.String(), "err", err)
	}
}

// flow returns the socket for a guest ping, opening it on first use.
func (f *echoForwarder) flow(key echoKey, mac tcpip.LinkAddress) (*echoFlow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	if fl, ok := f.flows[key]; ok {
		fl.last = time.Now()
		return fl, nil
	}
	if len(f.flows) >= echoMaxFlows {
		if f.limitLog.allow() {
			f.s.log.Warn("ICMP echo dropped: too many pings in flight (logged at most every 10s)", "limit", echoMaxFlows)
		}
		return nil, errLimit
	}
	network, laddr := "udp4", "0.0.0.0"
	local := f.s.cfg.OutboundAddr
	if key.dst.Is6() {
		network, laddr = "udp6", "::"
		local = f.s.cfg.OutboundAddr6
	}
	if local.IsValid() {
		laddr = local.String()
	}
	conn, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EPROTONOSUPPORT) {
			if !f.denied {
				f.denied = true
				f.s.log.Warn("ICMP echo from the guest is dropped: this host does not let the daemon's group open ping sockets; allow it with sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
					"gid", os.Getegid(), "err", err)
			}
		} else {
			f.s.log.Debug("ping socket", "err", err)
		}
		return nil, err
	}
	fl := &echoFlow{key: key, conn: conn, mac: mac, last: time.Now()}
	f.flows[key] = fl
	f.s.wg.Add(1)
	go f.readReplies(fl)
	return fl, nil
}

// readReplies passes the host's echo replies for one guest ping back to the
// guest, until the flow has been idle for echoIdleTimeout.
func (f *echoForwarder) readReplies(fl *echoFlow) {
	defer f.s.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.flows, fl.key)
		f.mu.Unlock()
		fl.conn.Close()
	}()
	proto := 1 // ICMPv4
	if fl.key.dst.Is6() {
		proto = 58
	}
	buf := make([]byte, 65535)
	for {
		_ = fl.conn.SetReadDeadline(time.Now().Add(echoIdleTimeout))
		n, peer, err := fl.conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				f.mu.Lock()
				idle := time.Since(fl.last) >= echoIdleTimeout
				f.mu.Unlock()
				if !idle {
					continue
				}
			}
			return
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		from := fl.key.dst
		if ua, ok := peer.(*net.UDPAddr); ok {
			if a, ok := netip.AddrFromSlice(ua.IP); ok {
				from = a.Unmap()
			}
		}
		f.s.sendEchoReply(fl, from, uint16(echo.Seq), echo.Data)
	}
}

// sendEchoReply writes an echo reply from src to the guest.
func (s *Stack) sendEchoReply(fl *echoFlow, src netip.Addr, seq uint16, data []byte) {
	if fl.mac == "" {
		return
	}
	var pkt []byte
	proto := gvipv4.ProtocolNumber
	if src.Is4() {
		pkt = make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(data))
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(pkt)),
			TTL:         64,
			Protocol:    uint8(header.ICMPv4ProtocolNumber),
			SrcAddr:     tcpip.AddrFrom4(src.As4()),
			DstAddr:     tcpip.AddrFrom4(fl.key.src.As4()),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		m := header.ICMPv4(pkt[header.IPv4MinimumSize:])
		m.SetType(header.ICMPv4EchoReply)
		m.SetIdent(fl.key.ident)
		m.SetSequence(seq)
		copy(m.Payload(), data)
		m.SetChecksum(^checksum.Checksum(m, 0))
	} else {
		proto = gvipv6.ProtocolNumber
		plen := header.ICMPv6EchoMinimumSize + len(data)
		pkt = make([]byte, header.IPv6MinimumSize+plen)
		srcA, dstA := tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(fl.key.src.As16())
		header.IPv6(pkt).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(plen),
			TransportProtocol: header.ICMPv6ProtocolNumber,
			HopLimit:          64,
			SrcAddr:           srcA,
			DstAddr:           dstA,
		})
		m := header.ICMPv6(pkt[header.IPv6MinimumSize:])
		m.SetType(header.ICMPv6EchoReply)
		m.SetIdent(fl.key.ident)
		m.SetSequence(seq)
		copy(m.Payload(), data)
		m.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: m, Src: srcA, Dst: dstA}))
	}
	if err := s.stack.WritePacketToRemote(nicID, fl.mac, proto, buffer.MakeWithData(pkt)); err != nil {
		s.log.Debug("send echo reply", "err", stackErr(err))
	}
}

// close ends every flow; their goroutines exit and the stack waits.
func (f *echoForwarder) close() {
	f.mu.Lock()
	f.closed = true
	for _, fl := range f.flows {
		fl.conn.Close()
	}
	f.mu.Unlock()
}
