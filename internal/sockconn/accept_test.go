package sockconn

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestListener accepts a connection from each address family: the Conn
// carries the client's address and moves bytes both ways, and Close ends
// a waiting Accept with net.ErrClosed and the listening socket.
func TestListener(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			tl, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("listen %s: %v", addr, err)
			}
			l, err := NewListener(tl.(*net.TCPListener))
			if err != nil {
				tl.Close()
				t.Fatal(err)
			}
			defer l.Close()
			type result struct {
				c   *Conn
				err error
			}
			got := make(chan result, 1)
			go func() {
				c, err := l.AcceptConn()
				got <- result{c, err}
			}()
			client, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			var r result
			select {
			case r = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("Accept returned nothing within 10s")
			}
			if r.err != nil {
				t.Fatalf("Accept: %v", r.err)
			}
			c := r.c
			defer c.Close()
			want := client.LocalAddr().(*net.TCPAddr).AddrPort()
			if gotAddr := c.RemoteAddr().(*net.TCPAddr).AddrPort(); gotAddr != want {
				t.Errorf("RemoteAddr = %v, want %v", gotAddr, want)
			}
			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
				t.Fatalf("read %q, %v; want ping", b, err)
			}
			if _, err := c.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			_ = client.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(client, b); err != nil || string(b) != "pong" {
				t.Fatalf("client read %q, %v; want pong", b, err)
			}
			// Close wakes a waiting Accept with net.ErrClosed and
			// closes the listening socket itself.
			waiting := make(chan error, 1)
			go func() {
				_, err := l.AcceptConn()
				waiting <- err
			}()
			l.Close()
			select {
			case err := <-waiting:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept during Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not wake Accept within 10s")
			}
			if c, err := net.Dial("tcp", tl.Addr().String()); err == nil {
				c.Close()
				t.Error("the listening socket still accepts connections after Close")
			}
			// Through net.Listener, a failed Accept is a nil interface.
			var nl net.Listener = l
			if c, err := nl.Accept(); err == nil || c != nil {
				t.Errorf("Accept after Close = %v, %v; want a nil net.Conn and an error", c, err)
			}
		})
	}
}
