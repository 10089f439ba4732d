package portfwd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
)

// The unit tests run the Manager against real kernel sockets on the host's
// loopback: the "namespace" is the test's own network namespace, the
// "guest" a server on 127.0.0.1, and the stand-in for the user-mode stack a
// kernel dialer that binds the source address it is given, with 127.0.0.2
// standing for the gateway. Behaviour in real namespaces through the real
// stack is tested end to end in cmd/slirp.

// testGateway is where kernelDialer puts a client that the guest should
// see as the gateway.
var testGateway = netip.MustParseAddr("127.0.0.2")

// hostOpener opens sockets in the test's own network namespace.
type hostOpener struct{ calls atomic.Int64 }

func (o *hostOpener) Socket(ctx context.Context, domain, typ, proto int) (*os.File, error) {
	o.calls.Add(1)
	return e2etest.HostOpener{}.Socket(ctx, domain, typ, proto)
}

// kernelDialer implements GuestDialer with kernel sockets bound to the
// source address (127.0.0.2 for the gateway).
type kernelDialer struct{ calls atomic.Int64 }

func (k *kernelDialer) src(src netip.AddrPort) netip.AddrPort {
	if !src.Addr().IsValid() {
		return netip.AddrPortFrom(testGateway, src.Port())
	}
	return src
}

func (k *kernelDialer) DialTCP(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	k.calls.Add(1)
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(k.src(src))}
	return d.DialContext(ctx, "tcp4", dst.String())
}

func (k *kernelDialer) DialUDP(src, dst netip.AddrPort) (net.Conn, error) {
	k.calls.Add(1)
	return net.DialUDP("udp4", net.UDPAddrFromAddrPort(k.src(src)), net.UDPAddrFromAddrPort(dst))
}

type testManager struct {
	*Manager
	opener *hostOpener
	dialer *kernelDialer
}

func newTestManager(t *testing.T, edit func(*Config)) *testManager {
	t.Helper()
	tm := &testManager{opener: &hostOpener{}, dialer: &kernelDialer{}}
	cfg := Config{Dialer: tm.dialer, Opener: tm.opener, Guest: netip.MustParseAddr("127.0.0.1")}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tm.Manager = m
	t.Cleanup(func() { m.Close() })
	return tm
}

// freePort returns a port that was free on addr for network a moment ago.
func freePort(t *testing.T, network, addr string) uint16 {
	t.Helper()
	switch network {
	case "tcp4", "tcp6":
		l, err := net.Listen(network, net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port)
	default:
		pc, err := net.ListenPacket(network, net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	}
}

// addFree adds spec on a free host port, retrying when another test took
// the port in between.
func addFree(t *testing.T, m *Manager, spec Spec) Forward {
	t.Helper()
	network := string(spec.Proto) + "4"
	host := "127.0.0.1"
	if spec.HostAddr.IsValid() {
		host = spec.HostAddr.String()
		if spec.HostAddr.Is6() {
			network = string(spec.Proto) + "6"
		}
	} else {
		spec.HostAddr = netip.MustParseAddr(host)
	}
	var err error
	for range 10 {
		spec.HostPort = freePort(t, network, host)
		var fw Forward
		if fw, err = m.Add(spec); err == nil {
			return fw
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("add %+v: %v", spec, err)
	return Forward{}
}

// guestServer is a TCP server standing for a service in the namespace.
// Per connection, in mode
//
//	"peer": reply with the peer address and close
//	"sha":  read to EOF, reply "<sha256> <peer>" and close
//	"echo": copy everything back, half-close at EOF
type guestServer struct {
	l    net.Listener
	port uint16
}

func startGuestServer(t *testing.T, mode string) *guestServer {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e2etest.ServeTCP(t, l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		switch mode {
		case "peer":
			io.WriteString(c, c.RemoteAddr().String())
		case "sha":
			h := sha256.New()
			io.Copy(h, c)
			fmt.Fprintf(c, "%x %s", h.Sum(nil), c.RemoteAddr())
		case "echo":
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
		}
	})
	return &guestServer{l: l, port: uint16(l.Addr().(*net.TCPAddr).Port)}
}

// udpEcho answers each datagram with "<payload> <peer>".
func udpEcho(t *testing.T) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e2etest.ServeUDP(t, pc, 65535, func(p []byte, peer net.Addr) []byte {
		return []byte(fmt.Sprintf("%s %s", p, peer))
	})
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// echoTransfer sends size random bytes through addr to an echo server,
// reading the echo at the same time, and checks that what came back is what
// went out.
func echoTransfer(t *testing.T, network, addr string, size int) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data, got, werr, err := e2etest.EchoExchange(c, size)
	if err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if werr != nil {
		t.Fatalf("write: %v", werr)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo through %s: got %d bytes (sha %x), sent %d (sha %x)", addr, len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
}

// roundTrip sends msg over a fresh connection to addr, half-closes, and
// returns the reply.
func roundTrip(t *testing.T, network, addr, msg string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

func hostAddr(fw Forward, i int) string {
	return netip.AddrPortFrom(fw.Spec.HostAddr, fw.Spec.HostPort+uint16(i)).String()
}

// waitFor polls cond every 20 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, 10*time.Second, 20*time.Millisecond, what, cond)
}

// checkGoroutines fails the test if goroutines started during it are still
// running a few seconds after it (and its cleanups) ended.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("%d goroutines before the test, %d after:\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
