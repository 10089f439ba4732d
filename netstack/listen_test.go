package netstack

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/sockconn"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// TestDialTCPWaitReadable dials a server in the guest from a forwarded
// client's address, as a port forward's preserve path does, and waits for
// data without reading it.
func TestDialTCPWaitReadable(t *testing.T) {
	env := newTestEnv(t, Config{})
	l, err := gonet.ListenTCP(env.guest, toFull1(netip.AddrPortFrom(guestAddr, 8080)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type accepted struct {
		addr string
		c    *gonet.TCPConn
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			acc <- accepted{}
			return
		}
		acc <- accepted{c.RemoteAddr().String(), c.(*gonet.TCPConn)}
	}()

	client := netip.MustParseAddrPort("192.0.2.7:40000")
	c, err := env.stack.DialTCP(testContext(t), client, netip.AddrPortFrom(guestAddr, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := <-acc
	if a.c == nil {
		t.Fatal("the guest accepted nothing")
	}
	defer a.c.Close()
	if a.addr != client.String() {
		t.Errorf("the guest sees the client as %s, want %s", a.addr, client)
	}

	w, ok := c.(interface{ WaitReadable() error })
	if !ok {
		t.Fatalf("%T cannot wait for data", c)
	}
	waited := make(chan error, 1)
	go func() { waited <- w.WaitReadable() }()
	select {
	case err := <-waited:
		t.Fatalf("WaitReadable returned (%v) before the guest sent anything", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := a.c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitReadable did not return after the guest sent data")
	}
	// The data is still there to read.
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v; want \"hi\"", b, err)
	}

	// Closing the connection ends a wait too.
	go func() { waited <- w.WaitReadable() }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end WaitReadable")
	}
}

func TestDialTCPRefusedByGuest(t *testing.T) {
	env := newTestEnv(t, Config{})
	// Nothing listens on the guest's port 8081: the guest answers RST.
	_, err := env.stack.DialTCP(testContext(t), netip.AddrPort{}, netip.AddrPortFrom(guestAddr, 8081))
	if err == nil {
		t.Fatal("dial to a closed guest port succeeded")
	}
}

// TestDialUDPWaitReadable opens a flow to a UDP server in the guest, as a
// port forward's preserve path does, and waits for the reply without
// reading it, within the read deadline.
func TestDialUDPWaitReadable(t *testing.T) {
	env := newTestEnv(t, Config{})
	server := toFull1(netip.AddrPortFrom(guestAddr, 5353))
	g, err := gonet.DialUDP(env.guest, &server, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	client := netip.MustParseAddrPort("192.0.2.7:40000")
	c, err := env.stack.DialUDP(client, netip.AddrPortFrom(guestAddr, 5353))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, ok := c.(interface{ WaitReadable() error })
	if !ok {
		t.Fatalf("%T cannot wait for a datagram", c)
	}
	// Nothing yet: the read deadline ends the wait as it would end a read.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := w.WaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable before any reply = %v, want os.ErrDeadlineExceeded", err)
	}
	// The guest's server answers the client's datagram.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	g.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	n, from, err := g.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if from.String() != client.String() || string(buf[:n]) != "query" {
		t.Fatalf("the guest got %q from %v, want \"query\" from %v", buf[:n], from, client)
	}
	if _, err := g.WriteTo([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitReadable(); err != nil {
		t.Fatalf("WaitReadable with a reply waiting = %v", err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("read after the wait = %q, %v; want \"answer\"", buf[:n], err)
	}
	// SetDeadline sets the wait's deadline too.
	c.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if err := w.WaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable after SetDeadline = %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestDialTCPCopy relays a kernel socket to a server in the guest with
// CopyFrom and CopyTo, as a port forward's preserve path does: 4 MiB each
// way intact, and each side's end of stream passed on.
func TestDialTCPCopy(t *testing.T) {
	env := newTestEnv(t, Config{})
	l, err := gonet.ListenTCP(env.guest, toFull1(netip.AddrPortFrom(guestAddr, 8080)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The guest's server sends its own 4 MiB, and echoes the SHA-256 of
	// what it read once the client's side ends.
	fromGuest := make([]byte, 4<<20)
	for i := range fromGuest {
		fromGuest[i] = byte(i * 31)
	}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		go c.Write(fromGuest)
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		c.Write(h.Sum(nil))
		c.(*gonet.TCPConn).CloseWrite()
	}()

	g, err := env.stack.DialTCP(testContext(t), netip.MustParseAddrPort("192.0.2.7:40000"), netip.AddrPortFrom(guestAddr, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	copier, ok := g.(interface {
		CopyTo(net.Conn, func(int)) error
		CopyFrom(net.Conn, func(int)) error
	})
	if !ok {
		t.Fatalf("%T cannot copy itself", g)
	}
	client, relayEnd := tcpSocketPair(t)

	var toGuest, toClient atomic.Int64
	errs := make(chan error, 2)
	go func() {
		err := copier.CopyFrom(relayEnd, func(n int) { toGuest.Add(int64(n)) })
		if err == io.EOF {
			err = g.(interface{ CloseWrite() error }).CloseWrite()
		}
		errs <- err
	}()
	go func() {
		err := copier.CopyTo(relayEnd, func(n int) { toClient.Add(int64(n)) })
		if err == io.EOF {
			err = relayEnd.(*net.TCPConn).CloseWrite()
		}
		errs <- err
	}()

	toServer := make([]byte, 4<<20)
	for i := range toServer {
		toServer[i] = byte(i * 17)
	}
	go func() {
		client.Write(toServer)
		client.(*net.TCPConn).CloseWrite()
	}()
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client read after %d bytes: %v", len(got), err)
	}
	digest := sha256.Sum256(toServer)
	want := append(append([]byte{}, fromGuest...), digest[:]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("the client got %d bytes that differ from the guest's %d and the digest of what it sent", len(got), len(fromGuest))
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("copy: %v", err)
		}
	}
	if toGuest.Load() != int64(len(toServer)) || toClient.Load() != int64(len(want)) {
		t.Fatalf("counted %d to the guest and %d to the client, want %d and %d", toGuest.Load(), toClient.Load(), len(toServer), len(want))
	}
}

// tcpSocketPair returns both ends of a loopback TCP connection.
func tcpSocketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		a.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestQueuedSocketClosedMidWrite closes the host socket between counting
// its bytes and the endpoint's reading them (a relay aborted during a
// write): the endpoint's Write must return with the error. gVisor's Write
// reads until it has the bytes it was promised or gets an error other than
// io.EOF; an io.EOF there once spun a daemon at 100% CPU through shutdown.
func TestQueuedSocketClosedMidWrite(t *testing.T) {
	env := newTestEnv(t, Config{})
	l, err := gonet.ListenTCP(env.guest, toFull1(netip.AddrPortFrom(guestAddr, 8080)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	g, err := env.stack.DialTCP(testContext(t), netip.AddrPort{}, netip.AddrPortFrom(guestAddr, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ep := g.(*guestConn).ep

	peer, host := tcpSocketPair(t)
	if _, err := peer.Write(make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	q, _ := sockconn.NewQueued(host)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := q.Fill()
		if err != nil {
			t.Fatal(err)
		}
		if n == 100000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	host.Close()
	done := make(chan tcpip.Error, 1)
	go func() {
		_, terr := ep.Write(q, tcpip.WriteOptions{})
		done <- terr
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint's Write did not return after the socket closed")
	}
	if q.Err() == nil {
		t.Fatal("Queued has no error after its socket closed mid-round")
	}
}
