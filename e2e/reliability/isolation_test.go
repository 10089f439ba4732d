package reliability

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// gwMAC is the stack's link address for the default network (slirp4netns'
// 52:55 followed by the gateway's IPv4 address).
const gwMAC = "52:55:0a:00:02:02"

// loopCapture records every packet on a namespace's loopback interface that
// comes from or goes to a loopback address (127.0.0.0/8, ::1). It is the
// ground truth of the isolation tests: whatever route a guest packet took
// through the daemon, it reaches a host loopback address only through lo.
type loopCapture struct {
	f *os.File

	mu sync.Mutex
	// seen describes the packets (at most 20); n counts them all.
	seen []string
	n    int
}

// captureLoopback starts capturing on lo inside ns until the test ends.
func captureLoopback(t *testing.T, ns *nstest.Netns) *loopCapture {
	t.Helper()
	c := &loopCapture{}
	inNetns(t, ns, func() {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		// SOCK_DGRAM: the packets without their (all-zero) link header.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			t.Fatalf("packet socket: %v", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}); err != nil {
			unix.Close(fd)
			t.Fatalf("bind the packet socket to lo: %v", err)
		}
		// Non-blocking, so that the runtime's poller serves it and Close
		// ends a pending Read.
		c.f = os.NewFile(uintptr(fd), "lo-capture")
	})
	done := make(chan struct{})
	t.Cleanup(func() { c.f.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := c.f.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				continue
			}
			if desc := loopbackPacket(buf[:n]); desc != "" {
				c.mu.Lock()
				c.n++
				if len(c.seen) < 20 {
					c.seen = append(c.seen, desc)
				}
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// loopbackPacket describes an IP packet from or to a loopback address, and
// returns "" for any other.
func loopbackPacket(p []byte) string {
	var src, dst netip.Addr
	var proto byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		src, dst, proto = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[9]
	case len(p) >= 40 && p[0]>>4 == 6:
		src, dst, proto = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[6]
	default:
		return ""
	}
	if !src.Unmap().IsLoopback() && !dst.Unmap().IsLoopback() {
		return ""
	}
	return fmt.Sprintf("proto %d %v -> %v", proto, src, dst)
}

func (c *loopCapture) count() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, append([]string{}, c.seen...)
}

