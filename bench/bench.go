package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// guestIperfPort is where the guest's iperf3 server listens for the
	// port-forward workload (the guest has a port space of its own).
	guestIperfPort = 5201
	// echoPorts is how many host ports the connection-rate run cycles
	// through (see connRate).
	echoPorts = 8
	// latencyWarmup round trips are discarded before the timed ones.
	latencyWarmup = 1000
)

// bench is one run of the harness.
type bench struct {
	opts  options
	log   *slog.Logger
	impls map[string]*implementation
	// self is this binary, run inside the guest namespace as the peer.
	self string
	// tmp holds our daemon's binary when the harness built it.
	tmp string

	res     *results
	machine machineInfo
	// commands are the exact command lines used, for the report.
	commands []string
	// profiles are perf summaries by "IMPL at MTU".
	profiles []profileSummary
}

func newBench(ctx context.Context, opts options, log *slog.Logger) (*bench, error) {
	b := &bench{opts: opts, log: log, res: newResults()}
	oursBinary := opts.slirpBinary
	b.impls = newImplementations(oursBinary)
	if err := checkEnvironment(opts, b.impls); err != nil {
		return nil, err
	}
	if err := becomeSubreaper(); err != nil {
		return nil, err
	}
	if err := raiseFileLimit(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the bench binary: %w", err)
	}
	b.self = self
	if oursBinary == "" {
		if b.tmp, err = os.MkdirTemp("", "slirp-bench-bin-"); err != nil {
			return nil, err
		}
		log.Info("building ./cmd/slirp")
		if oursBinary, err = buildOurs(ctx, b.tmp); err != nil {
			b.close()
			return nil, err
		}
		b.impls = newImplementations(oursBinary)
	}
	return b, nil
}

func (b *bench) close() {
	if b.tmp != "" {
		os.RemoveAll(b.tmp)
	}
}

// runAll runs every pass: rounds × MTUs × implementations, with the
// implementations interleaved so that a change in the machine's load
// affects all three alike.
func (b *bench) runAll(ctx context.Context) error {
	b.machine = describeMachine(ctx, b.impls)
	b.log.Info("measuring host loopback with iperf3 (the machine's ceiling)")
	if gbps, err := b.loopbackBaseline(ctx); err != nil {
		b.log.Warn("host loopback baseline failed", "err", err)
	} else {
		b.machine.loopbackGbps = gbps
	}
	for round := 1; round <= b.opts.rounds; round++ {
		for _, mtu := range b.opts.mtus {
			for _, name := range b.opts.impls {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				b.log.Info("pass", "impl", name, "mtu", mtu, "round", round)
				if err := b.runPass(ctx, b.impls[name], mtu, round == 1 && mtu == b.opts.mtus[0]); err != nil {
					b.log.Error("pass failed", "impl", name, "mtu", mtu, "err", err)
				}
			}
		}
	}
	b.machine.loadEnd = loadAverage()
	if b.opts.perfDir != "" {
		for _, mtu := range b.opts.mtus {
			for _, name := range b.opts.impls {
				if err := b.profilePass(ctx, b.impls[name], mtu); err != nil {
					b.log.Error("profile failed", "impl", name, "mtu", mtu, "err", err)
				}
			}
		}
	}
	return nil
}

