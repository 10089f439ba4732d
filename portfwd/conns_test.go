package portfwd

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Conns lists each open connection and UDP flow of the forwards with its
// path, client, guest address and live byte counts; a removed forward's
// connections stay listed until they end.
func TestConns(t *testing.T) {
	tm := newTestManager(t, nil)
	echo := startGuestServer(t, "echo")
	udp := udpEcho(t)
	fast := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: echo.port, Mode: ModeFast})
	preserve := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: echo.port, Mode: ModePreserve})
	uf := addFree(t, tm.Manager, Spec{Proto: UDP, GuestPort: udp})

	// open connects to a forward and has "hello" echoed once.
	open := func(fw Forward) net.Conn {
		c, err := net.DialTimeout("tcp4", hostAddr(fw, 0), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "hello"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	fc, pc := open(fast), open(preserve)
	uc, err := net.Dial("udp4", hostAddr(uf, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := uc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 100)
	n, err := uc.Read(reply)
	if err != nil {
		t.Fatal(err)
	}

	guest := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port) }
	want := map[int]Conn{
		fast.ID:     {Forward: fast.ID, Proto: TCP, Path: "fast", Client: addrPortOf(fc.LocalAddr()), Guest: guest(echo.port), ToGuest: 5, ToHost: 5},
		preserve.ID: {Forward: preserve.ID, Proto: TCP, Path: "preserve", Client: addrPortOf(pc.LocalAddr()), Guest: guest(echo.port), ToGuest: 5, ToHost: 5},
		uf.ID:       {Forward: uf.ID, Proto: UDP, Path: "fast", Client: addrPortOf(uc.LocalAddr()), Guest: guest(udp), ToGuest: 4, ToHost: uint64(n)},
	}
	matches := func(got []Conn, want map[int]Conn) bool {
		if len(got) != len(want) {
			return false
		}
		for _, c := range got {
			w, ok := want[c.Forward]
			if c.Started.IsZero() || time.Since(c.Started) > time.Minute {
				return false
			}
			c.Started = time.Time{}
			if !ok || c != w {
				return false
			}
		}
		return true
	}
	// The relays count after writing, so the numbers may trail the echo
	// by a moment: poll for up to 10 s.
	got := tm.Conns()
	for deadline := time.Now().Add(10 * time.Second); !matches(got, want) && time.Now().Before(deadline); got = tm.Conns() {
		time.Sleep(20 * time.Millisecond)
	}
	if !matches(got, want) {
		t.Fatalf("Conns = %+v, want %+v", got, want)
	}

	if err := tm.Remove(preserve.ID); err != nil {
		t.Fatal(err)
	}
	if got := tm.Conns(); !matches(got, want) {
		t.Errorf("after removing forward %d: Conns = %+v; its connection runs on and must stay listed", preserve.ID, got)
	}
	pc.Close()
	delete(want, preserve.ID)
	waitFor(t, "the closed connection to leave Conns", func() bool { return matches(tm.Conns(), want) })
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
