// Package netd starts the network daemon for a container and talks to it.
//
// The daemon is slirp (this project's slirp4netns replacement) or any
// binary with slirp4netns's command line. It is started the way podman
// starts slirp4netns: -c to configure tap0 in the container's network
// namespace, a ready pipe it writes "1" to, an exit pipe whose write end the
// launcher holds (closing it stops the daemon), and an API socket that takes
// slirp4netns's JSON requests (add_hostfwd, list_hostfwd, remove_hostfwd).
package netd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults podman uses for a slirp4netns network.
const (
	DefaultMTU  = 65520
	DefaultCIDR = "10.0.2.0/24"
	TapName     = "tap0"
	// GuestIP, GatewayIP and DNSIP belong to DefaultCIDR.
	GuestIP   = "10.0.2.100"
	GatewayIP = "10.0.2.2"
	DNSIP     = "10.0.2.3"
)

// EnvBinary overrides where the daemon binary is looked for.
const EnvBinary = "SLIRPRUN_SLIRP"

// FindBinary returns the daemon to run: override if set, else the
// SLIRPRUN_SLIRP environment variable, else `slirp` next to the running
// executable, else `slirp` in PATH.
func FindBinary(override string) (string, error) {
	if override == "" {
		override = os.Getenv(EnvBinary)
	}
	if override != "" {
		p, err := exec.LookPath(override)
		if err != nil {
			return "", fmt.Errorf("network daemon %q: %w", override, err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "slirp")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("slirp")
	if err != nil {
		return "", fmt.Errorf("network daemon: no slirp next to %s or in PATH (install it, pass --slirp-binary, or use --network none): %w", os.Args[0], err)
	}
	return p, nil
}

// Config says how to start the daemon for one network namespace.
type Config struct {
	Binary string
	// UsernsPath and NetnsPath are the namespaces to attach tap0 to,
	// usually /proc/PID/ns/user and /proc/PID/ns/net.
	UsernsPath string
	NetnsPath  string
	// APISocket is where the daemon listens for API requests.
	APISocket         string
	MTU               int
	CIDR              string
	IPv6              bool
	AllowHostLoopback bool
	// LogFile receives the daemon's stdout and stderr.
	LogFile string
	// Detach starts the daemon in its own session without a parent-death
	// signal (for pods, whose daemon outlives the starting process).
	Detach bool
	Log    *slog.Logger
}

// Args returns the daemon's command line, without the binary.
func (c Config) Args() []string {
	mtu := c.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	cidr := c.CIDR
	if cidr == "" {
		cidr = DefaultCIDR
	}
	var args []string
	if !c.AllowHostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	args = append(args, "--mtu="+strconv.Itoa(mtu), "--cidr="+cidr)
	if c.IPv6 {
		args = append(args, "--enable-ipv6")
	}
	// The ready pipe is fd 3 and the exit pipe fd 4 (ExtraFiles order).
	args = append(args, "-c", "-r", "3", "-e", "4", "--api-socket", c.APISocket)
	if c.UsernsPath != "" {
		args = append(args, "--userns-path="+c.UsernsPath)
	}
	args = append(args, "--netns-type=path", c.NetnsPath, TapName)
	return args
}

// Daemon is a running network daemon.
type Daemon struct {
	cmd    *exec.Cmd
	exitW  *os.File
	done   chan struct{}
	err    error
	log    *slog.Logger
	socket string
	logf   string
}

// maxSocketPath is sun_path's size on Linux, less the terminating NUL.
const maxSocketPath = 107

// Start starts the daemon and waits until it reports ready (or ctx ends, or
// it exits). The returned daemon stops when Close is called.
func Start(ctx context.Context, c Config) (*Daemon, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if len(c.APISocket) > maxSocketPath {
		return nil, fmt.Errorf("network daemon: API socket path %s is %d bytes, longer than the %d a unix socket allows; use a shorter --state-dir", c.APISocket, len(c.APISocket), maxSocketPath)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, err
	}
	cmd := exec.Command(c.Binary, c.Args()...)
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c.Detach {
		attr = &syscall.SysProcAttr{Setsid: true}
	}
	cmd.SysProcAttr = attr
	if c.LogFile != "" {
		lf, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			readyW.Close()
			exitR.Close()
			exitW.Close()
			return nil, fmt.Errorf("network daemon log: %w", err)
		}
		defer lf.Close()
		cmd.Stdout, cmd.Stderr = lf, lf
	}
	c.Log.Debug("starting network daemon", "cmd", cmd.String())
	if err := cmd.Start(); err != nil {
		readyW.Close()
		exitR.Close()
		exitW.Close()
		return nil, fmt.Errorf("start network daemon %s: %w", c.Binary, err)
	}
	readyW.Close()
	exitR.Close()
	d := &Daemon{cmd: cmd, exitW: exitW, done: make(chan struct{}), log: c.Log, socket: c.APISocket, logf: c.LogFile}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()

	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		n, err := readyR.Read(b)
		switch {
		case n == 1 && b[0] == '1':
			ready <- nil
		case err != nil:
			ready <- fmt.Errorf("ready pipe closed without a ready byte: %w", err)
		default:
			ready <- fmt.Errorf("ready pipe sent %q, want \"1\"", b[:n])
		}
	}()
	var werr error
	select {
	case werr = <-ready:
		if werr != nil {
			// The pipe closes when the daemon exits; report its status.
			select {
			case <-d.done:
				werr = fmt.Errorf("exited before it was ready: %v", d.err)
			case <-time.After(2 * time.Second):
			}
		}
	case <-d.done:
		werr = fmt.Errorf("exited before it was ready: %v", d.err)
	case <-ctx.Done():
		werr = ctx.Err()
	}
	if werr != nil {
		_ = d.Close()
		return nil, fmt.Errorf("network daemon %s: %w%s", c.Binary, werr, d.logTail())
	}
	return d, nil
}

