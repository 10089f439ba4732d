package sockconn

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func TestDialTCP(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("hi " + c.RemoteAddr().String()))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := l.Addr().(*net.TCPAddr).AddrPort()
	c, err := DialTCP(ctx, netip.MustParseAddrPort("127.0.0.2:0"), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if want := "hi 127.0.0.2:"; len(b) < len(want) || string(b[:len(want)]) != want {
		t.Fatalf("server said %q, want it to see the bound source 127.0.0.2", b)
	}
}

func TestDialTCPRefused(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dst := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	_, err = DialTCP(context.Background(), netip.AddrPort{}, dst)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want ECONNREFUSED", err)
	}
}

func TestDialTCPCancelled(t *testing.T) {
	// A context that is already cancelled ends the dial (to a closed
	// loopback port here) with an error either way.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := DialTCP(ctx, netip.AddrPort{}, netip.MustParseAddrPort("127.0.0.1:1"))
	if err == nil {
		t.Fatal("dial with a cancelled context succeeded")
	}
}
