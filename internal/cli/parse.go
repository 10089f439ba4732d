package cli

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/slirp-dev/slirp/internal/getopt"
	"github.com/slirp-dev/slirp/netem"
)

// Option keys. Options with a short form use its letter, as slirp4netns'
// getopt_long table does.
const (
	keyConfigure       = "c"
	keyExitFD          = "e"
	keyReadyFD         = "r"
	keyMTU             = "m"
	keyAPISocket       = "a"
	keyEnableIPv6      = "6"
	keyHelp            = "h"
	keyVersion         = "v"
	keyCIDR            = "cidr"
	keyDisableHostLoop = "disable-host-loopback"
	keyNoHostLoop      = "no-host-loopback"
	keyNetnsType       = "netns-type"
	keyUsernsPath      = "userns-path"
	keyEnableSandbox   = "enable-sandbox"
	keyCreateSandbox   = "create-sandbox"
	keyEnableSeccomp   = "enable-seccomp"
	keyOutboundAddr    = "outbound-addr"
	keyOutboundAddr6   = "outbound-addr6"
	keyDisableDNS      = "disable-dns"
	keyMACAddress      = "macaddress"
	keyTargetType      = "target-type"
	keyResolvConf      = "resolv-conf"
	keyLogLevel        = "log-level"
	keyPIDFile         = "pid-file"
	keyIPv6Prefix      = "ipv6-prefix"
	keyLogFormat       = "log-format"
	keyPcap            = "pcap"
	keyMetrics         = "metrics"
	keyConfig          = "config-file"
	keyNetem           = "netem"
	keySeed            = "seed"
	keyDropAfter       = "drop-after"
	keyBlackhole       = "blackhole"
)

// slirp4netnsShortOpt is slirp4netns' getopt optstring.
const slirp4netnsShortOpt = "ce:r:m:a:6hv"

// slirp4netnsLong is slirp4netns 1.2.0's long option table, in its order
// (the order of the candidates in "is ambiguous" messages).
var slirp4netnsLong = []getopt.LongOption{
	{Name: "configure", Key: keyConfigure},
	{Name: "exit-fd", HasArg: true, Key: keyExitFD},
	{Name: "ready-fd", HasArg: true, Key: keyReadyFD},
	{Name: "mtu", HasArg: true, Key: keyMTU},
	{Name: "cidr", HasArg: true},
	{Name: "disable-host-loopback"},
	{Name: "no-host-loopback"},
	{Name: "netns-type", HasArg: true},
	{Name: "userns-path", HasArg: true},
	{Name: "api-socket", HasArg: true, Key: keyAPISocket},
	{Name: "enable-ipv6", Key: keyEnableIPv6},
	{Name: "enable-sandbox"},
	{Name: "create-sandbox"},
	{Name: "enable-seccomp"},
	{Name: "help", Key: keyHelp},
	{Name: "version", Key: keyVersion},
	{Name: "outbound-addr", HasArg: true},
	{Name: "outbound-addr6", HasArg: true},
	{Name: "disable-dns"},
	{Name: "macaddress", HasArg: true},
	{Name: "target-type", HasArg: true},
}

// extensionLong are slirp's own options. They match only when spelled in
// full, so they never make a slirp4netns prefix ambiguous ("--r" still
// means --ready-fd) nor show up in its "possibilities" lists.
var extensionLong = []getopt.LongOption{
	{Name: "resolv-conf", HasArg: true, NoAbbrev: true},
	{Name: "log-level", HasArg: true, NoAbbrev: true},
	{Name: "pid-file", HasArg: true, NoAbbrev: true},
	{Name: "ipv6-prefix", HasArg: true, NoAbbrev: true},
	{Name: "log-format", HasArg: true, NoAbbrev: true},
	{Name: "pcap", HasArg: true, NoAbbrev: true},
	{Name: "metrics", HasArg: true, NoAbbrev: true},
	{Name: "config-file", HasArg: true, NoAbbrev: true},
	{Name: "netem", HasArg: true, NoAbbrev: true},
	{Name: "seed", HasArg: true, NoAbbrev: true},
	{Name: "drop-after", HasArg: true, NoAbbrev: true},
	{Name: "blackhole", HasArg: true, NoAbbrev: true},
}

var spec = getopt.Spec{
	Short: slirp4netnsShortOpt,
	Long:  append(append([]getopt.LongOption(nil), slirp4netnsLong...), extensionLong...),
}

