package netstack

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The tap's reads and writes are raw system calls, without the Go
// scheduler's entersyscall/exitsyscall around them, as are the host
// sockets' (internal/sockconn.Conn, which says why). The tap is
// non-blocking, so no call blocks; a write runs the guest's TCP/IP inside
// it and can take tens of microseconds, which as an announced system call
// made sysmon hand the goroutine's P to another thread.

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