// loopbackBaseline is iperf3 over the host's loopback, single stream.
func (b *bench) loopbackBaseline(ctx context.Context) (float64, error) {
	srv, port, err := startIperfServer(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer stopProcess(srv)
	r, err := runIperf(ctx, iperfClientArgs("127.0.0.1", port, b.opts.iperfTime, 1, false), b.opts.iperfTime)
	if err != nil {
		return 0, err
	}
	return r.gbps(), nil
}

// pass is one daemon on one fresh namespace at one MTU.
type pass struct {
	b   *bench
	im  *implementation
	mtu int
	ns  *guestNetns
	d   *daemon
	// hostIperfPort is the host's iperf3 server on 127.0.0.1.
	hostIperfPort int
	// fwdHostPort is forwarded to the guest's iperf3 server.
	fwdHostPort int
	echo        *tcpServer
	hold        *holdServer
}

func (p *pass) record(id string, v float64) { p.b.res.add(p.mtu, p.im.name, id, v) }

// fail records that a workload (or "ready", "rss") could not be measured,
// for every row it feeds.
func (p *pass) fail(workload string, err error) {
	p.b.log.Error("workload failed", "impl", p.im.name, "mtu", p.mtu, "workload", workload, "err", err)
	p.markFailed(workload, err)
}

// markFailed records the failure without logging it.
func (p *pass) markFailed(workload string, err error) {
	why := "failed"
	if errors.Is(err, errAPIMissing) {
		why = "API missing"
	}
	for _, id := range measuresOf(workload) {
		p.b.res.fail(p.mtu, p.im.name, id, why)
	}
}

// measuresOf lists the rows a workload feeds.
func measuresOf(workload string) []string {
	switch workload {
	case "g2h", "h2g", "fwd", "g2h4":
		return []string{workload, "cpu-" + workload}
	case "latency":
		return []string{"latency", "latency99"}
	case "idle":
		return []string{"idle-rss", "idle-per-conn"}
	case "rss":
		return []string{"rss-busy", "rss", "rss-main"}
	}
	return []string{workload}
}

// runPass sets up a namespace, the servers and the daemon, runs the
// selected workloads and tears everything down again.
func (b *bench) runPass(ctx context.Context, im *implementation, mtu int, recordCommands bool) error {
	w := b.opts.workloads
	p := &pass{b: b, im: im, mtu: mtu}
	// failAll marks every row of the pass failed, when the pass cannot
	// go on; rows measured before keep their numbers.
	failAll := func(err error) error {
		p.markFailed("ready", err)
		p.markFailed("rss", err)
		for _, id := range workloadNames {
			if w[id] {
				p.markFailed(id, err)
			}
		}
		return err
	}

	ns, err := newGuestNetns()
	if err != nil {
		return failAll(err)
	}
	defer ns.close()
	p.ns = ns
	dir, err := os.MkdirTemp("", "slirp-bench-")
	if err != nil {
		return failAll(err)
	}
	defer os.RemoveAll(dir)

	hostIperf, port, err := startIperfServer(ctx, nil)
	if err != nil {
		return failAll(err)
	}
	defer stopProcess(hostIperf)
	p.hostIperfPort = port
	// pasta takes the forward at start even when the workload is not run.
	if p.fwdHostPort, err = freePort(); err != nil {
		return failAll(err)
	}
	if w["fwd"] {
		guestIperf, _, err := startIperfServer(ctx, ns)
		if err != nil {
			return failAll(err)
		}
		defer stopProcess(guestIperf)
	}
	if w["latency"] || w["connrate"] {
		if p.echo, err = listenTCP(echoPorts, echoOneByte); err != nil {
			return failAll(err)
		}
		defer p.echo.Close()
	}
	if w["idle"] {
		if p.hold, err = newHoldServer(); err != nil {
			return failAll(err)
		}
		defer p.hold.Close()
	}

	req := startRequest{target: strconv.Itoa(ns.pid), mtu: mtu, dir: dir,
		fwdHostPort: strconv.Itoa(p.fwdHostPort), fwdGuestPort: strconv.Itoa(guestIperfPort)}
	if recordCommands {
		b.recordCommand(im)
	}
	d, err := im.start(ctx, im, req)
	if err != nil {
		return failAll(err)
	}
	defer d.stop()
	p.d = d
	p.record("ready", float64(d.ready)/float64(time.Millisecond))
	b.log.Info("daemon ready", "impl", im.name, "pid", d.pid, "ready", d.ready.Round(10*time.Microsecond))
	if err := p.checkMTU(ctx); err != nil {
		return failAll(err)
	}
	if w["fwd"] && im.addForward != nil {
		if err := im.addForward(d, p.fwdHostPort, guestIperfPort); err != nil {
			p.fail("fwd", err)
			w = cloneWithout(w, "fwd")
		}
	}

	for _, id := range []string{"g2h", "h2g", "fwd", "g2h4"} {
		if w[id] && ctx.Err() == nil {
			if err := p.throughput(ctx, id); err != nil {
				p.fail(id, err)
			}
		}
	}
	if w["latency"] && ctx.Err() == nil {
		if err := p.latency(ctx); err != nil {
			p.fail("latency", err)
		}
	}
	if w["connrate"] && ctx.Err() == nil {
		if err := p.connRate(ctx); err != nil {
			p.fail("connrate", err)
		}
	}
	// Memory right after the workloads is partly garbage the daemon has
	// not collected or returned yet; what it holds sitting idle, which is
	// what a container pays for, is read after the same pause for every
	// daemon.
	busy, err := treeRSS(d.pid)
	if err == nil {
		p.record("rss-busy", float64(busy)/(1<<20))
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(b.opts.settle):
		}
	}
	var rss int64
	if err == nil {
		rss, err = treeRSS(d.pid)
	}
	if err != nil {
		p.fail("rss", err)
		p.fail("idle", err)
		return err
	}
	p.record("rss", float64(rss)/(1<<20))
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid)); err == nil {
		if mainRSS, err := parseVmRSS(data); err == nil {
			p.record("rss-main", float64(mainRSS)/(1<<20))
		}
	}
	if w["idle"] && ctx.Err() == nil {
		if err := p.idle(ctx, rss); err != nil {
			p.fail("idle", err)
		}
	}
	return ctx.Err()
}

