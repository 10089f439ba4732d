package sockconn

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestQueued(t *testing.T) {
	c, peer := connPair(t, "tcp4", "127.0.0.1:0")
	q, ok := NewQueued(c)
	if !ok {
		t.Fatal("NewQueued refused a *Conn")
	}
	if n, err := q.Fill(); n != 0 || err != nil {
		t.Fatalf("Fill of an empty socket = %d, %v; want 0, nil", n, err)
	}
	want := pattern(0, 100000)
	if _, err := peer.Write(want); err != nil {
		t.Fatal(err)
	}
	// Fill counts what has arrived; reading it all, in pieces, takes
	// exactly that much, and then the round ends with io.EOF.
	var got []byte
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		n, err := q.Fill()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		b, err := io.ReadAll(io.LimitReader(q, int64(n)+1))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != n || q.Len() != 0 {
			t.Fatalf("read %d bytes of the %d counted, %d left", len(b), n, q.Len())
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(want))
	}
	if n, err := q.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read past the counted bytes = %d, %v; want 0, io.EOF", n, err)
	}

	// Bytes counted but not there any more (the socket closed under the
	// round): an error, not io.EOF, and it sticks.
	if _, err := peer.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000 && q.Len() == 0; i++ {
		if _, err := q.Fill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	c2, peer2 := connPair(t, "tcp4", "127.0.0.1:0")
	q2, _ := NewQueued(c2)
	if _, err := peer2.Write([]byte("xyz")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000 && q2.Len() == 0; i++ {
		if _, err := q2.Fill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	c2.Close()
	if n, err := q2.Read(make([]byte, 10)); n != 0 || err == nil || err == io.EOF {
		t.Fatalf("Read of a closed socket's counted bytes = %d, %v; want an error other than io.EOF", n, err)
	}
	if _, err := q2.Read(nil); err == nil || err == io.EOF {
		t.Fatalf("the error did not stick: %v", err)
	}
	if b, err := io.ReadAll(io.LimitReader(q, 3)); err != nil || string(b) != "abc" {
		t.Fatalf("read %q, %v; want \"abc\"", b, err)
	}

	// At the end of the stream nothing is queued.
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	if n, err := q.Fill(); n != 0 || err != nil {
		t.Fatalf("Fill at the end of the stream = %d, %v; want 0, nil", n, err)
	}
	if _, ok := NewQueued(struct{ net.Conn }{c}); ok {
		t.Fatal("NewQueued accepted a connection without a descriptor")
	}
}
