package slirp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/slirp-dev/slirp/dhcp"
	"github.com/slirp-dev/slirp/dns"
	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/metrics"
	"github.com/slirp-dev/slirp/netem"
	"github.com/slirp-dev/slirp/netstack"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/api"
	"github.com/slirp-dev/slirp/tap"
)

// Defaults of Options.
const (
	DefaultMTU     = 65520
	DefaultTapName = "tap0"
)

// Default networks of Options, as in slirp4netns.
var (
	DefaultCIDR       = netip.MustParsePrefix("10.0.2.0/24")
	DefaultIPv6Prefix = netip.MustParsePrefix("fd00::/64")
)

// Options describe the network. The zero value of every field but the
// target is a sensible default.
type Options struct {
	// The guest side: a tap created in a network namespace...
	//
	// PID names the target by a process in it: its network namespace,
	// joined through its user namespace unless UsernsPath says otherwise.
	PID int
	// NetnsPath names the network namespace by a file instead (such as a
	// bind-mounted /run/netns/NAME); UsernsPath, if set, is joined first.
	NetnsPath  string
	UsernsPath string
	// TapName is the device to create or attach to (default "tap0").
	TapName string
	// Configure brings the tap and lo up inside the namespace, with the
	// guest address (N+100, and ::100 with IPv6) and default routes.
	Configure bool
	// MAC is the tap's address with Configure; nil keeps the kernel's.
	MAC net.HardwareAddr

	// ...or a frame link the caller opened: an attached tap (IFF_TAP,
	// IFF_NO_PI, plus IFF_VNET_HDR when LinkVnetHdr), or a socket carrying
	// one Ethernet frame per packet. The Network closes it.
	Link        *os.File
	LinkVnetHdr bool
	// Helper, with Link, is the namespace helper that created the tap: it
	// opens sockets inside the namespace for the fast port-forward path.
	// The Network closes it.
	Helper *tap.Namespace

	// MTU of the link (default 65520).
	MTU int
	// CIDR is the virtual IPv4 network (default 10.0.2.0/24): the gateway
	// is N+2, the DNS address N+3, DHCP leases from N+15, the guest N+100.
	CIDR netip.Prefix
	// IPv6 turns on IPv6 in IPv6Prefix (default fd00::/64).
	IPv6       bool
	IPv6Prefix netip.Prefix
	// AllowHostLoopback lets the guest reach the host's loopback through
	// the gateway. Off by default, as for podman's containers.
	AllowHostLoopback bool
	// DisableDNS turns the DNS forwarder off; the DNS address is then an
	// ordinary destination.
	DisableDNS bool
	// ResolvConf is where the DNS forwarder finds its upstreams (default
	// /etc/resolv.conf, followed when it changes).
	ResolvConf string
	// OutboundAddr and OutboundAddr6 are the source addresses of every
	// host socket of their family.
	OutboundAddr, OutboundAddr6 netip.Addr

	// APISocket, when set, serves the port-forwarding API there
	// (slirp4netns' protocol and the HTTP API of docs/api.md). Or give a
	// listener already open: APIListener (the Network closes it).
	APISocket   string
	APIListener *api.Listener
	// Netem is the initial impairment (change it with SetNetem); Seed
	// seeds its random choices so that a run can be replayed.
	Netem netem.Spec
	Seed  uint64
	// Pcap receives every frame on the link in pcap format.
	Pcap io.Writer
	// MetricsAddr serves Prometheus metrics there (HOST:PORT or a unix
	// socket path).
	MetricsAddr string

	// Logger gets the network's logs; nil discards them.
	Logger *slog.Logger
}

