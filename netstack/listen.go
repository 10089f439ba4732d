package netstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/slirp-dev/slirp/internal/relaycopy"
	"github.com/slirp-dev/slirp/internal/sockconn"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The methods in this file give the daemon's own services (the DNS
// forwarder, port forwards) sockets on the guest-facing side of the stack.

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Unmap().Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// ListenTCP listens on one of the stack's addresses (such as the DNS
// address, port 53); guests connect to it as to any server.
func (s *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	if s.isClosing() {
		return nil, ErrClosed
	}
	l, err := gonet.ListenTCP(s.stack, toFull(addr), protoOf(addr.Addr()))
	if err != nil {
		return nil, fmt.Errorf("listen tcp %v on the guest network: %w", addr, err)
	}
	return l, nil
}

// ListenUDP opens an unconnected UDP socket on one of the stack's
// addresses.
func (s *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	if s.isClosing() {
		return nil, ErrClosed
	}
	laddr := toFull(addr)
	c, err := gonet.DialUDP(s.stack, &laddr, nil, protoOf(addr.Addr()))
	if err != nil {
		return nil, fmt.Errorf("listen udp %v on the guest network: %w", addr, err)
	}
	return c, nil
}

// DialTCP connects to a guest address from src. A zero src comes from the
// gateway; any other source address is used as it is, so a server in the
// guest sees a forwarded client's real address. The connection can copy
// to and from a kernel socket without a buffer of the caller's (CopyTo,
// CopyFrom), and wait for data without reading (WaitReadable).
func (s *Stack) DialTCP(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	if s.isClosing() {
		return nil, ErrClosed
	}
	if !src.Addr().IsValid() {
		src = netip.AddrPortFrom(s.sourceFor(dst.Addr()), src.Port())
	}
	fail := func(err error) error { return fmt.Errorf("connect to %v in the guest: %w", dst, err) }
	// As gonet.DialTCPWithBind, keeping the endpoint and its queue.
	var wq waiter.Queue
	ep, terr := s.stack.NewEndpoint(tcp.ProtocolNumber, protoOf(dst.Addr()), &wq)
	if terr != nil {
		return nil, fail(stackErr(terr))
	}
	entry, connected := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if terr := ep.Bind(toFull(src)); terr != nil {
		ep.Close()
		return nil, fail(fmt.Errorf("bind %v: %w", src, stackErr(terr)))
	}
	terr = ep.Connect(toFull(dst))
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, fail(ctx.Err())
		case <-connected:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, fail(stackErr(terr))
	}
	return &guestConn{TCPConn: gonet.NewTCPConn(&wq, ep), wq: &wq, ep: ep}, nil
}

// guestConn is a connection into the guest that can wait for data without
// reading it.
type guestConn struct {
	*gonet.TCPConn
	wq *waiter.Queue
	ep tcpip.Endpoint
}

// CopyFrom copies src into the connection until src's stream ends
// (io.EOF) or fails, calling counted with the bytes written. A kernel
// socket's bytes go straight into the stack's buffers (see
// copySocketToGuest).
func (c *guestConn) CopyFrom(src net.Conn, counted func(int)) error {
	return copySocketToGuest(c.ep, c.wq, c.TCPConn, src, counted)
}

// CopyTo copies the connection to dst until the guest's FIN (io.EOF) or an
// error, calling counted with the bytes read. To a kernel socket the
// stack's buffers are written where they lie (see drainToSocket).
func (c *guestConn) CopyTo(dst net.Conn, counted func(int)) error {
	w, ok := sockconn.NewGatherWriter(dst)
	if !ok {
		return relaycopy.Copy(dst, c, c.WaitReadable, counted)
	}
	g := newGuestReadiness(c.wq, c.ep)
	defer g.close()
	for {
		if err := drainToSocket(c.ep, w, counted); err != nil {
			return err
		}
		g.wait(nil)
	}
}

