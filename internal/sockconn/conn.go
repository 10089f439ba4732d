package sockconn

import (
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/relaycopy"
)

// Conn is a connected TCP socket that DialTCP opened. It is a net.Conn
// (plus CloseWrite, SetLinger and SyscallConn, as *net.TCPConn has) that
// costs fewer system calls than one from net.FileConn, and whose reads and
// writes are raw system calls.
//
// Raw, that is without the Go scheduler's entersyscall/exitsyscall around
// them: the socket is non-blocking, so no call blocks (the goroutine waits
// in the runtime's poller instead), but a write to a loopback peer runs the
// peer's TCP/IP inside it and can take tens of microseconds. Announced as
// a system call, such a write made the runtime's sysmon thread take the
// goroutine's P away and start another thread for it, and any system call
// woke sysmon from its deep sleep into polling every 20 µs: on a 1-byte
// round trip through the daemon, about 1.5 extra thread wake-ups and 50
// µs of CPU (see docs/architecture.md).
//
// net.FileConn, which this replaces, dups the descriptor, asks the kernel
// for the socket's type and both addresses, registers the copy with the
// poller and closes the original: about ten system calls per connection
// that Conn does without (the addresses are known or asked for lazily).
type Conn struct {
	f      *os.File
	rc     syscall.RawConn
	remote netip.AddrPort
	closed atomic.Bool

	localOnce sync.Once
	local     net.Addr
}

var _ net.Conn = (*Conn)(nil)

// Read reads like (*net.TCPConn).Read: io.EOF at the end of the stream.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for room as (*net.TCPConn).Write does.
func (c *Conn) Write(b []byte) (int, error) {
	done := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[done])), uintptr(len(b)-done))
			switch e {
			case 0:
				done += int(r)
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return done, c.opError("write", err)
	case errno != 0:
		return done, c.opError("write", os.NewSyscallError("write", errno))
	}
	return done, nil
}

// opError wraps err as the net package does. The poller reports a closed
// descriptor as an os.File's "use of closed file"; a net.Conn's callers
// look for net.ErrClosed.
func (c *Conn) opError(op string, err error) error {
	if c.closed.Load() {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Close closes the socket; blocked reads and writes return net.ErrClosed.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	return c.f.Close()
}

// CloseWrite shuts down the sending side (a FIN to the peer).
func (c *Conn) CloseWrite() error {
	return c.control("shutdown", func(fd uintptr) syscall.Errno {
		_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
		return e
	})
}

// SetLinger sets SO_LINGER as (*net.TCPConn).SetLinger does: sec < 0 is
// the default (off), 0 makes Close send a RST.
func (c *Conn) SetLinger(sec int) error {
	l := unix.Linger{}
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(sec)
	}
	return c.control("setsockopt", func(fd uintptr) syscall.Errno {
		_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_LINGER,
			uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
		return e
	})
}

func (c *Conn) control(op string, f func(fd uintptr) syscall.Errno) error {
	var errno syscall.Errno
	if err := c.rc.Control(func(fd uintptr) { errno = f(fd) }); err != nil {
		return c.opError(op, err)
	}
	if errno != 0 {
		return c.opError(op, os.NewSyscallError(op, errno))
	}
	return nil
}

// SyscallConn gives the descriptor, as (*net.TCPConn).SyscallConn does.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// LocalAddr is the socket's address, asked of the kernel on first use.
func (c *Conn) LocalAddr() net.Addr {
	c.localOnce.Do(func() {
		var sa unix.Sockaddr
		_ = c.rc.Control(func(fd uintptr) { sa, _ = unix.Getsockname(int(fd)) })
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			c.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)))
		case *unix.SockaddrInet6:
			c.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)))
		default:
			c.local = &net.TCPAddr{}
		}
	})
	return c.local
}

// RemoteAddr is the address DialTCP connected to.
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// SetDeadline sets the read and write deadlines, as net.Conn's does.
func (c *Conn) SetDeadline(t time.Time) error { return c.f.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// WaitReadable blocks until c has data, end of stream or an error, or its
// read deadline passes (then it returns the deadline error), without
// reading: a relay takes its buffer only after it (package relaycopy). A
// pending socket error is returned, not left for the read. It works on any
// connection with a descriptor (syscall.Conn); for others it returns
// relaycopy.ErrNoWait at once.
func WaitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return relaycopy.ErrNoWait
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var peek [1]byte
	var errno syscall.Errno
	err = rc.Read(func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&peek[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			errno = e
			return true
		}
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		// The peek took the socket's pending error (an ICMP error on a
		// UDP socket, a reset TCP connection): the kernel reports it
		// once, so it is returned here rather than lost to the read.
		return os.NewSyscallError("recvfrom", errno)
	}
	return nil
}
