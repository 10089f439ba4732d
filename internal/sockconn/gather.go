package sockconn

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrFull is what GatherWriter.Write returns when the socket has no room:
// the caller keeps the rest and calls Flush, which waits for room.
var ErrFull = errors.New("sockconn: socket send buffer full")

// Pieces of up to gatherPiece bytes are gathered, up to gatherMax bytes in
// all, in a pooled buffer held only until the next Flush. A piece is the
// payload in one of a segment's views: the first bytes next to the
// headers, then the rest. gatherPiece is above what a 1500-byte segment
// carries, so that a guest that sends such segments (no segmentation
// offload) still has them written 16 KiB at a time, not one by one.
const (
	gatherPiece = 2048
	gatherMax   = 16 << 10
)

var gatherBufs = sync.Pool{New: func() any { b := make([]byte, 0, gatherMax); return &b }}

// GatherWriter writes to a socket straight from a lender's buffers: an
// io.Writer for sources that hand out their bytes only for the duration of
// a Write call, as a gVisor endpoint's Read does, so that the bytes are
// not first copied into a buffer of ours. Write never blocks: when the
// socket is full it takes what fits and returns ErrFull, and the lender
// keeps the rest. Small pieces (a segment's first bytes share a view with
// its headers) are gathered and go out with the next large piece in one
// writev(2), rather than as TCP segments of their own.
//
// One goroutine at a time; after Writes, the caller calls Flush.
type GatherWriter struct {
	rc      syscall.RawConn
	pending *[]byte // gathered bytes not yet written; nil when none
	full    bool    // a write found no room since the last Flush
	err     error   // a write failed; sticky
}

// NewGatherWriter returns a GatherWriter for c, or false when c has no
// descriptor (syscall.Conn).
func NewGatherWriter(c net.Conn) (*GatherWriter, bool) {
	rc, ok := rawConnOf(c)
	if !ok {
		return nil, false
	}
	return &GatherWriter{rc: rc}, true
}

// rawConnOf returns c's descriptor, or false when it has none.
func rawConnOf(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}

// Write writes p, or gathers it when it is small, without blocking. It
// returns how much of p the writer took (written or gathered) and ErrFull
// when the socket took less, or the write's error.
func (w *GatherWriter) Write(p []byte) (int, error) {
	switch {
	case w.err != nil:
		return 0, w.err
	case w.full:
		return 0, ErrFull
	case len(p) == 0:
		return 0, nil
	}
	if len(p) <= gatherPiece && (w.pending == nil || len(*w.pending)+len(p) <= gatherMax) {
		if w.pending == nil {
			w.pending = gatherBufs.Get().(*[]byte)
		}
		*w.pending = append(*w.pending, p...)
		return len(p), nil
	}
	var head []byte
	if w.pending != nil {
		head = *w.pending
	}
	var fromP int
	// Control, not Write: this never waits for the poller.
	err := w.rc.Control(func(fd uintptr) {
		for len(head) > 0 || fromP < len(p) {
			n, e := rawWritev2(fd, head, p[fromP:])
			switch e {
			case 0:
				k := min(n, len(head))
				head = head[k:]
				fromP += n - k
			case unix.EINTR:
			case unix.EAGAIN:
				w.full = true
				return
			default:
				w.err = os.NewSyscallError("writev", e)
				return
			}
		}
	})
	if err != nil && w.err == nil {
		w.err = err
	}
	w.keepPending(head)
	switch {
	case w.err != nil:
		return fromP, w.err
	case w.full:
		return fromP, ErrFull
	}
	return fromP, nil
}

// keepPending keeps the unwritten tail of the gathered bytes, or gives
// the buffer back when everything went out.
func (w *GatherWriter) keepPending(rest []byte) {
	if w.pending == nil {
		return
	}
	if len(rest) == 0 {
		*w.pending = (*w.pending)[:0]
		gatherBufs.Put(w.pending)
		w.pending = nil
		return
	}
	*w.pending = (*w.pending)[:copy(*w.pending, rest)]
}

// Flush writes the gathered bytes and, if a Write found the socket full,
// waits until it has room again; it waits in the runtime's poller. It
// returns the first write error, which is sticky.
func (w *GatherWriter) Flush() error {
	if w.err != nil {
		return w.err
	}
	if w.pending == nil && !w.full {
		return nil
	}
	var rest []byte
	if w.pending != nil {
		rest = *w.pending
	}
	err := w.rc.Write(func(fd uintptr) bool {
		if len(rest) == 0 {
			// Only room was asked for.
			return rawWritable(fd)
		}
		for len(rest) > 0 {
			r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
			switch e {
			case 0:
				rest = rest[r:]
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				w.err = os.NewSyscallError("write", e)
				return true
			}
		}
		return true
	})
	if err != nil && w.err == nil {
		w.err = err
	}
	w.keepPending(rest)
	if w.err != nil {
		return w.err
	}
	w.full = false
	return nil
}

// rawWritev2 is writev(2) of a and b (either may be empty).
func rawWritev2(fd uintptr, a, b []byte) (int, syscall.Errno) {
	var iov [2]unix.Iovec
	n := 0
	for _, s := range [2][]byte{a, b} {
		if len(s) > 0 {
			iov[n].Base = &s[0]
			iov[n].SetLen(len(s))
			n++
		}
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	return int(r), e
}
