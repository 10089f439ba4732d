package portfwd

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

// DialNamespace opens a kernel socket inside the namespace (through
// opener) and connects it to dst from there. For a port forward dst is an
// address of the namespace itself, so the kernel delivers the connection
// over its loopback path and the user-mode stack never sees it; any other
// dst is reached as the namespace's own programs reach it.
func DialNamespace(ctx context.Context, opener SocketOpener, proto Proto, dst netip.AddrPort) (net.Conn, error) {
	domain := unix.AF_INET
	if dst.Addr().Is6() {
		domain = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	if proto == UDP {
		typ = unix.SOCK_DGRAM
	}
	f, err := opener.Socket(ctx, domain, typ, 0)
	if err != nil {
		return nil, fmt.Errorf("socket in the namespace: %w", err)
	}
	defer f.Close()
	if err := connectFile(ctx, f, dst); err != nil {
		return nil, fmt.Errorf("connect to %v in the namespace: %w", dst, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket in the namespace: %w", err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// Go sets TCP_NODELAY on the sockets it creates itself; match the
		// host side so small writes are not held back.
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// connectFile connects a non-blocking socket, waiting in the runtime
// poller while the connect is in progress, bounded by ctx.
func connectFile(ctx context.Context, f *os.File, dst netip.AddrPort) error {
	sa := sockaddr(dst)
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	if cerr == nil {
		return nil
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

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}
