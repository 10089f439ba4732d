package netstack

import (
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The tests in this package need no root: the "guest" is a second gVisor
// stack at 10.0.2.100 whose link is one end of a SOCK_SEQPACKET socketpair;
// the other end stands in for the tap fd of the stack under test. Hosts are
// real sockets on the machine's loopback.

const guestMTU = 65520

var (
	guestAddr   = netip.MustParseAddr("10.0.2.100")
	gatewayAddr = netip.MustParseAddr("10.0.2.2")
	dnsAddr     = netip.MustParseAddr("10.0.2.3")
)

type testEnv struct {
	stack *Stack
	guest *stack.Stack
}

// newTestEnv starts the stack under test with cfg (network fields filled in
// when empty) and a guest stack wired to it.
func newTestEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	checkGoroutines(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	// Both ends are closed only after both stacks are gone: cleanups run
	// last-registered first.
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	for _, fd := range fds {
		// Room for a few 64 KiB frames in flight each way.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}

	cfg.TapFD = fds[0]
	if cfg.MTU == 0 {
		cfg.MTU = guestMTU
	}
	if !cfg.Network.IsValid() {
		cfg.Network = netip.MustParsePrefix("10.0.2.0/24")
		cfg.Gateway = gatewayAddr
		cfg.DNS = dnsAddr
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	g := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	t.Cleanup(func() { g.Close(); g.Wait() })
	link, err := fdbased.New(&fdbased.Options{
		FDs:            []int{fds[1]},
		MTU:            cfg.MTU,
		EthernetHeader: true,
		Address:        tcpip.LinkAddress([]byte{0x02, 0, 0, 0, 0, 0x64}),
	})
	if err != nil {
		t.Fatalf("guest link: %v", err)
	}
	if err := g.CreateNIC(1, link); err != nil {
		t.Fatalf("guest NIC: %v", err)
	}
	if err := g.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(guestAddr.As4()), PrefixLen: 24},
	}, stack.AddressProperties{}); err != nil {
		t.Fatalf("guest address: %v", err)
	}
	g.SetRouteTable([]tcpip.Route{
		{Destination: mustSubnet("10.0.2.0/24"), NIC: 1},
		{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(cfg.Gateway.As4()), NIC: 1},
	})
	return &testEnv{stack: s, guest: g}
}

func mustSubnet(cidr string) tcpip.Subnet {
	p := netip.MustParsePrefix(cidr)
	s, err := tcpip.NewSubnet(tcpip.AddrFrom4(p.Addr().As4()), tcpip.MaskFromBytes(net.CIDRMask(p.Bits(), 32)))
	if err != nil {
		panic(err)
	}
	return s
}

// dialTCP connects from the guest.
func (e *testEnv) dialTCP(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialContextTCP(ctx, e.guest, toFull1(dst), ipv4.ProtocolNumber)
}

// dialUDP opens a connected UDP socket in the guest.
func (e *testEnv) dialUDP(dst netip.AddrPort) (*gonet.UDPConn, error) {
	raddr := toFull1(dst)
	return gonet.DialUDP(e.guest, nil, &raddr, ipv4.ProtocolNumber)
}

func toFull1(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}
}

// checkGoroutines fails the test if goroutines started during it are still
// running 5 s after its cleanups.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), trimStacks(string(buf[:n])))
	})
}

func trimStacks(s string) string {
	if len(s) > 20000 {
		return s[:20000] + "\n..."
	}
	return s
}

// hostListener listens on 127.0.0.1 and returns the port.
func hostListener(t *testing.T) (net.Listener, uint16) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, uint16(l.Addr().(*net.TCPAddr).Port)
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return p
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func isErr(err error, substr string) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), substr)
}

var _ = os.Getpid

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
