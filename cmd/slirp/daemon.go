package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/sandbox"
	"github.com/slirp-dev/slirp/internal/watch"
	"github.com/slirp-dev/slirp/tap"
)

// netnsPollInterval is how often the daemon looks for processes left in the
// target namespace after the target process has exited.
const netnsPollInterval = time.Second

// daemon is one run of slirp: the network (package slirp) behind
// slirp4netns' lifecycle: banner, ready fd, exit fd, pid file, and the
// events that end it. With --enable-sandbox it runs in two images of the
// same process (see sandbox.go): the first sets up what needs the host and
// re-executes itself into the sandbox, the second runs the network.
type daemon struct {
	cfg    *cli.Config
	log    *slog.Logger
	stdout io.Writer

	// readyFD and exitFD are the --ready-fd and --exit-fd descriptors
	// when they were open at start, else -1; exitFDClosed says --exit-fd
	// was given but not open, which ends the daemon at once, as in
	// slirp4netns.
	readyFD, exitFD int
	exitFDClosed    bool

	net *slirp.Network
	// prepared holds what was opened for the network until Start takes
	// it over: the link, the namespace helper and the API listener.
	prepared slirp.Options
	// target and targetNetns identify the target process and its network
	// namespace in pid mode, taken before the tap is created so that a
	// target that exits at once is still noticed.
	target      *watch.Process
	targetNetns watch.NetnsID
	// targetProc is the target process in the sandbox, where /proc is
	// gone: the daemon then waits for that process only.
	targetProc *watch.Process
	pcap       *os.File
	pidFile    string // removed at exit
	dropTimer  *time.Timer
}