func cloneWithout(m map[string]bool, key string) map[string]bool {
	out := map[string]bool{}
	for k, v := range m {
		out[k] = v && k != key
	}
	return out
}

// recordCommand keeps the daemon's command line, with placeholders, for
// the report.
func (b *bench) recordCommand(im *implementation) {
	binary := im.binary
	if im.name == ours {
		binary = "slirp"
	}
	argv := im.commandLine(binary, startRequest{target: "$PID", mtu: b.opts.mtus[0], dir: "$DIR",
		fwdHostPort: "$FWD_PORT", fwdGuestPort: strconv.Itoa(guestIperfPort)})
	b.commands = append(b.commands, shellJoin(argv))
}

// checkMTU makes sure the daemon gave the guest the MTU of the pass.
func (p *pass) checkMTU(ctx context.Context) error {
	out, err := p.ns.output(ctx, p.b.self, peerCommand, "mtu", "-iface", tapName)
	if err != nil {
		return fmt.Errorf("read the guest's MTU: %w: %s", err, out)
	}
	var v struct {
		MTU int `json:"mtu"`
	}
	if err := readPeerJSON(bufio.NewReader(strings.NewReader(out)), &v); err != nil {
		return err
	}
	if v.MTU != p.mtu {
		return fmt.Errorf("%s gave %s MTU %d, want %d", p.im.name, tapName, v.MTU, p.mtu)
	}
	return nil
}

// throughputRun is the iperf3 command of a throughput workload.
func (p *pass) throughputArgv(id string) []string {
	t := p.b.opts.iperfTime
	switch id {
	case "g2h":
		return p.ns.argv(iperfClientArgs(gateway, p.hostIperfPort, t, 1, false)...)
	case "g2h4":
		return p.ns.argv(iperfClientArgs(gateway, p.hostIperfPort, t, 4, false)...)
	case "h2g":
		return p.ns.argv(iperfClientArgs(gateway, p.hostIperfPort, t, 1, true)...)
	case "fwd":
		return iperfClientArgs("127.0.0.1", p.fwdHostPort, t, 1, false)
	}
	panic("unknown throughput workload " + id)
}

// throughput runs one iperf3 workload and the daemon's CPU time around it.
func (p *pass) throughput(ctx context.Context, id string) error {
	cpu0, err := treeCPU(p.d.pid)
	if err != nil {
		return err
	}
	r, err := runIperf(ctx, p.throughputArgv(id), p.b.opts.iperfTime)
	if err != nil {
		return err
	}
	cpu1, err := treeCPU(p.d.pid)
	if err != nil {
		return err
	}
	p.record(id, r.gbps())
	p.record("cpu-"+id, (cpu1-cpu0).Seconds()/(float64(r.bytes)/1e9))
	p.b.log.Info("throughput", "impl", p.im.name, "mtu", p.mtu, "workload", id,
		"gbps", fmt.Sprintf("%.2f", r.gbps()), "retransmits", r.retransmits, "daemon_cpu", cpu1-cpu0)
	return nil
}

