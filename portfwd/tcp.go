package portfwd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slirp-dev/slirp/internal/lazyclose"
	"github.com/slirp-dev/slirp/internal/relaycopy"
	"github.com/slirp-dev/slirp/internal/sockconn"
)

// acceptBackoff is how long an accept loop pauses after an error that is
// not the listener closing (such as running out of file descriptors).
const acceptBackoff = 50 * time.Millisecond

// The sockets of a connection that ended with a FIN each way are closed
// within closeDelay, or once closeBatch of them wait (package lazyclose:
// a close per connection woke the Go runtime's sysmon thread each time).
const (
	closeDelay = 10 * time.Millisecond
	closeBatch = 128
)

// kernelConn is a connected kernel TCP socket: a *sockconn.Conn (what the
// accept loop and DialNamespace make) or a *net.TCPConn.
type kernelConn interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
	SetLinger(sec int) error
}

// isKernelTCP reports whether c is a kernel TCP socket, which the relay
// can splice.
func isKernelTCP(c net.Conn) bool {
	switch c.(type) {
	case *sockconn.Conn, *net.TCPConn:
		return true
	}
	return false
}

// acceptLoop serves one host listener until it is closed.
func (f *forward) acceptLoop(l *sockconn.Listener, guest netip.AddrPort) {
	for {
		c, err := l.AcceptConn()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.counters.errors.Add(1)
			f.log.Warn("accept failed", "err", err)
			select {
			case <-f.m.ctx.Done():
				return
			case <-time.After(acceptBackoff):
			}
			continue
		}
		f.m.wg.Go(func() { f.serveTCP(c, guest) })
	}
}

// serveTCP connects one accepted host connection to the guest and relays
// it. When the guest side cannot be reached the host client is reset at
// once, so it sees ECONNRESET rather than a connection that hangs.
func (f *forward) serveTCP(hc kernelConn, guest netip.AddrPort) {
	m := f.m
	client := hc.RemoteAddr().(*net.TCPAddr).AddrPort()
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	p := m.pathFor(f.spec.Mode, client.Addr())
	// Only debug lines name the client: formatting it for every
	// connection costs more than the lines are worth at other levels.
	log := f.log
	if log.Enabled(m.ctx, slog.LevelDebug) {
		log = log.With("client", client.String(), "path", p.String())
	}

	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.ConnectTimeout)
	gc, err := m.dialTCP(ctx, p, client, guest)
	cancel()
	if err != nil {
		f.counters.failed.Add(1)
		log.Debug("guest connect failed; resetting the client", "guest", guest.String(), "err", err)
		reset(hc)
		return
	}
	f.counters.opened(p)
	defer f.counters.active.Add(-1)
	r := &tcpRelay{host: hc, guest: gc, counters: &f.counters, closer: m.closer, info: newConnInfo(f, TCP, p, client, guest)}
	if !m.track(r) {
		r.abort()
		return
	}
	defer m.untrack(r)
	log.Debug("connection open")
	r.run()
	log.Debug("connection closed")
}

// dialTCP opens the guest side of a connection on path p.
func (m *Manager) dialTCP(ctx context.Context, p path, client, guest netip.AddrPort) (net.Conn, error) {
	if p == pathFast {
		return DialNamespace(ctx, m.cfg.Opener, TCP, guest)
	}
	src := guestSource(client, guest.Addr())
	c, err := m.cfg.Dialer.DialTCP(ctx, src, guest)
	if err != nil && src.Port() != 0 && ctx.Err() == nil {
		// The client's port may be taken on the stack by another flow
		// with the same source address (two loopback clients that both
		// appear as the gateway, say); any port will do then.
		c, err = m.cfg.Dialer.DialTCP(ctx, netip.AddrPortFrom(src.Addr(), 0), guest)
	}
	return c, err
}

// reset closes c with SO_LINGER 0, which sends a RST.
func reset(c kernelConn) {
	_ = c.SetLinger(0)
	c.Close()
}