func newDaemon(cfg *cli.Config, stdout, stderr io.Writer) *daemon {
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogFormat == "json" {
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	return &daemon{cfg: cfg, log: slog.New(handler), stdout: stdout, readyFD: -1, exitFD: -1}
}

// runDaemon runs the daemon from the command line and returns its exit
// status. With --enable-sandbox it re-executes itself into the sandbox,
// where runResumed goes on, and returns only on failure.
func runDaemon(cfg *cli.Config, stdout, stderr io.Writer) int {
	d := newDaemon(cfg, stdout, stderr)
	// The numbers of the ready and exit fds may be reused by the first
	// file we open, so find out now whether they are open at all.
	if cfg.ReadyFD >= 0 {
		if watch.IsOpen(cfg.ReadyFD) {
			d.readyFD = cfg.ReadyFD
		} else {
			d.log.Warn("ready fd is not open", "fd", cfg.ReadyFD)
		}
	}
	if cfg.ExitFD >= 0 {
		if watch.IsOpen(cfg.ExitFD) {
			d.exitFD = cfg.ExitFD
		} else {
			d.exitFDClosed = true
		}
	}
	ctx, stop := d.signals()
	defer stop()
	defer d.close()

	var err error
	if cfg.EnableSandbox {
		err = d.execSandbox(ctx)
	} else {
		err = d.startHere(ctx)
	}
	if err != nil {
		return d.failed(err, stderr)
	}
	return d.run(ctx)
}

// runResumed runs the daemon in the image that --enable-sandbox
// re-executed, from what the first image handed over.
func runResumed(st sandbox.State, stdout, stderr io.Writer) int {
	h, err := decodeHandoff(st)
	if err != nil {
		fmt.Fprintln(stderr, "slirp:", err)
		return 1
	}
	d := newDaemon(h.Config, stdout, stderr)
	d.readyFD, d.exitFD, d.exitFDClosed = st.ReadyFD, st.ExitFD, h.ExitFDClosed
	ctx, stop := d.signals()
	defer stop()
	defer d.close()
	opts, err := d.resume(st, h)
	if err == nil {
		err = d.start(ctx, opts)
	}
	if err != nil {
		return d.failed(err, stderr)
	}
	return d.run(ctx)
}

// signals ignores SIGPIPE (a write to a closed stdout must not kill the
// daemon; slirp4netns ignores it too) and returns a context that SIGINT
// and SIGTERM cancel.
func (d *daemon) signals() (context.Context, context.CancelFunc) {
	signal.Ignore(syscall.SIGPIPE)
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// failed reports a start failure in one line: a JSON record when the log
// is JSON (a machine reads it), else a plain sentence on stderr.
func (d *daemon) failed(err error, stderr io.Writer) int {
	if d.cfg.LogFormat == "json" {
		d.log.Error("start failed", "err", err)
	} else {
		fmt.Fprintln(stderr, "slirp:", err)
	}
	return 1
}

// run waits for the end and says why.
func (d *daemon) run(ctx context.Context) int {
	reason := d.wait(ctx)
	d.log.Info("exiting", "reason", reason)
	return 0
}

// startHere brings the network up in this process, unsandboxed.
func (d *daemon) startHere(ctx context.Context) error {
	if d.cfg.TargetType == cli.TargetNetns && d.cfg.NetnsType == cli.NetnsTypePID {
		if err := d.watchTarget(); err != nil {
			return err
		}
	}
	opts, err := d.options(ctx)
	if err != nil {
		return err
	}
	return d.start(ctx, opts)
}

// start brings the network up, writes the pid file unless the first image
// did, installs the seccomp filter when asked, and then writes the ready
// fd: the network and its API are usable, and confined, from then on.
func (d *daemon) start(ctx context.Context, opts slirp.Options) error {
	cfg := d.cfg
	// Start owns the prepared link, helper and listener from here on,
	// and closes them if it fails.
	d.prepared = slirp.Options{}
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
	if cfg.PIDFile != "" && !cfg.EnableSandbox {
		if err := d.writePIDFile(); err != nil {
			return err
		}
	}
	if cfg.EnableSeccomp {
		if err := sandbox.InstallSeccomp(); err != nil {
			return err
		}
		fmt.Fprintf(d.stdout, "seccomp: The following syscalls are blocked: %s\n", strings.Join(sandbox.Killed(), " "))
	}
	if d.readyFD >= 0 {
		writeReady(d.readyFD, d.log)
	}
	d.log.Info("ready", "tap", cfg.TapName, "mtu", cfg.MTU, "network", cfg.CIDR.String(),
		"sandbox", cfg.EnableSandbox, "seccomp", cfg.EnableSeccomp)
	return nil
}

func (d *daemon) writePIDFile() error {
	if err := os.WriteFile(d.cfg.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	d.pidFile = d.cfg.PIDFile
	return nil
}

// baseOptions turns the command line into the network's options, leaving
// the target out.
func (d *daemon) baseOptions() slirp.Options {
	cfg := d.cfg
	return slirp.Options{
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
}

// options turns the command line into the network's options, with the
// target. In tapfd and bess modes the link is opened here; so is the pcap
// file.
func (d *daemon) options(ctx context.Context) (slirp.Options, error) {
	cfg := d.cfg
	o := d.baseOptions()
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
	d.prepared.Link = o.Link
	if cfg.PcapFile != "" {
		pf, err := os.OpenFile(cfg.PcapFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
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
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no process %d: give the PID of a process inside the network namespace (podman's infra container, rootlesskit's child), or a namespace file with --netns-type=path", d.cfg.PID)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (the process belongs to another user: run slirp as that user, or as root)", err)
	case err != nil:
		return err
	}
	p, err := watch.OpenProcess(d.cfg.PID)
	if err != nil {
		return err
	}
	d.target, d.targetNetns = p, id
	return nil
}

// wait blocks until something ends the daemon and says what.
func (d *daemon) wait(ctx context.Context) string {
	if d.exitFDClosed {
		return "exit fd is not open"
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reasons := make(chan string, 3)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	if d.exitFD >= 0 {
		wg.Go(func() {
			if watch.ExitFD(wctx, d.exitFD) == nil {
				reasons <- "exit fd hung up"
			}
		})
	}
	switch {
	case d.target != nil:
		wg.Go(func() {
			var exclude []int
			if pid := d.net.HelperPID(); pid != 0 {
				exclude = append(exclude, pid)
			}
			if watch.NetnsEmpty(wctx, d.target, d.targetNetns, netnsPollInterval, exclude...) == nil {
				reasons <- "the target namespace has no process left"
			}
		})
	case d.targetProc != nil:
		wg.Go(func() {
			if err := d.targetProc.Wait(wctx); err == nil {
				reasons <- "the target process exited"
			} else if wctx.Err() == nil {
				d.log.Error("cannot watch the target process", "err", err)
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
	if p := d.prepared; p.Link != nil || p.Helper != nil || p.APIListener != nil {
		if p.APIListener != nil {
			p.APIListener.Close()
		}
		if p.Helper != nil {
			p.Helper.Close()
		}
		if p.Link != nil {
			p.Link.Close()
		}
	}
	if d.pcap != nil {
		d.pcap.Close()
	}
	if d.target != nil {
		d.target.Close()
	}
	if d.targetProc != nil {
		d.targetProc.Close()
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