// latency runs the ping-pong peer in the guest against the host's echo
// server through the gateway.
func (p *pass) latency(ctx context.Context) error {
	out, err := p.ns.output(ctx, p.b.self, peerCommand, "latency", "-addr", p.echo.guestAddrs()[0],
		"-count", strconv.Itoa(p.b.opts.latencyCount), "-warmup", strconv.Itoa(latencyWarmup))
	if err != nil {
		return fmt.Errorf("latency peer: %w: %s", err, out)
	}
	var r latencyResult
	if err := readPeerJSON(bufio.NewReader(strings.NewReader(out)), &r); err != nil {
		return err
	}
	p.record("latency", r.P50us)
	p.record("latency99", r.P99us)
	p.b.log.Info("latency", "impl", p.im.name, "mtu", p.mtu, "p50_us", r.P50us, "p99_us", r.P99us)
	return nil
}

// connRate runs the connection-rate peer in the guest.
func (p *pass) connRate(ctx context.Context) error {
	addrs := p.echo.guestAddrs()
	out, err := p.ns.output(ctx, p.b.self, peerCommand, "connrate", "-addrs", strings.Join(addrs, ","),
		"-duration", p.b.opts.connTime.String())
	if err != nil {
		return fmt.Errorf("connection-rate peer: %w: %s", err, out)
	}
	var r connRateResult
	if err := readPeerJSON(bufio.NewReader(strings.NewReader(out)), &r); err != nil {
		return err
	}
	if r.Errors > 0 {
		p.b.log.Warn("connection errors", "impl", p.im.name, "mtu", p.mtu, "errors", r.Errors, "first", r.FirstError)
	}
	p.record("connrate", r.rate())
	p.b.log.Info("connection rate", "impl", p.im.name, "mtu", p.mtu, "conns", r.Conns, "per_second", int(r.rate()))
	return nil
}

// idle opens the idle connections from the guest, waits until the host
// has all of them, and measures the daemon's memory.
func (p *pass) idle(ctx context.Context, rssBefore int64) error {
	n := p.b.opts.idleConns
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := p.ns.command(ctx, p.b.self, peerCommand, "idle", "-addr", p.hold.guestAddrs()[0], "-n", strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the idle peer: %w", err)
	}
	finish := func() error {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("idle peer: %w: %s", err, stderr.String())
		}
		return nil
	}
	var opened struct {
		Open int `json:"open"`
	}
	if err := readPeerJSON(bufio.NewReader(stdout), &opened); err != nil {
		return errors.Join(err, finish())
	}
	if err := p.hold.waitFor(ctx, n); err != nil {
		return errors.Join(err, finish())
	}
	rss, err := treeRSS(p.d.pid)
	if err != nil {
		return errors.Join(err, finish())
	}
	p.record("idle-rss", float64(rss)/(1<<20))
	p.record("idle-per-conn", float64(rss-rssBefore)/float64(n)/1024)
	p.b.log.Info("idle connections", "impl", p.im.name, "mtu", p.mtu, "conns", n,
		"rss_mib", fmt.Sprintf("%.1f", float64(rss)/(1<<20)))
	return finish()
}

// startIperfServer starts an iperf3 server on the host's 127.0.0.1 (ns
// nil; on a free port) or inside the guest namespace (on guestIperfPort,
// all addresses) and waits until it listens.
func startIperfServer(ctx context.Context, ns *guestNetns) (*exec.Cmd, int, error) {
	var cmd *exec.Cmd
	var port, pid int
	if ns == nil {
		var err error
		if port, err = freePort(); err != nil {
			return nil, 0, err
		}
		cmd = exec.CommandContext(ctx, "iperf3", "--server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	} else {
		port, pid = guestIperfPort, ns.pid
		cmd = ns.command(ctx, "iperf3", "--server", "--port", strconv.Itoa(port))
	}
	cmd.Stdout = io.Discard
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start iperf3 server: %w", err)
	}
	if err := waitListening(pid, port, 10*time.Second); err != nil {
		stopProcess(cmd)
		return nil, 0, fmt.Errorf("iperf3 server: %w: %s", err, stderr.String())
	}
	return cmd, port, nil
}

// stopProcess kills a helper process and reaps it.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
