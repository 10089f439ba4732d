package netstack

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// TestDialTCPWaitReadable dials a server in the guest from a forwarded
// client's address, as a port forward's preserve path does, and waits for
// data without reading it.
func TestDialTCPWaitReadable(t *testing.T) {
	env := newTestEnv(t, Config{})
	l, err := gonet.ListenTCP(env.guest, toFull1(netip.AddrPortFrom(guestAddr, 8080)), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type accepted struct {
		addr string
		c    *gonet.TCPConn
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			acc <- accepted{}
			return
		}
		acc <- accepted{c.RemoteAddr().String(), c.(*gonet.TCPConn)}
	}()

	client := netip.MustParseAddrPort("192.0.2.7:40000")
	c, err := env.stack.DialTCP(testContext(t), client, netip.AddrPortFrom(guestAddr, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := <-acc
	if a.c == nil {
		t.Fatal("the guest accepted nothing")
	}
	defer a.c.Close()
	if a.addr != client.String() {
		t.Errorf("the guest sees the client as %s, want %s", a.addr, client)
	}

	w, ok := c.(interface{ WaitReadable() error })
	if !ok {
		t.Fatalf("%T cannot wait for data", c)
	}
	waited := make(chan error, 1)
	go func() { waited <- w.WaitReadable() }()
	select {
	case err := <-waited:
		t.Fatalf("WaitReadable returned (%v) before the guest sent anything", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := a.c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitReadable did not return after the guest sent data")
	}
	// The data is still there to read.
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v; want \"hi\"", b, err)
	}

	// Closing the connection ends a wait too.
	go func() { waited <- w.WaitReadable() }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end WaitReadable")
	}
}

func TestDialTCPRefusedByGuest(t *testing.T) {
	env := newTestEnv(t, Config{})
	// Nothing listens on the guest's port 8081: the guest answers RST.
	_, err := env.stack.DialTCP(testContext(t), netip.AddrPort{}, netip.AddrPortFrom(guestAddr, 8081))
	if err == nil {
		t.Fatal("dial to a closed guest port succeeded")
	}
}
