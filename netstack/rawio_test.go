package netstack

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRawIov(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	// Nothing to read yet: EAGAIN, as the tap reader expects.
	if _, err := rawReadv(fds[1], [][]byte{make([]byte, 8)}); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}

	// More buffers than rawIovecs, and empty ones, make one message.
	var out [][]byte
	var want []byte
	for i := range 3 * rawIovecs {
		b := bytes.Repeat([]byte{byte(i)}, i%3)
		out = append(out, b)
		want = append(want, b...)
	}
	n, err := rawWritev(fds[0], out)
	if err != nil || n != len(want) {
		t.Fatalf("rawWritev = %d, %v; want %d, nil", n, err, len(want))
	}
	in := [][]byte{make([]byte, 5), nil, make([]byte, len(want))}
	n, err = rawReadv(fds[1], in)
	if err != nil || n != len(want) {
		t.Fatalf("rawReadv = %d, %v; want %d, nil", n, err, len(want))
	}
	got := append(append([]byte{}, in[0]...), in[2]...)[:n]
	if !bytes.Equal(got, want) {
		t.Fatalf("read %x, want %x", got, want)
	}
	if n, err := rawWritev(fds[0], [][]byte{nil, {}}); n != 0 || err != nil {
		t.Fatalf("rawWritev of nothing = %d, %v", n, err)
	}
}
