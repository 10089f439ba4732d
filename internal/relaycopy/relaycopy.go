// Package relaycopy copies one direction of a relayed connection (the
// guest's connections out through netstack, forwarded connections in
// through portfwd) without holding a buffer while the connection is idle.
//
// A relay waits for its source to become readable before it takes a buffer
// from a pool (unless its last read filled the buffer: a transfer is under
// way), and gives the buffer back as soon as the bytes are written:
// a thousand idle connections then cost their goroutines and little else.
// Holding a buffer across the wait cost a forwarded connection that had
// once moved a megabyte 556 KiB while it sat idle (two 256 KiB buffers,
// both dirty). The buffer is small (16 KiB) until a few full reads in a row
// show a bulk transfer, which then reads 128 KiB at a time.
//
// Copy is for sources a goroutine waits on (kernel sockets); Burst is for
// sources that can say "nothing now" and signal when there is more (gVisor
// endpoints), so that no goroutine waits between bursts.
package relaycopy

import (
	"errors"
	"io"
	"sync"
)

const (
	smallBuf = 16 << 10
	largeBuf = 128 << 10
	// bulkReads full small reads in a row make a transfer bulk.
	bulkReads = 4
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}
)

// ErrNoWait is what a ready function returns when it cannot wait for its
// source (a connection without a descriptor, in tests): Copy then reads
// with a buffer held across the wait.
var ErrNoWait = errors.New("relaycopy: cannot wait for readability")

// Copy copies src to dst until src ends or fails, or dst fails. Before a
// read it calls ready, which blocks until src has data, end of stream or an
// error; an error from ready other than ErrNoWait ends the copy. After a
// read that filled the buffer it reads again at once: during a transfer
// the wait is a wasted system call (7% of the throughput of a forwarded
// connection), and the buffer is in use anyway.
// After each write it calls counted with the bytes written (nil: none).
//
// Copy returns io.EOF when src ended cleanly (the caller passes the end
// on, as a FIN), and otherwise the error that stopped it.
func Copy(dst io.Writer, src io.Reader, ready func() error, counted func(n int)) error {
	var s sizer
	for {
		// After a full read more is most likely there already: skip the
		// wait, which costs a system call on a kernel socket.
		if s.full == 0 {
			if err := ready(); err != nil && !errors.Is(err, ErrNoWait) {
				return err
			}
		}
		if _, err := s.copyOnce(dst, src.Read, counted); err != nil {
			return err
		}
	}
}

// ErrEmpty is what the read function given to Burst.Drain returns when its
// source has nothing to read right now.
var ErrEmpty = errors.New("relaycopy: nothing to read now")

// Burst copies one direction of a connection in bursts, for a source that
// can say it has nothing right now instead of blocking (a gVisor endpoint):
// the caller runs Drain when the source signals data and needs no goroutine
// in between. The buffer size carries over from one Drain to the next, as
// from one read to the next in Copy. The zero value is ready to use; one
// Drain at a time.
type Burst struct {
	s sizer
}

// Drain copies from read to dst until read returns ErrEmpty (Drain then
// returns nil), io.EOF (returned as is) or another error, or dst fails.
// counted is as for Copy.
func (b *Burst) Drain(dst io.Writer, read func([]byte) (int, error), counted func(n int)) error {
	for {
		if _, err := b.s.copyOnce(dst, read, counted); err != nil {
			if errors.Is(err, ErrEmpty) {
				return nil
			}
			return err
		}
	}
}

// sizer picks the buffer for the next read: small, or large once bulkReads
// full reads in a row show a bulk transfer.
type sizer struct {
	full int
}

// copyOnce does one read into a pooled buffer and writes what it got; the
// buffer goes back to its pool before copyOnce returns. It returns the
// bytes read and the read's error, or the write's.
func (s *sizer) copyOnce(dst io.Writer, read func([]byte) (int, error), counted func(n int)) (int, error) {
	pool := &smallBufs
	if s.full >= bulkReads {
		pool = &largeBufs
	}
	bp := pool.Get().(*[]byte)
	buf := *bp
	n, rerr := read(buf)
	if n > 0 {
		_, werr := dst.Write(buf[:n])
		if n == len(buf) {
			s.full++
		} else {
			s.full = 0
		}
		pool.Put(bp)
		if werr != nil {
			return n, werr
		}
		if counted != nil {
			counted(n)
		}
	} else {
		pool.Put(bp)
	}
	return n, rerr
}
