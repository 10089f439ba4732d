package sockconn

import (
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Splice moves bytes between two kernel sockets through a pipe, never
// through user space: the fast path of a port forward. It is Go's own
// splice (what io.Copy between two *net.TCPConn does), with raw system
// calls: a splice of up to 1 MiB runs both sockets' TCP/IP and takes long
// enough that, announced to the scheduler, it made sysmon hand the
// goroutine's P to another thread on most calls (see Conn).

// maxSplice is the most one splice(2) moves, and the pipe's size (the
// default limit of /proc/sys/fs/pipe-max-size).
const maxSplice = 1 << 20

const spliceFlags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE

// splicePipe is a non-blocking pipe and how many bytes sit in it.
type splicePipe struct {
	r, w int
	data int
	// cleanup closes r and w once the pipe is garbage.
	cleanup runtime.Cleanup
}

// splicePipes holds drained pipes for the next copy. A sync.Pool drops
// what it holds over two garbage collections, so each pipe carries a
// cleanup that closes its descriptors when it is dropped (as Go's own
// splice pool does); without it every collection leaked the pooled pipes'
// descriptors.
var splicePipes sync.Pool

func getPipe() (*splicePipe, error) {
	if p, ok := splicePipes.Get().(*splicePipe); ok {
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// A larger pipe moves more per call; the default (64 KiB) still works.
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, maxSplice)
	p := &splicePipe{r: fds[0], w: fds[1]}
	p.cleanup = runtime.AddCleanup(p, closePipe, fds)
	return p, nil
}

func closePipe(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
}

// putPipe pools a drained pipe and closes one that still holds bytes (the
// copy failed half-way): they would leak into the next connection.
func putPipe(p *splicePipe) {
	if p.data != 0 {
		p.cleanup.Stop()
		closePipe([2]int{p.r, p.w})
		return
	}
	splicePipes.Put(p)
}

// Splice copies up to limit bytes from src to dst, two connected kernel
// sockets (their syscall.RawConn), waiting in the runtime's poller when src
// has nothing or dst has no room. It returns the bytes written and io.EOF
// when src ended before limit, or the error that stopped it.
func Splice(dst, src syscall.RawConn, limit int64) (int64, error) {
	p, err := getPipe()
	if err != nil {
		return 0, err
	}
	defer putPipe(p)
	var written int64
	for written < limit {
		max := int(min(limit-written, maxSplice))
		in, err := spliceIn(p, src, max)
		if err != nil {
			return written, err
		}
		if in == 0 {
			return written, io.EOF
		}
		n, err := spliceOut(p, dst)
		written += int64(n)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// spliceIn moves up to max bytes from src into the empty pipe; 0 is the
// end of src's stream.
func spliceIn(p *splicePipe, src syscall.RawConn, max int) (int, error) {
	var n int
	var errno syscall.Errno
	err := src.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, fd, 0, uintptr(p.w), 0, uintptr(max), spliceFlags)
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
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("splice", errno)
	}
	p.data += n
	return n, nil
}

// spliceOut moves everything in the pipe to dst.
func spliceOut(p *splicePipe, dst syscall.RawConn) (int, error) {
	written := 0
	var errno syscall.Errno
	err := dst.Write(func(fd uintptr) bool {
		for p.data > 0 {
			r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(p.r), 0, fd, 0, uintptr(p.data), spliceFlags)
			switch e {
			case 0:
				p.data -= int(r)
				written += int(r)
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
	if err != nil {
		return written, err
	}
	if errno != 0 {
		return written, os.NewSyscallError("splice", errno)
	}
	return written, nil
}
