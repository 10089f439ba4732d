// Package sockconn connects non-blocking sockets the daemon opens itself,
// with the fast path that matters for loopback peers: a connect to a
// local listener has usually completed by the time connect(2) returns
// EINPROGRESS, so one poll(2) with no timeout finds it writable and the
// goroutine never parks in the runtime's network poller (a round trip
// through the scheduler that cost a third of the connection rate).
package sockconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Sockaddr converts ap to the kernel's form.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa
}

// Connect connects the non-blocking socket f to dst, bounded by ctx.
func Connect(ctx context.Context, f *os.File, dst netip.AddrPort) error {
	sa := Sockaddr(dst)
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	fast := false
	if err := rc.Control(func(fd uintptr) {
		cerr = unix.Connect(int(fd), sa)
		if errors.Is(cerr, unix.EINPROGRESS) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if n, err := unix.Poll(pfd, 0); err == nil && n == 1 {
				fast = true
				cerr = soError(int(fd))
			}
		}
	}); err != nil {
		return err
	}
	if cerr == nil || fast {
		return cerr
	}
	if !errors.Is(cerr, unix.EINPROGRESS) && !errors.Is(cerr, unix.EINTR) {
		return cerr
	}
	// Wait for writability; a cancelled ctx moves the deadline into the
	// past, which wakes the wait.
	if d, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	defer f.SetWriteDeadline(time.Time{})
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			cerr = err
			return true
		}
		switch e := unix.Errno(v); e {
		case 0:
			// Writable with no error is connected, unless this is the
			// first call, before any wait: then getpeername tells.
			if _, err := unix.Getpeername(int(fd)); errors.Is(err, unix.ENOTCONN) {
				return false
			}
			cerr = nil
			return true
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		default:
			cerr = e
			return true
		}
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werr
	}
	return cerr
}

// soError returns the socket's pending error (nil when connected).
func soError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}

// DialTCP opens a TCP connection from local (zero: any) to dst, with
// TCP_NODELAY set as Go's own dialer sets it.
func DialTCP(ctx context.Context, local, dst netip.AddrPort) (net.Conn, error) {
	family := unix.AF_INET
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: os.NewSyscallError("socket", err)}
	}
	f := os.NewFile(uintptr(fd), "tcp")
	defer f.Close()
	if local.Addr().IsValid() {
		if err := unix.Bind(fd, Sockaddr(local)); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: os.NewSyscallError("bind", err)}
		}
	}
	if err := Connect(ctx, f, dst); err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) {
			err = os.NewSyscallError("connect", errno)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("dial tcp %v: %w", dst, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}
