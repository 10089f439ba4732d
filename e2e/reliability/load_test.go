package reliability

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// gw is the gateway: the host's loopback as the guest sees it.
const gw = "10.0.2.2"

// loadArgs are the daemon options of the load scenarios: the MTU podman and
// rootlesskit use.
var loadArgs = []string{"-c", "--mtu=65520"}

// baseline warms the daemon up with a few echoed connections (so that
// what the first connection sets up once is not counted as growth) and
// returns its usage then.
func baseline(t *testing.T, e *env) usage {
	t.Helper()
	srv := startServer(t, e.router, echo)
	if r := runGuest(t, e.guest, time.Minute, "echo", srv.via(gw), "4", "65536"); r.OK != 4 {
		t.Fatalf("warm-up: %+v", r)
	}
	waitFor(t, 10*time.Second, "the warm-up connections to close", func() bool { return e.d.stats(t).TCPActive == 0 })
	return e.d.usage(t)
}

// TestLoadConcurrentConnections: 2,000 guest connections open at once to a
// host loopback server through 10.0.2.2, every one echoing 64 KiB intact.
func TestLoadConcurrentConnections(t *testing.T) {
	const conns, size = 2000, 64 << 10
	e := newEnv(t, envOpts{load: true, args: loadArgs})
	srv := startServer(t, e.router, echo)
	base := baseline(t, e)
	s := e.d.sample(t)

	g := startGuest(t, e.guest, "echo", srv.via(gw), strconv.Itoa(conns), strconv.Itoa(size), "hold")
	opened := g.ready(t, 2*time.Minute)
	// Every connection is open at the guest; the host must see them all
	// open at once before any data moves.
	waitFor(t, time.Minute, "the host server to hold every connection", func() bool {
		active, _, _ := srv.counts()
		return active == conns
	})
	r := g.result(t, 3*time.Minute)
	peak := s.end()
	if r.OK != conns || r.Failed != 0 {
		t.Fatalf("%d of %d connections echoed intact; failures %v: %q", r.OK, conns, r.Kinds, r.Errors)
	}
	st := e.d.stats(t)
	after, rssBack := e.d.settledRSS(t, base, 30*time.Second)
	figure(t, "%d concurrent connections opened in %.1fs, then %d KiB echoed through each in %.1fs; %d SYNs dropped at the pending limit (guest retried); daemon before: %v; peak: %v; after: %v",
		conns, opened.Seconds, size>>10, r.Seconds, st.TCPDropped, base, peak, after)
	noGoroutineLeak(t, e)
	rssBug(t, rssBack, base, peak, after, heldByRelays)
}

// shortConnCount is how many short connections TestLoadShortConnections
// makes: SLIRP_RELIABILITY_SHORT_CONNS, default defaultShortConns.
func shortConnCount(t *testing.T) int {
	if v := os.Getenv("SLIRP_RELIABILITY_SHORT_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("SLIRP_RELIABILITY_SHORT_CONNS=%q is not a positive count", v)
		}
		return n
	}
	return defaultShortConns
}

// defaultShortConns is the count CI runs: see docs/reliability.md for the
// rate measured on a 2-core machine.
const defaultShortConns = 100000

// TestLoadShortConnections: short connections one after another (connect,
// one byte each way, close), every one answered.
func TestLoadShortConnections(t *testing.T) {
	n := shortConnCount(t)
	e := newEnv(t, envOpts{load: true, args: loadArgs})
	// Sixteen server ports: a guest that closes first keeps each
	// connection in TIME_WAIT for a minute, and its 28,232 ephemeral ports
	// are per destination; the rotation leaves room for any count here.
	var addrs []string
	var srvs []*hostServer
	for range 16 {
		srv := startServer(t, e.router, plusOne)
		srvs = append(srvs, srv)
		addrs = append(addrs, srv.via(gw))
	}
	base := baseline(t, e)
	s := e.d.sample(t)

	r := runGuest(t, e.guest, 9*time.Minute, "short", strings.Join(addrs, ","), strconv.Itoa(n))
	peak := s.end()
	if r.OK != n || r.Failed != 0 {
		t.Fatalf("%d of %d short connections worked; failures %v: %q", r.OK, n, r.Kinds, r.Errors)
	}
	after, rssBack := e.d.settledRSS(t, base, 30*time.Second)
	figure(t, "%d short connections in %.1fs (%.0f/s); daemon before: %v; peak: %v; after: %v",
		n, r.Seconds, float64(n)/r.Seconds, base, peak, after)
	noGoroutineLeak(t, e)
	rssBug(t, rssBack, base, peak, after, heldByRelays)
}

