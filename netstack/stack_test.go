package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestTCPToHostLoopbackThroughGateway(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true})
	l, port := hostListener(t)

	// The host side echoes the SHA-256 of everything it reads after the
	// guest half-closes, then closes: both half-closes are exercised.
	type result struct {
		peer string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			done <- result{err: err}
			return
		}
		_, err = c.Write(h.Sum(nil))
		done <- result{peer: c.RemoteAddr().String(), err: err}
	}()

	c, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatalf("guest connect to gateway: %v", err)
	}
	defer c.Close()
	data := make([]byte, 8<<20)
	rand.Read(data)
	if _, err := c.Write(data); err != nil {
		t.Fatalf("guest write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("guest half-close: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("guest read: %v", err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("host saw different bytes: digest %x, want %x", got, want)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("host side: %v", r.err)
	}
	if host, _, _ := net.SplitHostPort(r.peer); host != "127.0.0.1" {
		t.Fatalf("host saw the connection from %s, want 127.0.0.1", r.peer)
	}
}

func TestTCPRefusedIsReset(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true})
	_, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, closedPort(t)))
	if !isErr(err, "refused") {
		t.Fatalf("connect to a closed host port: err = %v, want connection refused", err)
	}
}

func TestTCPHostLoopbackDisabled(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: false, ServeDNS: true})
	l, port := hostListener(t)
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	_, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
	if !isErr(err, "unreachable") {
		t.Errorf("connect to the gateway with host loopback disabled: err = %v, want network unreachable", err)
	}
	// A guest can also write frames addressed to 127.0.0.1 itself; the stack
	// drops them as martians before any forwarder sees them.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := env.dialTCP(ctx, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err == nil {
		c.Close()
		t.Errorf("connect to 127.0.0.1 from the guest succeeded")
	}
	select {
	case <-accepted:
		t.Fatal("the host loopback listener accepted a connection")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestTCPOtherPortOnDNSAddressRefused(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true})
	_, err := env.dialTCP(testContext(t), netip.AddrPortFrom(dnsAddr, 80))
	if !isErr(err, "unreachable") {
		t.Fatalf("connect to DNS address port 80: err = %v, want network unreachable", err)
	}
}

func TestUDPThroughGateway(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), addr)
		}
	}()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	c, err := env.dialUDP(netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65535)
	for i, size := range []int{1, 1400, 30000} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, size)
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("guest send: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("guest receive %d-byte reply: %v", size, err)
		}
		if !bytes.Equal(buf[:n], append([]byte("echo:"), msg...)) {
			t.Fatalf("reply of %d bytes differs", n)
		}
	}
	if got := env.stack.udp.count(); got != 1 {
		t.Fatalf("UDP flows = %d, want 1 (one flow for all datagrams)", got)
	}
}

func TestUDPIdleFlowExpires(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true, UDPIdleTimeout: 200 * time.Millisecond})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := env.dialUDP(netip.AddrPortFrom(gatewayAddr, uint16(pc.LocalAddr().(*net.UDPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	buf := make([]byte, 10)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := pc.ReadFrom(buf); err != nil {
		t.Fatalf("host did not get the datagram: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for env.stack.udp.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle flow still tracked after 10s (timeout 200ms)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUDPFlowLimit(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true, MaxUDPFlows: 2})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	for i := 0; i < 4; i++ {
		c, err := env.dialUDP(netip.AddrPortFrom(gatewayAddr, port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{byte(i)})
	}
	got := map[byte]bool{}
	buf := make([]byte, 10)
	for {
		pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		got[buf[n-1]] = true
	}
	if len(got) != 2 || env.stack.udp.count() != 2 {
		t.Fatalf("with a limit of 2 flows the host got datagrams from %d flows and %d are tracked", len(got), env.stack.udp.count())
	}
}

func TestCloseEndsLiveConnections(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true, ServeDNS: true})
	l, port := hostListener(t)
	hostSide := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			hostSide <- c
		}
	}()
	c, err := env.dialTCP(testContext(t), netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hc := <-hostSide
	defer hc.Close()
	env.stack.Close()
	hc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := hc.Read(make([]byte, 1)); err == nil {
		t.Fatal("host connection still open after Close")
	}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

// TestUDPRefusedReachesGuest checks that a host port with nothing behind
// it shows in the guest as it does on a real network: the host's ICMP port
// unreachable for the flow's first datagram becomes one from the gateway.
func TestUDPRefusedReachesGuest(t *testing.T) {
	env := newTestEnv(t, Config{HostLoopback: true})
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	pc.Close()
	c, err := env.dialUDP(netip.AddrPortFrom(gatewayAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	unreachable := env.guest.Stats().ICMP.V4.PacketsReceived.DstUnreachable
	deadline := time.Now().Add(5 * time.Second)
	for unreachable.Value() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if unreachable.Value() == 0 {
		t.Fatal("the guest got no ICMP destination unreachable for a datagram to a closed host port")
	}
}
