// Package cli parses slirp's command line exactly as slirp4netns 1.2.0 does
// (GNU getopt_long with the short options "ce:r:m:a:6hv"), checks it in the
// same order with the same messages and exit status, and renders the texts
// slirp4netns prints: --help, --version and the "Starting slirp" banner.
//
// Parse only reads the command line and, like slirp4netns, the file system
// (path existence) and the host's interfaces (--outbound-addr=IFNAME). It
// prints nothing: the caller prints Config.Warnings, the banner, or a
// *UsageError, and exits.
package cli

import (
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/slirp-dev/slirp/netem"
)

// NetnsType says what the first positional argument names.
type NetnsType string

// The namespace types of --netns-type.
const (
	// NetnsTypePID: the argument is the PID of a process in the target
	// network namespace (the default).
	NetnsTypePID NetnsType = "pid"
	// NetnsTypePath: the argument is a path to a network namespace file,
	// such as /proc/PID/ns/net or /run/netns/NAME. As in slirp4netns, any
	// --netns-type other than "pid" and "tapfd" selects it.
	NetnsTypePath NetnsType = "path"
	// NetnsTypeTapFD: the argument is an inherited file descriptor of an
	// already attached /dev/net/tun TAP (slirp4netns 1.3).
	NetnsTypeTapFD NetnsType = "tapfd"
)

// TargetType says what slirp talks to.
type TargetType string

// The target types of --target-type.
const (
	// TargetNetns: a TAP device in a network namespace (the default).
	TargetNetns TargetType = "netns"
	// TargetBESS: a User-Mode Linux instance over a BESS SOCK_SEQPACKET
	// socket whose path is the only positional argument.
	TargetBESS TargetType = "bess"
)

// Defaults, as in slirp4netns.
const (
	DefaultMTU        = 1500
	MaxMTU            = 65521
	DefaultTapName    = "tap0"
	DefaultResolvConf = "/etc/resolv.conf"
	// MaxTapNameLen is IFNAMSIZ-1: longer TAP names are cut to this many
	// bytes, as slirp4netns' strncpy into ifr_name does.
	MaxTapNameLen = 15
)

// DefaultCIDR is the virtual network when --cidr is not given.
var DefaultCIDR = netip.MustParsePrefix("10.0.2.0/24")

// Config is a parsed command line.
type Config struct {
	// Configure (-c, --configure): bring up the TAP inside the namespace
	// with RecommendedIP, a default route via Gateway, and lo up. Ignored
	// in tapfd mode.
	Configure bool
	// ExitFD (-e, --exit-fd): exit when this inherited fd reports hang-up
	// (or is not open). -1 when not given.
	ExitFD int
	// ReadyFD (-r, --ready-fd): write "1" to this inherited fd when the
	// network is up. -1 when not given.
	ReadyFD int
	// MTU (-m, --mtu) of the virtual link, 1..65521 (default 1500).
	MTU int
	// EnableIPv6 (-6, --enable-ipv6): fd00::/64 with RA, NDP and DHCPv6.
	EnableIPv6 bool
	// APISocket (-a, --api-socket) is the path of the UNIX socket for the
	// port-forwarding API; empty when not given.
	APISocket string
	// CIDR (--cidr) is the virtual IPv4 network (default 10.0.2.0/24); its
	// prefix length is 1..25 and its host bits are zero.
	CIDR netip.Prefix
	// DisableHostLoopback (--disable-host-loopback, or the deprecated
	// --no-host-loopback): refuse guest connections to the gateway that
	// would reach the host's 127.0.0.1.
	DisableHostLoopback bool
	// NetnsType (--netns-type) says what the first positional names.
	NetnsType NetnsType
	// UsernsPath (--userns-path) is a user namespace to join before the
	// network namespace; it existed when the command line was parsed.
	UsernsPath string
	// EnableSandbox (--enable-sandbox, or the deprecated --create-sandbox)
	// and EnableSeccomp (--enable-seccomp) turn on the hardening of
	// slirp4netns: a private mount namespace with dropped capabilities,
	// and a seccomp syscall blocklist.
	EnableSandbox bool
	EnableSeccomp bool
	// OutboundAddr (--outbound-addr) is the source address for outgoing
	// IPv4 connections; given an interface name, its first IPv4 address at
	// parse time. Invalid (zero) when not given.
	OutboundAddr netip.Addr
	// OutboundAddr6 (--outbound-addr6) is the same for IPv6; an interface's
	// link-local address carries the interface as its zone.
	OutboundAddr6 netip.Addr
	// DisableDNS (--disable-dns): the DNS address is not redirected to the
	// host's resolver but treated as any other destination.
	DisableDNS bool
	// MACAddress (--macaddress, only with -c) is set on the TAP. Always 6
	// bytes: like slirp4netns, a shorter address such as "aa:bb" is padded
	// with zero bytes. Nil when not given.
	MACAddress net.HardwareAddr
	// TargetType (--target-type) is netns (default) or bess.
	TargetType TargetType

	// PID is the target process in pid mode (0 otherwise).
	PID int
	// NetnsPath is the network namespace file in path mode.
	NetnsPath string
	// TapFD is the inherited TAP fd in tapfd mode (-1 otherwise).
	TapFD int
	// BessSocket is the socket path in bess mode.
	BessSocket string
	// TapName is the TAP interface name (default "tap0"), at most 15 bytes.
	TapName string

	// Help (-h, --help) and Version (-v, --version): the caller prints
	// Warnings, then Usage or VersionText, and exits 0. Parsing stops at
	// them, so the other fields are incomplete.
	Help    bool
	Version bool

	// Warnings are the "WARNING: ..." lines slirp4netns prints to stdout
	// while parsing, in its order. The caller prints them first.
	Warnings []string

	// ResolvConf (--resolv-conf, a slirp extension) is where the DNS
	// forwarder reads the upstream nameservers (default /etc/resolv.conf).
	ResolvConf string
	// LogLevel (--log-level, a slirp extension) is the least severe level
	// logged to stderr (default info).
	LogLevel slog.Level
	// PIDFile (--pid-file, a slirp extension) is where the daemon writes its
	// PID; empty when not given.
	PIDFile string
	// IPv6Prefix (--ipv6-prefix, a slirp extension) is the virtual IPv6
	// network with --enable-ipv6 (default fd00::/64, as in slirp4netns).
	IPv6Prefix netip.Prefix
	// LogFormat (--log-format, a slirp extension) is "text" (default) or
	// "json".
	LogFormat string
	// PcapFile (--pcap, a slirp extension) receives every frame on the tap
	// in pcap format; empty when not given.
	PcapFile string
	// MetricsAddr (--metrics, a slirp extension) is where Prometheus
	// metrics are served: HOST:PORT, or a unix socket path (starting with
	// / or ./). Empty: off.
	MetricsAddr string
	// Netem (--netem and --blackhole, slirp extensions) is the test rig's
	// initial impairment; Seed (--seed) seeds its random choices; DropAfter
	// (--drop-after) partitions the network that long after start.
	Netem     netem.Spec
	Seed      uint64
	DropAfter time.Duration
}

