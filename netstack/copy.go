package netstack

import (
	"io"
	"net"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/slirp-dev/slirp/internal/relaycopy"
	"github.com/slirp-dev/slirp/internal/sockconn"
)

// The copies between a guest TCP endpoint and a kernel socket, shared by
// the stack's relays (guest connections out) and the connections into the
// guest that port forwards open (DialTCP): neither way goes through a
// buffer of ours.

// copySocketToGuest copies host, a kernel socket, into the guest endpoint
// ep until host's stream ends (io.EOF) or fails. Once the socket is
// readable, the endpoint reads what the socket holds straight into its own
// buffers (sockconn.Queued); what it cannot take while its send buffer is
// full stays in the socket until there is room. guest is ep's net.Conn,
// for the rare small read and for host connections without a descriptor,
// which are copied through a pooled buffer. counted gets the bytes
// written.
func copySocketToGuest(ep tcpip.Endpoint, wq *waiter.Queue, guest, host net.Conn, counted func(int)) error {
	q, ok := sockconn.NewQueued(host)
	if !ok {
		return relaycopy.Copy(guest, host, func() error { return sockconn.WaitReadable(host) }, counted)
	}
	var room *guestWait
	defer func() {
		if room != nil {
			room.close()
		}
	}()
	for {
		if err := sockconn.WaitReadable(host); err != nil {
			return err
		}
		n, err := q.Fill()
		if err != nil {
			return err
		}
		if n == 0 {
			// Readable with nothing queued: the end of the stream (or
			// bytes that came in just now); a plain read tells.
			if err := readOnce(guest, host, counted); err != nil {
				return err
			}
			continue
		}
		for q.Len() > 0 {
			// gVisor reads q with the endpoint unlocked and then trims
			// what no longer fits if the send buffer shrank meanwhile:
			// bytes read from a socket cannot be given back. It cannot
			// shrink here: this is the endpoint's only writer, and
			// auto-tuning only grows the buffer (up to the maximum that
			// tune sets, above the default).
			written, terr := ep.Write(q, tcpip.WriteOptions{})
			counted(int(written))
			if err := q.Err(); err != nil {
				return err
			}
			switch terr.(type) {
			case nil:
			case *tcpip.ErrWouldBlock:
				// The send buffer is full: wait for room (what the
				// endpoint did not take is still in the socket).
				if room == nil {
					room = newGuestWait(wq, ep, roomEvents)
				}
				room.wait(nil)
			default:
				return stackErr(terr)
			}
		}
	}
}

// readOnce reads src once into a small buffer and writes what it got to
// dst; io.EOF at the end of src's stream.
func readOnce(dst, src net.Conn, counted func(int)) error {
	var b [512]byte
	n, err := src.Read(b[:])
	if n > 0 {
		if _, werr := dst.Write(b[:n]); werr != nil {
			return werr
		}
		counted(n)
	}
	return err
}

// drainToSocket copies what the guest endpoint ep holds to the socket
// behind w. It returns nil once the endpoint is empty, io.EOF at the
// guest's FIN, or the error that ends the direction. The endpoint hands
// its buffers to w, which writes them to the socket without a copy of ours
// in between; what it cannot pass on while the socket is full stays in
// the endpoint until the socket has room.
func drainToSocket(ep tcpip.Endpoint, w *sockconn.GatherWriter, counted func(int)) error {
	for {
		res, err := ep.Read(w, tcpip.ReadOptions{})
		if res.Count > 0 {
			// Receive-buffer auto-tuning counts what the application
			// read.
			ep.ModerateRecvBuf(res.Count)
			counted(res.Count)
		}
		// Out of gVisor's lock: write what w gathered and wait for room
		// if the socket was full.
		if ferr := w.Flush(); ferr != nil {
			return ferr
		}
		switch err.(type) {
		case nil, *tcpip.ErrBadBuffer:
			// ErrBadBuffer: w took nothing, the socket being full; Flush
			// has waited for room.
		case *tcpip.ErrWouldBlock:
			return nil
		case *tcpip.ErrClosedForReceive:
			return io.EOF
		default:
			return stackErr(err)
		}
	}
}
