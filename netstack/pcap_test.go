package netstack

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The capture is a pcap file of Ethernet frames: the file header says so,
// and each frame, inbound or outbound, comes back byte for byte with its
// Ethernet header (an ARP request here, which a raw-IP capture loses).
func TestPcapLinkWritesEthernetFrames(t *testing.T) {
	var out bytes.Buffer
	child := channel.New(4, 1500, "\x02\x00\x00\x00\x00\x01")
	defer child.Close()
	l, err := newPcapLink(child, &out)
	if err != nil {
		t.Fatal(err)
	}

	arp := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(arp).Encode(&header.EthernetFields{
		SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber,
	})
	a := header.ARP(arp[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.ProtocolAddressTarget(), []byte{10, 0, 2, 2})
	in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(arp)})
	defer in.DecRef()
	if _, ok := in.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		t.Fatal("consume the Ethernet header")
	}
	l.DeliverNetworkPacket(header.ARPProtocolNumber, in)

	frame := bytes.Repeat([]byte{0xab}, 100)
	outPkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	var list stack.PacketBufferList
	list.PushBack(outPkt)
	if n, err := l.WritePackets(list); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	list.DecRef()

	b := out.Bytes()
	if len(b) < 24 {
		t.Fatalf("capture of %d bytes", len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != 0xa1b2c3d4 || le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 ||
		le.Uint32(b[16:]) != pcapSnapLen || le.Uint32(b[20:]) != linkTypeEthernet {
		t.Fatalf("file header % x", b[:24])
	}
	b = b[24:]
	for i, want := range [][]byte{arp, frame} {
		if len(b) < 16 {
			t.Fatalf("record %d missing (%d bytes left)", i, len(b))
		}
		caplen, origlen := le.Uint32(b[8:]), le.Uint32(b[12:])
		if caplen != uint32(len(want)) || origlen != caplen || le.Uint32(b[0:]) == 0 {
			t.Fatalf("record %d header % x, want %d bytes", i, b[:16], len(want))
		}
		if got := b[16 : 16+caplen]; !bytes.Equal(got, want) {
			t.Errorf("record %d = % x, want % x", i, got, want)
		}
		b = b[16+caplen:]
	}
	if len(b) != 0 {
		t.Errorf("%d bytes after the records", len(b))
	}
}