// spliceChunk is how much the fast path copies per splice round (one
// splice(2) each way), so that the byte counters move during long
// transfers too.
const spliceChunk = 1 << 20

// tcpRelay copies one host connection to its guest connection and back. A
// FIN in one direction is passed on as a FIN; an error on either side
// resets both.
type tcpRelay struct {
	host     kernelConn
	guest    net.Conn
	counters *counters         // the forward's
	closer   *lazyclose.Closer // the Manager's
	info     connInfo          // this connection's

	abortOnce sync.Once
	aborted   atomic.Bool
}

type closeWriter interface{ CloseWrite() error }

// run copies both ways until both directions end, then closes both sides.
func (r *tcpRelay) run() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.pipe(r.guest, r.host, &r.info.toGuest, &r.counters.toGuest)
	}()
	r.pipe(r.host, r.guest, &r.info.toHost, &r.counters.toHost)
	<-done
	if r.aborted.Load() {
		return // abort closed both sides
	}
	// Both directions ended with a FIN: nothing is left to send or
	// receive, and closing can wait for the next batch.
	r.closer.Add(r.host)
	r.closer.Add(r.guest)
}

// pipe copies src to dst, counting the bytes in count and total. Between
// two kernel TCP sockets (the fast path) it splices (sockconn.Splice), so
// the bytes never enter user space.
func (r *tcpRelay) pipe(dst, src net.Conn, count, total *atomic.Uint64) {
	spliced := isKernelTCP(src) && isKernelTCP(dst)
	var err error
	if spliced {
		srcRC, dstRC, rerr := rawConns(src, dst)
		for err = rerr; err == nil; {
			var n int64
			n, err = sockconn.Splice(dstRC, srcRC, spliceChunk)
			count.Add(uint64(n))
			total.Add(uint64(n))
		}
	} else {
		counted := func(n int) {
			count.Add(uint64(n))
			total.Add(uint64(n))
		}
		// A connection into the stack copies to and from a kernel socket
		// itself, without a buffer of ours (netstack's DialTCP).
		if gc, ok := src.(guestCopier); ok {
			err = gc.CopyTo(dst, counted)
		} else if gc, ok := dst.(guestCopier); ok {
			err = gc.CopyFrom(src, counted)
		} else {
			err = relaycopy.Copy(dst, src, readiness(src), counted)
		}
	}
	if errors.Is(err, io.EOF) {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	if !errors.Is(err, net.ErrClosed) {
		r.counters.errors.Add(1)
	}
	r.abort()
}

// guestCopier is a connection into the stack that copies itself to and
// from another connection (netstack's DialTCP).
type guestCopier interface {
	CopyTo(dst net.Conn, counted func(int)) error
	CopyFrom(src net.Conn, counted func(int)) error
}

// rawConns returns the descriptors of two kernel sockets.
func rawConns(src, dst net.Conn) (srcRC, dstRC syscall.RawConn, err error) {
	if srcRC, err = src.(syscall.Conn).SyscallConn(); err != nil {
		return nil, nil, err
	}
	dstRC, err = dst.(syscall.Conn).SyscallConn()
	return srcRC, dstRC, err
}

// readiness returns the wait for c to become readable that relaycopy.Copy
// calls before it takes a buffer: a guest connection that can wait by
// itself (netstack's), or a kernel socket through the poller.
func readiness(c net.Conn) func() error {
	if w, ok := c.(interface{ WaitReadable() error }); ok {
		return w.WaitReadable
	}
	return func() error { return sockconn.WaitReadable(c) }
}

// abort resets both sides (SO_LINGER 0 on kernel sockets; closing a stack
// connection with unread data resets it too), so both directions end at
// once.
func (r *tcpRelay) abort() {
	r.abortOnce.Do(func() {
		r.aborted.Store(true)
		reset(r.host)
		if kc, ok := r.guest.(kernelConn); ok {
			reset(kc)
			return
		}
		r.guest.Close()
	})
}