// TestLoadUDPFlood: a guest floods UDP from one source port as fast as it
// can for 8 s, and meanwhile from 5,000 others (more flows than the
// daemon's table of 4,096 holds). The daemon drops the flows beyond its
// limit and says so in its log, keeps serving TCP meanwhile, and ends
// every flow once it has been idle for its timeout.
func TestLoadUDPFlood(t *testing.T) {
	const flows, seconds = 5000, 8
	e := newEnv(t, envOpts{load: true, args: loadArgs})
	// Port 53, because flows to it idle out after 30 s (the daemon's
	// DNS idle timeout) rather than 240 s, so the table empties while the
	// test waits.
	sink := startUDPEcho(t, e.router, "127.0.0.1:53")
	srv := startServer(t, e.router, echo)
	base := baseline(t, e)
	s := e.d.sample(t)

	flood := startGuest(t, e.guest, "udp-flood", gw+":53", strconv.Itoa(flows), strconv.Itoa(seconds), "1400")
	waitFor(t, time.Minute, "the UDP table to fill", func() bool { return e.d.stats(t).UDPDropped > 0 })
	// The flood goes on: TCP must work through it.
	tcp := runGuest(t, e.guest, 2*time.Minute, "echo", srv.via(gw), "8", strconv.Itoa(4<<20))
	full := e.d.stats(t)
	fr := flood.result(t, time.Minute)
	peak := s.end()
	if tcp.OK != 8 {
		t.Errorf("TCP during the UDP flood: %d of 8 connections echoed 4 MiB intact; failures %v: %q", tcp.OK, tcp.Kinds, tcp.Errors)
	}
	if full.UDPActive > 4096 || fr.OK > 4096 {
		t.Errorf("the daemon tracks %d UDP flows and answered %d, more than its limit of 4096", full.UDPActive, fr.OK)
	}
	if fr.OK < 4096*9/10 {
		t.Errorf("only %d of %d UDP flows were answered; the table holds 4096", fr.OK, flows)
	}
	if !strings.Contains(e.d.stderr.String(), "UDP flow dropped: connection-tracking table full") {
		t.Errorf("the daemon did not log that its UDP table was full")
	}
	if sink.received.Load() == 0 {
		t.Errorf("no datagram of the flood reached the host")
	}
	// After the flood, a new connection works at once.
	if r := runGuest(t, e.guest, time.Minute, "echo", srv.via(gw), "1", "1000"); r.OK != 1 {
		t.Errorf("TCP after the UDP flood: %+v", r)
	}
	after, rssBack := e.d.settledRSS(t, base, 75*time.Second)
	st := e.d.stats(t)
	figure(t, "%s datagrams of 1400 bytes from one flow in %ds and %d more flows (%d answered, %d opened, %d datagrams dropped at the table limit); %d datagrams reached the host; daemon before: %v; peak: %v; after: %v",
		fr.Reply, seconds, flows, fr.OK, st.UDPOpened, st.UDPDropped, sink.received.Load(), base, peak, after)
	noGoroutineLeak(t, e)
	rssBug(t, rssBack, base, peak, after, heldByFlows)
}

