package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// The end-to-end tests build the slirp binary once and run it for real:
// against network namespaces the tests create, with real tap devices. Inside
// a namespace the test binary itself plays the client (see clientMain), so
// the tests need nothing beyond util-linux and iproute2.

// slirpBin is the daemon built by TestMain; clientBin is a copy of the test
// binary that any user may run, for the client side inside namespaces.
var slirpBin, clientBin string

const clientEnv = "SLIRP_E2E_CLIENT"

func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) != "" {
		os.Exit(clientMain(os.Args[1:]))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// The unprivileged test user runs the binaries too.
	dir, err := e2etest.BinDir("slirp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	clientBin = filepath.Join(dir, "client")
	if err := e2etest.CopyExecutable(clientBin); err != nil {
		fmt.Fprintln(os.Stderr, "copying the test binary:", err)
		return 1
	}
	slirpBin = filepath.Join(dir, "slirp")
	if err := e2etest.GoBuild(slirpBin, ".", raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "building slirp:", err)
		return 1
	}
	return m.Run()
}

// clientResult is what a client action prints as one JSON line.
type clientResult struct {
	Err   string `json:"err,omitempty"`
	Errno string `json:"errno,omitempty"`
	Reply string `json:"reply,omitempty"`
	SHA   string `json:"sha,omitempty"`
	Local string `json:"local,omitempty"`
}

// clientMain runs one action inside a namespace:
//
//	tcp ADDR SIZE      send SIZE random bytes, half-close, read the reply to EOF
//	tcp-rev ADDR SIZE  read to EOF first, then send SIZE random bytes and close
//	udp ADDR MSG       send MSG, print the first reply
//	connect ADDR [T]   connect (giving up after T, default 10s) and close
func clientMain(args []string) int {
	res := runClient(args)
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func runClient(args []string) clientResult {
	fail := func(err error) clientResult {
		r := clientResult{Err: err.Error()}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			r.Errno = errnoName(errno)
		} else if ne, ok := err.(net.Error); (ok && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
			r.Errno = "TIMEOUT"
		}
		return r
	}
	if len(args) < 2 {
		return clientResult{Err: "usage"}
	}
	switch args[0] {
	case "connect":
		timeout := 10 * time.Second
		if len(args) > 2 {
			timeout, _ = time.ParseDuration(args[2])
		}
		c, err := net.DialTimeout("tcp", args[1], timeout)
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		return clientResult{Local: c.LocalAddr().String()}
	case "tcp", "tcp-rev":
		size, _ := strconv.Atoi(args[2])
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		data := make([]byte, size)
		rand.Read(data)
		sum := sha256.Sum256(data)
		if args[0] == "tcp" {
			if _, err := c.Write(data); err != nil {
				return fail(err)
			}
			c.(*net.TCPConn).CloseWrite()
			reply, err := io.ReadAll(c)
			if err != nil {
				return fail(err)
			}
			return clientResult{SHA: hex.EncodeToString(sum[:]), Reply: string(reply), Local: c.LocalAddr().String()}
		}
		reply, err := io.ReadAll(c)
		if err != nil {
			return fail(err)
		}
		if _, err := c.Write(data); err != nil {
			return fail(err)
		}
		c.(*net.TCPConn).CloseWrite()
		// Wait for the server to close after reading our half.
		io.Copy(io.Discard, c)
		return clientResult{SHA: hex.EncodeToString(sum[:]), Reply: string(reply)}
	case "dns":
		// dns SERVER NAME TYPE [tcp]
		return dnsQuery(args[1:])
	case "udp":
		c, err := net.Dial("udp", args[1])
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(args[2])); err != nil {
			return fail(err)
		}
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			return fail(err)
		}
		return clientResult{Reply: string(buf[:n]), Local: c.LocalAddr().String()}
	}
	return clientResult{Err: "unknown action " + args[0]}
}

func errnoName(e syscall.Errno) string {
	for name, v := range map[string]syscall.Errno{
		"ECONNREFUSED": syscall.ECONNREFUSED, "ENETUNREACH": syscall.ENETUNREACH,
		"EHOSTUNREACH": syscall.EHOSTUNREACH, "ETIMEDOUT": syscall.ETIMEDOUT,
		"ECONNRESET": syscall.ECONNRESET, "EPIPE": syscall.EPIPE,
	} {
		if e == v {
			return name
		}
	}
	return strconv.Itoa(int(e))
}

// client runs a client action inside ns and returns its result.
func client(t *testing.T, ns *nstest.Netns, args ...string) clientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, clientBin, args...)
	cmd.Env = append(os.Environ(), clientEnv+"=1", "GORACE=atexit_sleep_ms=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client %v: %v: %s", args, err, stderr.String())
	}
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client %v printed %q: %v", args, out, err)
	}
	return r
}

