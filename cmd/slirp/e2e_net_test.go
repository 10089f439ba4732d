package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// testZone answers the names the DNS tests ask for; tag goes into the A
// record so a test can tell upstreams apart.
func testZone(tag byte) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		add := func(s string) {
			rr, err := dns.NewRR(s)
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		switch {
		case q.Name == "a.test." && q.Qtype == dns.TypeA:
			add("a.test. 300 IN A 192.0.2." + strconv.Itoa(int(tag)))
		case q.Name == "a.test." && q.Qtype == dns.TypeAAAA:
			add("a.test. 300 IN AAAA 2001:db8::" + strconv.Itoa(int(tag)))
		case q.Name == "mx.test." && q.Qtype == dns.TypeMX:
			add("mx.test. 300 IN MX 10 mail.test.")
		case q.Name == "txt.test." && q.Qtype == dns.TypeTXT:
			add(`txt.test. 300 IN TXT "hello from the test upstream"`)
		case q.Name == "big.test." && q.Qtype == dns.TypeTXT:
			for i := 0; i < 40; i++ {
				add(`big.test. 300 IN TXT "` + strings.Repeat(string(rune('a'+i%26)), 60) + `"`)
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		if w.LocalAddr().Network() == "udp" {
			m.Truncate(dns.MinMsgSize)
			if opt := r.IsEdns0(); opt != nil {
				m.Truncate(int(opt.UDPSize()))
			}
		}
		w.WriteMsg(m)
	}
}

// startTestDNS serves testZone(tag) on addr:53 over UDP and TCP inside ns.
func startTestDNS(t *testing.T, ns *nstest.Netns, addr string, tag byte) {
	t.Helper()
	e2etest.ServeDNSIn(t, ns, addr, testZone(tag))
}

// TestE2EDNS resolves through 10.0.2.3 against test upstreams on the
// loopback of the namespace the daemon runs in: never the machine's own
// nameserver.
func TestE2EDNS(t *testing.T) {
	router := nstest.NewNetns(t)
	guest := nstest.NewNetns(t, nstest.WithUserns())
	startTestDNS(t, router, "127.0.0.1", 1)
	startTestDNS(t, router, "127.0.0.2", 2)
	// 127.0.0.3:53 is a dead upstream: it takes queries and never answers.
	inNetns(t, router, func() {
		pc, err := net.ListenPacket("udp", "127.0.0.3:53")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
	})
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, daemonOpts{in: router, resolvConf: resolv, args: []string{"-c", "--disable-host-loopback", strconv.Itoa(guest.PID), "tap0"}})

	q := func(name, typ string, extra ...string) string {
		t.Helper()
		r := client(t, guest, append([]string{"dns", "10.0.2.3:53", name, typ}, extra...)...)
		if r.Err != "" {
			t.Fatalf("query %s %s: %s", name, typ, r.Err)
		}
		return r.Reply
	}
	for _, tc := range []struct{ name, typ, want string }{
		{"a.test", "A", "a.test.\t300\tIN\tA\t192.0.2.1"},
		{"a.test", "AAAA", "2001:db8::1"},
		{"mx.test", "MX", "MX\t10 mail.test."},
		{"txt.test", "TXT", `"hello from the test upstream"`},
		{"host.containers.internal", "A", "10.0.2.2"},
		{"host.slirp.internal", "A", "10.0.2.2"},
		{"nope.test", "A", "NXDOMAIN"},
	} {
		if got := q(tc.name, tc.typ); !strings.Contains(got, tc.want) {
			t.Errorf("%s %s = %q, want it to contain %q", tc.name, tc.typ, got, tc.want)
		}
	}
	// A large answer: truncated over UDP (the client offers 512 bytes), in
	// full over TCP.
	if got := q("big.test", "TXT"); !strings.HasPrefix(got, "NOERROR TC") {
		t.Errorf("big answer over UDP = %.80q..., want it truncated (TC)", got)
	}
	if got := q("big.test", "TXT", "tcp"); strings.Count(got, "\n") != 40 || strings.Contains(got, " TC") {
		t.Errorf("big answer over TCP has %d records, want all 40", strings.Count(got, "\n"))
	}

	// A changed resolv.conf is followed without a restart.
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the new upstream to answer", func() bool {
		return strings.Contains(q("a.test", "A"), "192.0.2.2")
	})

	// A dead upstream: the guest gets SERVFAIL, not a hang (the client
	// itself gives up after 10 s).
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "SERVFAIL from a dead upstream", func() bool {
		return strings.HasPrefix(q("other.test", "A"), "SERVFAIL")
	})
}

func TestE2EDHCP(t *testing.T) {
	nstest.RequireTools(t, "busybox")
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"--mtu=65520", strconv.Itoa(ns.PID), "tap0"}})
	ns.Run(t, "ip", "link", "set", "tap0", "up")
	busybox, _ := exec.LookPath("busybox")
	out, err := ns.Command(t.Context(), busybox, "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "tap0", "-s", "/bin/true").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lease of 10.0.2.15 obtained from 10.0.2.2") {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
}