// TestLoadGuestNeverReads: 50 guest connections that are never read while
// the host writes into each as fast as it can, up to 64 MiB. Backpressure
// must stop every host writer long before that, the daemon's memory must
// stay bounded (here: under 4 MiB a connection), and other connections
// keep working.
func TestLoadGuestNeverReads(t *testing.T) {
	const conns, limit = 50, 64 << 20
	e := newEnv(t, envOpts{load: true, args: loadArgs})
	f := &flooder{limit: limit}
	fsrv := startServer(t, e.router, f.serve)
	srv := startServer(t, e.router, echo)
	base := baseline(t, e)
	s := e.d.sample(t)

	g := startGuest(t, e.guest, "stall", fsrv.via(gw), strconv.Itoa(conns))
	g.ready(t, time.Minute)
	// The writers have stalled when two seconds pass without progress.
	deadline := time.Now().Add(time.Minute)
	last, still := int64(-1), 0
	for still < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the host writers still make progress after a minute: %d bytes written", f.written.Load())
		}
		time.Sleep(time.Second)
		if w := f.written.Load(); w == last {
			still++
		} else {
			last, still = w, 0
		}
	}
	stalled := e.d.usage(t)
	if n := f.full.Load(); n > 0 {
		t.Errorf("%d host writers got all %d MiB into a connection the guest never reads", n, limit>>20)
	}
	growth := stalled.RSSKiB - base.RSSKiB
	if growth > conns*4<<10 {
		t.Errorf("with %d unread connections the daemon grew by %d MiB, more than 4 MiB a connection", conns, growth>>10)
	}
	if r := runGuest(t, e.guest, 2*time.Minute, "echo", srv.via(gw), "4", strconv.Itoa(1<<20)); r.OK != 4 {
		t.Errorf("other connections while %d are stalled: %d of 4 echoed 1 MiB intact; failures %v: %q", conns, r.OK, r.Kinds, r.Errors)
	}
	if r := g.result(t, time.Minute); r.OK != conns {
		t.Errorf("the stalled guest had %d of %d connections: %+v", r.OK, conns, r)
	}
	peak := s.end()
	after, rssBack := e.d.settledRSS(t, base, 30*time.Second)
	figure(t, "%d unread connections: the host got %.1f MiB a connection written before backpressure stopped it; daemon grew by %.2f MiB a connection (before: %v; stalled: %v; peak: %v; after: %v)",
		conns, float64(last)/float64(conns)/(1<<20), float64(growth)/1024/conns, base, stalled, peak, after)
	noGoroutineLeak(t, e)
	rssBug(t, rssBack, base, peak, after, heldByRelays)
}

// listenBlackhole listens on 127.0.0.1 inside ns with a backlog of one and
// never accepts: once two connections wait in its queue, the kernel drops
// every further SYN, so a connect to it hangs, which is what the daemon's
// limit of connections being set up is for. Closing it (the returned func,
// also run when the test ends) makes the hanging connects fail with a
// reset at their next retransmission.
func listenBlackhole(t *testing.T, ns *nstest.Netns) (port string, closeFn func()) {
	t.Helper()
	var fd int
	inNetns(t, ns, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 1); err != nil {
			t.Fatal(err)
		}
	})
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeFn = func() { once.Do(func() { unix.Close(fd) }) }
	t.Cleanup(closeFn)
	return strconv.Itoa(sa.(*unix.SockaddrInet4).Port), closeFn
}

// TestLoadPendingLimit: the guest opens 1,500 connections at once to a host
// service that never completes them. The daemon holds at most 1,024 in
// progress (DefaultMaxPendingTCP), drops the SYNs beyond (the guest
// retransmits them) and logs that it did; once the service goes away,
// every connect gets its answer (a reset: none is left hanging), and new
// connections work.
func TestLoadPendingLimit(t *testing.T) {
	const conns = 1500
	e := newEnv(t, envOpts{args: loadArgs})
	srv := startServer(t, e.router, echo)
	base := baseline(t, e)
	port, closeHole := listenBlackhole(t, e.router)

	g := startGuest(t, e.guest, "connect-many", gw+":"+port, strconv.Itoa(conns))
	waitFor(t, time.Minute, "the daemon to drop SYNs at its limit", func() bool { return e.d.stats(t).TCPDropped > 0 })
	// The log line reaches the test through a pipe, after the counter.
	waitFor(t, 10*time.Second, "the daemon to log that it dropped SYNs at its limit", func() bool {
		return strings.Contains(e.d.stderr.String(), "TCP connection dropped: too many connections being set up")
	})
	closeHole()
	r := g.result(t, 2*time.Minute)
	if r.OK+r.Failed != conns {
		t.Errorf("%d of %d connects ended", r.OK+r.Failed, conns)
	}
	onlyKinds(t, "connects to a service that never completes them, after it went away", r, "ECONNREFUSED", "ECONNRESET")
	if r := runGuest(t, e.guest, time.Minute, "echo", srv.via(gw), "1", "1000"); r.OK != 1 {
		t.Errorf("a new connection after the limit was hit: %+v", r)
	}
	st := e.d.stats(t)
	after := e.d.settled(t, base, 30*time.Second)
	figure(t, "%d connects at once to a service that never completes them: %d SYNs dropped at the limit of 1024 and logged; after it went away: %d connected, %v; daemon before: %v; after: %v",
		conns, st.TCPDropped, r.OK, r.Kinds, base, after)
	noGoroutineLeak(t, e)
}
