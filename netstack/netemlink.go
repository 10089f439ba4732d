package netstack

import (
	"container/heap"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/slirp-dev/slirp/netem"
)

// netemLink applies the test rig's impairments (package netem) to the
// packets between the tap and the stack: it drops, delays, duplicates,
// reorders, corrupts and rate-limits them inside the user-mode stack, so no
// privilege is needed. With nothing configured it only checks one flag per
// packet.
//
// Corruption flips one bit of a packet sent to the guest, whose kernel then
// drops it on its checksum as a real receiver would; a corrupted packet
// from the guest is dropped here for the same reason, since the stack trusts
// the tap's checksums.
type netemLink struct {
	nested.Endpoint
	engine *netem.Engine

	mu      sync.Mutex
	queue   packetQueue // +checklocks:mu
	seq     uint64      // +checklocks:mu
	closed  bool        // +checklocks:mu
	running bool        // the release goroutine was started. +checklocks:mu
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newNetemLink(child stack.LinkEndpoint, engine *netem.Engine) *netemLink {
	l := &netemLink{engine: engine, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	l.Endpoint.Init(child, l)
	return l
}

// Attach starts the release goroutine with the link, and stops it (dropping
// whatever is still delayed) when the NIC goes away.
func (l *netemLink) Attach(d stack.NetworkDispatcher) {
	if d != nil {
		l.mu.Lock()
		if !l.closed && !l.running {
			l.running = true
			go l.run()
		}
		l.mu.Unlock()
	}
	l.Endpoint.Attach(d)
	if d == nil {
		l.shutdown()
	}
}

// Close stops the release goroutine and closes the child.
func (l *netemLink) Close() {
	l.shutdown()
	l.Endpoint.Close()
}

// shutdown stops the release goroutine, waits for it and drops whatever is
// still delayed.
func (l *netemLink) shutdown() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	running := l.running
	l.mu.Unlock()
	close(l.stop)
	if running {
		<-l.done
	}
	l.mu.Lock()
	pending := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, p := range pending {
		p.pkt.DecRef()
	}
}

// DeliverNetworkPacket implements stack.NetworkDispatcher (guest → stack).
func (l *netemLink) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if !l.engine.Active() {
		l.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	dec := l.engine.Decide(netem.Ingress, time.Now(), inboundInfo(proto, pkt))
	if dec.Drop || dec.Corrupt {
		return
	}
	for i := 0; i < dec.Copies; i++ {
		if dec.Delay == 0 {
			l.Endpoint.DeliverNetworkPacket(proto, pkt)
			continue
		}
		l.schedule(dec.Delay, pendingPacket{inbound: true, proto: proto, pkt: pkt.Clone()})
	}
}

// WritePackets implements stack.LinkEndpoint (stack → guest).
func (l *netemLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if !l.engine.Active() {
		return l.Endpoint.WritePackets(pkts)
	}
	var now stack.PacketBufferList
	n := 0
	for _, pkt := range pkts.AsSlice() {
		n++
		dec := l.engine.Decide(netem.Egress, time.Now(), outboundInfo(pkt))
		if dec.Drop {
			continue
		}
		for i := 0; i < dec.Copies; i++ {
			var p *stack.PacketBuffer
			switch {
			case dec.Corrupt:
				p = corruptCopy(pkt, dec.CorruptBit)
			case dec.Delay > 0 || i > 0:
				p = pkt.Clone()
			default:
				p = pkt
				p.IncRef()
			}
			if dec.Delay == 0 {
				now.PushBack(p)
				continue
			}
			l.schedule(dec.Delay, pendingPacket{pkt: p})
		}
	}
	if now.Len() > 0 {
		l.Endpoint.WritePackets(now)
		now.DecRef()
	}
	return n, nil
}

// corruptCopy returns a deep copy of pkt with one bit of its payload (or of
// its transport header when it has none) flipped.
func corruptCopy(pkt *stack.PacketBuffer, r uint64) *stack.PacketBuffer {
	b := pkt.ToBuffer()
	data := b.Flatten()
	b.Release()
	hdr := pkt.HeaderSize()
	start := hdr - len(pkt.TransportHeader().Slice())
	if start < 0 || start >= len(data) {
		start = 0
	}
	span := len(data) - start
	if span > 0 {
		bit := r % uint64(span*8)
		data[start+int(bit/8)] ^= 1 << (bit % 8)
	}
	return rebuild(pkt, data)
}

// rebuild makes a new packet carrying data with pkt's header layout.
func rebuild(pkt *stack.PacketBuffer, data []byte) *stack.PacketBuffer {
	lh := len(pkt.LinkHeader().Slice())
	nh := len(pkt.NetworkHeader().Slice())
	th := len(pkt.TransportHeader().Slice())
	np := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: lh + nh + th,
		Payload:            buffer.MakeWithData(data[lh+nh+th:]),
	})
	copy(np.TransportHeader().Push(th), data[lh+nh:lh+nh+th])
	copy(np.NetworkHeader().Push(nh), data[lh:lh+nh])
	copy(np.LinkHeader().Push(lh), data[:lh])
	np.NetworkProtocolNumber = pkt.NetworkProtocolNumber
	np.TransportProtocolNumber = pkt.TransportProtocolNumber
	np.EgressRoute = pkt.EgressRoute
	np.GSOOptions = pkt.GSOOptions
	return np
}

