package netstack

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestTCPRelayPingPong exchanges many small messages of changing sizes, so
// that the guest side's pump starts, drains and goes idle again over and
// over; every byte must arrive, in order. Host connections without a
// descriptor take the pump's other path (a copy through a buffer).
func TestTCPRelayPingPong(t *testing.T) {
	t.Run("socket", func(t *testing.T) { testPingPong(t, nil) })
	t.Run("no descriptor", func(t *testing.T) {
		testPingPong(t, func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr.String())
			if err != nil {
				return nil, err
			}
			// Hides SyscallConn; keeps CloseWrite for the half-close.
			return struct {
				net.Conn
				closeWriter
			}{c, c.(*net.TCPConn)}, nil
		})
	})
}

func testPingPong(t *testing.T, dial DialFunc) {
	env := newTestEnv(t, Config{HostLoopback: true, Dial: dial})
	l, port := hostListener(t)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatalf("guest connect: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, 3000)
	got := make([]byte, len(msg))
	for i := range 500 {
		n := 1 + (i*37)%len(msg)
		for j := range n {
			msg[j] = byte(i + j)
		}
		if _, err := c.Write(msg[:n]); err != nil {
			t.Fatalf("exchange %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(c, got[:n]); err != nil {
			t.Fatalf("exchange %d: read: %v", i, err)
		}
		if !bytes.Equal(got[:n], msg[:n]) {
			t.Fatalf("exchange %d: echoed bytes differ", i)
		}
	}
}

// TestTCPRelayIdleGoroutines checks what an idle connection keeps: one
// relay goroutine (the host side), and none for the guest side.
func TestTCPRelayIdleGoroutines(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true})
	l, port := hostListener(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		accepted <- c
	}()
	c, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatalf("guest connect: %v", err)
	}
	defer c.Close()
	var h net.Conn
	select {
	case h = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("host never accepted the connection")
	}
	defer h.Close()
	// One byte each way, so that both sides have run.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_ = h.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(h, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte{2}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	var relays, pumps int
	deadline := time.Now().Add(5 * time.Second)
	for {
		relays, pumps = countStacks("netstack.(*tcpForwarder).relay"), countStacks("netstack.(*toHostPump).run")
		if relays == 1 && pumps == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if relays != 1 || pumps != 0 {
		t.Fatalf("idle connection has %d relay and %d pump goroutines, want 1 and 0", relays, pumps)
	}
	// The handshake's goroutine is gone too.
	if n := countStacks("netstack.(*tcpForwarder).handleRequest"); n != 0 {
		t.Fatalf("%d handshake goroutines still running, want 0", n)
	}
}

// countStacks counts the goroutines running fn (it is on their stack).
func countStacks(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			// "created by F" names the parent, not a frame of g.
			if strings.Contains(line, fn) && !strings.HasPrefix(line, "created by ") {
				count++
				break
			}
		}
	}
	return count
}

// TestTCPRelayHostToGuestBulk sends 16 MiB from the host to a guest that
// starts reading only after a pause, so that the endpoint's send buffer
// fills and the relay waits for room with bytes left in the host socket;
// every byte must arrive, in order, and the host's end of stream must
// reach the guest.
func TestTCPRelayHostToGuestBulk(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true})
	l, port := hostListener(t)
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(data)
	}()
	c, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatalf("guest connect: %v", err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("guest read after %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("the guest got %d bytes that differ from the %d sent", len(got), len(data))
	}
}

// closeCounted is a host connection that counts its closes.
type closeCounted struct {
	*net.TCPConn
	closes chan struct{}
}

func (c *closeCounted) Close() error {
	c.closes <- struct{}{}
	return c.TCPConn.Close()
}

// TestTCPRelayClosesHostSocket checks that the relay closes its host
// socket when the connection ends with a FIN each way (a batch at a time,
// see lazyclose) and when the host resets it.
func TestTCPRelayClosesHostSocket(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := map[bool]string{false: "FIN both ways", true: "host reset"}[reset]
		t.Run(name, func(t *testing.T) {
			closes := make(chan struct{}, 4)
			env := newTestEnv(t, Config{HostLoopback: true, Dial: func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, network, addr.String())
				if err != nil {
					return nil, err
				}
				return &closeCounted{TCPConn: c.(*net.TCPConn), closes: closes}, nil
			}})
			l, port := hostListener(t)
			accepted := make(chan *net.TCPConn, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted <- c.(*net.TCPConn)
			}()
			c, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
			if err != nil {
				t.Fatalf("guest connect: %v", err)
			}
			defer c.Close()
			var h *net.TCPConn
			select {
			case h = <-accepted:
			case <-time.After(10 * time.Second):
				t.Fatal("the host side accepted nothing within 10s")
			}
			defer h.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if reset {
				_ = h.SetLinger(0)
				h.Close()
				if _, err := io.ReadAll(c); err == nil {
					t.Error("the guest saw a clean end of stream, want a reset")
				}
			} else {
				_ = c.CloseWrite()
				_ = h.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadAll(h); err != nil {
					t.Fatalf("host side waiting for the guest's FIN: %v", err)
				}
				h.Close()
				if _, err := io.ReadAll(c); err != nil {
					t.Fatalf("guest side waiting for the host's FIN: %v", err)
				}
			}
			select {
			case <-closes:
			case <-time.After(10 * time.Second):
				t.Fatal("the relay did not close its host socket within 10s")
			}
		})
	}
}
