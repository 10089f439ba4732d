package tap

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The control socket's messages are sent and received with raw system
// calls through the socket's RawConn (which waits in the runtime's poller
// and honours deadlines, as WriteMsgUnix and ReadMsgUnix do). Those two
// go through the Go runtime's syscall entry, which wakes the runtime's
// sysmon thread when the process was idle; a port forward asks the helper
// for a socket per connection, so under a stream of short connections
// that was a wake-up of sysmon per connection.

// sendPacket sends b as one packet.
func (n *Namespace) sendPacket(b []byte) error {
	rc, err := n.conn.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	err = rc.Write(func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
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
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	return err
}

// recvPacket receives one packet into buf and its control messages into
// oob (descriptors close-on-exec), as ReadMsgUnix does.
func (n *Namespace) recvPacket(buf, oob []byte) (nb, oobn, flags int, err error) {
	rc, err := n.conn.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	msg := unix.Msghdr{Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	var errno syscall.Errno
	err = rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), unix.MSG_CMSG_CLOEXEC)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			nb, errno = int(r), e
			return true
		}
	})
	if err == nil && errno != 0 {
		err = os.NewSyscallError("recvmsg", errno)
	}
	if err != nil {
		return 0, 0, 0, err
	}
	return nb, int(msg.Controllen), int(msg.Flags), nil
}
