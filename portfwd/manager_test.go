package portfwd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTCPFastPath(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	srv := startGuestServer(t, "echo")
	fw := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: srv.port, Mode: ModeFast})
	echoTransfer(t, "tcp4", hostAddr(fw, 0), 16<<20)
	if tm.opener.calls.Load() != 1 || tm.dialer.calls.Load() != 0 {
		t.Errorf("opener called %d times, dialer %d; want the fast path once", tm.opener.calls.Load(), tm.dialer.calls.Load())
	}
	waitFor(t, "the relay to end", func() bool { return tm.Stats()[0].Active == 0 })
	c := tm.Stats()[0].Counters
	if c.Connections != 1 || c.Fast != 1 || c.Preserve != 0 || c.BytesToGuest != 16<<20 || c.BytesToHost != 16<<20 || c.Errors != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestTCPPreservePath(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	echo := startGuestServer(t, "echo")
	fw := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: echo.port, Mode: ModePreserve})
	echoTransfer(t, "tcp4", hostAddr(fw, 0), 16<<20)

	// A loopback client appears as the gateway, with its own port.
	peer := startGuestServer(t, "sha")
	fw = addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: peer.port, Mode: ModePreserve})
	c, err := net.Dial("tcp4", hostAddr(fw, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, seen, _ := strings.Cut(string(reply), " ")
	clientPort := c.LocalAddr().(*net.TCPAddr).Port
	if want := netip.AddrPortFrom(testGateway, uint16(clientPort)).String(); seen != want {
		t.Errorf("guest saw the loopback client as %s, want the gateway with the client's port, %s", seen, want)
	}
	if tm.opener.calls.Load() != 0 {
		t.Errorf("preserve mode opened %d namespace sockets", tm.opener.calls.Load())
	}
	for _, s := range tm.Stats() {
		if s.Preserve != 1 || s.Fast != 0 {
			t.Errorf("forward %d counters %+v, want one preserve connection", s.ID, s.Counters)
		}
	}
}

func TestPathChoice(t *testing.T) {
	o, d := &hostOpener{}, &kernelDialer{}
	both := &Manager{cfg: Config{Opener: o, Dialer: d}}
	fastOnly := &Manager{cfg: Config{Opener: o}}
	stackOnly := &Manager{cfg: Config{Dialer: d}}
	lo, lo6, remote := netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("::1"), netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		m      *Manager
		mode   Mode
		client netip.Addr
		want   path
	}{
		{both, ModeAuto, lo, pathFast},
		{both, ModeAuto, lo6, pathFast},
		{both, ModeAuto, netip.MustParseAddr("::ffff:127.0.0.1"), pathFast},
		{both, ModeAuto, remote, pathPreserve},
		{both, ModeFast, remote, pathFast},
		{both, ModePreserve, lo, pathPreserve},
		{fastOnly, ModeAuto, remote, pathFast},
		{stackOnly, ModeAuto, lo, pathPreserve},
	}
	for _, tt := range tests {
		if got := tt.m.pathFor(tt.mode, tt.client); got != tt.want {
			t.Errorf("mode %s, client %v: path %v, want %v", tt.mode, tt.client, got, tt.want)
		}
	}
}

func TestGuestSource(t *testing.T) {
	ap := netip.MustParseAddrPort
	v4, v6 := netip.MustParseAddr("10.0.2.100"), netip.MustParseAddr("fd00::100")
	gw := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.Addr{}, port) }
	tests := []struct {
		client netip.AddrPort
		guest  netip.Addr
		want   netip.AddrPort
	}{
		{ap("192.0.2.7:40000"), v4, ap("192.0.2.7:40000")},
		{ap("[::ffff:192.0.2.7]:40000"), v4, ap("192.0.2.7:40000")},
		{ap("127.0.0.1:40000"), v4, gw(40000)},
		{ap("127.3.4.5:1"), v4, gw(1)},
		{ap("0.0.0.0:5"), v4, gw(5)},
		{ap("[::1]:40000"), v4, gw(40000)},
		{ap("[2001:db8::7]:40000"), v4, gw(40000)},
		{ap("[2001:db8::7]:40000"), v6, ap("[2001:db8::7]:40000")},
		{ap("[::1]:40000"), v6, gw(40000)},
		{ap("192.0.2.7:40000"), v6, gw(40000)},
		{ap("10.0.2.100:40000"), v4, gw(40000)},
		{ap("[fe80::1%eth0]:40000"), v6, ap("[fe80::1]:40000")},
	}
	for _, tt := range tests {
		if got := guestSource(tt.client, tt.guest); got != tt.want {
			t.Errorf("guestSource(%v, %v) = %v, want %v", tt.client, tt.guest, got, tt.want)
		}
	}
}