// Warning lines slirp4netns prints to stdout.
const (
	warnIPv6          = "WARNING: Support for IPv6 is experimental"
	warnSeccomp       = "WARNING: Support for seccomp is experimental"
	warnOutbound      = "WARNING: Support for --outbound-addr is experimental"
	warnOutbound6     = "WARNING: Support for --outbound-addr6 is experimental"
	warnNoHostLoop    = "WARNING: --no-host-loopback is deprecated and will be removed in future releases, please use --disable-host-loopback instead."
	warnCreateSandbox = "WARNING: --create-sandbox is deprecated and will be removed in future releases, please use --enable-sandbox instead."
	warnTooManyArgs   = "WARNING: too many arguments"
	warnBESS          = "WARNING: BESS mode is experimental"
)

// logLevels are the --log-level names.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// parser holds the state of one Parse call.
type parser struct {
	argv0 string
	cfg   *Config

	// Option values that slirp4netns checks only after all options are
	// read; "given" is C's non-NULL optarg pointer.
	cidr, netnsType, outbound, outbound6, mac, targetType string

	cidrGiven, netnsTypeGiven, usernsGiven, outboundGiven bool
	outbound6Given, macGiven, targetTypeGiven             bool
}

// Parse parses args (the command line without argv[0]) as slirp4netns 1.2.0
// does. argv0 is the program name shown in messages and usage.
//
// A bad command line yields a *UsageError holding everything slirp4netns
// would print and its exit status. --help and --version are not errors:
// they return a Config with Help or Version set, as soon as they are seen.
func Parse(argv0 string, args []string) (*Config, error) {
	p := &parser{argv0: argv0, cfg: defaultConfig()}
	if path, ok := configPath(args); ok {
		fileArgs, err := configFileArgs(path)
		if err != nil {
			return nil, p.usageError("%s", err.Error())
		}
		args = append(fileArgs, args...)
	}
	pos, done, err := p.options(args)
	if err != nil {
		return nil, err
	}
	if done {
		return p.cfg, nil
	}
	if err := p.positionals(pos); err != nil {
		return nil, err
	}
	if err := p.values(); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

// usageError is a failure of slirp4netns' parse_args: message, then usage.
func (p *parser) usageError(format string, a ...any) *UsageError {
	msg := ""
	if format != "" {
		msg = fmt.Sprintf(format, a...) + "\n"
	}
	return &UsageError{Argv0: p.argv0, Warnings: p.cfg.Warnings, Stderr: msg, ShowUsage: true, ExitCode: 1}
}

// configError is a failure after parse_args (slirp4netns_config_from_options):
// the message alone, exactly as printed (some lack the newline).
func (p *parser) configError(stderr string) *UsageError {
	return &UsageError{Argv0: p.argv0, Warnings: p.cfg.Warnings, Stderr: stderr, ExitCode: 1}
}

func (p *parser) warn(line string) { p.cfg.Warnings = append(p.cfg.Warnings, line) }

// options runs slirp4netns' getopt_long loop and returns the positional
// arguments. done reports --help or --version, which end parsing at once.
func (p *parser) options(args []string) (pos []string, done bool, err error) {
	gp := getopt.New(spec, p.argv0, args)
	cfg := p.cfg
	for {
		opt, ok, err := gp.Next()
		if err != nil {
			return nil, false, p.usageError("%s", err.Error())
		}
		if !ok {
			return gp.Args(), false, nil
		}
		switch opt.Key {
		case keyConfigure:
			cfg.Configure = true
		case keyExitFD:
			fd, ok := parseCInt(opt.Arg)
			if !ok || fd < 0 {
				return nil, false, p.usageError("exit-fd must be a non-negative integer")
			}
			cfg.ExitFD = fd
		case keyReadyFD:
			fd, ok := parseCInt(opt.Arg)
			if !ok || fd < 0 {
				return nil, false, p.usageError("ready-fd must be a non-negative integer")
			}
			cfg.ReadyFD = fd
		case keyMTU:
			mtu, ok := parseCInt(opt.Arg)
			if !ok || mtu <= 0 || mtu > MaxMTU {
				return nil, false, p.usageError("MTU must be a positive integer (< %d)", MaxMTU+1)
			}
			cfg.MTU = mtu
		case keyCIDR:
			p.cidr, p.cidrGiven = opt.Arg, true
		case keyNoHostLoop:
			p.warn(warnNoHostLoop)
			cfg.DisableHostLoopback = true
		case keyDisableHostLoop:
			cfg.DisableHostLoopback = true
		case keyCreateSandbox:
			p.warn(warnCreateSandbox)
			cfg.EnableSandbox = true
		case keyEnableSandbox:
			cfg.EnableSandbox = true
		case keyEnableSeccomp:
			p.warn(warnSeccomp)
			cfg.EnableSeccomp = true
		case keyNetnsType:
			p.netnsType, p.netnsTypeGiven = opt.Arg, true
		case keyUsernsPath:
			if ok, _ := pathExists(opt.Arg); !ok {
				return nil, false, p.usageError("userns path doesn't exist: %s", opt.Arg)
			}
			cfg.UsernsPath, p.usernsGiven = opt.Arg, true
		case keyAPISocket:
			cfg.APISocket = opt.Arg
		case keyEnableIPv6:
			cfg.EnableIPv6 = true
			p.warn(warnIPv6)
		case keyHelp:
			cfg.Help = true
			return nil, true, nil
		case keyVersion:
			cfg.Version = true
			return nil, true, nil
		case keyOutboundAddr:
			p.warn(warnOutbound)
			p.outbound, p.outboundGiven = opt.Arg, true
		case keyOutboundAddr6:
			p.warn(warnOutbound6)
			p.outbound6, p.outbound6Given = opt.Arg, true
		case keyDisableDNS:
			cfg.DisableDNS = true
		case keyMACAddress:
			p.mac, p.macGiven = opt.Arg, true
		case keyTargetType:
			p.targetType, p.targetTypeGiven = opt.Arg, true
		case keyResolvConf:
			if opt.Arg == "" {
				return nil, false, p.usageError("--resolv-conf needs the path of a resolv.conf file")
			}
			cfg.ResolvConf = opt.Arg
		case keyLogLevel:
			level, ok := logLevels[strings.ToLower(opt.Arg)]
			if !ok {
				return nil, false, p.usageError("--log-level must be debug, info, warn or error, not %q", opt.Arg)
			}
			cfg.LogLevel = level
		case keyPIDFile:
			cfg.PIDFile = opt.Arg
		case keyLogFormat:
			switch f := strings.ToLower(opt.Arg); f {
			case "text", "json":
				cfg.LogFormat = f
			default:
				return nil, false, p.usageError("--log-format must be text or json, not %q", opt.Arg)
			}
		case keyPcap:
			if opt.Arg == "" {
				return nil, false, p.usageError("--pcap needs the path of the file to write")
			}
			cfg.PcapFile = opt.Arg
		case keyMetrics:
			if opt.Arg == "" {
				return nil, false, p.usageError("--metrics needs an address (HOST:PORT) or a unix socket path")
			}
			cfg.MetricsAddr = opt.Arg
		case keyConfig:
			// Read before the command line (see configPath).
		case keyNetem:
			spec, err := netem.Parse(opt.Arg)
			if err != nil {
				return nil, false, p.usageError("--netem: %v", err)
			}
			cfg.Netem.Egress, cfg.Netem.Ingress, cfg.Netem.Match = spec.Egress, spec.Ingress, spec.Match
			cfg.Netem.Partition = cfg.Netem.Partition || spec.Partition
			cfg.Netem.Blackhole = append(cfg.Netem.Blackhole, spec.Blackhole...)
		case keySeed:
			n, err := strconv.ParseUint(opt.Arg, 10, 64)
			if err != nil {
				return nil, false, p.usageError("--seed must be a non-negative integer, not %q", opt.Arg)
			}
			cfg.Seed = n
		case keyDropAfter:
			d, err := time.ParseDuration(opt.Arg)
			if err != nil || d <= 0 {
				return nil, false, p.usageError("--drop-after must be a duration such as 30s, not %q", opt.Arg)
			}
			cfg.DropAfter = d
		case keyBlackhole:
			for _, v := range strings.Split(opt.Arg, ",") {
				pfx, err := netem.ParsePrefix(strings.TrimSpace(v))
				if err != nil {
					return nil, false, p.usageError("--blackhole: %q: %v", v, err)
				}
				cfg.Netem.Blackhole = append(cfg.Netem.Blackhole, pfx)
			}
		case keyIPv6Prefix:
			pfx, err := netip.ParsePrefix(opt.Arg)
			if err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6() || pfx.Bits() != 64 || pfx.Masked() != pfx {
				return nil, false, p.usageError("--ipv6-prefix must be an IPv6 network with a /64 prefix (SLAAC needs one), such as fd00::/64, not %q", opt.Arg)
			}
			cfg.IPv6Prefix = pfx
		default:
			// Unreachable: every key of spec is handled above.
			return nil, false, p.usageError("internal error: unhandled option %s", opt.Name)
		}
	}
}

// positionals runs the checks at the end of slirp4netns' parse_args, in its
// order.
func (p *parser) positionals(pos []string) error {
	cfg := p.cfg
	if p.macGiven && !cfg.Configure {
		return p.usageError("--macaddr cannot be specified when --configure or -c is not specified")
	}
	if p.targetTypeGiven {
		switch TargetType(p.targetType) {
		case TargetNetns:
		case TargetBESS:
			return p.bess(pos)
		default:
			return p.usageError(`--target-type must be either "netns" or "bess"`)
		}
	}

	switch {
	case !p.netnsTypeGiven || p.netnsType == string(NetnsTypePID):
		cfg.NetnsType = NetnsTypePID
	case p.netnsType == string(NetnsTypeTapFD):
		return p.tapFD(pos)
	default:
		// slirp4netns treats every other value, even a typo, as "path".
		cfg.NetnsType = NetnsTypePath
	}
	if len(pos) < 2 {
		return p.usageError("")
	}
	if len(pos) > 2 {
		// Not an error in slirp4netns, "for preventing potential
		// compatibility issue"; its exit-fd test relies on it.
		p.warn(warnTooManyArgs)
	}
	if cfg.NetnsType == NetnsTypePID {
		pid, ok := parseCInt(pos[0])
		if !ok || pid <= 0 {
			return p.usageError("PID must be a positive integer")
		}
		cfg.PID = pid
	} else {
		if ok, why := pathExists(pos[0]); !ok {
			return p.usageError("existing path expected when --netns-type=path: %s", why)
		}
		cfg.NetnsPath = pos[0]
	}
	cfg.TapName = truncateTapName(pos[1])
	return nil
}

// tapFD handles --netns-type=tapfd (slirp4netns 1.3): FD [TAPNAME].
func (p *parser) tapFD(pos []string) error {
	cfg := p.cfg
	cfg.NetnsType = NetnsTypeTapFD
	if len(pos) < 1 {
		return p.usageError("")
	}
	if len(pos) > 2 {
		p.warn(warnTooManyArgs)
	}
	fd, ok := parseCInt(pos[0])
	if !ok || fd < 0 {
		return p.usageError("TAPFD must a file descriptor")
	}
	cfg.TapFD = fd
	if len(pos) > 1 {
		cfg.TapName = truncateTapName(pos[1])
	}
	return nil
}

// bess handles --target-type=bess: exactly one positional, the socket path.
func (p *parser) bess(pos []string) error {
	cfg := p.cfg
	cfg.TargetType = TargetBESS
	switch {
	case len(pos) < 1:
		return p.usageError("")
	case len(pos) > 1:
		return p.usageError("too many arguments")
	case cfg.Configure:
		return p.usageError("--configure conflicts with --target-type=bess")
	case p.netnsTypeGiven:
		return p.usageError("--netns-type conflicts with --target-type=bess")
	case p.usernsGiven:
		return p.usageError("--userns-path conflicts with --target-type=bess")
	}
	p.warn(warnBESS)
	cfg.BessSocket = pos[0]
	return nil
}

// values runs slirp4netns_config_from_options: the checks that print their
// message without the usage text.
func (p *parser) values() error {
	cfg := p.cfg
	if p.cidrGiven {
		prefix, msg := parseCIDR(p.cidr)
		if msg != "" {
			return p.configError(msg + "\n")
		}
		cfg.CIDR = prefix
	}
	if p.outboundGiven {
		addr, ok := parseOutbound(p.outbound, false)
		if !ok {
			// Sic: no newline, as in slirp4netns.
			return p.configError("outbound-addr has to be valid ipv4 address or interface name.")
		}
		cfg.OutboundAddr = addr
	}
	if p.outbound6Given {
		// slirp4netns looks the interface up by the --outbound-addr value
		// (a bug); this uses the --outbound-addr6 value. The message is
		// slirp4netns', typos included.
		addr, ok := parseOutbound(p.outbound6, true)
		if !ok {
			return p.configError("outbound-addr has to be valid ipv4 address or iterface name.")
		}
		cfg.OutboundAddr6 = addr
	}
	if p.macGiven {
		mac, _, err := parseMAC(p.mac)
		if err != nil {
			first := fmt.Sprintf("%q is an invalid MAC address.\n", p.mac)
			if err.tooLong {
				first = fmt.Sprintf("%q is an invalid MAC address.  Is it too long?\n", p.mac)
			}
			return p.configError(first + "macaddress has to be a valid MAC address (hex string, 6 bytes, each byte separated by a ':').")
		}
		cfg.MACAddress = net.HardwareAddr(mac[:])
	}
	return nil
}

// truncateTapName cuts name to IFNAMSIZ-1 bytes, as strncpy into ifr_name.
func truncateTapName(name string) string {
	if len(name) > MaxTapNameLen {
		return name[:MaxTapNameLen]
	}
	return name
}