func (d *Daemon) logTail() string {
	if d.logf == "" {
		return ""
	}
	b, err := os.ReadFile(d.logf)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n" + strings.TrimSpace(string(b))
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Close closes the exit pipe, which makes the daemon exit, and waits for it
// (up to 5 s, then it is killed).
func (d *Daemon) Close() error {
	d.exitW.Close()
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.log.Warn("network daemon did not exit after its exit pipe closed; killing it", "pid", d.cmd.Process.Pid)
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	return nil
}

// Hostfwd is one port forward as the API lists it.
type Hostfwd struct {
	ID        int    `json:"id"`
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort int    `json:"guest_port"`
}

// APIError is an error reply from the daemon.
type APIError struct{ Desc string }

func (e *APIError) Error() string { return "network daemon: " + e.Desc }

// Request sends one request to the API socket at path and returns the raw
// reply, as podman does: write the request and a newline, half-close, read
// to EOF.
func Request(ctx context.Context, socket string, execute string, arguments any) (json.RawMessage, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("connect to network daemon API %s: %w", socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	req := map[string]any{"execute": execute}
	if arguments != nil {
		req["arguments"] = arguments
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("network daemon API %s: %w", execute, err)
	}
	_ = conn.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(io.LimitReader(bufio.NewReader(conn), 1<<20))
	if err != nil {
		return nil, fmt.Errorf("network daemon API %s: read reply: %w", execute, err)
	}
	var probe struct {
		Error *struct {
			Desc string `json:"desc"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(reply))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("network daemon API %s: bad reply %q: %w", execute, reply, err)
	}
	if err := json.Unmarshal(raw, &probe); err == nil && probe.Error != nil {
		return nil, &APIError{Desc: probe.Error.Desc}
	}
	return raw, nil
}

// AddHostfwd publishes hostAddr:hostPort (proto "tcp" or "udp") to the
// container's port and returns the forward's id. An empty hostAddr means
// 0.0.0.0.
func AddHostfwd(ctx context.Context, socket, proto, hostAddr string, hostPort, guestPort int) (int, error) {
	if hostAddr == "" {
		hostAddr = "0.0.0.0"
	}
	raw, err := Request(ctx, socket, "add_hostfwd", map[string]any{
		"proto": proto, "host_addr": hostAddr, "host_port": hostPort, "guest_addr": "", "guest_port": guestPort,
	})
	if err != nil {
		return 0, err
	}
	var r struct {
		Return *struct {
			ID *int `json:"id"`
		} `json:"return"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Return == nil || r.Return.ID == nil {
		return 0, fmt.Errorf("network daemon add_hostfwd: reply %s has no return.id", raw)
	}
	return *r.Return.ID, nil
}

// ListHostfwd lists the daemon's port forwards. It accepts both the shape
// slirp4netns really sends ({"entries":[...]}) and the documented one
// ({"return":{"entries":[...]}}).
func ListHostfwd(ctx context.Context, socket string) ([]Hostfwd, error) {
	raw, err := Request(ctx, socket, "list_hostfwd", nil)
	if err != nil {
		return nil, err
	}
	return ParseList(raw)
}

// ParseList parses a list_hostfwd reply.
func ParseList(raw []byte) ([]Hostfwd, error) {
	var r struct {
		Entries *[]Hostfwd `json:"entries"`
		Return  *struct {
			Entries *[]Hostfwd `json:"entries"`
		} `json:"return"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("network daemon list_hostfwd: %w", err)
	}
	switch {
	case r.Entries != nil:
		return *r.Entries, nil
	case r.Return != nil && r.Return.Entries != nil:
		return *r.Return.Entries, nil
	}
	return nil, errors.New("network daemon list_hostfwd: reply has no entries")
}

// RemoveHostfwd removes forward id.
func RemoveHostfwd(ctx context.Context, socket string, id int) error {
	_, err := Request(ctx, socket, "remove_hostfwd", map[string]any{"id": id})
	return err
}
