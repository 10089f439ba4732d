package sockconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/relaycopy"
	"golang.org/x/sys/unix"
)

// connPair dials a loopback listener with DialTCP and returns both ends.
func connPair(t *testing.T, network, addr string) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := l.Addr().(*net.TCPAddr).AddrPort()
	c, err := DialTCP(ctx, netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != dst {
		t.Errorf("RemoteAddr = %v, want %v", got, dst)
	}
	if got, want := c.LocalAddr().String(), peer.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr = %v, want the peer's view of it, %v", got, want)
	}
	return c, peer
}

func TestConnOptions(t *testing.T) {
	c, _ := connPair(t, "tcp4", "127.0.0.1:0")
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	} {
		var v int
		var err error
		c.rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), o.level, o.opt) })
		if err != nil || v != o.want {
			t.Errorf("%s = %d, %v; want %d", o.name, v, err, o.want)
		}
	}
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	var l *unix.Linger
	c.rc.Control(func(fd uintptr) { l, _ = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER) })
	if l == nil || l.Onoff != 1 || l.Linger != 0 {
		t.Fatalf("SO_LINGER after SetLinger(0) = %+v, want on, 0", l)
	}
}

func TestConnReadWrite(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			c, peer := connPair(t, tc.network, tc.addr)

			// Far more than the socket buffers hold, so Write must wait
			// for the reader (EAGAIN, then the poller) and resume where it
			// stopped.
			want := make([]byte, 16<<20)
			for i := range want {
				want[i] = byte(i * 7)
			}
			readDone := make(chan []byte, 1)
			go func() {
				got, _ := io.ReadAll(peer)
				readDone <- got
			}()
			if n, err := c.Write(want); n != len(want) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if got := <-readDone; !bytes.Equal(got, want) {
				t.Fatalf("peer read %d bytes, not the %d written (or different ones)", len(got), len(want))
			}

			// Reads wait for data, return what is there, and end with
			// io.EOF.
			go func() {
				time.Sleep(20 * time.Millisecond)
				peer.Write([]byte("hello"))
				peer.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "hello" {
				t.Fatalf("ReadAll = %q, %v; want \"hello\", nil", got, err)
			}
			if n, err := c.Read(make([]byte, 4)); n != 0 || err != io.EOF {
				t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
			}
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
		})
	}
}

func TestConnDeadlineAndClose(t *testing.T) {
	c, _ := connPair(t, "tcp4", "127.0.0.1:0")
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	// Close wakes a blocked Read with net.ErrClosed.
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake Read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed connection: %v, want net.ErrClosed", err)
	}
	if err := c.CloseWrite(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("CloseWrite on a closed connection: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestConnReset(t *testing.T) {
	c, peer := connPair(t, "tcp4", "127.0.0.1:0")
	// The peer resets (SO_LINGER 0): the next read reports ECONNRESET as
	// a *net.OpError, which the relay turns into a reset of the guest.
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	_, err := c.Read(make([]byte, 1))
	var op *net.OpError
	if !errors.As(err, &op) || !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Read after the peer's reset: %v, want a *net.OpError with ECONNRESET", err)
	}
	// Writing to the dead connection fails (EPIPE, whose SIGPIPE the Go
	// runtime ignores for sockets) rather than killing the process.
	for range 3 {
		if _, err = c.Write([]byte("x")); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Write after the peer's reset: %v, want EPIPE or ECONNRESET", err)
	}
}

func TestWaitReadable(t *testing.T) {
	c, peer := connPair(t, "tcp4", "127.0.0.1:0")
	// Data: readable, and the byte is still there to read.
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := WaitReadable(c); err != nil {
		t.Fatalf("WaitReadable with data waiting = %v", err)
	}
	if b := make([]byte, 2); mustRead(t, c, b) != "x" {
		t.Fatal("WaitReadable consumed data")
	}
	// Nothing comes: the read deadline ends the wait.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := WaitReadable(c); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	// A reset: the pending error is returned, not lost to the peek.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	if err := WaitReadable(c); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("WaitReadable after the peer's reset = %v, want ECONNRESET", err)
	}

	// A connected UDP socket whose datagram met a closed port.
	closed, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.LocalAddr().String()
	closed.Close()
	u, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := WaitReadable(u); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("WaitReadable after port unreachable = %v, want ECONNREFUSED", err)
	}

	if err := WaitReadable(struct{ net.Conn }{c}); !errors.Is(err, relaycopy.ErrNoWait) {
		t.Fatalf("WaitReadable without a descriptor = %v, want ErrNoWait", err)
	}
}

func mustRead(t *testing.T, c net.Conn, b []byte) string {
	t.Helper()
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}
