package e2etest

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// ServeTCP accepts connections on l until the test ends and runs handle
// for each in a goroutine of its own, closing the connection after it.
// When the test ends l is closed and ServeTCP waits for every handler, so
// handle must return by itself (set a deadline on the connection).
func ServeTCP(t testing.TB, l net.Listener, handle func(c net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
}

// ServeUDP answers every datagram pc receives (up to bufSize bytes of it)
// with what reply returns for it, until the test ends; then pc is closed.
func ServeUDP(t testing.TB, pc net.PacketConn, bufSize int, reply func(payload []byte, peer net.Addr) []byte) {
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, bufSize)
		for {
			n, peer, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(reply(buf[:n], peer), peer)
		}
	}()
}

// HostOpener opens sockets in the test's own network namespace: a
// portfwd.Opener for tests where the host's loopback stands for the
// namespace side.
type HostOpener struct{}

// Socket opens a non-blocking, close-on-exec socket.
func (HostOpener) Socket(_ context.Context, domain, typ, proto int) (*os.File, error) {
	fd, err := unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "test socket"), nil
}

// EchoExchange writes size random bytes to c, then half-closes it, while
// it reads what comes back until EOF; it returns what it sent and what it
// read, with the write's error and the read's. The caller closes c and
// sets its deadline.
func EchoExchange(c net.Conn, size int) (sent, got []byte, writeErr, readErr error) {
	sent = make([]byte, size)
	rand.Read(sent)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(sent)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, readErr = io.ReadAll(c)
	// The write ends too: the peer has stopped reading, or c's deadline
	// has passed.
	writeErr = <-errc
	return sent, got, writeErr, readErr
}

// FreeTCPPort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
