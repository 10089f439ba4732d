package cli

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

func TestParseCInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{" \t\n42", 42, true},
		{"+42", 42, true},
		{"-42", -42, true},
		{"-0", 0, true},
		{"", 0, true}, // strtol's end pointer is at the NUL already
		{" ", 0, false},
		{"+", 0, false},
		{"-", 0, false},
		{"42 ", 0, false},
		{"4x", 0, false},
		{"0x10", 0, false},
		{"2147483647", 2147483647, true},
		{"-2147483648", -2147483648, true},
		{"2147483648", 0, false},
		{"99999999999999999999", 0, false},
	} {
		got, ok := parseCInt(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestScanHex(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int32
		ok   bool
	}{
		{"aa", 0xaa, true},
		{"FF", 0xff, true},
		{"0", 0, true},
		{"0x5", 5, true},
		{"0X5", 5, true},
		{"0x", 0, true},
		{"0xg", 0, true},
		{"aazz", 0xaa, true},
		{" \taa", 0xaa, true},
		{"+aa", 0xaa, true},
		{"-0", 0, true},
		{"-1", -1, true},
		{"-0x5", -5, true},
		{"100000001", 1, true},          // truncated to 32 bits
		{"ffffffff", -1, true},          // as an int
		{"10000000000000001", -1, true}, // strtoul saturates
		{"", 0, false},
		{"g", 0, false},
		{"-", 0, false},
		{"+", 0, false},
		{":", 0, false},
		{"x5", 0, false},
	} {
		got, ok := scanHex(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("scanHex(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    [6]byte
		n       int
		bad     bool
		tooLong bool
	}{
		{in: "0e:d4:18:d9:38:fb", want: [6]byte{0x0e, 0xd4, 0x18, 0xd9, 0x38, 0xfb}, n: 6},
		{in: "aa:bb", want: [6]byte{0xaa, 0xbb}, n: 2},
		{in: "1", want: [6]byte{1}, n: 1},
		{in: "aazz:bb", want: [6]byte{0xaa, 0xbb}, n: 2},
		{in: "aa bb:cc", want: [6]byte{0xaa, 0xcc}, n: 2},
		{in: "0x1: 2:+3:0X4:-0:100000005", want: [6]byte{1, 2, 3, 4, 0, 5}, n: 6},
		{in: "aa:bb:cc:dd:ee:ff:00", bad: true, tooLong: true},
		{in: "aa:bb:cc:dd:ee:ff:", bad: true, tooLong: true},
		{in: "aa:bb:cc:dd:ee:ff", want: [6]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, n: 6},
		{in: "", bad: true},
		{in: ":aa", bad: true},
		{in: "aa:", bad: true},
		{in: "aa::bb", bad: true},
		{in: "100", bad: true},
		{in: "-1", bad: true},
		{in: "zz", bad: true},
	} {
		mac, n, err := parseMAC(tc.in)
		if tc.bad {
			if err == nil || err.tooLong != tc.tooLong {
				t.Errorf("parseMAC(%q) error %+v, want bad (too long %v)", tc.in, err, tc.tooLong)
			}
			continue
		}
		if err != nil || mac != tc.want || n != tc.n {
			t.Errorf("parseMAC(%q) = %x, %d, %+v; want %x, %d", tc.in, mac, n, err, tc.want, tc.n)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	for _, tc := range []struct {
		in, want, msg string
	}{
		{"10.0.2.0/24", "10.0.2.0/24", ""},
		{"10.0.135.128/25", "10.0.135.128/25", ""},
		{"128.0.0.0/1", "128.0.0.0/1", ""},
		{"10.0.2.0/09", "", "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24"},
		{"10.0.0.0/08", "10.0.0.0/8", ""},
		{"10.0.2.0/26", "", "prefix length needs to be 1-25"},
		{"10.0.2.0/0", "", "prefix length needs to be 1-25"},
		{"999.0.2.0/24", "", "invalid network address: 999.0.2.0"},
		{"10.0.2.0/", "", "invalid CIDR: 10.0.2.0/"},
		{"10.0.2/24", "", "invalid CIDR: 10.0.2/24"},
		{"1000.0.2.0/24", "", "invalid CIDR: 1000.0.2.0/24"},
		{"10.0.2.0/24\n", "", "invalid CIDR: 10.0.2.0/24\n"},
		{"fd00::/64", "", "invalid CIDR: fd00::/64"},
	} {
		got, msg := parseCIDR(tc.in)
		if msg != tc.msg || (tc.want != "" && got != netip.MustParsePrefix(tc.want)) {
			t.Errorf("parseCIDR(%q) = %v, %q; want %s, %q", tc.in, got, msg, tc.want, tc.msg)
		}
	}
}

func TestStrerror(t *testing.T) {
	for errno, want := range map[syscall.Errno]string{
		unix.ENOENT:       "No such file or directory",
		unix.EACCES:       "Permission denied",
		unix.ENOTDIR:      "Not a directory",
		unix.ENAMETOOLONG: "File name too long",
		unix.ELOOP:        "Too many levels of symbolic links",
	} {
		if got := strerror(errno); got != want {
			t.Errorf("strerror(%d) = %q, want %q", errno, got, want)
		}
	}
	if got := strerror(errors.New("plain")); got != "plain" {
		t.Errorf("strerror(plain) = %q", got)
	}
}

func TestOutboundLiterals(t *testing.T) {
	for _, tc := range []struct {
		in   string
		v6   bool
		want string // "" = rejected
	}{
		{"127.0.0.1", false, "127.0.0.1"},
		{"192.0.2.7", false, "192.0.2.7"},
		{"::1", false, ""},
		{"::ffff:127.0.0.1", false, ""},
		{"1.2.3.04", false, ""},
		{"::1", true, "::1"},
		{"fd00::2", true, "fd00::2"},
		{"::ffff:1.2.3.4", true, "::ffff:1.2.3.4"},
		{"127.0.0.1", true, ""},
		{"fe80::1%lo", true, ""},
		{"[::1]", true, ""},
		{"no-such-interface0", false, ""},
		{"no-such-interface0", true, ""},
	} {
		got, ok := parseOutbound(tc.in, tc.v6)
		switch {
		case tc.want == "" && ok:
			t.Errorf("parseOutbound(%q, v6=%v) = %v, want rejected", tc.in, tc.v6, got)
		case tc.want != "" && (!ok || got != netip.MustParseAddr(tc.want)):
			t.Errorf("parseOutbound(%q, v6=%v) = %v, %v; want %s", tc.in, tc.v6, got, ok, tc.want)
		}
	}
}

// inNetns runs fn on a thread that has joined the network namespace at path.
// The thread stays locked and dies with its goroutine, so the namespace
// never leaks into other goroutines.
func inNetns(t *testing.T, path string, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		f, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("enter netns %s: %v", path, err)
	}
}

// TestOutboundInterfaces resolves --outbound-addr(6)=IFNAME against real
// interfaces made in a throw-away namespace.
func TestOutboundInterfaces(t *testing.T) {
	ns := nstest.NewNetns(t)
	// veth pairs, since not every kernel has the dummy driver.
	ns.Run(t, "ip", "link", "add", "out0", "type", "veth", "peer", "name", "out0p")
	ns.Run(t, "ip", "addr", "add", "192.0.2.10/24", "dev", "out0")
	ns.Run(t, "ip", "addr", "add", "192.0.2.20/24", "dev", "out0")
	ns.Run(t, "ip", "-6", "addr", "add", "2001:db8::5/64", "dev", "out0", "nodad")
	ns.Run(t, "ip", "link", "set", "out0p", "up")
	ns.Run(t, "ip", "link", "set", "out0", "up")
	// out1 has only the kernel's IPv6 link-local address.
	ns.Run(t, "ip", "link", "add", "out1", "type", "veth", "peer", "name", "out1p")
	ns.Run(t, "ip", "link", "set", "out1p", "up")
	ns.Run(t, "ip", "link", "set", "out1", "up")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ns.Run(t, "ip", "-6", "-o", "addr", "show", "dev", "out1"), "fe80::") {
		if time.Now().After(deadline) {
			t.Fatal("out1 got no link-local address within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first address of each family, in the kernel's order, which is
	// what getifaddrs (and ip addr) list first.
	first := func(family, dev string) netip.Addr {
		out := strings.Fields(ns.Run(t, "ip", family, "-o", "addr", "show", "dev", dev))
		for i, f := range out {
			if (f == "inet" || f == "inet6") && i+1 < len(out) {
				return netip.MustParsePrefix(out[i+1]).Addr()
			}
		}
		t.Fatalf("no %s address on %s: %q", family, dev, out)
		return netip.Addr{}
	}
	want4, want6 := first("-4", "out0"), first("-6", "out0")
	if want6.IsLinkLocalUnicast() {
		want6 = want6.WithZone("out0")
	}
	wantLL := first("-6", "out1").WithZone("out1")
	if want4 != netip.MustParseAddr("192.0.2.10") {
		t.Fatalf("kernel lists %v first on out0", want4)
	}

	type result struct {
		cfg *Config
		err error
	}
	var both, linkLocal, noV4 result
	inNetns(t, ns.Path, func() {
		both.cfg, both.err = Parse(argv0, []string{"--outbound-addr=out0", "--outbound-addr6=out0", "1", "tap0"})
		linkLocal.cfg, linkLocal.err = Parse(argv0, []string{"--outbound-addr6", "out1", "1", "tap0"})
		noV4.cfg, noV4.err = Parse(argv0, []string{"--outbound-addr", "out1", "1", "tap0"})
	})
	if both.err != nil || both.cfg.OutboundAddr != want4 || both.cfg.OutboundAddr6 != want6 {
		t.Errorf("out0: %v; got %v and %v, want %v and %v", both.err, cfgField(both.cfg, 4), cfgField(both.cfg, 6), want4, want6)
	}
	if linkLocal.err != nil || linkLocal.cfg.OutboundAddr6 != wantLL {
		t.Errorf("out1 (link-local only): %v; got %v, want %v", linkLocal.err, cfgField(linkLocal.cfg, 6), wantLL)
	}
	var uerr *UsageError
	if !errors.As(noV4.err, &uerr) || uerr.Stderr != "outbound-addr has to be valid ipv4 address or interface name." || uerr.ShowUsage {
		t.Errorf("out1 has no IPv4 address: got %v, %v", noV4.cfg, noV4.err)
	}
	// The test's own namespace has no out0.
	if _, err := Parse(argv0, []string{"--outbound-addr=out0", "1", "tap0"}); err == nil {
		t.Errorf("out0 resolved outside its namespace")
	}
}

func cfgField(c *Config, family int) netip.Addr {
	if c == nil {
		return netip.Addr{}
	}
	if family == 4 {
		return c.OutboundAddr
	}
	return c.OutboundAddr6
}
