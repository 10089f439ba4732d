package reliability

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// The host side: servers the guest reaches through the gateway. They
// listen inside the daemon's namespace, on its loopback, where 10.0.2.2
// leads.

// hostServer serves TCP connections with a handler and counts them.
type hostServer struct {
	l net.Listener

	mu sync.Mutex
	// conns are the open connections; maxActive is the most that were
	// open at once; accepted counts them all.
	conns     map[net.Conn]struct{}
	maxActive int
	accepted  int

	wg sync.WaitGroup
}

// listenTCP listens on addr inside ns.
func listenTCP(t *testing.T, ns *nstest.Netns, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	inNetns(t, ns, func() {
		var err error
		if l, err = net.Listen("tcp", addr); err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
	})
	return l
}

// serveTCP serves l with handler until the test ends; then it closes l and
// every connection and waits for the handlers.
func serveTCP(t *testing.T, l net.Listener, handler func(net.Conn)) *hostServer {
	s := &hostServer{l: l, conns: make(map[net.Conn]struct{})}
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.accepted++
			s.maxActive = max(s.maxActive, len(s.conns))
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				handler(c)
			})
		}
	})
	return s
}

// startServer listens on 127.0.0.1 (a free port) inside ns and serves.
func startServer(t *testing.T, ns *nstest.Netns, handler func(net.Conn)) *hostServer {
	t.Helper()
	return serveTCP(t, listenTCP(t, ns, "127.0.0.1:0"), handler)
}

func (s *hostServer) port() string { return strconv.Itoa(s.l.Addr().(*net.TCPAddr).Port) }

// via is the address the guest uses for this server: gw and its port.
func (s *hostServer) via(gw string) string { return net.JoinHostPort(gw, s.port()) }

// counts returns the open, most-at-once and total connections.
func (s *hostServer) counts() (active, maxActive, accepted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), s.maxActive, s.accepted
}

// echo sends everything back, then half-closes.
func echo(c net.Conn) {
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// plusOne answers each byte with the byte plus one, until EOF.
func plusOne(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		b[0]++
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

// slowEcho echoes in 16 KiB pieces with a pause before each, like a host
// service under heavy load.
func slowEcho(c net.Conn) {
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			time.Sleep(10 * time.Millisecond)
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			c.(*net.TCPConn).CloseWrite()
			return
		}
	}
}

// flooder writes to each connection as fast as the connection takes it, up
// to limit bytes, and counts what the kernel accepted.
type flooder struct {
	limit   int64
	written atomic.Int64
	// full counts connections that reached the limit: backpressure from a
	// guest that does not read should stop every writer long before.
	full atomic.Int64
}

func (f *flooder) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	chunk := make([]byte, 256<<10)
	var sent int64
	for sent < f.limit {
		n, err := c.Write(chunk[:min(int64(len(chunk)), f.limit-sent)])
		sent += int64(n)
		f.written.Add(int64(n))
		if err != nil {
			return
		}
	}
	f.full.Add(1)
	// Hold the connection until the guest closes it.
	io.Copy(io.Discard, c)
}

// udpEcho answers every datagram with itself, inside ns on addr, and
// counts them.
type udpEcho struct {
	pc       net.PacketConn
	received atomic.Int64
}

func startUDPEcho(t *testing.T, ns *nstest.Netns, addr string) *udpEcho {
	t.Helper()
	u := &udpEcho{}
	inNetns(t, ns, func() {
		var err error
		if u.pc, err = net.ListenPacket("udp", addr); err != nil {
			t.Fatalf("listen on udp %s: %v", addr, err)
		}
	})
	done := make(chan struct{})
	t.Cleanup(func() { u.pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, peer, err := u.pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			u.received.Add(1)
			u.pc.WriteTo(buf[:n], peer)
		}
	}()
	return u
}

func (u *udpEcho) port() string { return strconv.Itoa(u.pc.LocalAddr().(*net.UDPAddr).Port) }
