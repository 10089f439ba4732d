package netstack

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls of the packet path (the tap's reads and writes, and the
// relays' reads and writes of host sockets) are made with RawSyscall, that
// is without the Go scheduler's entersyscall/exitsyscall around them. All of
// them are on non-blocking descriptors, so none can block; but a write can
// take tens of microseconds in the kernel, because the receiver's TCP/IP
// processing (the guest's, behind the tap, or the server's, on the host's
// loopback) runs inside it. Announced as a system call, such a write made
// the runtime's sysmon thread take the goroutine's P away and start another
// thread for it, and any system call woke sysmon from its deep sleep and
// made it poll every 20 µs again. On a 1-byte round trip that was about 1.5
// extra thread wake-ups and 50 µs of CPU. Measured on the 2-vCPU benchmark
// machine (1-byte echo through 10.0.2.2): context switches per round trip
// went from 8.4 to 5.9 and daemon CPU per round trip from about 240 to 170
// µs; per short connection, from 17.7 to 15.1 switches and 780 to 640 µs.
//
// The price: the goroutine keeps its P during the call (other goroutines
// run on the other Ps), and the call cannot be preempted, which for a
// non-blocking read or write of at most 128 KiB is bounded.

// rawIovecs is how many buffers rawReadv and rawWritev take without
// allocating: the tap reader uses 4, and a packet out is a virtio-net header
// and the packet's views (gVisor keeps a packet in a handful of them).
const rawIovecs = 16

// rawReadv is readv(2) on a non-blocking descriptor without the scheduler's
// system-call bookkeeping (see above).
func rawReadv(fd int, bufs [][]byte) (int, error) {
	return rawIov(unix.SYS_READV, fd, bufs)
}

// rawWritev is writev(2) without the scheduler's system-call bookkeeping.
func rawWritev(fd int, bufs [][]byte) (int, error) {
	return rawIov(unix.SYS_WRITEV, fd, bufs)
}

func rawIov(trap uintptr, fd int, bufs [][]byte) (int, error) {
	vecs := make([]unix.Iovec, 0, rawIovecs)
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		vecs = append(vecs, v)
	}
	if len(vecs) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&vecs[0])), uintptr(len(vecs)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawHostConn is a host TCP connection whose Read and Write are raw system
// calls, waiting through Go's poller (syscall.RawConn) when the socket is
// not ready. Everything else (Close, CloseWrite, SetLinger, deadlines,
// addresses) is the net.TCPConn's, on the same descriptor.
type rawHostConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// newRawHostConn wraps a *net.TCPConn; any other net.Conn (tests dial with
// anything) is returned unchanged.
func newRawHostConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawHostConn{TCPConn: tc, rc: rc}
}

// Read reads like net.TCPConn.Read: io.EOF at the end of the stream.
func (c *rawHostConn) Read(b []byte) (int, error) {
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
		return 0, err
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for room as net.TCPConn.Write does.
func (c *rawHostConn) Write(b []byte) (int, error) {
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
		return done, err
	case errno != 0:
		return done, c.opError("write", errno)
	}
	return done, nil
}

func (c *rawHostConn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
