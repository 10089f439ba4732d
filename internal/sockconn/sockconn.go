// Package sockconn connects and accepts TCP sockets for the daemon,
// without the Go runtime's syscall entry (see Conn), and with the fast
// path that matters for loopback peers: a connect to a
// local listener has usually completed by the time connect(2) returns
// EINPROGRESS, so one poll(2) with no timeout finds it writable and the
// goroutine never parks in the runtime's network poller (a round trip
// through the scheduler that cost a third of the connection rate).
package sockconn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

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
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	fast := false
	if err := rc.Control(func(fd uintptr) {
		cerr = rawConnect(fd, dst)
		if errors.Is(cerr, unix.EINPROGRESS) && rawWritable(fd) {
			fast = true
			cerr = soError(int(fd))
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

// The system calls of a connect are raw (no entersyscall): the socket is
// non-blocking, so none of them blocks, and announcing them to the
// scheduler wakes its sysmon thread (see Conn).

// rawConnect is connect(2) of fd to ap.
func rawConnect(fd uintptr, ap netip.AddrPort) error {
	var e syscall.Errno
	switch sa := Sockaddr(ap).(type) {
	case *unix.SockaddrInet4:
		raw := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: sa.Addr}
		putPort(&raw.Port, sa.Port)
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&raw)), unix.SizeofSockaddrInet4)
	case *unix.SockaddrInet6:
		raw := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: sa.Addr, Scope_id: sa.ZoneId}
		putPort(&raw.Port, sa.Port)
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&raw)), unix.SizeofSockaddrInet6)
	}
	if e != 0 {
		return e
	}
	return nil
}

// putPort stores port in network byte order.
func putPort(p *uint16, port int) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// rawWritable polls fd for writability without waiting.
func rawWritable(fd uintptr) bool {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	var ts unix.Timespec
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return e == 0 && n == 1
}

// rawSetsockoptInt is setsockopt(2) of an int option.
func rawSetsockoptInt(fd uintptr, level, opt, value int) error {
	v := int32(value)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
	if e != 0 {
		return e
	}
	return nil
}

// soError returns the socket's pending error (nil when connected).
func soError(fd int) error {
	var v int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}

// Keepalive on the host side, as Go's dialer sets it: a peer that vanished
// is found after 15 s idle and 9 unanswered probes 15 s apart.
const (
	keepAliveIdle     = 15
	keepAliveInterval = 15
	keepAliveCount    = 9
)

// DialTCP opens a TCP connection from local (zero: any) to dst, with
// TCP_NODELAY and keepalive set as Go's own dialer sets them.
func DialTCP(ctx context.Context, local, dst netip.AddrPort) (*Conn, error) {
	family := unix.AF_INET
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	opErr := func(call string, err error) error {
		var errno unix.Errno
		if errors.As(err, &errno) {
			err = os.NewSyscallError(call, errno)
		}
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	}
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return nil, opErr("socket", e)
	}
	fd := int(r)
	// The file registers the socket with the runtime's poller, for the
	// waits of a slow connect and of the connection's reads and writes.
	f := os.NewFile(uintptr(fd), "tcp")
	if local.Addr().IsValid() {
		if err := unix.Bind(fd, Sockaddr(local)); err != nil {
			f.Close()
			return nil, opErr("bind", err)
		}
	}
	if err := Connect(ctx, f, dst); err != nil {
		f.Close()
		return nil, opErr("connect", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, opErr("connect", err)
	}
	if err := rc.Control(setConnOptions); err != nil {
		f.Close()
		return nil, opErr("setsockopt", err)
	}
	return &Conn{f: f, rc: rc, remote: dst}, nil
}
