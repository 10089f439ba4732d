package dhcp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func testServer(t *testing.T, pool int) *Server {
	t.Helper()
	s, err := New(Config{
		Network:   netip.MustParsePrefix("10.0.2.0/24"),
		ServerIP:  netip.MustParseAddr("10.0.2.2"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.0.2.3")},
		PoolStart: netip.MustParseAddr("10.0.2.15"),
		PoolSize:  pool,
		MTU:       65520,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mac(i byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, i} }

// exchange runs DISCOVER → OFFER → REQUEST → ACK for one client.
func exchange(t *testing.T, s *Server, hw net.HardwareAddr) (offer, ack *dhcpv4.DHCPv4) {
	t.Helper()
	disc, err := dhcpv4.NewDiscovery(hw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Reply(disc.ToBytes())
	if err != nil {
		t.Fatalf("DISCOVER: %v", err)
	}
	if offer, err = dhcpv4.FromBytes(b); err != nil {
		t.Fatal(err)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	b, err = s.Reply(req.ToBytes())
	if err != nil {
		t.Fatalf("REQUEST: %v", err)
	}
	if ack, err = dhcpv4.FromBytes(b); err != nil {
		t.Fatal(err)
	}
	return offer, ack
}

func TestLeaseLikeLibslirp(t *testing.T) {
	s := testServer(t, 0)
	offer, ack := exchange(t, s, mac(1))
	if offer.MessageType() != dhcpv4.MessageTypeOffer || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("types %v, %v; want OFFER, ACK", offer.MessageType(), ack.MessageType())
	}
	for name, got := range map[string]string{
		"yiaddr":    ack.YourIPAddr.String(),
		"server id": ack.ServerIdentifier().String(),
		"router":    ack.Router()[0].String(),
		"dns":       ack.DNS()[0].String(),
		"netmask":   net.IP(ack.SubnetMask()).String(),
	} {
		want := map[string]string{"yiaddr": "10.0.2.15", "server id": "10.0.2.2", "router": "10.0.2.2", "dns": "10.0.2.3", "netmask": "255.255.255.0"}[name]
		if got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if lt := ack.IPAddressLeaseTime(0); lt != 24*time.Hour {
		t.Errorf("lease time %v, want 24h", lt)
	}
	if mtu := ack.Options.Get(dhcpv4.OptionInterfaceMTU); len(mtu) != 2 || int(mtu[0])<<8|int(mtu[1]) != 65520 {
		t.Errorf("MTU option %v, want 65520", mtu)
	}
	// The same client keeps its address; the next gets the next one.
	if _, again := exchange(t, s, mac(1)); !again.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Errorf("second lease for the same client: %v, want %v", again.YourIPAddr, ack.YourIPAddr)
	}
	if _, other := exchange(t, s, mac(2)); other.YourIPAddr.String() != "10.0.2.16" {
		t.Errorf("second client got %v, want 10.0.2.16", other.YourIPAddr)
	}
}

func TestPoolExhausted(t *testing.T) {
	s := testServer(t, 2)
	exchange(t, s, mac(1))
	exchange(t, s, mac(2))
	disc, _ := dhcpv4.NewDiscovery(mac(3))
	if _, err := s.Reply(disc.ToBytes()); err == nil {
		t.Fatal("a third client got an address from a pool of 2")
	}
}

func TestRequestForWrongAddressIsNAKed(t *testing.T) {
	s := testServer(t, 0)
	req, err := dhcpv4.NewDiscovery(mac(1), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.2.99"))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Reply(req.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := dhcpv4.FromBytes(b)
	if resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("REQUEST for an address not ours: %v, want NAK", resp.MessageType())
	}
}

func TestNewRejectsBadPool(t *testing.T) {
	_, err := New(Config{
		Network:   netip.MustParsePrefix("10.0.2.0/24"),
		ServerIP:  netip.MustParseAddr("10.0.2.2"),
		PoolStart: netip.MustParseAddr("10.0.2.250"),
		PoolSize:  16,
	})
	if err == nil {
		t.Fatal("a pool running past the network was accepted")
	}
}

func FuzzReply(f *testing.F) {
	disc, _ := dhcpv4.NewDiscovery(mac(1))
	f.Add(disc.ToBytes())
	req, _ := dhcpv4.NewDiscovery(mac(2), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	f.Add(req.ToBytes())
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := testServer(t, 4)
		out, err := s.Reply(b)
		if err != nil {
			return
		}
		if _, err := dhcpv4.FromBytes(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}
