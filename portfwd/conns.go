package portfwd

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one live connection or UDP flow of a forward: a host client
// reaching the guest, for people looking at what comes in (slirpctl
// conns).
type Conn struct {
	Forward int            // the forward's ID
	Proto   Proto          // TCP or UDP
	Path    string         // "fast" or "preserve"
	Client  netip.AddrPort // the host client's address
	Guest   netip.AddrPort // the guest address it reaches
	Started time.Time
	ToGuest uint64 // bytes client → guest
	ToHost  uint64 // bytes guest → client
}

// connInfo names a live connection or flow and counts its bytes; the
// TCP relays and UDP flows of forwards carry one.
type connInfo struct {
	forward         int
	proto           Proto
	path            path
	client, guest   netip.AddrPort
	started         time.Time
	toGuest, toHost atomic.Uint64
}

func newConnInfo(f *forward, proto Proto, p path, client, guest netip.AddrPort) connInfo {
	return connInfo{forward: f.id, proto: proto, path: p, client: client, guest: guest, started: time.Now()}
}

func (c *connInfo) snapshot() Conn {
	return Conn{
		Forward: c.forward, Proto: c.proto, Path: c.path.String(), Client: c.client, Guest: c.guest,
		Started: c.started, ToGuest: c.toGuest.Load(), ToHost: c.toHost.Load(),
	}
}

// Conns lists the live connections and UDP flows of every forward, oldest
// first. TCP connections of a removed forward run on until they end (as
// in slirp4netns) and are listed with its ID.
func (m *Manager) Conns() []Conn {
	var out []Conn
	m.mu.Lock()
	for r := range m.relays {
		out = append(out, r.snapshot())
	}
	fs := make([]*forward, 0, len(m.forwards))
	for _, f := range m.forwards {
		fs = append(fs, f)
	}
	m.mu.Unlock()
	for _, f := range fs {
		for _, u := range f.udp {
			u.mu.Lock()
			for _, fl := range u.flows {
				out = append(out, fl.info.snapshot())
			}
			u.mu.Unlock()
		}
	}
	slices.SortStableFunc(out, func(a, b Conn) int { return a.Started.Compare(b.Started) })
	return out
}

// snapshot describes the connection now. Between two kernel sockets (the
// fast path) the relay splices and counts bytes only after each round
// (spliceChunk) or at the end, so an interactive connection would show
// none; the kernel's own counts of the client socket (TCP_INFO) say what
// has moved so far.
func (r *tcpRelay) snapshot() Conn {
	c := r.info.snapshot()
	if !isKernelTCP(r.guest) {
		return c
	}
	rc, err := r.host.SyscallConn()
	if err != nil {
		return c
	}
	var ti *unix.TCPInfo
	_ = rc.Control(func(fd uintptr) {
		ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err == nil && ti != nil {
		c.ToGuest = max(c.ToGuest, ti.Bytes_received)
		c.ToHost = max(c.ToHost, ti.Bytes_acked)
	}
	return c
}
