package cli

import (
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/internal/buildinfo"
)

func TestUsageHasWhatConsumersGrepFor(t *testing.T) {
	u := Usage("slirp")
	if !strings.HasPrefix(u, "Usage: slirp [OPTION]... PID|PATH [TAPNAME]\n") {
		t.Errorf("usage starts %q", strings.SplitN(u, "\n", 2)[0])
	}
	// podman/buildah, rootlesskit, dockerd-rootless.sh, containerd-rootless.sh.
	for _, s := range []string{
		"--disable-host-loopback", "--mtu", "--enable-sandbox", "--enable-seccomp", "--cidr",
		"--outbound-addr", "--enable-ipv6", "--netns-type", "--api-socket",
		"--userns-path", "--disable-dns", "--macaddress", "--target-type",
		"--resolv-conf", "--log-level", "--pid-file",
	} {
		if !strings.Contains(u, s) {
			t.Errorf("usage lacks %q", s)
		}
	}
	// grep -w: not preceded or followed by a word character.
	if !regexp.MustCompile(`(^|[^A-Za-z0-9_])--netns-type([^A-Za-z0-9_]|$)`).MatchString(u) {
		t.Errorf("usage has no whole-word --netns-type")
	}
	if _, err := exec.LookPath("grep"); err == nil {
		cmd := exec.Command("grep", "-qw", "--", "--netns-type")
		cmd.Stdin = strings.NewReader(u)
		if err := cmd.Run(); err != nil {
			t.Errorf("grep -qw -- --netns-type on the usage: %v", err)
		}
	}
}

func TestVersionText(t *testing.T) {
	got := VersionText()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	want := []string{"slirp4netns version 1.2.0+slirp-" + buildinfo.Version()}
	if c := buildinfo.Commit(); c != "" {
		want = append(want, "commit: "+c)
	}
	want = append(want, "", "SLIRP_CONFIG_VERSION_MAX: 4") // libslirp checked below
	if len(lines) != len(want) {
		t.Fatalf("VersionText has %d lines, want %d: %q", len(lines), len(want), got)
	}
	for i, w := range want {
		if w != "" && lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	lib := lines[len(lines)-2]
	if !strings.HasPrefix(lib, "libslirp: 4.7.0 (compatible; gvisor netstack ") || !strings.HasSuffix(lib, ")") {
		t.Errorf("libslirp line %q", lib)
	}
	// runc-style: every line after the first splits into key and value.
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ": "); !ok || k == "" || v == "" || strings.Contains(v, ": ") {
			t.Errorf("line %q is not key: value", l)
		}
	}
}

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		cidr                                               string
		network, netmask, gw, dns, dhcpStart, dhcpEnd, rec string
	}{
		{"10.0.2.0/24", "10.0.2.0", "255.255.255.0", "10.0.2.2", "10.0.2.3", "10.0.2.15", "10.0.2.30", "10.0.2.100"},
		{"10.0.135.128/25", "10.0.135.128", "255.255.255.128", "10.0.135.130", "10.0.135.131", "10.0.135.143", "10.0.135.158", "10.0.135.228"},
		{"172.16.0.0/12", "172.16.0.0", "255.240.0.0", "172.16.0.2", "172.16.0.3", "172.16.0.15", "172.16.0.30", "172.16.0.100"},
		{"128.0.0.0/1", "128.0.0.0", "128.0.0.0", "128.0.0.2", "128.0.0.3", "128.0.0.15", "128.0.0.30", "128.0.0.100"},
		{"10.0.1.0/24", "10.0.1.0", "255.255.255.0", "10.0.1.2", "10.0.1.3", "10.0.1.15", "10.0.1.30", "10.0.1.100"},
	} {
		c := &Config{CIDR: netip.MustParsePrefix(tc.cidr)}
		for _, f := range []struct {
			name string
			got  netip.Addr
			want string
		}{
			{"Network", c.Network(), tc.network},
			{"Netmask", c.Netmask(), tc.netmask},
			{"Gateway", c.Gateway(), tc.gw},
			{"DNS", c.DNS(), tc.dns},
			{"DHCPStart", c.DHCPStart(), tc.dhcpStart},
			{"DHCPEnd", c.DHCPEnd(), tc.dhcpEnd},
			{"RecommendedIP", c.RecommendedIP(), tc.rec},
		} {
			if f.got != netip.MustParseAddr(f.want) {
				t.Errorf("%s: %s() = %v, want %s", tc.cidr, f.name, f.got, f.want)
			}
		}
	}
	// A zero Config means the defaults.
	var zero Config
	if zero.Gateway() != netip.MustParseAddr("10.0.2.2") || zero.RecommendedIP() != netip.MustParseAddr("10.0.2.100") {
		t.Errorf("zero Config: gateway %v, recommended %v", zero.Gateway(), zero.RecommendedIP())
	}
}

