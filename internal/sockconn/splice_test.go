package sockconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := l.AcceptTCP()
		acc <- c
	}()
	a, err := net.DialTCP("tcp4", nil, l.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		a.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func rawConn(t *testing.T, c syscall.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestSplice(t *testing.T) {
	// client → (in) splice (out) → server
	client, in := tcpPair(t)
	out, server := tcpPair(t)

	want := make([]byte, 5<<20+123)
	for i := range want {
		want[i] = byte(i * 13)
	}
	go func() {
		client.Write(want)
		client.CloseWrite()
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()

	// A limit below the data stops there, without error.
	n, err := Splice(rawConn(t, out), rawConn(t, in), 3<<20)
	if n != 3<<20 || err != nil {
		t.Fatalf("Splice with a 3 MiB limit = %d, %v; want %d, nil", n, err, 3<<20)
	}
	// The rest, then io.EOF when the client half-closes.
	n2, err := Splice(rawConn(t, out), rawConn(t, in), 1<<30)
	if n+n2 != int64(len(want)) || err != io.EOF {
		t.Fatalf("Splice to the end moved %d in all, %v; want %d, io.EOF", n+n2, err, len(want))
	}
	out.CloseWrite()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("server got %d bytes, not the %d sent (or different ones)", len(b), len(want))
	}
}

func TestSpliceClosedDestination(t *testing.T) {
	client, in := tcpPair(t)
	out, _ := tcpPair(t)
	if _, err := client.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	outRC := rawConn(t, out)
	out.Close()
	_, err := Splice(outRC, rawConn(t, in), 1<<20)
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Splice to a closed socket: %v, want net.ErrClosed", err)
	}
	// The pipe that still held the bytes was not pooled: the next splice
	// starts empty and moves only its own bytes.
	client2, in2 := tcpPair(t)
	out2, server2 := tcpPair(t)
	client2.Write([]byte("fresh"))
	client2.CloseWrite()
	if n, err := Splice(rawConn(t, out2), rawConn(t, in2), 1<<20); n != 5 || err != io.EOF {
		t.Fatalf("next Splice = %d, %v; want 5, io.EOF", n, err)
	}
	out2.CloseWrite()
	if b, _ := io.ReadAll(server2); string(b) != "fresh" {
		t.Fatalf("next connection got %q, want \"fresh\"", b)
	}
}

// TestSplicePipesClosedWhenDropped checks that pooled pipes do not leak
// their descriptors when the pool drops them (a sync.Pool empties over two
// garbage collections).
func TestSplicePipesClosedWhenDropped(t *testing.T) {
	// Empty the pool first (it may hold pipes of other tests), so that
	// the pipes below are new.
	for range 3 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	before := openFDs(t)
	var pipes []*splicePipe
	for range 8 {
		p, err := getPipe()
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, p)
	}
	if got := openFDs(t); got < before+16 {
		t.Fatalf("%d descriptors open with 8 pipes, want at least %d", got, before+16)
	}
	for _, p := range pipes {
		putPipe(p)
	}
	pipes = nil
	// Cleanups run on their own goroutine after the collection that
	// frees the pipe: poll, bounded.
	for i := 0; i < 100 && openFDs(t) > before; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := openFDs(t); got > before {
		t.Fatalf("%d descriptors open after the pool dropped its pipes, want %d", got, before)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