// daemonProc is a running slirp process.
type daemonProc struct {
	p              *e2etest.Process
	cmd            *exec.Cmd
	stdout, stderr *e2etest.SyncBuffer
	done           <-chan struct{}
}

func newDaemonProc(p *e2etest.Process) *daemonProc {
	return &daemonProc{p: p, cmd: p.Cmd, stdout: p.Stdout, stderr: p.Stderr, done: p.Done()}
}

type daemonOpts struct {
	// args are the command line after the program name; "-r 3" is added
	// unless noReady is set.
	args    []string
	noReady bool
	// extra files become fds 4, 5, ... (fd 3 is the ready pipe).
	extra []*os.File
	// user runs the daemon as this uid/gid.
	user *syscall.Credential
	// in runs the daemon inside this network namespace (nsenter --net).
	in *nstest.Netns
	// resolvConf is passed as --resolv-conf; default: an empty file, so the
	// DNS forwarder can never reach the machine's real nameserver.
	resolvConf string
}

// startDaemon starts slirp and waits for its ready fd (20 s at most). The
// daemon is stopped with SIGTERM (then SIGKILL) when the test ends.
func startDaemon(t *testing.T, o daemonOpts) *daemonProc {
	t.Helper()
	args := append([]string{}, o.args...)
	if o.resolvConf == "" {
		o.resolvConf = filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(o.resolvConf, []byte("# no nameservers: tests never use the real one\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Dir(o.resolvConf), 0o755)
	}
	args = append([]string{"--resolv-conf=" + o.resolvConf}, args...)
	if !o.noReady {
		args = append([]string{"-r", "3"}, args...)
	}
	name := slirpBin
	if o.in != nil {
		args = append([]string{"--net=" + o.in.Path, "--", slirpBin}, args...)
		name = "nsenter"
	}
	cmd := exec.Command(name, args...)
	// A race report makes the daemon exit 66 at once, which fails the test.
	cmd.Env = append(os.Environ(), e2etest.RaceEnv)
	cmd.ExtraFiles = o.extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: o.user}
	return newDaemonProc(e2etest.Start(t, cmd, slirpProcess(o.args, !o.noReady)))
}

// slirpProcess is how startDaemon and startSandboxed run slirp: ready
// within 20 s, stopped within 10 s of SIGTERM (then killed).
func slirpProcess(args []string, ready bool) e2etest.ProcessOptions {
	return e2etest.ProcessOptions{Name: "slirp", Args: args, ReadyFD: ready, ReadyTimeout: 20 * time.Second, StopTimeout: 10 * time.Second}
}

// stop sends SIGTERM and waits up to 10 s, then kills.
func (d *daemonProc) stop(t *testing.T) { d.p.Stop(t) }

// wait waits up to timeout for the daemon to exit and returns its status.
func (d *daemonProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	return d.p.ExitCode(t, timeout)
}

// hostServer is a TCP server on the host side that answers each connection
// according to mode:
//
//	"sha": read to EOF, reply "<sha256 of what it read> <peer address>", close
//	"rev": send "hello", half-close, read to EOF, record the sha256 in got
type hostServer struct {
	l   net.Listener
	got chan string
}

func startHostServer(t *testing.T, network, addr, mode string) *hostServer {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	return serveHost(t, l, mode)
}

func serveHost(t *testing.T, l net.Listener, mode string) *hostServer {
	s := &hostServer{l: l, got: make(chan string, 16)}
	e2etest.ServeTCP(t, l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		switch mode {
		case "sha":
			io.Copy(h, c)
			fmt.Fprintf(c, "%x %s", h.Sum(nil), c.RemoteAddr())
		case "rev":
			c.Write([]byte("hello"))
			c.(*net.TCPConn).CloseWrite()
			io.Copy(h, c)
			s.got <- hex.EncodeToString(h.Sum(nil))
		}
	})
	return s
}

func (s *hostServer) port() string { return strconv.Itoa(s.l.Addr().(*net.TCPAddr).Port) }

// startUDPEcho answers every datagram with "echo:<payload> <peer address>".
func startUDPEcho(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	e2etest.ServeUDP(t, pc, 65535, func(p []byte, peer net.Addr) []byte {
		return []byte(fmt.Sprintf("echo:%s %s", p, peer))
	})
	return pc
}

// inNetns runs f with the calling thread inside ns, so that sockets f
// creates live there. Root only.
var inNetns = e2etest.InNetns

// sha is the hex SHA-256 a client result's reply starts with.
func replySHA(r clientResult) (sha, peer string) {
	sha, peer, _ = strings.Cut(r.Reply, " ")
	return sha, peer
}

// waitFor polls cond every 50 ms for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, timeout, 50*time.Millisecond, what, cond)
}

var _ = bufio.NewReader

func errorsAs(err error, target any) bool { return errors.As(err, target) }
