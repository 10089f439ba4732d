package portfwd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp/internal/relaycopy"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// datagramBufs hold one datagram each, for the time it takes to pass it on.
var datagramBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// udpListener is one host UDP socket of a forward. Each client address is a
// flow with its own socket on the guest side, so the guest's replies find
// their way back to the right client.
type udpListener struct {
	f     *forward
	pc    *net.UDPConn
	guest netip.AddrPort
	// p4 or p6 is set when the host address is unspecified: they read the
	// address each datagram was sent to, so the reply leaves from it (on a
	// host with several addresses the kernel might pick another one, and
	// the client would drop the reply).
	p4 *ipv4.PacketConn
	p6 *ipv6.PacketConn

	// mu guards flows and closed.
	mu     sync.Mutex
	flows  map[netip.AddrPort]*udpFlow
	closed bool
}

func listenUDP(f *forward, network string, host, guest netip.AddrPort) (*udpListener, error) {
	pc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(host))
	if err != nil {
		return nil, err
	}
	u := &udpListener{f: f, pc: pc, guest: guest, flows: make(map[netip.AddrPort]*udpFlow)}
	if host.Addr().IsUnspecified() {
		if host.Addr().Is4() {
			u.p4 = ipv4.NewPacketConn(pc)
			if err := u.p4.SetControlMessage(ipv4.FlagDst, true); err != nil {
				pc.Close()
				return nil, err
			}
		} else {
			u.p6 = ipv6.NewPacketConn(pc)
			if err := u.p6.SetControlMessage(ipv6.FlagDst, true); err != nil {
				pc.Close()
				return nil, err
			}
		}
	}
	return u, nil
}

// read returns one datagram, its sender and the local address it was sent
// to (invalid when the socket is bound to one address).
func (u *udpListener) read(buf []byte) (int, netip.AddrPort, netip.Addr, error) {
	var (
		n     int
		src   net.Addr
		local netip.Addr
		err   error
	)
	switch {
	case u.p4 != nil:
		var cm *ipv4.ControlMessage
		n, cm, src, err = u.p4.ReadFrom(buf)
		if cm != nil {
			local, _ = netip.AddrFromSlice(cm.Dst)
		}
	case u.p6 != nil:
		var cm *ipv6.ControlMessage
		n, cm, src, err = u.p6.ReadFrom(buf)
		if cm != nil {
			local, _ = netip.AddrFromSlice(cm.Dst)
		}
	default:
		var ap netip.AddrPort
		n, ap, err = u.pc.ReadFromUDPAddrPort(buf)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), netip.Addr{}, err
	}
	if err != nil {
		return 0, netip.AddrPort{}, netip.Addr{}, err
	}
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return 0, netip.AddrPort{}, netip.Addr{}, errors.New("datagram without a UDP source")
	}
	ap := ua.AddrPort()
	return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), local.Unmap(), nil
}

// write sends a reply to client from local (when valid).
func (u *udpListener) write(b []byte, client netip.AddrPort, local netip.Addr) error {
	dst := net.UDPAddrFromAddrPort(client)
	var err error
	switch {
	case u.p4 != nil && local.IsValid():
		_, err = u.p4.WriteTo(b, &ipv4.ControlMessage{Src: local.AsSlice()}, dst)
	case u.p6 != nil && local.IsValid():
		_, err = u.p6.WriteTo(b, &ipv6.ControlMessage{Src: local.AsSlice()}, dst)
	default:
		_, err = u.pc.WriteToUDPAddrPort(b, client)
	}
	return err
}

// serve reads client datagrams until the socket is closed, then ends every
// flow.
func (u *udpListener) serve() {
	defer u.closeFlows()
	c := &u.f.counters
	buf := make([]byte, maxDatagram)
	for {
		n, client, local, err := u.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.errors.Add(1)
			u.f.log.Debug("udp read failed", "err", err)
			continue
		}
		fl := u.flow(client, local)
		if fl == nil {
			c.dropped.Add(1)
			continue
		}
		if _, err := fl.conn.Write(buf[:n]); err != nil {
			c.dropped.Add(1)
			u.f.log.Debug("udp send to the guest failed", "client", client.String(), "err", err)
			continue
		}
		fl.touch()
		fl.info.toGuest.Add(uint64(n))
		c.toGuest.Add(uint64(n))
	}
}