func (l *netemLink) schedule(d time.Duration, p pendingPacket) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		p.pkt.DecRef()
		return
	}
	p.at = time.Now().Add(d)
	p.seq = l.seq
	l.seq++
	heap.Push(&l.queue, p)
	first := l.queue[0].seq == p.seq
	l.mu.Unlock()
	if first {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// run releases delayed packets in time order.
func (l *netemLink) run() {
	defer close(l.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.mu.Lock()
		var due []pendingPacket
		now := time.Now()
		for len(l.queue) > 0 && !l.queue[0].at.After(now) {
			due = append(due, heap.Pop(&l.queue).(pendingPacket))
		}
		next := time.Hour
		if len(l.queue) > 0 {
			next = l.queue[0].at.Sub(now)
		}
		l.mu.Unlock()
		for _, p := range due {
			l.release(p)
		}
		t.Reset(next)
		select {
		case <-l.stop:
			return
		case <-l.wake:
		case <-t.C:
		}
	}
}

func (l *netemLink) release(p pendingPacket) {
	if p.inbound {
		l.Endpoint.DeliverNetworkPacket(p.proto, p.pkt)
		p.pkt.DecRef()
		return
	}
	var list stack.PacketBufferList
	list.PushBack(p.pkt)
	l.Endpoint.WritePackets(list)
	list.DecRef()
}

type pendingPacket struct {
	at      time.Time
	seq     uint64
	inbound bool
	proto   tcpip.NetworkProtocolNumber
	pkt     *stack.PacketBuffer
}

// packetQueue is a min-heap by release time, then arrival order.
type packetQueue []pendingPacket

func (q packetQueue) Len() int { return len(q) }
func (q packetQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q packetQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *packetQueue) Push(x any)   { *q = append(*q, x.(pendingPacket)) }
func (q *packetQueue) Pop() any {
	old := *q
	p := old[len(old)-1]
	*q = old[:len(old)-1]
	return p
}

// inboundInfo describes a packet from the guest (its Remote is the
// destination). pkt starts at the network header.
func inboundInfo(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) netem.Packet {
	p := netem.Packet{Size: pkt.Data().Size()}
	b, _ := pkt.Data().PullUp(min(pkt.Data().Size(), header.IPv6MinimumSize+header.TCPMinimumSize))
	var tproto tcpip.TransportProtocolNumber
	var rest []byte
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(b) < header.IPv4MinimumSize {
			return p
		}
		ip := header.IPv4(b)
		dst := ip.DestinationAddress()
		p.Remote, _ = netip.AddrFromSlice(dst.AsSlice())
		tproto = ip.TransportProtocol()
		if hl := int(ip.HeaderLength()); hl <= len(b) {
			rest = b[hl:]
		}
	case header.IPv6ProtocolNumber:
		if len(b) < header.IPv6MinimumSize {
			return p
		}
		ip := header.IPv6(b)
		dst := ip.DestinationAddress()
		p.Remote, _ = netip.AddrFromSlice(dst.AsSlice())
		tproto = ip.TransportProtocol()
		rest = b[header.IPv6MinimumSize:]
	default:
		return p
	}
	p.Proto, p.Ports = transportInfo(tproto, rest)
	return p
}

// outboundInfo describes a packet to the guest (its Remote is the source).
func outboundInfo(pkt *stack.PacketBuffer) netem.Packet {
	p := netem.Packet{Size: pkt.Size()}
	nh := pkt.NetworkHeader().Slice()
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(nh) >= header.IPv4MinimumSize {
			src := header.IPv4(nh).SourceAddress()
			p.Remote, _ = netip.AddrFromSlice(src.AsSlice())
		}
	case header.IPv6ProtocolNumber:
		if len(nh) >= header.IPv6MinimumSize {
			src := header.IPv6(nh).SourceAddress()
			p.Remote, _ = netip.AddrFromSlice(src.AsSlice())
		}
	}
	p.Proto, p.Ports = transportInfo(pkt.TransportProtocolNumber, pkt.TransportHeader().Slice())
	return p
}

func transportInfo(proto tcpip.TransportProtocolNumber, b []byte) (string, [2]uint16) {
	switch proto {
	case header.TCPProtocolNumber:
		if len(b) >= 4 {
			t := header.TCP(b)
			return "tcp", [2]uint16{t.SourcePort(), t.DestinationPort()}
		}
		return "tcp", [2]uint16{}
	case header.UDPProtocolNumber:
		if len(b) >= 4 {
			u := header.UDP(b)
			return "udp", [2]uint16{u.SourcePort(), u.DestinationPort()}
		}
		return "udp", [2]uint16{}
	case header.ICMPv4ProtocolNumber, header.ICMPv6ProtocolNumber:
		return "icmp", [2]uint16{}
	}
	return "", [2]uint16{}
}