// TestRefusedResets: with nothing listening at the guest port the client
// is reset at once, on both paths.
func TestRefusedResets(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	closed := freePort(t, "tcp4", "127.0.0.1")
	for _, mode := range []Mode{ModeFast, ModePreserve} {
		t.Run(string(mode), func(t *testing.T) {
			fw := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: closed, Mode: mode})
			// On loopback the reset may even beat the end of connect().
			c, err := net.Dial("tcp4", hostAddr(fw, 0))
			if err == nil {
				defer c.Close()
				// Far below ConnectTimeout: a reset that only came from
				// the timeout would fail this.
				c.SetReadDeadline(time.Now().Add(DefaultConnectTimeout / 2))
				_, err = c.Read(make([]byte, 1))
			}
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read from a forward to a closed guest port: %v, want ECONNRESET", err)
			}
			for _, s := range tm.Stats() {
				if s.ID == fw.ID && (s.Failed != 1 || s.Connections != 0) {
					t.Errorf("counters %+v, want one failed connection", s.Counters)
				}
			}
		})
	}
}

func TestIDs(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	srv := startGuestServer(t, "peer")
	a := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: srv.port})
	b := addFree(t, tm.Manager, Spec{Proto: UDP, GuestPort: srv.port})
	if a.ID != 1 || b.ID != 2 {
		t.Fatalf("ids %d, %d; want 1, 2", a.ID, b.ID)
	}
	// The same port again fails and uses up no id; the same port for the
	// other protocol is fine.
	if _, err := tm.Add(Spec{Proto: TCP, HostAddr: a.Spec.HostAddr, HostPort: a.Spec.HostPort, GuestPort: 1}); !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("second forward on a busy port: %v", err)
	}
	if _, err := tm.Add(Spec{Proto: TCP, GuestPort: 1}); err == nil || !strings.Contains(err.Error(), "host port 0") {
		t.Fatalf("add without a host port: %v", err)
	}
	if err := tm.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := tm.Remove(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v, want ErrNotFound", err)
	}
	if err := tm.Remove(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove of an unknown id: %v", err)
	}
	c := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: srv.port})
	if c.ID != 3 {
		t.Fatalf("id after a remove and a failed add: %d, want 3 (ids are never reused)", c.ID)
	}
	list := tm.List()
	if len(list) != 2 || list[0].ID != 2 || list[1].ID != 3 {
		t.Fatalf("List() = %+v", list)
	}
	want := Spec{Proto: TCP, HostAddr: c.Spec.HostAddr, HostPort: c.Spec.HostPort, GuestAddr: netip.MustParseAddr("127.0.0.1"), GuestPort: srv.port, Count: 1, Mode: ModeAuto}
	if list[1].Spec != want {
		t.Errorf("listed spec %+v, want the defaults filled in: %+v", list[1].Spec, want)
	}
	// The removed forward's port is free again.
	if _, err := net.Dial("tcp4", hostAddr(a, 0)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a removed forward: %v, want ECONNREFUSED", err)
	}
}

