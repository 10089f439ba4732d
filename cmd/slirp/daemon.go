package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp/dhcp"
	"github.com/slirp-dev/slirp/dns"
	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/metrics"
	"github.com/slirp-dev/slirp/internal/watch"
	"github.com/slirp-dev/slirp/netstack"
	"github.com/slirp-dev/slirp/tap"
)

// netnsPollInterval is how often the daemon looks for processes left in the
// target namespace after the target process has exited.
const netnsPollInterval = time.Second

// daemon is one run of slirp: what it opened, in the order it opened it, so
// that shutdown undoes it in reverse.
type daemon struct {
	cfg    *cli.Config
	log    *slog.Logger
	stdout io.Writer

	tapFile *os.File
	// vnetHdr says the tap carries virtio-net headers (it is ours, not an
	// inherited one).
	vnetHdr bool
	// ns is the helper inside the target namespaces (nil in tapfd and bess
	// modes). It stays for the daemon's life: port forwards open their
	// sockets inside the namespace through it.
	ns *tap.Namespace
	// target and targetNetns identify the target process and its network
	// namespace in pid mode, taken before the tap is created so that a
	// target that exits at once is still noticed.
	target      *watch.Process
	targetNetns watch.NetnsID
	stack       *netstack.Stack
	dns         *dns.Server
	pidFile     string
	pcap        *os.File
	metrics     *metrics.Server

	// services run until cancel is called (by close, or by a signal
	// through the parent context); wg waits for them.
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func runDaemon(cfg *cli.Config, stdout, stderr io.Writer) int {
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(handler)
	// The exit fd's number may be reused by the first file we open, so
	// find out now whether it is open at all.
	exitFDOpen := cfg.ExitFD >= 0 && watch.IsOpen(cfg.ExitFD)

	// A write to a closed stdout must not kill the daemon (slirp4netns
	// ignores SIGPIPE too).
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	d := &daemon{cfg: cfg, log: log, stdout: stdout}
	defer d.close()
	if err := d.start(ctx); err != nil {
		log.Error("start failed", "err", err)
		fmt.Fprintln(stderr, "slirp:", err)
		return 1
	}
	reason := d.wait(ctx, exitFDOpen)
	log.Info("exiting", "reason", reason)
	return 0
}

// start brings everything up and then writes the ready fd.
func (d *daemon) start(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	d.cancel = cancel
	cfg := d.cfg
	d.warnUnenforced()
	if cfg.TargetType == cli.TargetNetns && cfg.NetnsType == cli.NetnsTypePID {
		if err := d.watchTarget(); err != nil {
			return err
		}
	}

	f, err := d.openLink(ctx)
	if err != nil {
		return err
	}
	d.tapFile = f
	fmt.Fprint(d.stdout, cli.Banner(cfg))

	nc := netstack.Config{
		TapFD:         int(f.Fd()),
		VnetHdr:       d.vnetHdr,
		MTU:           uint32(cfg.MTU),
		Network:       cfg.CIDR,
		Gateway:       cfg.Gateway(),
		DNS:           cfg.DNS(),
		ServeDNS:      !cfg.DisableDNS,
		HostLoopback:  !cfg.DisableHostLoopback,
		OutboundAddr:  cfg.OutboundAddr,
		OutboundAddr6: cfg.OutboundAddr6,
		Netem:         cfg.Netem,
		NetemSeed:     cfg.Seed,
		Logger:        d.log.With("component", "netstack"),
	}
	if cfg.EnableIPv6 {
		nc.Network6, nc.Gateway6, nc.DNS6 = cfg.IPv6Prefix, cfg.Gateway6(), cfg.DNS6()
	}
	if cfg.PcapFile != "" {
		pf, err := os.OpenFile(cfg.PcapFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("open pcap file: %w", err)
		}
		d.pcap = pf
		nc.Pcap = pf
	}
	st, err := netstack.New(nc)
	if err != nil {
		return fmt.Errorf("start the network stack: %w", err)
	}
	d.stack = st
	if cfg.DropAfter > 0 {
		// --drop-after: stage an outage; heal it over the API.
		t := time.AfterFunc(cfg.DropAfter, func() {
			spec := st.Netem()
			spec.Partition = true
			st.SetNetem(spec)
			d.log.Warn("network partitioned (--drop-after)", "after", cfg.DropAfter)
		})
		context.AfterFunc(ctx, func() { t.Stop() })
	}

	if !cfg.DisableDNS {
		if err := d.startDNS(ctx); err != nil {
			return err
		}
	}
	if err := d.startDHCP(ctx); err != nil {
		return err
	}
	if cfg.APISocket != "" {
		if err := d.startAPI(ctx); err != nil {
			return err
		}
	}
	if cfg.MetricsAddr != "" {
		if err := d.startMetrics(); err != nil {
			return err
		}
	}
	if cfg.PIDFile != "" {
		if err := os.WriteFile(cfg.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
		d.pidFile = cfg.PIDFile
	}
	if cfg.ReadyFD >= 0 {
		writeReady(cfg.ReadyFD, d.log)
	}
	d.log.Info("ready", "tap", cfg.TapName, "mtu", cfg.MTU, "network", cfg.CIDR.String())
	return nil
}

// watchTarget takes hold of the target process and its namespace identity.
func (d *daemon) watchTarget() error {
	id, err := watch.NetnsOf(fmt.Sprintf("/proc/%d/ns/net", d.cfg.PID))
	if err != nil {
		return err
	}
	p, err := watch.OpenProcess(d.cfg.PID)
	if err != nil {
		return err
	}
	d.target, d.targetNetns = p, id
	return nil
}

// warnUnenforced logs once for each flag whose feature is not built yet.
func (d *daemon) warnUnenforced() {
	for _, f := range []struct {
		set  bool
		flag string
	}{
		{d.cfg.EnableSandbox, "--enable-sandbox"},
		{d.cfg.EnableSeccomp, "--enable-seccomp"},
	} {
		if f.set {
			d.log.Warn(f.flag + " is accepted but not enforced yet")
		}
	}
}

// openLink returns the frame descriptor: a tap created in the target
// namespace, an inherited tap, or a BESS connection.
func (d *daemon) openLink(ctx context.Context) (*os.File, error) {
	cfg := d.cfg
	switch {
	case cfg.TargetType == cli.TargetBESS:
		return acceptBESS(ctx, cfg.BessSocket, d.stdout, d.log)
	case cfg.NetnsType == cli.NetnsTypeTapFD:
		f, err := tap.FromFD(cfg.TapFD)
		if err != nil {
			return nil, fmt.Errorf("use tap fd %d: %w", cfg.TapFD, err)
		}
		return f, nil
	}
	target := tap.Target{NetnsPath: cfg.NetnsPath, UsernsPath: cfg.UsernsPath}
	if cfg.NetnsType == cli.NetnsTypePID {
		target.NetnsPath = fmt.Sprintf("/proc/%d/ns/net", cfg.PID)
		if target.UsernsPath == "" {
			target.UsernsPath = fmt.Sprintf("/proc/%d/ns/user", cfg.PID)
		}
	}
	ns, err := tap.Enter(ctx, target, d.log.With("component", "tap"))
	if err != nil {
		return nil, err
	}
	d.ns = ns
	// The virtio-net header lets guest and stack exchange 64 KiB TCP
	// segments whatever the MTU (TSO/GSO).
	tc := tap.TapConfig{Name: cfg.TapName, VnetHdr: true}
	d.vnetHdr = true
	if cfg.Configure {
		tc.Configure = &tap.Addressing{
			MTU:     cfg.MTU,
			MAC:     cfg.MACAddress,
			Address: netip.PrefixFrom(cfg.RecommendedIP(), cfg.CIDR.Bits()),
			Gateway: cfg.Gateway(),
		}
		if cfg.EnableIPv6 {
			tc.Configure.Address6 = netip.PrefixFrom(cfg.RecommendedIP6(), cfg.IPv6Prefix.Bits())
			tc.Configure.Gateway6 = netstack.RouterLinkLocal
		}
	}
	f, err := ns.OpenTap(ctx, tc)
	if err != nil {
		return nil, err
	}
	d.log.Debug("received tap fd", "fd", f.Fd(), "name", cfg.TapName)
	return f, nil
}

// startDNS serves the DNS forwarder on the DNS address, UDP and TCP.
func (d *daemon) startDNS(ctx context.Context) error {
	gws := []netip.Addr{d.cfg.Gateway()}
	addrs := []netip.AddrPort{netip.AddrPortFrom(d.cfg.DNS(), 53)}
	if d.cfg.EnableIPv6 {
		gws = append(gws, d.cfg.Gateway6())
		addrs = append(addrs, netip.AddrPortFrom(d.cfg.DNS6(), 53))
	}
	srv, err := dns.New(dns.Config{
		ResolvConf: d.cfg.ResolvConf,
		Hosts: map[string][]netip.Addr{
			"host.containers.internal.": gws,
			"host.slirp.internal.":      gws,
		},
		Dial:   d.stack.DialHost,
		Logger: d.log.With("component", "dns"),
	})
	if err != nil {
		return fmt.Errorf("start DNS: %w", err)
	}
	d.dns = srv
	for _, addr := range addrs {
		if err := d.serveDNS(ctx, addr); err != nil {
			return err
		}
	}
	return nil
}

// startMetrics serves the counters in Prometheus format.
func (d *daemon) startMetrics() error {
	sources := []metrics.Source{{Name: "stack", Help: "user-mode stack", Get: func() any { return d.stack.Stats() }}}
	if d.dns != nil {
		sources = append(sources, metrics.Source{Name: "dns", Help: "DNS forwarder", Get: func() any { return d.dns.Stats() }})
	}
	m, err := metrics.Listen(d.cfg.MetricsAddr, sources, d.log.With("component", "metrics"))
	if err != nil {
		return err
	}
	d.metrics = m
	d.log.Info("serving metrics", "addr", m.Addr().String())
	return nil
}

// startDHCP serves DHCP on the tap, as libslirp always does.
func (d *daemon) startDHCP(ctx context.Context) error {
	dnsServers := []netip.Addr{d.cfg.DNS()}
	srv, err := dhcp.New(dhcp.Config{
		Network:   d.cfg.CIDR,
		ServerIP:  d.cfg.Gateway(),
		DNS:       dnsServers,
		PoolStart: d.cfg.DHCPStart(),
		MTU:       d.cfg.MTU,
		Logger:    d.log.With("component", "dhcp"),
	})
	if err != nil {
		return fmt.Errorf("start DHCP: %w", err)
	}
	pc, err := d.stack.ListenUDPBroadcast(67)
	if err != nil {
		return err
	}
	d.wg.Go(func() {
		if err := srv.Serve(ctx, pc); err != nil {
			d.log.Error("DHCP stopped", "err", err)
		}
	})
	return nil
}

// serveDNS serves the forwarder on addr over UDP and TCP.
func (d *daemon) serveDNS(ctx context.Context, addr netip.AddrPort) error {
	pc, err := d.stack.ListenUDP(addr)
	if err != nil {
		return err
	}
	l, err := d.stack.ListenTCP(addr)
	if err != nil {
		pc.Close()
		return err
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		if err := d.dns.ServePacket(ctx, pc); err != nil && ctx.Err() == nil {
			d.log.Error("DNS over UDP stopped", "addr", addr.String(), "err", err)
		}
	}()
	go func() {
		defer d.wg.Done()
		if err := d.dns.ServeStream(ctx, l); err != nil && ctx.Err() == nil {
			d.log.Error("DNS over TCP stopped", "addr", addr.String(), "err", err)
		}
	}()
	return nil
}

// wait blocks until something ends the daemon and says what.
func (d *daemon) wait(ctx context.Context, exitFDOpen bool) string {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reasons := make(chan string, 3)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	if d.cfg.ExitFD >= 0 {
		if !exitFDOpen {
			return "exit fd is not open"
		}
		wg.Go(func() {
			if watch.ExitFD(wctx, d.cfg.ExitFD) == nil {
				reasons <- "exit fd hung up"
			}
		})
	}
	if d.target != nil {
		wg.Go(func() {
			var exclude []int
			if d.ns != nil {
				exclude = append(exclude, d.ns.PID())
			}
			if watch.NetnsEmpty(wctx, d.target, d.targetNetns, netnsPollInterval, exclude...) == nil {
				reasons <- "the target namespace has no process left"
			}
		})
	}
	select {
	case <-ctx.Done():
		return "signal"
	case r := <-reasons:
		return r
	case <-d.stack.Done():
		return "tap device closed"
	}
}

// close undoes start in reverse order; it is safe after a partial start.
func (d *daemon) close() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.metrics != nil {
		d.metrics.Close()
	}
	if d.dns != nil {
		d.dns.Close()
	}
	if d.stack != nil {
		d.stack.Close()
	}
	d.wg.Wait()
	if d.ns != nil {
		d.ns.Close()
	}
	if d.tapFile != nil {
		d.tapFile.Close()
	}
	if d.pcap != nil {
		d.pcap.Close()
	}
	if d.target != nil {
		d.target.Close()
	}
	if d.pidFile != "" {
		os.Remove(d.pidFile)
	}
}

// writeReady writes "1" to the ready fd and closes it, as slirp4netns does.
// Errors are logged, not fatal: the network is up either way.
func writeReady(fd int, log *slog.Logger) {
	f := os.NewFile(uintptr(fd), "ready-fd")
	if f == nil {
		log.Warn("ready fd is not valid", "fd", fd)
		return
	}
	defer f.Close()
	if _, err := f.Write([]byte("1")); err != nil {
		log.Warn("write ready fd", "fd", fd, "err", err)
	}
}

// acceptBESS listens on a SOCK_SEQPACKET unix socket and takes the first
// client (a User-Mode Linux instance) as the frame link, one Ethernet frame
// per packet (slirp4netns --target-type=bess).
func acceptBESS(ctx context.Context, path string, stdout io.Writer, log *slog.Logger) (*os.File, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen on BESS socket: %w", err)
	}
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	fmt.Fprintf(stdout, "Waiting for connection to %s\n", path)
	c, err := l.AcceptUnix()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("accept on BESS socket: %w", err)
	}
	defer c.Close()
	f, err := c.File()
	if err != nil {
		return nil, fmt.Errorf("BESS connection: %w", err)
	}
	log.Info("BESS client connected", "socket", path)
	return f, nil
}

var _ = errors.New
