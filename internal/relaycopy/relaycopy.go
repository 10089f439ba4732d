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
	full := 0
	for {
		// After a full read more is most likely there already: skip the
		// wait, which costs a system call on a kernel socket.
		if full == 0 {
			if err := ready(); err != nil && !errors.Is(err, ErrNoWait) {
				return err
			}
		}
		pool := &smallBufs
		if full >= bulkReads {
			pool = &largeBufs
		}
		bp := pool.Get().(*[]byte)
		buf := *bp
		n, rerr := src.Read(buf)
		if n > 0 {
			_, werr := dst.Write(buf[:n])
			if n == len(buf) {
				full++
			} else {
				full = 0
			}
			pool.Put(bp)
			if werr != nil {
				return werr
			}
			if counted != nil {
				counted(n)
			}
		} else {
			pool.Put(bp)
		}
		if rerr != nil {
			return rerr
		}
	}
}