// startTestDNS serves a.test (A 192.0.2.1) over UDP and TCP on addr:53
// inside ns; any other name is NXDOMAIN.
func startTestDNS(t *testing.T, ns *nstest.Netns, addr string) {
	t.Helper()
	zone := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question; len(q) == 1 && q[0].Name == "a.test." && q[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("a.test. 300 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	e2etest.ServeDNSIn(t, ns, addr, zone)
}

// isolationEnv is the isolation scenarios' machine: the daemon's namespace
// has a TCP and a UDP server on one port of every loopback address (a
// dual-stack [::] socket takes 127.0.0.0/8 and ::1 alike), a capture on
// its lo, and a veth to a "remote" namespace whose DNS server is the
// daemon's upstream, so the daemon itself has no business on lo at all.
type isolationEnv struct {
	*env
	port string
	tcp  *hostServer
	udp  *udpEcho
	lo   *loopCapture
}

func newIsolationEnv(t *testing.T, args ...string) *isolationEnv {
	t.Helper()
	nstest.RequireRoot(t)
	router := nstest.NewNetns(t)
	remote := nstest.NewNetns(t)
	nstest.Veth(t, router, "eth0", "198.51.100.1/24", remote, "eth0", "198.51.100.2/24")
	startTestDNS(t, remote, "198.51.100.2")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 198.51.100.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ie := &isolationEnv{}
	ie.tcp = serveTCP(t, listenTCP(t, router, "[::]:0"), echo)
	ie.port = ie.tcp.port()
	ie.udp = startUDPEcho(t, router, "[::]:"+ie.port)
	ie.lo = captureLoopback(t, router)
	ie.env = newEnv(t, envOpts{router: router, resolvConf: resolv, args: append([]string{"-c", "-6", "--mtu=65520"}, args...)})
	return ie
}

// TestIsolationDisableHostLoopback: with --disable-host-loopback no guest
// packet reaches a host loopback address by any route: the gateway (IPv4
// and IPv6), the DNS address on other ports, or frames a hostile guest
// crafts for 127.0.0.1, 127.1.2.3, 0.0.0.0, ::1 and ::ffff:127.0.0.1 and
// writes to its tap past its own routing. The connects fail at once with
// "network unreachable". DNS through 10.0.2.3 and fd00::3 still works.
func TestIsolationDisableHostLoopback(t *testing.T) {
	e := newIsolationEnv(t, "--disable-host-loopback")
	p := e.port

	for _, addr := range []string{"10.0.2.2", "fd00::2", "10.0.2.3", "fd00::3"} {
		hp := net.JoinHostPort(addr, p)
		if r := runGuest(t, e.guest, 30*time.Second, "connect", hp); r.Errno != "ENETUNREACH" {
			t.Errorf("TCP connect to %s: %+v, want ENETUNREACH", hp, r)
		}
		if r := runGuest(t, e.guest, 30*time.Second, "udp", hp, "hello"); r.OK != 0 {
			t.Errorf("UDP to %s was answered: %+v", hp, r)
		}
	}
	var probes []string
	for _, proto := range []string{"tcp", "udp"} {
		for _, sd := range [][2]string{
			{"10.0.2.100", "10.0.2.2"}, {"fd00::100", "fd00::2"},
			{"10.0.2.100", "127.0.0.1"}, {"10.0.2.100", "127.1.2.3"}, {"10.0.2.100", "0.0.0.0"},
			{"fd00::100", "::1"}, {"fd00::100", "::ffff:127.0.0.1"},
		} {
			probes = append(probes, proto+","+sd[0]+","+sd[1])
		}
	}
	raw := runGuest(t, e.guest, 30*time.Second, append([]string{"raw", "tap0", gwMAC, p}, probes...)...)
	for probe, got := range raw.Replies {
		switch {
		case strings.HasSuffix(probe, ",10.0.2.2") || strings.HasSuffix(probe, ",fd00::2"):
			// The crafting itself works: the stack refuses the gateway
			// with ICMP "network unreachable" (code 0), as it does a
			// real connect.
			if got != "icmp-unreachable/0" {
				t.Errorf("crafted %s: the stack answered %q, want icmp-unreachable/0", probe, got)
			}
		case got == "synack" || got == "udp":
			t.Errorf("crafted %s was answered from the host side (%s)", probe, got)
		}
	}
	if len(raw.Replies) != len(probes) {
		t.Errorf("the raw probes reported %d answers for %d probes: %v", len(raw.Replies), len(probes), raw.Replies)
	}

	for _, server := range []string{"10.0.2.3:53", "[fd00::3]:53"} {
		if r := runGuest(t, e.guest, 30*time.Second, "dns", server, "a.test"); !strings.Contains(r.Reply, "192.0.2.1") {
			t.Errorf("DNS through %s with --disable-host-loopback: %+v", server, r)
		}
	}

	if n, seen := e.lo.count(); n > 0 {
		t.Errorf("%d packets from or to a loopback address crossed the daemon namespace's lo: %q", n, seen)
	}
	if _, _, accepted := e.tcp.counts(); accepted > 0 {
		t.Errorf("the host loopback TCP server accepted %d connections", accepted)
	}
	if n := e.udp.received.Load(); n > 0 {
		t.Errorf("the host loopback UDP server received %d datagrams", n)
	}
	st := e.d.stats(t)
	figure(t, "refused by policy: %d TCP, %d UDP; crafted frames answered: %v; loopback packets seen: 0", st.TCPRefused, st.UDPRefused, raw.Replies)
}

// TestIsolationControl runs the isolation scenario's probes without
// --disable-host-loopback, to show that the capture and the servers do
// see a guest that reaches the host's loopback: without it the isolation
// test could not fail.
func TestIsolationControl(t *testing.T) {
	e := newIsolationEnv(t)
	for _, addr := range []string{"10.0.2.2", "fd00::2"} {
		hp := net.JoinHostPort(addr, e.port)
		if r := runGuest(t, e.guest, 30*time.Second, "connect", hp); r.OK != 1 {
			t.Errorf("TCP connect to %s without --disable-host-loopback: %+v", hp, r)
		}
		if r := runGuest(t, e.guest, 30*time.Second, "udp", hp, "hello"); r.Reply != "hello" {
			t.Errorf("UDP to %s without --disable-host-loopback: %+v", hp, r)
		}
	}
	waitFor(t, 10*time.Second, "the capture to see the loopback traffic", func() bool {
		n, _ := e.lo.count()
		return n > 0
	})
	if _, _, accepted := e.tcp.counts(); accepted != 2 {
		t.Errorf("the host loopback TCP server accepted %d connections, want 2", accepted)
	}
	if n := e.udp.received.Load(); n != 2 {
		t.Errorf("the host loopback UDP server received %d datagrams, want 2", n)
	}
	n, _ := e.lo.count()
	figure(t, "without --disable-host-loopback the capture saw %d loopback packets", n)
}