// WaitReadable blocks until the connection has data, end of stream or an
// error (closing it counts).
func (c *guestConn) WaitReadable() error {
	if c.ep.Readiness(guestEvents) != 0 {
		return nil
	}
	g := newGuestReadiness(c.wq, c.ep)
	defer g.close()
	g.wait(nil)
	return nil
}

// DialUDP opens a UDP socket connected to a guest address, from src as in
// DialTCP. Like DialTCP's connections it can wait for a datagram without
// reading (WaitReadable, which honours the read deadline), so that an idle
// flow holds no buffer.
func (s *Stack) DialUDP(src, dst netip.AddrPort) (net.Conn, error) {
	if s.isClosing() {
		return nil, ErrClosed
	}
	if !src.Addr().IsValid() {
		src = netip.AddrPortFrom(s.sourceFor(dst.Addr()), src.Port())
	}
	fail := func(err error) error { return fmt.Errorf("udp to %v in the guest: %w", dst, err) }
	// As gonet.DialUDP, keeping the endpoint and its queue.
	var wq waiter.Queue
	ep, terr := s.stack.NewEndpoint(udp.ProtocolNumber, protoOf(dst.Addr()), &wq)
	if terr != nil {
		return nil, fail(stackErr(terr))
	}
	if terr := ep.Bind(toFull(src)); terr != nil {
		ep.Close()
		return nil, fail(fmt.Errorf("bind %v: %w", src, stackErr(terr)))
	}
	if terr := ep.Connect(toFull(dst)); terr != nil {
		ep.Close()
		return nil, fail(stackErr(terr))
	}
	return &guestUDPConn{UDPConn: gonet.NewUDPConn(&wq, ep), wq: &wq, ep: ep}, nil
}

// guestUDPConn is a connected UDP socket into the guest that can wait for
// a datagram without reading it.
type guestUDPConn struct {
	*gonet.UDPConn
	wq *waiter.Queue
	ep tcpip.Endpoint

	mu           sync.Mutex
	readDeadline time.Time
}

// SetReadDeadline also sets the deadline WaitReadable keeps.
func (c *guestUDPConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.UDPConn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, as net.Conn's does.
func (c *guestUDPConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.UDPConn.SetWriteDeadline(t)
}

// WaitReadable blocks until a datagram (or an error) is there to read, or
// until the read deadline passes: then it returns os.ErrDeadlineExceeded,
// as a read would.
func (c *guestUDPConn) WaitReadable() error {
	if c.ep.Readiness(guestEvents) != 0 {
		return nil
	}
	c.mu.Lock()
	deadline := c.readDeadline
	c.mu.Unlock()
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	g := newGuestReadiness(c.wq, c.ep)
	defer g.close()
	if !g.wait(timeout) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// sourceFor is the gateway address of dst's family.
func (s *Stack) sourceFor(dst netip.Addr) netip.Addr {
	if dst.Unmap().Is4() {
		return s.cfg.Gateway
	}
	return s.cfg.Gateway6
}

// Gateway is the stack's IPv4 gateway address.
func (s *Stack) Gateway() netip.Addr { return s.cfg.Gateway }

// ListenUDPBroadcast opens a UDP socket on port of every address of the
// stack's IPv4 side that may send to the limited broadcast address, for a
// server whose clients have no address yet (DHCP).
func (s *Stack) ListenUDPBroadcast(port uint16) (net.PacketConn, error) {
	if s.isClosing() {
		return nil, ErrClosed
	}
	var wq waiter.Queue
	ep, err := s.stack.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if err != nil {
		return nil, fmt.Errorf("udp socket on the guest network: %w", stackErr(err))
	}
	ep.SocketOptions().SetBroadcast(true)
	if err := ep.Bind(tcpip.FullAddress{NIC: nicID, Port: port}); err != nil {
		ep.Close()
		return nil, fmt.Errorf("listen udp :%d on the guest network: %w", port, stackErr(err))
	}
	return gonet.NewUDPConn(&wq, ep), nil
}