// Network is a running user-mode network.
type Network struct {
	opts Options
	log  *slog.Logger
	cfg  *cli.Config // addresses derived from the options

	helper   *tap.Namespace
	link     *os.File
	stack    *netstack.Stack
	dns      *dns.Server
	forwards *portfwd.Manager
	api      *api.Server
	apiLn    *api.Listener
	metrics  *metrics.Server

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// HelperMain runs the namespace helper when this process is one; it must
// be the first call in main (and in TestMain) of every program that calls
// Start. In any other process it returns at once.
func HelperMain() { tap.HelperMain() }

// Start brings the network up: the tap, the stack, DNS, DHCP, the API and
// the metrics, as the options say. ctx bounds the start only; the network
// runs until Close.
func Start(ctx context.Context, opts Options) (*Network, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	n := &Network{opts: opts, log: opts.Logger, cfg: opts.addressing(), ctx: rctx, cancel: cancel,
		helper: opts.Helper, link: opts.Link, apiLn: opts.APIListener}
	if err := n.start(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Prepare does the part of Start that needs the target namespaces: it
// starts the namespace helper and creates the tap through it, and returns
// opts with Link, LinkVnetHdr and Helper set, so that Start on the result
// skips that step. A daemon that must lose access to the host before the
// network runs (the sandbox of --enable-sandbox) prepares first. Options
// that already have a Link come back unchanged. On error nothing is left
// open. ctx bounds the preparation only.
func Prepare(ctx context.Context, opts Options) (Options, error) {
	if opts.Link != nil {
		return opts, nil
	}
	o := opts
	if err := o.setDefaults(); err != nil {
		return opts, err
	}
	helper, link, err := openTap(ctx, &o, o.addressing(), o.Logger)
	if err != nil {
		return opts, err
	}
	opts.Link, opts.LinkVnetHdr, opts.Helper = link, true, helper
	return opts, nil
}

// start runs the steps of Start; Close undoes whatever it finished.
func (n *Network) start(ctx context.Context) error {
	if n.link == nil {
		if err := n.openTap(ctx); err != nil {
			return err
		}
	}
	if err := n.startStack(); err != nil {
		return err
	}
	if !n.opts.DisableDNS {
		if err := n.startDNS(); err != nil {
			return err
		}
	}
	if err := n.startDHCP(); err != nil {
		return err
	}
	if err := n.startForwards(); err != nil {
		return err
	}
	if n.opts.MetricsAddr != "" {
		if err := n.startMetrics(); err != nil {
			return err
		}
	}
	n.wg.Go(n.reclaimIdleMemory)
	return nil
}

func (o *Options) setDefaults() error {
	if o.Link == nil && o.PID == 0 && o.NetnsPath == "" {
		return errors.New("slirp: no target: set PID, NetnsPath or Link")
	}
	if o.TapName == "" {
		o.TapName = DefaultTapName
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if !o.CIDR.IsValid() {
		o.CIDR = DefaultCIDR
	}
	if !o.IPv6Prefix.IsValid() {
		o.IPv6Prefix = DefaultIPv6Prefix
	}
	if o.ResolvConf == "" {
		o.ResolvConf = dns.DefaultResolvConf
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// addressing derives the network's addresses the way slirp4netns does
// (internal/cli keeps that arithmetic in one place).
func (o *Options) addressing() *cli.Config {
	return &cli.Config{CIDR: o.CIDR, IPv6Prefix: o.IPv6Prefix, EnableIPv6: o.IPv6}
}

// Gateway is the gateway address (N+2): the host, to the guest.
func (n *Network) Gateway() netip.Addr { return n.cfg.Gateway() }

// DNS is the DNS forwarder's address (N+3).
func (n *Network) DNS() netip.Addr { return n.cfg.DNS() }

// GuestAddr is the guest's address with Configure (N+100).
func (n *Network) GuestAddr() netip.Addr { return n.cfg.RecommendedIP() }

// HelperPID is the process ID of the namespace helper, or 0 without one.
// It lives in the target namespace.
func (n *Network) HelperPID() int {
	if n.helper == nil {
		return 0
	}
	return n.helper.PID()
}

// Done is closed when the link fails (the tap is gone).
func (n *Network) Done() <-chan struct{} { return n.stack.Done() }

func (n *Network) openTap(ctx context.Context) error {
	helper, link, err := openTap(ctx, &n.opts, n.cfg, n.log)
	if err != nil {
		return err
	}
	n.helper, n.link, n.opts.LinkVnetHdr = helper, link, true
	return nil
}

// openTap starts the namespace helper for o's target and opens the tap
// through it, with the virtio-net header. On error it closes what it
// opened.
func openTap(ctx context.Context, o *Options, cfg *cli.Config, log *slog.Logger) (*tap.Namespace, *os.File, error) {
	target := tap.Target{NetnsPath: o.NetnsPath, UsernsPath: o.UsernsPath}
	if o.PID != 0 {
		target.NetnsPath = fmt.Sprintf("/proc/%d/ns/net", o.PID)
		if target.UsernsPath == "" {
			target.UsernsPath = fmt.Sprintf("/proc/%d/ns/user", o.PID)
		}
	}
	helper, err := tap.Enter(ctx, target, log.With("component", "tap"))
	if err != nil {
		return nil, nil, err
	}
	// The virtio-net header lets guest and stack exchange 64 KiB TCP
	// segments whatever the MTU (TSO/GSO).
	tc := tap.TapConfig{Name: o.TapName, VnetHdr: true}
	if o.Configure {
		tc.Configure = &tap.Addressing{
			MTU:     o.MTU,
			MAC:     o.MAC,
			Address: netip.PrefixFrom(cfg.RecommendedIP(), o.CIDR.Bits()),
			Gateway: cfg.Gateway(),
		}
		if o.IPv6 {
			tc.Configure.Address6 = netip.PrefixFrom(cfg.RecommendedIP6(), o.IPv6Prefix.Bits())
			tc.Configure.Gateway6 = netstack.RouterLinkLocal
		}
	}
	f, err := helper.OpenTap(ctx, tc)
	if err != nil {
		helper.Close()
		return nil, nil, err
	}
	log.Debug("tap open", "name", o.TapName)
	// From here on the helper only creates sockets for port forwards; as
	// a C loop it does that in a few hundred KiB instead of a Go
	// runtime's 10-15 MiB. A helper that cannot slim serves on in Go.
	if err := helper.Slim(ctx); err != nil {
		log.Warn("tap helper stays a Go process", "err", err)
	}
	return helper, f, nil
}

func (n *Network) startStack() error {
	o := &n.opts
	rc, err := n.link.SyscallConn()
	if err != nil {
		return fmt.Errorf("slirp: link: %w", err)
	}
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return fmt.Errorf("slirp: link: %w", err)
	}
	nc := netstack.Config{
		TapFD:         fd,
		VnetHdr:       o.LinkVnetHdr,
		MTU:           uint32(o.MTU),
		Network:       o.CIDR,
		Gateway:       n.cfg.Gateway(),
		DNS:           n.cfg.DNS(),
		ServeDNS:      !o.DisableDNS,
		HostLoopback:  o.AllowHostLoopback,
		OutboundAddr:  o.OutboundAddr,
		OutboundAddr6: o.OutboundAddr6,
		Netem:         o.Netem,
		NetemSeed:     o.Seed,
		Pcap:          o.Pcap,
		Logger:        n.log.With("component", "netstack"),
	}
	if o.IPv6 {
		nc.Network6, nc.Gateway6, nc.DNS6 = o.IPv6Prefix, n.cfg.Gateway6(), n.cfg.DNS6()
	}
	st, err := netstack.New(nc)
	if err != nil {
		return fmt.Errorf("start the network stack: %w", err)
	}
	n.stack = st
	return nil
}

// startDNS serves the DNS forwarder on the DNS addresses, UDP and TCP.
func (n *Network) startDNS() error {
	gws := []netip.Addr{n.cfg.Gateway()}
	addrs := []netip.AddrPort{netip.AddrPortFrom(n.cfg.DNS(), 53)}
	if n.opts.IPv6 {
		gws = append(gws, n.cfg.Gateway6())
		addrs = append(addrs, netip.AddrPortFrom(n.cfg.DNS6(), 53))
	}
	srv, err := dns.New(dns.Config{
		ResolvConf: n.opts.ResolvConf,
		Hosts: map[string][]netip.Addr{
			"host.containers.internal.": gws,
			"host.slirp.internal.":      gws,
		},
		Dial:   n.stack.DialHost,
		Logger: n.log.With("component", "dns"),
	})
	if err != nil {
		return fmt.Errorf("start DNS: %w", err)
	}
	n.dns = srv
	for _, addr := range addrs {
		pc, err := n.stack.ListenUDP(addr)
		if err != nil {
			return err
		}
		l, err := n.stack.ListenTCP(addr)
		if err != nil {
			pc.Close()
			return err
		}
		n.wg.Go(func() {
			if err := srv.ServePacket(n.ctx, pc); err != nil && n.ctx.Err() == nil {
				n.log.Error("DNS over UDP stopped", "addr", addr.String(), "err", err)
			}
		})
		n.wg.Go(func() {
			if err := srv.ServeStream(n.ctx, l); err != nil && n.ctx.Err() == nil {
				n.log.Error("DNS over TCP stopped", "addr", addr.String(), "err", err)
			}
		})
	}
	return nil
}

// startDHCP serves DHCP on the link, as libslirp always does.
func (n *Network) startDHCP() error {
	srv, err := dhcp.New(dhcp.Config{
		Network:   n.opts.CIDR,
		ServerIP:  n.cfg.Gateway(),
		DNS:       []netip.Addr{n.cfg.DNS()},
		PoolStart: n.cfg.DHCPStart(),
		MTU:       n.opts.MTU,
		Logger:    n.log.With("component", "dhcp"),
	})
	if err != nil {
		return fmt.Errorf("start DHCP: %w", err)
	}
	pc, err := n.stack.ListenUDPBroadcast(67)
	if err != nil {
		return err
	}
	n.wg.Go(func() {
		if err := srv.Serve(n.ctx, pc); err != nil {
			n.log.Error("DHCP stopped", "err", err)
		}
	})
	return nil
}

// startForwards sets up port forwarding and, when asked, its API socket.
// Forwards take the fast path through sockets the namespace helper opens
// when there is one, and the address-preserving path through the stack.
func (n *Network) startForwards() error {
	mcfg := portfwd.Config{
		Dialer: n.stack,
		Guest:  n.cfg.RecommendedIP(),
		Logger: n.log.With("component", "portfwd"),
	}
	// Only a non-nil helper may go into the interface: a typed nil would
	// look like an opener.
	if n.helper != nil {
		mcfg.Opener = n.helper
	}
	forwards, err := portfwd.New(mcfg)
	if err != nil {
		return fmt.Errorf("start port forwarding: %w", err)
	}
	n.forwards = forwards
	if n.opts.APISocket == "" && n.apiLn == nil {
		return nil
	}
	log := n.log.With("component", "api")
	server, err := api.New(api.Config{
		Manager:    forwards,
		Info:       n.apiInfo,
		StackStats: n.apiStackStats,
		Netem:      n.stack.Netem,
		SetNetem:   n.stack.SetNetem,
		Flows:      n.apiFlows,
		Logger:     log,
	})
	if err != nil {
		return fmt.Errorf("start the API: %w", err)
	}
	n.api = server
	if n.apiLn == nil {
		ln, err := api.Listen(n.opts.APISocket)
		if err != nil {
			return err
		}
		n.apiLn = ln
	}
	ln := n.apiLn
	n.wg.Go(func() {
		if err := server.Serve(ln); err != nil {
			log.Error("API socket stopped", "err", err)
		}
	})
	log.Info("API socket listening", "path", ln.Path())
	return nil
}

// apiInfo is what GET /v1/info tells about this network.
func (n *Network) apiInfo() api.Info {
	version, _, _ := strings.Cut(cli.VersionText(), "\n")
	info := api.Info{
		Version:      strings.TrimPrefix(version, "slirp4netns version "),
		Network:      n.opts.CIDR.String(),
		Gateway:      n.cfg.Gateway().String(),
		DNS:          n.cfg.DNS().String(),
		GuestIP:      n.cfg.RecommendedIP().String(),
		MTU:          n.opts.MTU,
		HostLoopback: n.opts.AllowHostLoopback,
		FastPath:     n.helper != nil,
		PreservePath: true,
	}
	if n.opts.IPv6 {
		info.Network6 = n.opts.IPv6Prefix.String()
		info.Gateway6 = n.cfg.Gateway6().String()
		info.DNS6 = n.cfg.DNS6().String()
		info.GuestIP6 = n.cfg.RecommendedIP6().String()
	}
	return info
}

// apiFlows lists the flows the guest opened, for GET /v1/conns.
func (n *Network) apiFlows() []api.Conn {
	flows := n.stack.Flows()
	out := make([]api.Conn, 0, len(flows))
	for _, f := range flows {
		out = append(out, api.Conn{
			Direction: "out", Proto: f.Proto, Guest: f.Guest, Dest: f.Dest, Host: f.Host,
			Started: f.Started, ToHost: f.ToHost, ToGuest: f.ToGuest,
		})
	}
	return out
}

// startMetrics serves the counters in Prometheus format.
func (n *Network) startMetrics() error {
	sources := []metrics.Source{{Name: "stack", Help: "user-mode stack", Get: func() any { return n.stack.Stats() }}}
	if n.dns != nil {
		sources = append(sources, metrics.Source{Name: "dns", Help: "DNS forwarder", Get: func() any { return n.dns.Stats() }})
	}
	m, err := metrics.Listen(n.opts.MetricsAddr, sources, n.log.With("component", "metrics"))
	if err != nil {
		return err
	}
	n.metrics = m
	n.log.Info("serving metrics", "addr", m.Addr().String())
	return nil
}

// AddForward publishes a port (see portfwd.ParseSpec for "8080:80").
func (n *Network) AddForward(spec portfwd.Spec) (portfwd.Forward, error) { return n.forwards.Add(spec) }

// RemoveForward unpublishes a port; its open connections run on.
func (n *Network) RemoveForward(id int) error { return n.forwards.Remove(id) }

// Forwards lists the published ports.
func (n *Network) Forwards() []portfwd.Forward { return n.forwards.List() }

// SetNetem replaces the impairments; live connections see them from the
// next packet.
func (n *Network) SetNetem(spec netem.Spec) { n.stack.SetNetem(spec) }

// Netem returns the impairments in force.
func (n *Network) Netem() netem.Spec { return n.stack.Netem() }

// Stats are the network's counters.
type Stats struct {
	Stack    netstack.Stats         `json:"stack"`
	DNS      dns.Stats              `json:"dns"`
	Forwards []portfwd.ForwardStats `json:"forwards"`
}

// Stats returns the counters now.
func (n *Network) Stats() Stats {
	s := Stats{Stack: n.stack.Stats(), Forwards: n.forwards.Stats()}
	if n.dns != nil {
		s.DNS = n.dns.Stats()
	}
	return s
}

// Flows lists the guest's live connections and UDP flows.
func (n *Network) Flows() []netstack.Flow { return n.stack.Flows() }

// Close stops everything Start started and waits for it. It is safe to
// call more than once and after a failed Start.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		if n.metrics != nil {
			n.metrics.Close()
		}
		if n.api != nil {
			n.api.Close()
		} else if n.apiLn != nil {
			n.apiLn.Close()
		}
		if n.forwards != nil {
			n.forwards.Close()
		}
		if n.dns != nil {
			n.dns.Close()
		}
		if n.stack != nil {
			n.stack.Close()
		}
		n.wg.Wait()
		if n.helper != nil {
			n.helper.Close()
		}
		if n.link != nil {
			n.link.Close()
		}
	})
	return nil
}

// Dial connects from inside the target namespace, as a program there
// would: network is "tcp" or "udp", address an IP literal and port (such
// as "10.0.2.2:8080" for the host's loopback). Tests use it to play the
// guest without entering the namespace themselves. It needs the namespace
// helper, which Start has when it created the tap itself.
func (n *Network) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if n.helper == nil {
		return nil, errors.New("slirp: Dial needs the namespace helper (Start with PID or NetnsPath)")
	}
	dst, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("slirp: dial %s: want IP:PORT: %w", address, err)
	}
	var proto portfwd.Proto
	switch network {
	case "tcp", "tcp4", "tcp6":
		proto = portfwd.TCP
	case "udp", "udp4", "udp6":
		proto = portfwd.UDP
	default:
		return nil, fmt.Errorf("slirp: dial: network %q is not tcp or udp", network)
	}
	return portfwd.DialNamespace(ctx, n.helper, proto, dst)
}
