package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/watch"
	"github.com/slirp-dev/slirp/tap"
)

// netnsPollInterval is how often the daemon looks for processes left in the
// target namespace after the target process has exited.
const netnsPollInterval = time.Second

// daemon is one run of slirp: the network (package slirp) behind
// slirp4netns' lifecycle: banner, ready fd, exit fd, pid file, and the
// events that end it.
type daemon struct {
	cfg    *cli.Config
	log    *slog.Logger
	stdout io.Writer

	net *slirp.Network
	// target and targetNetns identify the target process and its network
	// namespace in pid mode, taken before the tap is created so that a
	// target that exits at once is still noticed.
	target      *watch.Process
	targetNetns watch.NetnsID
	pcap        *os.File
	pidFile     string
	dropTimer   *time.Timer
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

// start brings the network up and then writes the ready fd.
func (d *daemon) start(ctx context.Context) error {
	cfg := d.cfg
	d.warnUnenforced()
	if cfg.TargetType == cli.TargetNetns && cfg.NetnsType == cli.NetnsTypePID {
		if err := d.watchTarget(); err != nil {
			return err
		}
	}
	opts, err := d.options(ctx)
	if err != nil {
		return err
	}
	n, err := slirp.Start(ctx, opts)
	if err != nil {
		return err
	}
	d.net = n
	fmt.Fprint(d.stdout, cli.Banner(cfg))
	if cfg.DropAfter > 0 {
		// --drop-after: stage an outage; heal it over the API.
		d.dropTimer = time.AfterFunc(cfg.DropAfter, func() {
			spec := n.Netem()
			spec.Partition = true
			n.SetNetem(spec)
			d.log.Warn("network partitioned (--drop-after)", "after", cfg.DropAfter)
		})
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

// options turns the command line into the network's options. In tapfd and
// bess modes the link is opened here.
func (d *daemon) options(ctx context.Context) (slirp.Options, error) {
	cfg := d.cfg
	o := slirp.Options{
		UsernsPath:        cfg.UsernsPath,
		TapName:           cfg.TapName,
		Configure:         cfg.Configure,
		MAC:               cfg.MACAddress,
		MTU:               cfg.MTU,
		CIDR:              cfg.CIDR,
		IPv6:              cfg.EnableIPv6,
		IPv6Prefix:        cfg.IPv6Prefix,
		AllowHostLoopback: !cfg.DisableHostLoopback,
		DisableDNS:        cfg.DisableDNS,
		ResolvConf:        cfg.ResolvConf,
		OutboundAddr:      cfg.OutboundAddr,
		OutboundAddr6:     cfg.OutboundAddr6,
		APISocket:         cfg.APISocket,
		Netem:             cfg.Netem,
		Seed:              cfg.Seed,
		MetricsAddr:       cfg.MetricsAddr,
		Logger:            d.log,
	}
	switch {
	case cfg.TargetType == cli.TargetBESS:
		f, err := acceptBESS(ctx, cfg.BessSocket, d.stdout, d.log)
		if err != nil {
			return o, err
		}
		o.Link = f
	case cfg.NetnsType == cli.NetnsTypeTapFD:
		f, err := tap.FromFD(cfg.TapFD)
		if err != nil {
			return o, fmt.Errorf("use tap fd %d: %w", cfg.TapFD, err)
		}
		o.Link = f
	case cfg.NetnsType == cli.NetnsTypePID:
		o.PID = cfg.PID
	default:
		o.NetnsPath = cfg.NetnsPath
	}
	if cfg.PcapFile != "" {
		pf, err := os.OpenFile(cfg.PcapFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			if o.Link != nil {
				o.Link.Close()
			}
			return o, fmt.Errorf("open pcap file: %w", err)
		}
		d.pcap = pf
		o.Pcap = pf
	}
	return o, nil
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
			if pid := d.net.HelperPID(); pid != 0 {
				exclude = append(exclude, pid)
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
	case <-d.net.Done():
		return "tap device closed"
	}
}

// close undoes start in reverse order; it is safe after a partial start.
func (d *daemon) close() {
	if d.dropTimer != nil {
		d.dropTimer.Stop()
	}
	if d.net != nil {
		d.net.Close()
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
