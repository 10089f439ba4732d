package netstack

import (
	"encoding/binary"
	"io"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// pcapLink writes every frame that crosses the tap, in both directions, to
// a pcap capture with Ethernet link type, as tcpdump on the tap would see
// it: ARP, IPv4 and IPv6 alike. (gVisor's sniffer writes raw IP, in which
// ARP is unreadable.) Frames the stack sends with segmentation offload are
// written as the one large segment handed to the tap, with the checksum
// the guest's kernel completes, as on a capture of a NIC with offloads.
type pcapLink struct {
	nested.Endpoint

	mu  sync.Mutex
	w   io.Writer // +checklocks:mu
	buf []byte    // +checklocks:mu; one record, reused
	err error     // +checklocks:mu; the first write error stops the capture
}

// pcapSnapLen is the longest frame the capture says it may hold; the
// tap's frames (a 64 KiB offload segment and its headers at most) are
// always written whole.
const pcapSnapLen = 1 << 18

// linkTypeEthernet is LINKTYPE_ETHERNET of the pcap format.
const linkTypeEthernet = 1

// newPcapLink writes the pcap file header to w and returns the endpoint
// that writes the records.
func newPcapLink(child stack.LinkEndpoint, w io.Writer) (*pcapLink, error) {
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(hdr[4:], 2)          // version 2.4
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], pcapSnapLen)
	binary.LittleEndian.PutUint32(hdr[20:], linkTypeEthernet)
	if _, err := w.Write(hdr[:]); err != nil {
		return nil, err
	}
	l := &pcapLink{w: w}
	l.Endpoint.Init(child, l)
	return l, nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher (guest → stack).
func (l *pcapLink) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	l.record(pkt)
	l.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// WritePackets implements stack.LinkEndpoint (stack → guest).
func (l *pcapLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		l.record(pkt)
	}
	return l.Endpoint.WritePackets(pkts)
}

// record writes one frame (its Ethernet header and all that follows) as
// one Write, so that a reader of a file being written never sees half a
// record.
func (l *pcapLink) record(pkt *stack.PacketBuffer) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	size := pkt.Size()
	var hdr [16]byte
	b := append(l.buf[:0], hdr[:]...)
	binary.LittleEndian.PutUint32(b[0:], uint32(now.Unix()))
	binary.LittleEndian.PutUint32(b[4:], uint32(now.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(b[8:], uint32(size))
	binary.LittleEndian.PutUint32(b[12:], uint32(size))
	for _, v := range pkt.AsSlices() {
		b = append(b, v...)
	}
	l.buf = b
	_, l.err = l.w.Write(b)
}