func TestE2EIPv6(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"-6", "--mtu=65520", strconv.Itoa(ns.PID), "tap0"}})
	// No --configure: the guest configures itself from router
	// advertisements (SLAAC), as a slirp4netns guest does.
	ns.Run(t, "ip", "link", "set", "tap0", "up")
	waitFor(t, 20*time.Second, "a SLAAC address in fd00::/64 and a default route", func() bool {
		addr, _ := ns.Output("ip", "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global")
		route, _ := ns.Output("ip", "-6", "route", "show", "default")
		return strings.Contains(addr, "inet6 fd00::") && !strings.Contains(addr, "tentative") && strings.Contains(route, "via fe80::2")
	})
	srv := startHostServer(t, "tcp6", "[::1]:0", "sha")
	r := client(t, ns, "tcp", "[fd00::2]:"+srv.port(), "300000")
	sha, peer := replySHA(r)
	if r.Err != "" || sha != r.SHA {
		t.Fatalf("guest TCP over IPv6 to fd00::2: %+v", r)
	}
	if host, _, _ := net.SplitHostPort(peer); host != "::1" {
		t.Errorf("host saw the guest as %s, want ::1", peer)
	}
	if !strings.HasPrefix(r.Local, "[fd00::") {
		t.Errorf("guest's address %s is not in fd00::/64", r.Local)
	}
	pc := startUDPEcho(t, "[::1]:0")
	r = client(t, ns, "udp", "[fd00::2]:"+strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port), "six")
	if !strings.HasPrefix(r.Reply, "echo:six [::1]:") {
		t.Errorf("guest UDP over IPv6: %+v", r)
	}
}

func TestE2EIPv6Configure(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"-c", "-6", strconv.Itoa(ns.PID), "tap0"}})
	if addr := ns.Run(t, "ip", "-6", "-o", "addr", "show", "dev", "tap0"); !strings.Contains(addr, "inet6 fd00::100/64") {
		t.Errorf("tap0 with -c -6: %q", addr)
	}
	if route := ns.Run(t, "ip", "-6", "route", "show", "default"); !strings.Contains(route, "default via fe80::2 dev tap0") {
		t.Errorf("IPv6 default route: %q", route)
	}
}

// TestE2EPing: pings are answered only by hosts that exist.
func TestE2EPing(t *testing.T) {
	nstest.RequireTools(t, "ping")
	router := nstest.NewNetns(t)
	remote := nstest.NewNetns(t)
	nstest.Veth(t, router, "eth0", "198.51.100.1/24", remote, "eth0", "198.51.100.2/24")
	router.Run(t, "ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad")
	remote.Run(t, "ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
	// The daemon pings with unprivileged ICMP sockets; let it in this
	// test-made namespace (a per-namespace setting).
	router.Run(t, "sh", "-c", `echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range`)
	guest := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{in: router, args: []string{"-c", "-6", strconv.Itoa(guest.PID), "tap0"}})

	ping := func(args ...string) error {
		_, err := guest.Output("ping", append([]string{"-c", "1", "-W", "3"}, args...)...)
		return err
	}
	for _, dst := range []string{"10.0.2.2", "198.51.100.2", "fd00::2", "2001:db8:1::2"} {
		if err := ping(dst); err != nil {
			t.Errorf("ping %s: %v", dst, err)
		}
	}
	for _, dst := range []string{"198.51.100.99", "2001:db8:1::99"} {
		if err := ping(dst); err == nil {
			t.Errorf("ping %s (no such host) was answered", dst)
		}
	}
}

// TestE2EPingNotAllowed: where the host refuses ping sockets the daemon says
// so once and drops the pings; it never answers them itself.
func TestE2EPingNotAllowed(t *testing.T) {
	nstest.RequireTools(t, "ping")
	router := nstest.NewNetns(t)
	remote := nstest.NewNetns(t)
	nstest.Veth(t, router, "eth0", "198.51.100.1/24", remote, "eth0", "198.51.100.2/24")
	router.Run(t, "sh", "-c", `echo "1 0" > /proc/sys/net/ipv4/ping_group_range`)
	guest := nstest.NewNetns(t, nstest.WithUserns())
	d := startDaemon(t, daemonOpts{in: router, args: []string{"-c", strconv.Itoa(guest.PID), "tap0"}})
	for i := 0; i < 2; i++ {
		if _, err := guest.Output("ping", "-c", "1", "-W", "1", "198.51.100.2"); err == nil {
			t.Fatal("ping answered although the daemon may not open ping sockets")
		}
	}
	if n := strings.Count(d.stderr.String(), "ping_group_range"); n != 1 {
		t.Errorf("the ping_group_range warning was logged %d times, want once:\n%s", n, d.stderr)
	}
}
