package sockconn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewConn makes a Conn of f, a connected, non-blocking TCP socket (so
// that os.NewFile registered it with the runtime's poller) whose peer is
// remote, and sets TCP_NODELAY and keepalive on it as DialTCP does. The
// Conn owns f from then on, also when NewConn fails.
func NewConn(f *os.File, remote netip.AddrPort) (*Conn, error) {
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Control(setConnOptions)
	}
	if err != nil {
		f.Close()
		return nil, &net.OpError{Op: "setsockopt", Net: "tcp", Addr: net.TCPAddrFromAddrPort(remote), Err: err}
	}
	return &Conn{f: f, rc: rc, remote: remote}, nil
}

// Listener accepts connections on a listening TCP socket as Conns. Its
// Accept makes no system call through the Go runtime's syscall entry
// (see Conn), as (*net.TCPListener).Accept does: under a stream of short
// connections each such call woke the runtime's sysmon thread.
//
// It waits through a duplicate of the listener's descriptor, registered
// with the runtime's poller as an *os.File: a net.Listener's RawConn
// cannot wait for readability (its Read is unsupported).
type Listener struct {
	tl     *net.TCPListener
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
}

var _ net.Listener = (*Listener)(nil)

// NewListener takes over tl: closing the Listener closes tl.
func NewListener(tl *net.TCPListener) (*Listener, error) {
	lrc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup := -1
	var errno syscall.Errno
	if err := lrc.Control(func(fd uintptr) {
		r, _, e := unix.RawSyscall(unix.SYS_FCNTL, fd, unix.F_DUPFD_CLOEXEC, 0)
		dup, errno = int(r), e
	}); err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: tl.Addr(), Err: os.NewSyscallError("fcntl", errno)}
	}
	// The duplicate shares the listener's open file, which the net
	// package made non-blocking, so os.NewFile registers it with the
	// poller.
	f := os.NewFile(uintptr(dup), "tcp listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Listener{tl: tl, f: f, rc: rc}, nil
}

// Accept implements net.Listener; see AcceptConn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn()
	if err != nil {
		return nil, err // not a net.Conn holding a nil *Conn
	}
	return c, nil
}

// AcceptConn waits for the next connection and returns it with
// TCP_NODELAY and keepalive set, as Go's listeners set them. After Close
// it returns an error that is net.ErrClosed.
func (l *Listener) AcceptConn() (*Conn, error) {
	var rsa unix.RawSockaddrAny
	nfd := -1
	var errno syscall.Errno
	err := l.rc.Read(func(fd uintptr) bool {
		for {
			size := uint32(unsafe.Sizeof(rsa))
			r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)),
				unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
			switch e {
			case 0:
				nfd = int(r)
				return true
			case unix.EINTR, unix.ECONNABORTED:
				// ECONNABORTED: the client went away before we took
				// the connection; take the next (as Go's Accept does).
				continue
			case unix.EAGAIN:
				return false
			}
			errno = e
			return true
		}
	})
	switch {
	case err != nil && l.closed.Load():
		// The poller reports the closed duplicate as an os.File's "use
		// of closed file"; a listener's callers look for net.ErrClosed.
		err = net.ErrClosed
	case err == nil && errno != 0:
		err = os.NewSyscallError("accept4", errno)
	}
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
	}
	remote, ok := addrPortOf(&rsa)
	if !ok {
		unix.Close(nfd)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: errors.New("peer address of unknown family")}
	}
	return NewConn(os.NewFile(uintptr(nfd), "tcp"), remote)
}

// Close stops the listener; a waiting Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	l.closed.Store(true)
	l.f.Close()
	return l.tl.Close()
}

// Addr implements net.Listener.
func (l *Listener) Addr() net.Addr { return l.tl.Addr() }

// addrPortOf decodes an IPv4 or IPv6 socket address.
func addrPortOf(rsa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), portOf(sa.Port)), true
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), portOf(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// portOf reads a port in network byte order.
func portOf(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

// setConnOptions sets TCP_NODELAY and keepalive as Go's dialer and
// listener do (best effort, as there).
func setConnOptions(fd uintptr) {
	for _, o := range [...][3]int{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
	} {
		_ = rawSetsockoptInt(fd, o[0], o[1], o[2])
	}
}