func TestRange(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	guestBase := consecutiveGuestServers(t, 3)
	var fw Forward
	var err error
	for range 20 {
		base := freePort(t, "tcp4", "127.0.0.1")
		if base > 65000 {
			continue
		}
		fw, err = tm.Add(Spec{Proto: TCP, HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: base, GuestPort: guestBase, Count: 3})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if fw.Spec.Count != 3 {
		t.Fatalf("count %d", fw.Spec.Count)
	}
	for i := range 3 {
		reply, err := roundTrip(t, "tcp4", hostAddr(fw, i), "")
		if want := "port " + strconv.Itoa(int(guestBase)+i); err != nil || reply != want {
			t.Errorf("port %d of the range: %q, %v; want %q", i, reply, err, want)
		}
	}
	if err := tm.Remove(fw.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := net.Dial("tcp4", hostAddr(fw, i)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("port %d after remove: %v", i, err)
		}
	}
}

// consecutiveGuestServers listens on n consecutive ports of 127.0.0.1,
// each answering "port N", and returns the first.
func consecutiveGuestServers(t *testing.T, n int) uint16 {
	t.Helper()
	for try := range 50 {
		base := 20000 + (int(time.Now().UnixNano())+try*7919)%20000
		var ls []net.Listener
		for i := range n {
			l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) < n {
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		for i, l := range ls {
			done := make(chan struct{})
			t.Cleanup(func() { l.Close(); <-done })
			go func() {
				defer close(done)
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Fprintf(c, "port %d", base+i)
					c.Close()
				}
			}()
		}
		return uint16(base)
	}
	t.Fatal("no free run of consecutive ports")
	return 0
}

func TestIPv6HostToIPv4Guest(t *testing.T) {
	checkGoroutines(t)
	if _, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	tm := newTestManager(t, nil)
	srv := startGuestServer(t, "sha")
	for _, mode := range []Mode{ModeFast, ModePreserve} {
		fw := addFree(t, tm.Manager, Spec{Proto: TCP, HostAddr: netip.MustParseAddr("::1"), GuestPort: srv.port, Mode: mode})
		reply, err := roundTrip(t, "tcp6", hostAddr(fw, 0), "hello")
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		_, peer, _ := strings.Cut(reply, " ")
		wantHost := "127.0.0.1"
		if mode == ModePreserve {
			wantHost = testGateway.String()
		}
		if !strings.HasPrefix(peer, wantHost+":") {
			t.Errorf("%s: guest saw [::1] client as %s, want %s", mode, peer, wantHost)
		}
	}
}

func TestUDP(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, func(c *Config) { c.UDPIdleTimeout = 300 * time.Millisecond })
	port := udpEcho(t)
	for _, mode := range []Mode{ModeFast, ModePreserve} {
		t.Run(string(mode), func(t *testing.T) {
			fw := addFree(t, tm.Manager, Spec{Proto: UDP, GuestPort: port, Mode: mode})
			// Two clients, each must get its own replies.
			var clients []*net.UDPConn
			for range 2 {
				c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(hostAddr(fw, 0))))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clients = append(clients, c)
			}
			for round := range 3 {
				for i, c := range clients {
					msg := fmt.Sprintf("c%d-r%d", i, round)
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write([]byte(msg)); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 1500)
					n, err := c.Read(buf)
					if err != nil {
						t.Fatalf("client %d: %v", i, err)
					}
					got, peer, _ := strings.Cut(string(buf[:n]), " ")
					if got != msg {
						t.Fatalf("client %d got %q, want %q", i, got, msg)
					}
					if mode == ModePreserve {
						want := netip.AddrPortFrom(testGateway, uint16(c.LocalAddr().(*net.UDPAddr).Port)).String()
						if peer != want {
							t.Errorf("guest saw client %d as %s, want %s", i, peer, want)
						}
					}
				}
			}
			st := statsOf(t, tm.Manager, fw.ID)
			if st.Connections != 2 || st.Active != 2 || st.BytesToGuest == 0 || st.BytesToHost == 0 {
				t.Errorf("counters while flows are open: %+v", st)
			}
			if mode == ModeFast && st.Fast != 2 || mode == ModePreserve && st.Preserve != 2 {
				t.Errorf("counters by path: %+v", st)
			}
			// Idle flows end.
			waitFor(t, "idle UDP flows to end", func() bool { return statsOf(t, tm.Manager, fw.ID).Active == 0 })
			// A datagram after that opens a new flow.
			if _, err := clients[0].Write([]byte("again")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			if n, err := clients[0].Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "again ") {
				t.Fatalf("after the idle timeout: %q, %v", buf[:n], err)
			}
			if err := tm.Remove(fw.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUDPWildcardReplySource: a forward on 0.0.0.0 answers from the
// address the client sent to.
func TestUDPWildcardReplySource(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	port := udpEcho(t)
	fw := addFree(t, tm.Manager, Spec{Proto: UDP, HostAddr: netip.IPv4Unspecified(), GuestPort: port})
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), fw.Spec.HostPort)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := pc.WriteToUDPAddrPort([]byte("x"), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := pc.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if from != to {
		t.Errorf("reply to a datagram sent to %v came from %v (%q)", to, from, buf[:n])
	}
}

func statsOf(t *testing.T, m *Manager, id int) Counters {
	t.Helper()
	for _, s := range m.Stats() {
		if s.ID == id {
			return s.Counters
		}
	}
	t.Fatalf("no forward %d in Stats", id)
	return Counters{}
}

// TestAddRemoveDuringTransfer: forwards come and go while another forward
// carries a transfer, which must complete intact; removing a forward with
// an open connection leaves that connection running.
func TestAddRemoveDuringTransfer(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	echo := startGuestServer(t, "echo")
	main := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: echo.port})
	mid := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: echo.port, Mode: ModePreserve})

	midConn, err := net.Dial("tcp4", hostAddr(mid, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer midConn.Close()
	midConn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := midConn.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(midConn, buf); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		echoTransfer(t, "tcp4", hostAddr(main, 0), 32<<20)
	}()
	for i := range 20 {
		fw := addFree(t, tm.Manager, Spec{Proto: Proto([]string{"tcp", "udp"}[i%2]), GuestPort: echo.port})
		if err := tm.Remove(fw.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := tm.Remove(mid.ID); err != nil {
		t.Fatal(err)
	}
	<-done
	// The removed forward's connection still works.
	if _, err := midConn.Write([]byte("after!")); err != nil {
		t.Fatalf("write on a removed forward's connection: %v", err)
	}
	if _, err := io.ReadFull(midConn, buf); err != nil || string(buf) != "after!" {
		t.Fatalf("read on a removed forward's connection: %q, %v", buf, err)
	}
	if _, err := net.Dial("tcp4", hostAddr(mid, 0)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a removed forward: %v", err)
	}
}

// TestCloseResetsConnections: Close ends open connections and waits for
// every goroutine (checkGoroutines).
func TestCloseResetsConnections(t *testing.T) {
	checkGoroutines(t)
	tm := newTestManager(t, nil)
	echo := startGuestServer(t, "echo")
	fw := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: echo.port})
	port := udpEcho(t)
	ufw := addFree(t, tm.Manager, Spec{Proto: UDP, GuestPort: port})
	c, err := net.Dial("tcp4", hostAddr(fw, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	u, err := net.Dial("udp4", hostAddr(ufw, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(10 * time.Second))
	u.Write([]byte("x"))
	u.Read(make([]byte, 100))

	tm.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after Close")
	}
	if _, err := tm.Add(Spec{Proto: TCP, HostPort: 1, GuestPort: 1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

func TestModeNeedsPath(t *testing.T) {
	m, err := New(Config{Dialer: &kernelDialer{}, Guest: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Add(Spec{Proto: TCP, HostPort: 1, GuestPort: 1, Mode: ModeFast}); !errors.Is(err, ErrPathUnavailable) {
		t.Errorf("fast mode without an opener: %v", err)
	}
	if _, err := New(Config{Guest: netip.MustParseAddr("127.0.0.1")}); err == nil {
		t.Error("New without a data path succeeded")
	}
}

func TestPrivilegedPortMessage(t *testing.T) {
	err := annotateListenError(&net.OpError{Op: "listen", Net: "tcp4", Err: syscall.EACCES}, "tcp4", "0.0.0.0:80", 80)
	for _, want := range []string{"privileged", "sysctl -w net.ipv4.ip_unprivileged_port_start=80", "setcap cap_net_bind_service=+ep"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("%v does not wrap EACCES", err)
	}
}

// TestTCPClosesSockets checks that a forward closes both sockets of every
// connection that ended with a FIN each way (a batch at a time, see
// package lazyclose): the process's sockets come back down.
func TestTCPClosesSockets(t *testing.T) {
	// With the collector off no forgotten socket is closed by its
	// *os.File's cleanup instead.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, mode := range []Mode{ModeFast, ModePreserve} {
		t.Run(string(mode), func(t *testing.T) {
			tm := newTestManager(t, nil)
			srv := startGuestServer(t, "echo")
			fw := addFree(t, tm.Manager, Spec{Proto: TCP, GuestPort: srv.port, Mode: mode})
			before := openSockets(t)
			const conns = 20
			for i := range conns {
				if got, err := roundTrip(t, "tcp4", hostAddr(fw, 0), "hello"); err != nil || got != "hello" {
					t.Fatalf("connection %d: %q, %v", i, got, err)
				}
			}
			waitFor(t, "the relays to end", func() bool { return tm.Stats()[0].Active == 0 })
			waitFor(t, "the forwarded connections' sockets to be closed", func() bool { return openSockets(t) <= before })
		})
	}
}

// openSockets counts the process's open socket descriptors.
func openSockets(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
