package sockconn

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Queued reads what a socket has already received, and says how much that
// is first: the io.Reader-with-Len that a gVisor endpoint's Write takes
// (tcpip.Payloader), which it reads straight into its own buffers, so that
// the bytes are not copied through a buffer of ours on the way. Reads
// never block: what has not arrived by Fill is not part of this round.
//
// One goroutine at a time.
type Queued struct {
	rc   syscall.RawConn
	left int   // bytes counted by Fill and not read yet
	err  error // a read failed; sticky
}

// NewQueued returns a Queued for c, or false when c has no descriptor
// (syscall.Conn).
func NewQueued(c net.Conn) (*Queued, bool) {
	rc, ok := rawConnOf(c)
	if !ok {
		return nil, false
	}
	return &Queued{rc: rc}, true
}

// Fill counts the bytes waiting in the socket's receive queue (SIOCINQ)
// and returns them; 0 says nothing is queued: the socket is at the end of
// its stream, has failed, or is empty.
func (q *Queued) Fill() (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	var n int32
	var errno syscall.Errno
	if err := q.rc.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall(unix.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("ioctl SIOCINQ", errno)
	}
	q.left = max(int(n), 0)
	return q.left, nil
}

// Len is how many of the bytes Fill counted have not been read.
func (q *Queued) Len() int { return q.left }

// Read reads up to len(b) of the counted bytes; past them it returns
// io.EOF. A socket that cannot deliver what Fill counted (it failed or was
// closed meanwhile) is an error, never io.EOF: the consumer must not take
// the round for complete. (gVisor's Write, given Len bytes to read, loops
// until it has them or gets an error other than io.EOF.)
func (q *Queued) Read(b []byte) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	if q.left == 0 {
		return 0, io.EOF
	}
	if len(b) == 0 {
		return 0, nil
	}
	b = b[:min(len(b), q.left)]
	var n int
	var errno syscall.Errno
	err := q.rc.Control(func(fd uintptr) {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			if e == unix.EINTR {
				continue
			}
			n, errno = int(r), e
			return
		}
	})
	switch {
	case err != nil:
		q.err = err
	case errno != 0:
		q.err = os.NewSyscallError("read", errno)
	case n == 0:
		q.err = fmt.Errorf("read: %w: the socket ended before the %d bytes it had queued", io.ErrUnexpectedEOF, q.left)
	}
	if q.err != nil {
		q.left = 0
		return 0, q.err
	}
	q.left -= n
	return n, nil
}

// Err is the read error that ended a round early, if any.
func (q *Queued) Err() error { return q.err }
