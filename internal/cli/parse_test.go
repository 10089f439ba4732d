package cli

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/internal/getopt"
)

const argv0 = "slirp4netns"

// noSuchPID cannot be a process: Linux's pid_max is at most 4194304.
const noSuchPID = "2147483647"

// want returns the default Config changed by edit.
func want(edit func(c *Config)) *Config {
	c := defaultConfig()
	edit(c)
	return c
}

func mustParse(t *testing.T, args ...string) *Config {
	t.Helper()
	cfg, err := Parse(argv0, args)
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return cfg
}

func TestParseConsumerCommandLines(t *testing.T) {
	pid := os.Getpid()
	spid := strconv.Itoa(pid)
	netnsFile := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(netnsFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	userns := "/proc/" + spid + "/ns/user"

	for _, tc := range []struct {
		name string
		args []string
		want *Config
	}{
		{
			// containers/common libnetwork/slirp4netns (podman >= 4, buildah).
			name: "podman",
			args: []string{"--disable-host-loopback", "--mtu=65520", "--enable-sandbox", "--enable-seccomp",
				"--cidr=10.0.135.128/25", "--enable-ipv6", "--outbound-addr=127.0.0.1", "--outbound-addr6=::1",
				"-c", "-r", "3", "-e", "4", "--api-socket", "/run/user/1000/ctr.net", "--netns-type=path", netnsFile, "tap0"},
			want: want(func(c *Config) {
				c.DisableHostLoopback = true
				c.MTU = 65520
				c.EnableSandbox = true
				c.EnableSeccomp = true
				c.CIDR = netip.MustParsePrefix("10.0.135.128/25")
				c.EnableIPv6 = true
				c.OutboundAddr = netip.MustParseAddr("127.0.0.1")
				c.OutboundAddr6 = netip.MustParseAddr("::1")
				c.Configure = true
				c.ReadyFD = 3
				c.ExitFD = 4
				c.APISocket = "/run/user/1000/ctr.net"
				c.NetnsType = NetnsTypePath
				c.NetnsPath = netnsFile
				c.TapName = "tap0"
				c.Warnings = []string{warnSeccomp, warnIPv6, warnOutbound, warnOutbound6}
			}),
		},
		{
			name: "podman v3 pid mode",
			args: []string{"--disable-host-loopback", "--mtu", "65520", "--enable-sandbox", "-c", "-e", "3", "-r", "4", spid, "tap0"},
			want: want(func(c *Config) {
				c.DisableHostLoopback = true
				c.MTU = 65520
				c.EnableSandbox = true
				c.Configure = true
				c.ExitFD = 3
				c.ReadyFD = 4
				c.PID = pid
			}),
		},
		{
			name: "rootlesskit",
			args: []string{"--mtu", "65520", "-r", "3", "--disable-host-loopback", "--cidr", "10.0.2.0/24",
				"--api-socket", "/run/user/1000/rootlesskit/.s4nn.sock", "--enable-sandbox", "--enable-seccomp", "--enable-ipv6", spid, "tap0"},
			want: want(func(c *Config) {
				c.MTU = 65520
				c.ReadyFD = 3
				c.DisableHostLoopback = true
				c.APISocket = "/run/user/1000/rootlesskit/.s4nn.sock"
				c.EnableSandbox = true
				c.EnableSeccomp = true
				c.EnableIPv6 = true
				c.PID = pid
				c.Warnings = []string{warnSeccomp, warnIPv6}
			}),
		},
		{
			name: "rootlesskit detach-netns",
			args: []string{"--mtu", "65520", "-r", "3", "--userns-path=" + userns, "--netns-type=path", netnsFile, "tap0"},
			want: want(func(c *Config) {
				c.MTU = 65520
				c.ReadyFD = 3
				c.UsernsPath = userns
				c.NetnsType = NetnsTypePath
				c.NetnsPath = netnsFile
			}),
		},
		{
			name: "upstream api-socket test interleaves options",
			args: []string{"-c", spid, "--api-socket", "/tmp/slirp4netns-x.sock", "tap11"},
			want: want(func(c *Config) {
				c.Configure = true
				c.APISocket = "/tmp/slirp4netns-x.sock"
				c.PID = pid
				c.TapName = "tap11"
			}),
		},
		{
			name: "upstream cidr test",
			args: []string{"-c", spid, "--cidr", "10.0.135.128/25", "tap11"},
			want: want(func(c *Config) {
				c.Configure = true
				c.CIDR = netip.MustParsePrefix("10.0.135.128/25")
				c.PID = pid
				c.TapName = "tap11"
			}),
		},
		{
			name: "upstream exit-fd test passes an extra word",
			args: []string{"-e", "10", spid, "tap11", "10/dev/fd/63"},
			want: want(func(c *Config) {
				c.ExitFD = 10
				c.PID = pid
				c.TapName = "tap11"
				c.Warnings = []string{warnTooManyArgs}
			}),
		},
		{
			name: "upstream macaddress test",
			args: []string{"-c", "--mtu", "1500", "--macaddress", "0e:d4:18:d9:38:fb", spid, "tap11"},
			want: want(func(c *Config) {
				c.Configure = true
				c.MACAddress = net.HardwareAddr{0x0e, 0xd4, 0x18, 0xd9, 0x38, 0xfb}
				c.PID = pid
				c.TapName = "tap11"
			}),
		},
		{
			name: "upstream seccomp test",
			args: []string{"-c", "--enable-seccomp", "--userns-path=" + userns, spid, "tap11"},
			want: want(func(c *Config) {
				c.Configure = true
				c.EnableSeccomp = true
				c.UsernsPath = userns
				c.PID = pid
				c.TapName = "tap11"
				c.Warnings = []string{warnSeccomp}
			}),
		},
		{
			name: "short bundle and attached values",
			args: []string{"-c6m1400", "-r3", "-a/s", spid, "tap1"},
			want: want(func(c *Config) {
				c.Configure = true
				c.EnableIPv6 = true
				c.MTU = 1400
				c.ReadyFD = 3
				c.APISocket = "/s"
				c.PID = pid
				c.TapName = "tap1"
				c.Warnings = []string{warnIPv6}
			}),
		},
		{
			name: "unique prefixes",
			args: []string{"--disable-host", "--api=/s", "--mac", "aa:bb", "--conf", "--userns", userns, "--netns", "path", "--ci", "10.1.0.0/16", netnsFile, "tap1"},
			want: want(func(c *Config) {
				c.DisableHostLoopback = true
				c.APISocket = "/s"
				c.MACAddress = net.HardwareAddr{0xaa, 0xbb, 0, 0, 0, 0}
				c.Configure = true
				c.UsernsPath = userns
				c.NetnsType = NetnsTypePath
				c.NetnsPath = netnsFile
				c.CIDR = netip.MustParsePrefix("10.1.0.0/16")
				c.TapName = "tap1"
			}),
		},
		{
			name: "any other netns type is path",
			args: []string{"--netns-type=bogus", netnsFile, "tap0"},
			want: want(func(c *Config) {
				c.NetnsType = NetnsTypePath
				c.NetnsPath = netnsFile
			}),
		},
		{
			name: "deprecated aliases warn",
			args: []string{"--no-host-loopback", "--create-sandbox", spid, "tap0"},
			want: want(func(c *Config) {
				c.DisableHostLoopback = true
				c.EnableSandbox = true
				c.PID = pid
				c.Warnings = []string{warnNoHostLoop, warnCreateSandbox}
			}),
		},
		{
			name: "tap name truncated to 15 bytes",
			args: []string{spid, "a-very-long-tap-name"},
			want: want(func(c *Config) {
				c.PID = pid
				c.TapName = "a-very-long-tap"
			}),
		},
		{
			name: "strtol accepts space and sign, empty exit-fd is 0",
			args: []string{"--mtu", " +1500", "-e", "", " +" + spid, "tap0"},
			want: want(func(c *Config) {
				c.ExitFD = 0
				c.PID = pid
			}),
		},
		{
			name: "dashdash",
			args: []string{"-c", "--", spid, "-tap"},
			want: want(func(c *Config) {
				c.Configure = true
				c.PID = pid
				c.TapName = "-tap"
			}),
		},
		{
			name: "tapfd",
			args: []string{"--netns-type=tapfd", "5"},
			want: want(func(c *Config) {
				c.NetnsType = NetnsTypeTapFD
				c.TapFD = 5
			}),
		},
		{
			name: "tapfd with name",
			args: []string{"--netns-type", "tapfd", "-c", "0", "tap9"},
			want: want(func(c *Config) {
				c.NetnsType = NetnsTypeTapFD
				c.Configure = true
				c.TapFD = 0
				c.TapName = "tap9"
			}),
		},
		{
			name: "bess",
			args: []string{"--target-type=bess", "--mtu=9000", "/run/uml.sock"},
			want: want(func(c *Config) {
				c.TargetType = TargetBESS
				c.MTU = 9000
				c.BessSocket = "/run/uml.sock"
				c.Warnings = []string{warnBESS}
			}),
		},
		{
			name: "explicit defaults",
			args: []string{"--target-type", "netns", "--netns-type", "pid", spid, "tap0"},
			want: want(func(c *Config) { c.PID = pid }),
		},
		{
			name: "extensions",
			args: []string{"--resolv-conf", "/run/resolv.conf", "--log-level=DEBUG", "--pid-file=/run/slirp.pid", spid, "tap0"},
			want: want(func(c *Config) {
				c.ResolvConf = "/run/resolv.conf"
				c.LogLevel = slog.LevelDebug
				c.PIDFile = "/run/slirp.pid"
				c.PID = pid
			}),
		},
		{
			name: "disable dns and max mtu",
			args: []string{"--disable-dns", "-m", "65521", spid, "tap0"},
			want: want(func(c *Config) {
				c.DisableDNS = true
				c.MTU = 65521
				c.PID = pid
			}),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, tc.args...)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.args, *got, *tc.want)
			}
		})
	}
}

func TestParseHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		help     bool
		version  bool
		warnings []string
	}{
		{[]string{"--help"}, true, false, nil},
		{[]string{"-h"}, true, false, nil},
		{[]string{"--he"}, true, false, nil},
		{[]string{"-v"}, false, true, nil},
		{[]string{"--version"}, false, true, nil},
		// Parsing stops at -h: later errors are never seen, earlier
		// warnings were already printed.
		{[]string{"-6", "-h", "--bogus", "--mtu=0"}, true, false, []string{warnIPv6}},
		{[]string{"-ch"}, true, false, nil},
		{[]string{"-vh"}, false, true, nil},
		{[]string{"--mtu=1", "--version", "x", "y", "z"}, false, true, nil},
	} {
		got := mustParse(t, tc.args...)
		if got.Help != tc.help || got.Version != tc.version || !reflect.DeepEqual(got.Warnings, tc.warnings) {
			t.Errorf("Parse(%q): Help %v Version %v Warnings %q; want %v %v %q",
				tc.args, got.Help, got.Version, got.Warnings, tc.help, tc.version, tc.warnings)
		}
	}
}

// usageErr is what a failing Parse must report.
type usageErr struct {
	stderr   string
	usage    bool
	warnings []string
}

// errorCases are command lines slirp4netns rejects before it forks, with its
// exact output. TestMatchesSlirp4netns runs them through the real binary.
func errorCases(t *testing.T) []struct {
	args []string
	want usageErr
} {
	noDir := filepath.Join(t.TempDir(), "missing")
	return []struct {
		args []string
		want usageErr
	}{
		// getopt errors: glibc's message, then usage.
		{[]string{"--dis", noSuchPID, "tap0"}, usageErr{argv0 + ": option '--dis' is ambiguous; possibilities: '--disable-host-loopback' '--disable-dns'\n", true, nil}},
		{[]string{"--foo", noSuchPID, "tap0"}, usageErr{argv0 + ": unrecognized option '--foo'\n", true, nil}},
		{[]string{"--foo=bar"}, usageErr{argv0 + ": unrecognized option '--foo=bar'\n", true, nil}},
		{[]string{"-x", noSuchPID}, usageErr{argv0 + ": invalid option -- 'x'\n", true, nil}},
		{[]string{"-m"}, usageErr{argv0 + ": option requires an argument -- 'm'\n", true, nil}},
		{[]string{"--mtu"}, usageErr{argv0 + ": option '--mtu' requires an argument\n", true, nil}},
		{[]string{"--configure=1", noSuchPID, "tap0"}, usageErr{argv0 + ": option '--configure' doesn't allow an argument\n", true, nil}},
		{[]string{"--conf=1"}, usageErr{argv0 + ": option '--configure' doesn't allow an argument\n", true, nil}},
		{[]string{"-6", "--help=x"}, usageErr{argv0 + ": option '--help' doesn't allow an argument\n", true, []string{warnIPv6}}},
		{[]string{"--=x"}, usageErr{argv0 + ": option '--=x' is ambiguous; possibilities: '--configure' '--exit-fd' '--ready-fd' '--mtu' '--cidr' '--disable-host-loopback' '--no-host-loopback' '--netns-type' '--userns-path' '--api-socket' '--enable-ipv6' '--enable-sandbox' '--create-sandbox' '--enable-seccomp' '--help' '--version' '--outbound-addr' '--outbound-addr6' '--disable-dns' '--macaddress' '--target-type'\n", true, nil}},
		{[]string{"--outbound=1"}, usageErr{argv0 + ": option '--outbound=1' is ambiguous; possibilities: '--outbound-addr' '--outbound-addr6'\n", true, nil}},
		// Extensions are not abbreviations.
		{[]string{"--log=debug", noSuchPID, "tap0"}, usageErr{argv0 + ": unrecognized option '--log=debug'\n", true, nil}},
		{[]string{"--pid", "x", noSuchPID, "tap0"}, usageErr{argv0 + ": unrecognized option '--pid'\n", true, nil}},

		// Option values checked inside the getopt loop: message, then usage;
		// the first bad one wins.
		{[]string{"--mtu", "0", "1", "tap0"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"--mtu=65522", noSuchPID, "tap0"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"--mtu=abc"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"--mtu=1500 ", noSuchPID, "tap0"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"--mtu="}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"-m-1"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"-m", "99999999999999999999"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, nil}},
		{[]string{"-e", "-1"}, usageErr{"exit-fd must be a non-negative integer\n", true, nil}},
		{[]string{"--exit-fd=x", "--mtu=0"}, usageErr{"exit-fd must be a non-negative integer\n", true, nil}},
		{[]string{"-r", " "}, usageErr{"ready-fd must be a non-negative integer\n", true, nil}},
		{[]string{"--ready-fd=3x"}, usageErr{"ready-fd must be a non-negative integer\n", true, nil}},
		{[]string{"--userns-path=" + noDir, noSuchPID, "tap0"}, usageErr{"userns path doesn't exist: " + noDir + "\n", true, nil}},
		{[]string{"--userns-path=", noSuchPID, "tap0"}, usageErr{"userns path doesn't exist: \n", true, nil}},
		{[]string{"--enable-seccomp", "-6", "--mtu=0"}, usageErr{"MTU must be a positive integer (< 65522)\n", true, []string{warnSeccomp, warnIPv6}}},
		{[]string{"--no-host-loopback", "--create-sandbox", "--outbound-addr=x", "--outbound-addr6=y", "-x"},
			usageErr{argv0 + ": invalid option -- 'x'\n", true, []string{warnNoHostLoop, warnCreateSandbox, warnOutbound, warnOutbound6}}},

		// Checks after the loop, in slirp4netns' order; with usage.
		{[]string{"--macaddress=aa:bb", noSuchPID, "tap0"}, usageErr{"--macaddr cannot be specified when --configure or -c is not specified\n", true, nil}},
		{[]string{"--macaddress=", "--target-type=x"}, usageErr{"--macaddr cannot be specified when --configure or -c is not specified\n", true, nil}},
		{[]string{"--target-type=x", noSuchPID, "tap0"}, usageErr{"--target-type must be either \"netns\" or \"bess\"\n", true, nil}},
		{[]string{"--target-type="}, usageErr{"--target-type must be either \"netns\" or \"bess\"\n", true, nil}},
		{[]string{"--target-type=bess"}, usageErr{"", true, nil}},
		{[]string{"--target-type=bess", "-c"}, usageErr{"", true, nil}},
		{[]string{"--target-type=bess", "a", "b"}, usageErr{"too many arguments\n", true, nil}},
		{[]string{"--target-type=bess", "-c", "a", "b", "c"}, usageErr{"too many arguments\n", true, nil}},
		{[]string{"--target-type=bess", "-c", "--netns-type=pid", "/tmp/x.sock"}, usageErr{"--configure conflicts with --target-type=bess\n", true, nil}},
		{[]string{"--target-type=bess", "--netns-type=pid", "--userns-path=/proc/self/ns/user", "/tmp/x.sock"}, usageErr{"--netns-type conflicts with --target-type=bess\n", true, nil}},
		{[]string{"--target-type=bess", "--userns-path=/proc/self/ns/user", "/tmp/x.sock"}, usageErr{"--userns-path conflicts with --target-type=bess\n", true, nil}},
		{nil, usageErr{"", true, nil}},
		{[]string{noSuchPID}, usageErr{"", true, nil}},
		{[]string{"--"}, usageErr{"", true, nil}},
		{[]string{"-c6", noSuchPID}, usageErr{"", true, []string{warnIPv6}}},
		{[]string{"--netns-type=path", noDir}, usageErr{"", true, nil}},
		{[]string{"0", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"-5", "tap0"}, usageErr{argv0 + ": invalid option -- '5'\n", true, nil}},
		{[]string{"--", "-5", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"0x12", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"12 ", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"99999999999999999999", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"abc", "tap0", "extra"}, usageErr{"PID must be a positive integer\n", true, []string{warnTooManyArgs}}},
		{[]string{"--netns-type=pid", "x", "tap0"}, usageErr{"PID must be a positive integer\n", true, nil}},
		{[]string{"--netns-type=path", noDir, "tap0"}, usageErr{"existing path expected when --netns-type=path: No such file or directory\n", true, nil}},
		{[]string{"--netns-type=bogus", noDir, "tap0"}, usageErr{"existing path expected when --netns-type=path: No such file or directory\n", true, nil}},
		{[]string{"--netns-type=", "", "tap0"}, usageErr{"existing path expected when --netns-type=path: No such file or directory\n", true, nil}},
		{[]string{"--netns-type=path", "/etc/passwd/x", "tap0"}, usageErr{"existing path expected when --netns-type=path: Not a directory\n", true, nil}},
		{[]string{"--netns-type=path", "/" + strings.Repeat("x", 300), "tap0"}, usageErr{"existing path expected when --netns-type=path: File name too long\n", true, nil}},

		// slirp4netns_config_from_options: message only, no usage.
		{[]string{"--cidr=24", noSuchPID, "tap0"}, usageErr{"invalid CIDR: 24\n", false, nil}},
		{[]string{"--cidr", "foo", noSuchPID, "tap0"}, usageErr{"invalid CIDR: foo\n", false, nil}},
		{[]string{"--cidr=10.0.2.0", noSuchPID, "tap0"}, usageErr{"invalid CIDR: 10.0.2.0\n", false, nil}},
		{[]string{"--cidr=", noSuchPID, "tap0"}, usageErr{"invalid CIDR: \n", false, nil}},
		{[]string{"--cidr=10.0.2.0/24 ", noSuchPID, "tap0"}, usageErr{"invalid CIDR: 10.0.2.0/24 \n", false, nil}},
		{[]string{"--cidr=10.0.2.0/024", noSuchPID, "tap0"}, usageErr{"invalid CIDR: 10.0.2.0/024\n", false, nil}},
		{[]string{"--cidr=10.0.2.100/24", noSuchPID, "tap0"}, usageErr{"CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24\n", false, nil}},
		{[]string{"--cidr=10.0.2.0/09", noSuchPID, "tap0"}, usageErr{"CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24\n", false, nil}},
		{[]string{"--cidr=10.0.2.100/26", noSuchPID, "tap0"}, usageErr{"prefix length needs to be 1-25\n", false, nil}},
		{[]string{"--cidr=0.0.0.0/0", noSuchPID, "tap0"}, usageErr{"prefix length needs to be 1-25\n", false, nil}},
		{[]string{"--cidr=10.0.2.0/00", noSuchPID, "tap0"}, usageErr{"prefix length needs to be 1-25\n", false, nil}},
		{[]string{"--cidr=300.0.2.0/24", noSuchPID, "tap0"}, usageErr{"invalid network address: 300.0.2.0\n", false, nil}},
		{[]string{"--cidr=010.0.2.0/24", noSuchPID, "tap0"}, usageErr{"invalid network address: 010.0.2.0\n", false, nil}},
		{[]string{"-6", "--cidr=x", noSuchPID, "tap0", "extra"}, usageErr{"invalid CIDR: x\n", false, []string{warnIPv6, warnTooManyArgs}}},
		{[]string{"--target-type=bess", "--cidr=foo", "/tmp/x.sock"}, usageErr{"invalid CIDR: foo\n", false, []string{warnBESS}}},
		{[]string{"--outbound-addr=bogus-if0", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or interface name.", false, []string{warnOutbound}}},
		{[]string{"--outbound-addr=::1", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or interface name.", false, []string{warnOutbound}}},
		{[]string{"--outbound-addr=01.2.3.4", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or interface name.", false, []string{warnOutbound}}},
		{[]string{"--outbound-addr=", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or interface name.", false, []string{warnOutbound}}},
		{[]string{"--outbound-addr=127.0.0.1", "--outbound-addr6=bogus-if0", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or iterface name.", false, []string{warnOutbound, warnOutbound6}}},
		{[]string{"--outbound-addr6=127.0.0.1", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or iterface name.", false, []string{warnOutbound6}}},
		{[]string{"--outbound-addr6=fe80::1%lo", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or iterface name.", false, []string{warnOutbound6}}},
		{[]string{"--outbound-addr6=::1", "--outbound-addr=x", "--cidr=10.0.0.0/8", noSuchPID, "tap0"}, usageErr{"outbound-addr has to be valid ipv4 address or interface name.", false, []string{warnOutbound6, warnOutbound}}},
		{[]string{"--cidr=bad", "--outbound-addr=x", noSuchPID, "tap0"}, usageErr{"invalid CIDR: bad\n", false, []string{warnOutbound}}},
		{[]string{"--outbound-addr=lo", "-c", "--macaddress=zz", noSuchPID, "tap0"}, usageErr{"\"zz\" is an invalid MAC address.\n" + macHint, false, []string{warnOutbound}}},
		{[]string{"-c", "--macaddress=aa:bb:cc:dd:ee:ff:00", noSuchPID, "tap0"}, usageErr{"\"aa:bb:cc:dd:ee:ff:00\" is an invalid MAC address.  Is it too long?\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=aa:bb:cc:dd:ee:ff:", noSuchPID, "tap0"}, usageErr{"\"aa:bb:cc:dd:ee:ff:\" is an invalid MAC address.  Is it too long?\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=aa:", noSuchPID, "tap0"}, usageErr{"\"aa:\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=:aa", noSuchPID, "tap0"}, usageErr{"\":aa\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=aa::bb", noSuchPID, "tap0"}, usageErr{"\"aa::bb\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=100", noSuchPID, "tap0"}, usageErr{"\"100\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=-1", noSuchPID, "tap0"}, usageErr{"\"-1\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=-0x5", noSuchPID, "tap0"}, usageErr{"\"-0x5\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=1ffffffff", noSuchPID, "tap0"}, usageErr{"\"1ffffffff\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=10000000000000001", noSuchPID, "tap0"}, usageErr{"\"10000000000000001\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=", noSuchPID, "tap0"}, usageErr{"\"\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=+", noSuchPID, "tap0"}, usageErr{"\"+\" is an invalid MAC address.\n" + macHint, false, nil}},
		{[]string{"-c", "--macaddress=g", noSuchPID, "tap0"}, usageErr{"\"g\" is an invalid MAC address.\n" + macHint, false, nil}},
	}
}

const macHint = "macaddress has to be a valid MAC address (hex string, 6 bytes, each byte separated by a ':')."

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases(t) {
		cfg, err := Parse(argv0, tc.args)
		var uerr *UsageError
		if !errors.As(err, &uerr) {
			t.Errorf("Parse(%q) = %+v, %v; want a *UsageError", tc.args, cfg, err)
			continue
		}
		if cfg != nil {
			t.Errorf("Parse(%q) returned a Config with its error", tc.args)
		}
		got := usageErr{uerr.Stderr, uerr.ShowUsage, uerr.Warnings}
		if !reflect.DeepEqual(got, tc.want) || uerr.ExitCode != 1 || uerr.Argv0 != argv0 {
			t.Errorf("Parse(%q):\n got %q usage=%v warnings=%q exit=%d\nwant %q usage=%v warnings=%q exit=1",
				tc.args, got.stderr, got.usage, got.warnings, uerr.ExitCode, tc.want.stderr, tc.want.usage, tc.want.warnings)
		}
		if uerr.Error() == "" {
			t.Errorf("Parse(%q): empty Error()", tc.args)
		}
	}
}

func TestOwnOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level=verbose", noSuchPID, "tap0"}, "--log-level must be debug, info, warn or error, not \"verbose\"\n"},
		{[]string{"--log-level", "", noSuchPID, "tap0"}, "--log-level must be debug, info, warn or error, not \"\"\n"},
		{[]string{"--resolv-conf=", noSuchPID, "tap0"}, "--resolv-conf needs the path of a resolv.conf file\n"},
		{[]string{"--resolv-conf"}, argv0 + ": option '--resolv-conf' requires an argument\n"},
	} {
		_, err := Parse(argv0, tc.args)
		var uerr *UsageError
		if !errors.As(err, &uerr) || uerr.Stderr != tc.want || !uerr.ShowUsage || uerr.ExitCode != 1 {
			t.Errorf("Parse(%q) = %#v; want usage error %q", tc.args, err, tc.want)
		}
	}
}

func TestUsageErrorPrint(t *testing.T) {
	_, err := Parse("prog", []string{"-6", "--mtu=0"})
	var uerr *UsageError
	if !errors.As(err, &uerr) {
		t.Fatalf("want *UsageError, got %v", err)
	}
	var stdout, stderr strings.Builder
	if err := uerr.Print(&stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := warnIPv6 + "\n" + Usage("prog"); stdout.String() != want {
		t.Errorf("stdout = %q, want %q", stdout.String(), want)
	}
	if want := "MTU must be a positive integer (< 65522)\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
	if got, want := uerr.Error(), "MTU must be a positive integer (< 65522)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	_, err = Parse("prog", []string{"-c", "--macaddress=zz", "1", "tap0"})
	if !errors.As(err, &uerr) {
		t.Fatalf("want *UsageError, got %v", err)
	}
	if got, want := uerr.Error(), `"zz" is an invalid MAC address.; `+macHint; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	stdout.Reset()
	if err := uerr.Print(&stdout, &stderr); err != nil || stdout.String() != "" {
		t.Errorf("config errors print no usage: stdout %q, err %v", stdout.String(), err)
	}
}

// TestPrefixesStayUnambiguous checks that adding slirp's own options changed
// the meaning of no abbreviation slirp4netns accepts or rejects.
func TestPrefixesStayUnambiguous(t *testing.T) {
	upstream := getopt.Spec{Short: slirp4netnsShortOpt, Long: slirp4netnsLong}
	resolve := func(s getopt.Spec, word string) string {
		opt, _, err := getopt.New(s, argv0, []string{word, "value"}).Next()
		if err != nil {
			return "error: " + err.Error()
		}
		return opt.Key
	}
	var own = map[string]bool{}
	for _, l := range extensionLong {
		own["--"+l.Name] = true
	}
	checked := 0
	for _, l := range spec.Long {
		for n := 0; n <= len(l.Name); n++ {
			word := "--" + l.Name[:n]
			before, after := resolve(upstream, word), resolve(spec, word)
			checked++
			if own[word] {
				if after != l.Name {
					t.Errorf("%s resolves to %q, want its own option", word, after)
				}
				continue
			}
			if before != after {
				t.Errorf("%s: slirp4netns gives %q, slirp gives %q", word, before, after)
			}
		}
	}
	// A few that matter to callers, spelled out.
	for word, key := range map[string]string{
		"--disable-host": keyDisableHostLoop, "--api": keyAPISocket, "--mac": keyMACAddress,
		"--netns": keyNetnsType, "--userns": keyUsernsPath, "--cidr": keyCIDR, "--mtu": keyMTU,
		"--r": keyReadyFD, "--re": keyReadyFD, "--p": "", "--l": "",
	} {
		got := resolve(spec, word)
		if key == "" && !strings.HasPrefix(got, "error: ") || key != "" && got != key {
			t.Errorf("%s resolves to %q, want %q", word, got, key)
		}
	}
	if checked < 200 {
		t.Fatalf("checked only %d prefixes", checked)
	}
}