// flow returns the client's flow, opening it when it is new; nil when it
// cannot be opened.
func (u *udpListener) flow(client netip.AddrPort, local netip.Addr) *udpFlow {
	u.mu.Lock()
	fl := u.flows[client]
	n := len(u.flows)
	u.mu.Unlock()
	if fl != nil {
		return fl
	}
	f := u.f
	m := f.m
	if n >= m.cfg.MaxUDPFlows {
		f.log.Warn("udp flow table full; dropping a new client", "client", client.String(), "max", m.cfg.MaxUDPFlows)
		return nil
	}
	p := m.pathFor(f.spec.Mode, client.Addr())
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.ConnectTimeout)
	conn, err := m.dialUDP(ctx, p, client, u.guest)
	cancel()
	if err != nil {
		f.counters.failed.Add(1)
		f.log.Debug("udp flow to the guest failed", "client", client.String(), "path", p.String(), "err", err)
		return nil
	}
	fl = &udpFlow{u: u, conn: conn, client: client, local: local, info: newConnInfo(f, UDP, p, client, u.guest)}
	fl.touch()
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		conn.Close()
		return nil
	}
	u.flows[client] = fl
	u.mu.Unlock()
	f.counters.opened(p)
	f.log.Debug("udp flow open", "client", client.String(), "path", p.String())
	m.wg.Go(fl.replies)
	return fl
}

// dialUDP opens the guest side of a flow on path p.
func (m *Manager) dialUDP(ctx context.Context, p path, client, guest netip.AddrPort) (net.Conn, error) {
	if p == pathFast {
		return DialNamespace(ctx, m.cfg.Opener, UDP, guest)
	}
	src := guestSource(client, guest.Addr())
	c, err := m.cfg.Dialer.DialUDP(src, guest)
	if err != nil && src.Port() != 0 {
		// The port is taken on the stack (see dialTCP).
		c, err = m.cfg.Dialer.DialUDP(netip.AddrPortFrom(src.Addr(), 0), guest)
	}
	return c, err
}

// close closes the host socket; serve then ends the flows.
func (u *udpListener) close() {
	u.pc.Close()
}

func (u *udpListener) closeFlows() {
	u.mu.Lock()
	u.closed = true
	flows := make([]*udpFlow, 0, len(u.flows))
	for _, fl := range u.flows {
		flows = append(flows, fl)
	}
	u.mu.Unlock()
	for _, fl := range flows {
		fl.conn.Close()
	}
}

// udpFlow is one client's datagrams to the guest and the guest's replies.
type udpFlow struct {
	u      *udpListener
	conn   net.Conn
	client netip.AddrPort
	local  netip.Addr
	info   connInfo
	// lastActive is the time of the last datagram either way, in Unix
	// nanoseconds.
	lastActive atomic.Int64
}

func (fl *udpFlow) touch() { fl.lastActive.Store(time.Now().UnixNano()) }

// replies passes the guest's datagrams to the client until the flow has
// been idle for the timeout or its socket is closed.
func (fl *udpFlow) replies() {
	u := fl.u
	c := &u.f.counters
	idle := u.f.m.cfg.UDPIdleTimeout
	defer fl.end()
	ready := readiness(fl.conn)
	for {
		last := time.Unix(0, fl.lastActive.Load())
		if time.Since(last) >= idle {
			return
		}
		_ = fl.conn.SetReadDeadline(last.Add(idle))
		// Wait for a datagram before taking a buffer: a flow that waits
		// for its idle timeout holds none (a 64 KiB buffer per flow was
		// 12-68 KiB resident each).
		err := ready()
		if err == nil || errors.Is(err, relaycopy.ErrNoWait) {
			bp := datagramBufs.Get().(*[]byte)
			var n int
			n, err = fl.conn.Read(*bp)
			if n > 0 {
				if werr := u.write((*bp)[:n], fl.client, fl.local); werr != nil {
					c.dropped.Add(1)
					u.f.log.Debug("udp reply to the client failed", "client", fl.client.String(), "err", werr)
				} else {
					fl.info.toHost.Add(uint64(n))
					c.toHost.Add(uint64(n))
					fl.touch()
				}
			}
			datagramBufs.Put(bp)
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Loop: the check at the top ends the flow unless a client
			// datagram came in meanwhile.
		case errors.Is(err, net.ErrClosed):
			return
		default:
			// A connected UDP socket reports ICMP errors (nothing
			// listens in the guest) as read errors; the flow stays, like
			// the guest's own sockets would.
			c.dropped.Add(1)
			u.f.log.Debug("udp read from the guest failed", "client", fl.client.String(), "err", err)
			if !isTransientUDP(err) {
				return
			}
		}
	}
}

// end removes the flow and closes its guest socket.
func (fl *udpFlow) end() {
	u := fl.u
	u.mu.Lock()
	if u.flows[fl.client] == fl {
		delete(u.flows, fl.client)
	}
	u.mu.Unlock()
	fl.conn.Close()
	u.f.counters.active.Add(-1)
	u.f.log.Debug("udp flow closed", "client", fl.client.String())
}

// isTransientUDP reports errors a connected UDP socket returns for an ICMP
// error about an earlier datagram; the socket stays usable.
func isTransientUDP(err error) bool {
	for _, e := range []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