// The expected banners were printed by slirp4netns 1.2.0 for the same
// options (run in a throw-away namespace, stdout captured after exit-fd).
func TestBanner(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg := mustParse(t, "-c", "--mtu", "65520", "-e", "5", "1", "tap0")
		want := "Starting slirp\n" +
			"* MTU:             65520\n" +
			"* Network:         10.0.2.0\n" +
			"* Netmask:         255.255.255.0\n" +
			"* Gateway:         10.0.2.2\n" +
			"* DNS:             10.0.2.3\n" +
			"* DHCP begin:      10.0.2.15\n" +
			"* DHCP end:        10.0.2.30\n" +
			"* Recommended IP:  10.0.2.100\n" +
			"WARNING: 127.0.0.1:* on the host is accessible as 10.0.2.2 (set --disable-host-loopback to prohibit connecting to 127.0.0.1:*)\n"
		if got := Banner(cfg); got != want {
			t.Errorf("Banner:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("everything", func(t *testing.T) {
		cfg := mustParse(t, "-c", "-6", "--cidr=10.0.135.128/25", "--disable-host-loopback", "--api-socket", "/tmp/s4/api.sock",
			"--outbound-addr=127.0.0.1", "--outbound-addr6=::1", "--macaddress=aa:bb", "-e", "5", "1", "tap1")
		want := "Starting slirp\n" +
			"* MTU:             1500\n" +
			"* Network:         10.0.135.128\n" +
			"* Netmask:         255.255.255.128\n" +
			"* Gateway:         10.0.135.130\n" +
			"* DNS:             10.0.135.131\n" +
			"* DHCP begin:      10.0.135.143\n" +
			"* DHCP end:        10.0.135.158\n" +
			"* Recommended IP:  10.0.135.228\n" +
			"* API Socket:      /tmp/s4/api.sock\n" +
			"* Outbound IPv4:    127.0.0.1\n" +
			"* Outbound IPv6:    ::1\n" +
			"* MAC address:     aa:bb:00:00:00:00\n"
		if got := Banner(cfg); got != want {
			t.Errorf("Banner:\n got %q\nwant %q", got, want)
		}
		if want := []string{warnIPv6, warnOutbound, warnOutbound6}; strings.Join(cfg.Warnings, "|") != strings.Join(want, "|") {
			t.Errorf("Warnings = %q, want %q", cfg.Warnings, want)
		}
	})
	t.Run("link-local outbound prints without zone", func(t *testing.T) {
		cfg := defaultConfig()
		cfg.OutboundAddr6 = netip.MustParseAddr("fe80::1%eth0")
		cfg.MACAddress = net.HardwareAddr{1, 2, 3, 4, 5, 6}
		got := Banner(cfg)
		for _, s := range []string{"* Outbound IPv6:    fe80::1\n", "* MAC address:     01:02:03:04:05:06\n"} {
			if !strings.Contains(got, s) {
				t.Errorf("banner %q lacks %q", got, s)
			}
		}
	})
}
