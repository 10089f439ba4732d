package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The guest's address plan, the same for all three daemons: slirp4netns'
// defaults, which ours shares and pasta is told with --address and
// --gateway (as rootlesskit's pasta driver does).
const (
	gateway   = "10.0.2.2"
	guestAddr = "10.0.2.100"
	tapName   = "tap0"
)

// readyLimit bounds how long a daemon may take to come up.
const readyLimit = 10 * time.Second

// startRequest says how to start a daemon for one pass. Its fields are
// strings so that the same command line can be printed with placeholders
// in the report.
type startRequest struct {
	// target is the PID of the process holding the guest namespace.
	target string
	mtu    int
	// dir is a scratch directory for the API socket, pid and log files.
	dir string
	// fwdHostPort on 127.0.0.1 is forwarded to fwdGuestPort in the guest.
	// pasta takes its forwards on the command line, so the ports are known
	// before it starts; the others get them through their API afterwards.
	fwdHostPort, fwdGuestPort string
}

// daemon is a running network daemon.
type daemon struct {
	impl string
	// pid is the daemon's main process; its descendants count with it.
	pid int
	// ready is the time from starting the process to the daemon saying
	// it is ready (see the implementations for what that means).
	ready time.Duration
	// argv is the command line used.
	argv []string
	// apiSocket is the slirp4netns-style API socket ("" for pasta).
	apiSocket string
	// logPath holds the daemon's stdout and stderr.
	logPath string

	proc *os.Process
	done chan struct{} // closed when proc has been reaped
}

// implementation is one of the three daemons.
type implementation struct {
	name   string
	binary string
	// commandLine returns the daemon's argv for a pass.
	commandLine func(binary string, req startRequest) []string
	start       func(ctx context.Context, im *implementation, req startRequest) (*daemon, error)
	// addForward adds the 127.0.0.1:host → guest:guestPort forward after
	// start; nil when the forward is given at start.
	addForward func(d *daemon, hostPort, guestPort int) error
}

// slirp4netnsArgs is the command line of slirp4netns and of ours, which
// takes the same one: the way podman and rootlesskit call it, minus the
// sandbox (rootlesskit's default) and with the API socket for forwards.
func slirp4netnsArgs(binary string, req startRequest) []string {
	return []string{binary, "--configure", "--mtu=" + strconv.Itoa(req.mtu),
		"--api-socket=" + filepath.Join(req.dir, "api.sock"), "--ready-fd=3",
		req.target, tapName}
}

// pastaArgs is pasta's command line. pasta (passt 2023-03) joins the
// holder's user and network namespaces by PID, configures tap0 with our
// address plan, maps the gateway address to the host's loopback (its
// default without --no-map-gw: a connection to 10.0.2.2 reaches
// 127.0.0.1, as with the other two), forwards the benchmark port from
// 127.0.0.1 and nothing else (-t/-u/-T/-U default to "auto", which scans
// for ports every second), and daemonizes once it is ready. As root it
// would drop to nobody before it opens the namespaces, and nobody may not
// join a user namespace root created, so --runas 0 keeps root, as the other
// two daemons run.
func pastaArgs(binary string, req startRequest) []string {
	return []string{binary, "--runas", "0", "--quiet", "--config-net", "--ipv4-only",
		"--ns-ifname", tapName, "--address", guestAddr, "--netmask", "24", "--gateway", gateway,
		"--mtu", strconv.Itoa(req.mtu),
		"--tcp-ports", "127.0.0.1/" + req.fwdHostPort + ":" + req.fwdGuestPort,
		"--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",
		"--pid", filepath.Join(req.dir, "pasta.pid"), req.target}
}

func newImplementations(oursBinary string) map[string]*implementation {
	return map[string]*implementation{
		ours: {name: ours, binary: oursBinary, commandLine: slirp4netnsArgs,
			start: startWithReadyFD, addForward: apiAddForward},
		slirp4netns: {name: slirp4netns, binary: "/usr/bin/slirp4netns", commandLine: slirp4netnsArgs,
			start: startWithReadyFD, addForward: apiAddForward},
		pasta: {name: pasta, binary: "/usr/bin/pasta", commandLine: pastaArgs, start: startPasta},
	}
}

