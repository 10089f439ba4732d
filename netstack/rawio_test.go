package netstack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRawIov(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	// Nothing to read yet: EAGAIN, as the tap reader expects.
	if _, err := rawReadv(fds[1], [][]byte{make([]byte, 8)}); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}

	// More buffers than rawIovecs, and empty ones, make one message.
	var out [][]byte
	var want []byte
	for i := range 3 * rawIovecs {
		b := bytes.Repeat([]byte{byte(i)}, i%3)
		out = append(out, b)
		want = append(want, b...)
	}
	n, err := rawWritev(fds[0], out)
	if err != nil || n != len(want) {
		t.Fatalf("rawWritev = %d, %v; want %d, nil", n, err, len(want))
	}
	in := [][]byte{make([]byte, 5), nil, make([]byte, len(want))}
	n, err = rawReadv(fds[1], in)
	if err != nil || n != len(want) {
		t.Fatalf("rawReadv = %d, %v; want %d, nil", n, err, len(want))
	}
	got := append(append([]byte{}, in[0]...), in[2]...)[:n]
	if !bytes.Equal(got, want) {
		t.Fatalf("read %x, want %x", got, want)
	}
	if n, err := rawWritev(fds[0], [][]byte{nil, {}}); n != 0 || err != nil {
		t.Fatalf("rawWritev of nothing = %d, %v", n, err)
	}
}

// rawPair returns a rawHostConn and the net.Conn at its other end.
func rawPair(t *testing.T) (*rawHostConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	rc, ok := newRawHostConn(c).(*rawHostConn)
	if !ok {
		t.Fatal("a *net.TCPConn was not wrapped")
	}
	t.Cleanup(func() { rc.Close(); peer.Close() })
	return rc, peer
}

func TestRawHostConnReadWrite(t *testing.T) {
	c, peer := rawPair(t)

	// Far more than the socket buffers hold, so Write must wait for the
	// reader (EAGAIN, then the poller) and resume where it stopped.
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

	// Reads wait for data, return what is there, and end with io.EOF.
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
}

func TestRawHostConnDeadlineAndClose(t *testing.T) {
	c, _ := rawPair(t)
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
	c.Close()
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
}

func TestRawHostConnReset(t *testing.T) {
	c, peer := rawPair(t)
	// The peer resets (SO_LINGER 0): the next read reports ECONNRESET as
	// a *net.OpError, which the relay turns into a reset of the guest.
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	_, err := c.Read(make([]byte, 1))
	var op *net.OpError
	if !errors.As(err, &op) || !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Read after the peer's reset: %v, want a *net.OpError with ECONNRESET", err)
	}
}

func TestNewRawHostConnLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if newRawHostConn(a) != a {
		t.Fatal("a net.Pipe conn was wrapped")
	}
}
