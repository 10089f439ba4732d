package cli

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/slirp-dev/slirp/internal/buildinfo"
)

// Usage returns the --help text (for stdout): slirp4netns 1.2.0's, with
// tapfd added to --netns-type, followed by slirp's own options. Callers such
// as podman and rootlesskit detect features by searching it for option
// names, so every slirp4netns option keeps its spelling.
func Usage(argv0 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [OPTION]... PID|PATH [TAPNAME]\n", argv0)
	// The odd " \t" and "\t" separators are slirp4netns'.
	b.WriteString(`User-mode networking for unprivileged network namespaces.

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
-6, --enable-ipv6        enable IPv6 (experimental)
-a, --api-socket=PATH    specify API socket path
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE ` + "\t" + ` specify network namespace type ([path|pid|tapfd], default=pid)
--userns-path=PATH` + "\t" + ` specify user namespace path
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)
--enable-seccomp         enable seccomp to limit syscalls (experimental)
--outbound-addr=IPv4     sets outbound ipv4 address to bound to (experimental)
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (experimental)
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect (experimental)
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns|bess], default=netns)
-h, --help               show this help and exit
-v, --version            show version and exit

Options of slirp (not in slirp4netns; only accepted spelled in full):
--resolv-conf=PATH       read the DNS forwarder's upstream nameservers from PATH (default=/etc/resolv.conf)
--log-level=LEVEL        log to stderr at LEVEL: debug, info, warn or error (default=info)
--pid-file=PATH          write the process ID to PATH
--ipv6-prefix=PREFIX     the IPv6 network with --enable-ipv6 (default=fd00::/64)
--log-format=FORMAT      log to stderr as text or json (default=text)
--pcap=FILE              write every frame on the tap to FILE in pcap format (tcpdump -r FILE)
--metrics=ADDR           serve Prometheus metrics at http://ADDR/metrics (HOST:PORT or a unix socket path)
--netem=SPEC             impair the network, e.g. "delay=50ms jitter=10ms loss=1% egress:rate=10mbit proto=tcp port=80"
--seed=N                 seed the impairments' random choices, to replay a run (default=0)
--drop-after=DURATION    partition the network DURATION after start (established connections stall, new ones time out)
--blackhole=PREFIX[,...] silently drop everything to and from these addresses
--config-file=FILE       read options from a TOML (.toml) or YAML (.yaml) file; the command line wins
`)
	return b.String()
}

// Compatibility level reported by VersionText.
const (
	compatVersion  = "1.2.0" // the slirp4netns release whose interface slirp provides
	libslirpCompat = "4.7.0"
	// configVersionMax is libslirp's SLIRP_CONFIG_VERSION_MAX of that
	// release. The slirp4netns test suite skips its outbound-addr (< 2) and
	// disable-dns (< 3) tests when it reads a lower value.
	configVersionMax = 4
	gvisorModule     = "gvisor.dev/gvisor"
)

// VersionText returns the --version text (for stdout) in slirp4netns'
// runc-style "key: value" form, e.g.
//
//	slirp4netns version 1.2.0+slirp-1.0.0
//	commit: 0123abcd
//	libslirp: 4.7.0 (compatible; gvisor netstack v0.0.0-20260224225140-573d5e7127a8)
//	SLIRP_CONFIG_VERSION_MAX: 4
//
// The commit line is left out when the commit is unknown, as slirp4netns
// does when built without one.
func VersionText() string {
	info, _ := debug.ReadBuildInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "slirp4netns version %s+slirp-%s\n", compatVersion, buildinfo.Version())
	if c := buildinfo.Commit(); c != "" {
		fmt.Fprintf(&b, "commit: %s\n", c)
	}
	fmt.Fprintf(&b, "libslirp: %s (compatible; gvisor netstack %s)\n", libslirpCompat, gvisorVersion(info))
	fmt.Fprintf(&b, "SLIRP_CONFIG_VERSION_MAX: %d\n", configVersionMax)
	return b.String()
}

func gvisorVersion(info *debug.BuildInfo) string {
	if info != nil {
		for _, d := range info.Deps {
			if d.Path != gvisorModule {
				continue
			}
			if d.Replace != nil && d.Replace.Version != "" {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "unknown"
}

// Banner returns the block slirp4netns prints to stdout once the TAP is
// ready: "Starting slirp", the addresses, and the host-loopback warning
// unless --disable-host-loopback was given. (Config.Warnings are printed
// before it, at parse time.)
func Banner(cfg *Config) string {
	var b strings.Builder
	b.WriteString("Starting slirp\n")
	fmt.Fprintf(&b, "* MTU:             %d\n", cfg.MTU)
	fmt.Fprintf(&b, "* Network:         %s\n", cfg.Network())
	fmt.Fprintf(&b, "* Netmask:         %s\n", cfg.Netmask())
	fmt.Fprintf(&b, "* Gateway:         %s\n", cfg.Gateway())
	fmt.Fprintf(&b, "* DNS:             %s\n", cfg.DNS())
	fmt.Fprintf(&b, "* DHCP begin:      %s\n", cfg.DHCPStart())
	fmt.Fprintf(&b, "* DHCP end:        %s\n", cfg.DHCPEnd())
	fmt.Fprintf(&b, "* Recommended IP:  %s\n", cfg.RecommendedIP())
	if cfg.APISocket != "" {
		fmt.Fprintf(&b, "* API Socket:      %s\n", cfg.APISocket)
	}
	// The outbound lines have one space more than the others in
	// slirp4netns; keep it, someone may parse them.
	if cfg.OutboundAddr.IsValid() {
		fmt.Fprintf(&b, "* Outbound IPv4:    %s\n", cfg.OutboundAddr.WithZone(""))
	}
	if cfg.OutboundAddr6.IsValid() {
		fmt.Fprintf(&b, "* Outbound IPv6:    %s\n", cfg.OutboundAddr6.WithZone(""))
	}
	if len(cfg.MACAddress) > 0 {
		var mac [6]byte
		copy(mac[:], cfg.MACAddress)
		fmt.Fprintf(&b, "* MAC address:     %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])
	}
	if !cfg.DisableHostLoopback {
		fmt.Fprintf(&b, "WARNING: 127.0.0.1:* on the host is accessible as %s (set --disable-host-loopback to prohibit connecting to 127.0.0.1:*)\n", cfg.Gateway())
	}
	return b.String()
}
