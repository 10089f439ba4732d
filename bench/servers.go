package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// tcpServer is a set of host listeners on 127.0.0.1 that hand each
// connection to a handler. It owns one goroutine per listener and one per
// connection; Close stops them all and waits.
type tcpServer struct {
	listeners []net.Listener
	handle    func(net.Conn)
	wg        sync.WaitGroup

	mu sync.Mutex
	// conns are the open connections, closed by Close; guarded by mu.
	conns map[net.Conn]struct{}
	// closed is set by Close; guarded by mu.
	closed bool
}

// listenTCP opens n listeners on 127.0.0.1 with kernel-chosen ports.
func listenTCP(n int, handle func(net.Conn)) (*tcpServer, error) {
	s := &tcpServer{handle: handle, conns: map[net.Conn]struct{}{}}
	for range n {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
		}
		s.listeners = append(s.listeners, l)
	}
	for _, l := range s.listeners {
		s.wg.Go(func() { s.accept(l) })
	}
	return s, nil
}

// ports returns the listening ports.
func (s *tcpServer) ports() []int {
	var out []int
	for _, l := range s.listeners {
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// guestAddrs returns the listeners' addresses as the guest reaches them:
// through the gateway, which all three daemons map to the host's loopback.
func (s *tcpServer) guestAddrs() []string {
	var out []string
	for _, p := range s.ports() {
		out = append(out, net.JoinHostPort(gateway, strconv.Itoa(p)))
	}
	return out
}

func (s *tcpServer) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed by Close
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c)
		})
	}
}

// Close closes the listeners and every open connection and waits for the
// goroutines.
func (s *tcpServer) Close() {
	s.mu.Lock()
	s.closed = true
	for _, l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echoOneByte answers every byte it reads with one byte, until EOF: the
// server side of the latency and connection-rate workloads.
func echoOneByte(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	buf := make([]byte, 1)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// holdServer keeps idle connections open: it reads one byte from each (so
// a connection counts only once data has gone through the daemon), counts
// it, and then waits for EOF or Close.
type holdServer struct {
	*tcpServer
	count   atomic.Int64
	arrived chan struct{} // gets a token after each counted connection
}

func newHoldServer() (*holdServer, error) {
	h := &holdServer{arrived: make(chan struct{}, 1)}
	s, err := listenTCP(1, h.hold)
	if err != nil {
		return nil, err
	}
	h.tcpServer = s
	return h, nil
}

func (h *holdServer) hold(c net.Conn) {
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	h.count.Add(1)
	select {
	case h.arrived <- struct{}{}:
	default:
	}
	_, _ = io.Copy(io.Discard, c)
	h.count.Add(-1)
}

// waitFor waits until n connections are held.
func (h *holdServer) waitFor(ctx context.Context, n int) error {
	for h.count.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d idle connections arrived: %w", h.count.Load(), n, context.Cause(ctx))
		case <-h.arrived:
		}
	}
	return nil
}
