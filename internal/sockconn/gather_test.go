package sockconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pattern returns n bytes counting up from start.
func pattern(start, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(start + i)
	}
	return b
}

func TestGatherWriterOrder(t *testing.T) {
	c, peer := connPair(t, "tcp4", "127.0.0.1:0")
	w, ok := NewGatherWriter(c)
	if !ok {
		t.Fatal("NewGatherWriter refused a *Conn")
	}
	// Small pieces are gathered, go out in front of the next large one,
	// and the tail is written by Flush.
	var want []byte
	for i, n := range []int{3, 200, 70000, 1, gatherPiece, gatherPiece + 1, 5} {
		p := pattern(len(want), n)
		if got, err := w.Write(p); got != n || err != nil {
			t.Fatalf("write %d (%d bytes) = %d, %v", i, n, got, err)
		}
		want = append(want, p...)
	}
	if w.pending == nil || len(*w.pending) != 5 {
		t.Fatalf("pending after the writes: %v, want the last 5 bytes", w.pending)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.pending != nil {
		t.Fatal("Flush kept a buffer with nothing in it")
	}
	got := make([]byte, len(want))
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the peer read different bytes or a different order")
	}
	// Gathering stops at gatherMax: the piece that does not fit is
	// written together with what was gathered.
	pieces := gatherMax / 1000
	for range pieces {
		if _, err := w.Write(pattern(0, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if w.pending == nil || len(*w.pending) != pieces*1000 {
		t.Fatal("pieces that fit were not gathered")
	}
	if _, err := w.Write(pattern(0, 1000)); err != nil {
		t.Fatal(err)
	}
	if w.pending != nil {
		t.Fatalf("%d bytes still gathered past the limit", len(*w.pending))
	}
	if _, err := io.ReadFull(peer, make([]byte, (pieces+1)*1000)); err != nil {
		t.Fatal(err)
	}
}

func TestGatherWriterFull(t *testing.T) {
	c, peer := connPair(t, "tcp4", "127.0.0.1:0")
	_ = c.control("setsockopt", func(fd uintptr) syscall.Errno {
		return errnoOf(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	})
	_ = peer.(*net.TCPConn).SetReadBuffer(4096)
	w, _ := NewGatherWriter(c)

	// Write until the socket refuses: the writer takes part of a piece
	// and says so, and then takes nothing until Flush.
	var sent []byte
	var full bool
	for i := 0; i < 10000 && !full; i++ {
		p := pattern(len(sent), 1500)
		n, err := w.Write(p)
		sent = append(sent, p[:n]...)
		switch {
		case errors.Is(err, ErrFull):
			full = true
		case err != nil:
			t.Fatal(err)
		case n != len(p):
			t.Fatalf("Write took %d of %d bytes without an error", n, len(p))
		}
	}
	if !full {
		t.Fatal("the socket never filled up")
	}
	if n, err := w.Write([]byte{1}); n != 0 || !errors.Is(err, ErrFull) {
		t.Fatalf("Write while full = %d, %v; want 0, ErrFull", n, err)
	}
	// Flush waits for room, which the peer makes by reading.
	read := make(chan []byte, 1)
	go func() {
		got := make([]byte, len(sent))
		_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(peer, got)
		read <- got[:n]
	}()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := <-read; !bytes.Equal(got, sent) {
		t.Fatalf("the peer read %d bytes that differ from the %d the writer took", len(got), len(sent))
	}
	if n, err := w.Write([]byte{1, 2, 3}); n != 3 || err != nil {
		t.Fatalf("Write after Flush = %d, %v", n, err)
	}
}

func TestGatherWriterError(t *testing.T) {
	c, peer := connPair(t, "tcp4", "127.0.0.1:0")
	w, _ := NewGatherWriter(c)
	// A reset peer: the first write may still be taken by the kernel,
	// a later one fails, and the failure sticks.
	_ = peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(50 * time.Millisecond)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, err = w.Write(make([]byte, 2000))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write to a reset peer = %v, want EPIPE or ECONNRESET", err)
	}
	if _, err2 := w.Write([]byte{1}); err2 != err {
		t.Fatalf("the next Write = %v, want the same error %v", err2, err)
	}
	if err2 := w.Flush(); err2 != err {
		t.Fatalf("Flush = %v, want the same error %v", err2, err)
	}

	if _, ok := NewGatherWriter(struct{ net.Conn }{c}); ok {
		t.Fatal("NewGatherWriter accepted a connection without a descriptor")
	}
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
