package portfwd

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/slirp-dev/slirp/internal/sockconn"
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
	if err := sockconn.Connect(ctx, f, dst); err != nil {
		f.Close()
		return nil, fmt.Errorf("connect to %v in the namespace: %w", dst, err)
	}
	if proto == TCP {
		// A sockconn.Conn, not net.FileConn: it keeps f instead of a
		// duplicate and makes no system call through the runtime's
		// syscall entry, which a stream of short forwarded connections
		// would pay for in wake-ups of the runtime's sysmon thread.
		c, err := sockconn.NewConn(f, dst)
		if err != nil {
			return nil, fmt.Errorf("socket in the namespace: %w", err)
		}
		return c, nil
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket in the namespace: %w", err)
	}
	return c, nil
}
