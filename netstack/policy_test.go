package netstack

import (
	"net/netip"
	"testing"
)

func testPolicy(hostLoopback, dnsServed bool) *policy {
	return &policy{
		network:      netip.MustParsePrefix("10.0.2.0/24"),
		gateway:      netip.MustParseAddr("10.0.2.2"),
		dns:          netip.MustParseAddr("10.0.2.3"),
		network6:     netip.MustParsePrefix("fd00::/64"),
		gateway6:     netip.MustParseAddr("fd00::2"),
		dns6:         netip.MustParseAddr("fd00::3"),
		hostLoopback: hostLoopback,
		dnsServed:    dnsServed,
	}
}

func TestPolicyOutbound(t *testing.T) {
	for _, tc := range []struct {
		name         string
		hostLoopback bool
		dnsServed    bool
		dst          string
		want         string
		verdict      verdict
	}{
		{"gateway to host loopback", true, true, "10.0.2.2:8080", "127.0.0.1:8080", allow},
		{"gateway refused without host loopback", false, true, "10.0.2.2:8080", "", refuse},
		{"v6 gateway to ::1", true, true, "[fd00::2]:80", "[::1]:80", allow},
		{"v6 gateway refused", false, true, "[fd00::2]:80", "", refuse},
		{"literal loopback refused", false, true, "127.0.0.5:22", "", refuse},
		{"literal loopback allowed", true, true, "127.0.0.5:22", "127.0.0.5:22", allow},
		{"literal ::1 refused", false, true, "[::1]:22", "", refuse},
		{"v4-mapped loopback refused", false, true, "[::ffff:127.0.0.1]:22", "", refuse},
		{"dns address other port refused", true, true, "10.0.2.3:80", "", refuse},
		{"dns address untranslated with --disable-dns", true, false, "10.0.2.3:53", "10.0.2.3:53", allow},
		{"other subnet address untranslated", true, true, "10.0.2.50:80", "10.0.2.50:80", allow},
		{"remote address as is", false, true, "198.51.100.7:443", "198.51.100.7:443", allow},
		{"remote v6 as is", false, true, "[2001:db8::1]:443", "[2001:db8::1]:443", allow},
		{"limited broadcast dropped", true, true, "255.255.255.255:67", "", drop},
		{"subnet broadcast dropped", true, true, "10.0.2.255:137", "", drop},
		{"multicast dropped", true, true, "224.0.0.251:5353", "", drop},
		{"unspecified dropped", true, true, "0.0.0.0:80", "", drop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy(tc.hostLoopback, tc.dnsServed)
			got, v := p.outbound(netip.MustParseAddrPort(tc.dst))
			if v != tc.verdict {
				t.Fatalf("outbound(%s) verdict = %v, want %v", tc.dst, v, tc.verdict)
			}
			if tc.want != "" && got != netip.MustParseAddrPort(tc.want) {
				t.Fatalf("outbound(%s) = %v, want %s", tc.dst, got, tc.want)
			}
		})
	}
}

func TestPolicySubnetBroadcast(t *testing.T) {
	for _, tc := range []struct{ cidr, want string }{
		{"10.0.2.0/24", "10.0.2.255"},
		{"10.0.135.128/25", "10.0.135.255"},
		{"172.16.0.0/12", "172.31.255.255"},
	} {
		p := &policy{network: netip.MustParsePrefix(tc.cidr)}
		if got := p.subnetBroadcast(); got != netip.MustParseAddr(tc.want) {
			t.Errorf("subnetBroadcast(%s) = %v, want %s", tc.cidr, got, tc.want)
		}
	}
}

func TestPolicyInbound(t *testing.T) {
	p := testPolicy(true, true)
	for _, tc := range []struct{ src, want string }{
		{"127.0.0.1", "10.0.2.2"},
		{"127.3.4.5", "10.0.2.2"},
		{"0.0.0.0", "10.0.2.2"},
		{"192.0.2.2", "192.0.2.2"},
		{"::1", "fd00::2"},
		{"::ffff:127.0.0.1", "10.0.2.2"},
		{"2001:db8::5", "2001:db8::5"},
	} {
		if got := p.inbound(netip.MustParseAddr(tc.src)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("inbound(%s) = %v, want %s", tc.src, got, tc.want)
		}
	}
}