// DefaultIPv6Prefix is the IPv6 network when --ipv6-prefix is not given.
var DefaultIPv6Prefix = netip.MustParsePrefix("fd00::/64")

// Gateway6, DNS6 and RecommendedIP6 are the IPv6 addresses of the gateway
// (::2, standing for the host's ::1), the DNS forwarder (::3) and the guest
// (::100, set by --configure) in IPv6Prefix.
func (c *Config) Gateway6() netip.Addr { return c.offset6(2) }

// DNS6 is the IPv6 address of the DNS forwarder.
func (c *Config) DNS6() netip.Addr { return c.offset6(3) }

// RecommendedIP6 is the guest's IPv6 address with --configure.
func (c *Config) RecommendedIP6() netip.Addr { return c.offset6(0x100) }

func (c *Config) offset6(n uint16) netip.Addr {
	p := c.IPv6Prefix
	if !p.IsValid() {
		p = DefaultIPv6Prefix
	}
	b := p.Masked().Addr().As16()
	b[14], b[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(b)
}

// defaultConfig is the configuration with no options given.
func defaultConfig() *Config {
	return &Config{
		ExitFD:     -1,
		ReadyFD:    -1,
		MTU:        DefaultMTU,
		CIDR:       DefaultCIDR,
		NetnsType:  NetnsTypePID,
		TargetType: TargetNetns,
		TapFD:      -1,
		TapName:    DefaultTapName,
		ResolvConf: DefaultResolvConf,
		IPv6Prefix: DefaultIPv6Prefix,
		LogFormat:  "text",
		LogLevel:   slog.LevelInfo,
	}
}

// Offsets from the network address, as in slirp4netns and libslirp.
const (
	gatewayOffset       = 2
	dnsOffset           = 3
	dhcpStartOffset     = 15
	dhcpClients         = 16 // libslirp's NB_BOOTP_CLIENTS
	recommendedIPOffset = 100
)

// Network returns the network address of CIDR (10.0.2.0 by default).
func (c *Config) Network() netip.Addr { return c.cidr().Addr() }

// Netmask returns CIDR's netmask in dotted form (255.255.255.0 by default).
func (c *Config) Netmask() netip.Addr {
	bits := c.cidr().Bits()
	m := ^uint32(0) << (32 - bits)
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
}

// Gateway returns the virtual host and gateway address, network+2
// (10.0.2.2); guest connections to it reach the host's loopback.
func (c *Config) Gateway() netip.Addr { return c.offset(gatewayOffset) }

// DNS returns the virtual DNS server address, network+3 (10.0.2.3).
func (c *Config) DNS() netip.Addr { return c.offset(dnsOffset) }

// DHCPStart returns the first address the DHCP server hands out,
// network+15 (10.0.2.15).
func (c *Config) DHCPStart() netip.Addr { return c.offset(dhcpStartOffset) }

// DHCPEnd returns the last address of the 16-lease DHCP pool, network+30
// (10.0.2.30).
func (c *Config) DHCPEnd() netip.Addr { return c.offset(dhcpStartOffset + dhcpClients - 1) }

// RecommendedIP returns the guest address that --configure sets,
// network+100 (10.0.2.100).
func (c *Config) RecommendedIP() netip.Addr { return c.offset(recommendedIPOffset) }

// cidr returns CIDR, or the default for a zero Config.
func (c *Config) cidr() netip.Prefix {
	if !c.CIDR.IsValid() || !c.CIDR.Addr().Is4() {
		return DefaultCIDR
	}
	return c.CIDR
}

func (c *Config) offset(n uint32) netip.Addr {
	a := c.cidr().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