// startWithReadyFD starts a daemon that takes slirp4netns' --ready-fd and
// measures the time from exec to the "1" on the ready pipe. slirp4netns
// writes it after the tap is configured and the API socket listens, and so
// does ours.
func startWithReadyFD(ctx context.Context, im *implementation, req startRequest) (*daemon, error) {
	argv := im.commandLine(im.binary, req)
	logPath := filepath.Join(req.dir, im.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ready pipe: %w", err)
	}
	defer readyR.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, fmt.Errorf("start %s: %w", im.name, err)
	}
	readyW.Close()
	d := &daemon{impl: im.name, pid: cmd.Process.Pid, argv: argv, apiSocket: argv2api(argv),
		logPath: logPath, proc: cmd.Process, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }() // owned by d: stop waits for it

	_ = readyR.SetReadDeadline(time.Now().Add(readyLimit))
	buf := make([]byte, 1)
	n, err := readyR.Read(buf)
	d.ready = time.Since(t0)
	if n != 1 || buf[0] != '1' {
		d.stop()
		return nil, fmt.Errorf("%s did not become ready (read %q: %v); its log: %s", im.name, buf[:n], err, tail(logPath))
	}
	return d, nil
}

// argv2api finds the API socket in a slirp4netns command line.
func argv2api(argv []string) string {
	for _, a := range argv {
		if p, ok := strings.CutPrefix(a, "--api-socket="); ok {
			return p
		}
	}
	return ""
}

// startPasta starts pasta and measures the time until its launching
// process exits: pasta forks its daemon and exits once the tap is up and
// configured, and that exit is what podman waits for. The harness is a
// child subreaper (see main), so the daemonized pasta becomes its child and
// can be reaped.
func startPasta(ctx context.Context, im *implementation, req startRequest) (*daemon, error) {
	argv := im.commandLine(im.binary, req)
	logPath := filepath.Join(req.dir, im.name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	defer logf.Close()
	cctx, cancel := context.WithTimeout(ctx, readyLimit)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	err = cmd.Run()
	ready := time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("start pasta: %w; its log: %s", err, tail(logPath))
	}
	pidPath := filepath.Join(req.dir, "pasta.pid")
	data, err := os.ReadFile(pidPath)
	if err != nil {
		return nil, fmt.Errorf("pasta wrote no pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("pasta pid file %s: %q is not a PID", pidPath, data)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("find pasta process %d: %w", pid, err)
	}
	d := &daemon{impl: im.name, pid: pid, ready: ready, argv: argv, logPath: logPath,
		proc: proc, done: make(chan struct{})}
	go func() { _, _ = proc.Wait(); close(d.done) }() // owned by d: stop waits for it
	return d, nil
}

// stop ends the daemon with SIGTERM (SIGKILL after 5 s) and reaps it.
func (d *daemon) stop() {
	_ = d.proc.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = d.proc.Kill()
	<-d.done
}

// tail returns the end of a log file for error messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	data = bytes.TrimSpace(data)
	if len(data) > 800 {
		data = data[len(data)-800:]
	}
	if len(data) == 0 {
		return "(empty)"
	}
	return string(data)
}

// errAPIMissing marks a daemon that has no working port-forward API.
var errAPIMissing = errors.New("API missing")

// apiAddForward asks a slirp4netns-compatible daemon for a TCP forward from
// 127.0.0.1:hostPort to the guest's recommended address (guest_addr left
// empty, as podman does).
func apiAddForward(d *daemon, hostPort, guestPort int) error {
	req := map[string]any{
		"execute": "add_hostfwd",
		"arguments": map[string]any{
			"proto": "tcp", "host_addr": "127.0.0.1", "host_port": hostPort,
			"guest_addr": "", "guest_port": guestPort,
		},
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("unix", d.apiSocket, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%w: connect to %s: %v", errAPIMissing, d.apiSocket, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(body, '\n')); err != nil {
		return fmt.Errorf("%w: send add_hostfwd: %v", errAPIMissing, err)
	}
	_ = c.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(io.LimitReader(c, 1<<16))
	if err != nil {
		return fmt.Errorf("%w: read add_hostfwd reply: %v", errAPIMissing, err)
	}
	if _, err := parseAddReply(reply); err != nil {
		return fmt.Errorf("%w: %v", errAPIMissing, err)
	}
	return nil
}

// parseAddReply reads add_hostfwd's reply: {"return":{"id":N}} or
// {"error":{"desc":"..."}}.
func parseAddReply(data []byte) (int, error) {
	var rep struct {
		Return *struct {
			ID *int `json:"id"`
		} `json:"return"`
		Error *struct {
			Desc string `json:"desc"`
		} `json:"error"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&rep); err != nil {
		return 0, fmt.Errorf("add_hostfwd reply %q: %w", truncate(data, 200), err)
	}
	switch {
	case rep.Error != nil:
		return 0, fmt.Errorf("add_hostfwd: %s", rep.Error.Desc)
	case rep.Return == nil || rep.Return.ID == nil:
		return 0, fmt.Errorf("add_hostfwd reply %q has no return.id", truncate(data, 200))
	}
	return *rep.Return.ID, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
