package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Test upstream zone. Everything here is served by testUpstream; no test
// ever talks to a real nameserver.
const (
	bigTXTCount    = 60 // 60 x ~210 bytes: about 12.6 KB, over any UDP size
	mediumTXTCount = 10 // about 2.2 KB: over 512, under 4096
	upstreamTTL    = 300
)

var (
	zoneA    = netip.MustParseAddr("192.0.2.1")
	zoneAAAA = netip.MustParseAddr("2001:db8::1")
)

// seenQuery is one query a testUpstream received.
type seenQuery struct {
	network string // "udp" or "tcp"
	remote  netip.AddrPort
	msg     *dns.Msg
}

// testUpstream is a miekg/dns server on loopback, UDP and TCP on one port,
// serving the test zone and recording every query.
type testUpstream struct {
	name string
	addr netip.AddrPort
	// servfail makes it answer SERVFAIL to everything.
	servfail atomic.Bool

	release     chan struct{} // closed to let slow.test. queries finish
	releaseOnce sync.Once

	mu   sync.Mutex
	seen []seenQuery
}

// startUpstream starts a test upstream on ip:port (port 0 picks a free
// one, the same for UDP and TCP).
func startUpstream(t testing.TB, name, ip string, port int) *testUpstream {
	t.Helper()
	pc, l, err := listenBoth(ip, port)
	if err != nil {
		t.Fatalf("starting test upstream %s on %s: %v", name, ip, err)
	}
	return serveUpstream(t, name, pc, l)
}

// startUpstream53 starts a test upstream on port 53 of the first free
// address in candidates, as resolv.conf can only name port 53.
func startUpstream53(t testing.TB, name string, candidates ...string) *testUpstream {
	t.Helper()
	pc, l := listen53(t, candidates...)
	return serveUpstream(t, name, pc, l)
}

// listen53 opens UDP and TCP port 53 on the first free address in
// candidates. It needs root (CI runs tests as root) and skips otherwise.
func listen53(t testing.TB, candidates ...string) (net.PacketConn, net.Listener) {
	t.Helper()
	var errs []error
	for _, ip := range candidates {
		pc, l, err := listenBoth(ip, 53)
		if errors.Is(err, syscall.EACCES) {
			t.Skipf("needs root to bind port 53 for a resolv.conf test upstream: %v", err)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return pc, l
	}
	t.Fatalf("no free port 53 among %v: %v", candidates, errors.Join(errs...))
	return nil, nil
}

// listenBoth opens UDP and TCP on the same ip:port. With port 0 it tries a
// few kernel-chosen UDP ports until TCP is free on the same one.
func listenBoth(ip string, port int) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, fmt.Sprint(port)))
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
		if port != 0 {
			break
		}
	}
	return nil, nil, lastErr
}

func serveUpstream(t testing.TB, name string, pc net.PacketConn, l net.Listener) *testUpstream {
	u := &testUpstream{
		name:    name,
		addr:    pc.LocalAddr().(*net.UDPAddr).AddrPort(),
		release: make(chan struct{}),
	}
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(u.serve)},
		{Listener: l, Handler: dns.HandlerFunc(u.serve)},
	} {
		started := make(chan struct{})
		done := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("test upstream %s: %v", name, err)
		}
		t.Cleanup(func() {
			u.unblock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.ShutdownContext(ctx); err != nil {
				t.Errorf("stopping test upstream %s: %v", name, err)
			}
			<-done
		})
	}
	return u
}

func (u *testUpstream) unblock() { u.releaseOnce.Do(func() { close(u.release) }) }

// queries returns what the upstream received so far.
func (u *testUpstream) queries() []seenQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenQuery(nil), u.seen...)
}

// count returns how many queries for name (any case) arrived over network
// ("" for both).
func (u *testUpstream) count(name, network string) int {
	n := 0
	for _, q := range u.queries() {
		if strings.EqualFold(q.msg.Question[0].Name, name) && (network == "" || q.network == network) {
			n++
		}
	}
	return n
}

func (u *testUpstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	network := w.LocalAddr().Network()
	remote, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	u.mu.Lock()
	u.seen = append(u.seen, seenQuery{network: network, remote: remote, msg: r.Copy()})
	u.mu.Unlock()

	m := new(dns.Msg).SetReply(r)
	m.Authoritative = true
	if u.servfail.Load() || len(r.Question) != 1 {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	hdr := func(t uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	do := r.IsEdns0() != nil && r.IsEdns0().Do()
	switch {
	case name == "a.test." && q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA, upstreamTTL), A: zoneA.AsSlice()})
		if do {
			m.AuthenticatedData = true
			m.Answer = append(m.Answer, &dns.RRSIG{Hdr: hdr(dns.TypeRRSIG, upstreamTTL),
				TypeCovered: dns.TypeA, Algorithm: dns.ECDSAP256SHA256, Labels: 2, OrigTtl: upstreamTTL,
				Expiration: 2000000000, Inception: 1700000000, KeyTag: 4242, SignerName: "test.",
				Signature: "dGVzdHNpZ25hdHVyZQ=="})
		}
	case name == "a.test." && q.Qtype == dns.TypeAAAA:
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA, upstreamTTL), AAAA: zoneAAAA.AsSlice()})
	case name == "a.test." && q.Qtype == dns.TypeMX:
		m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX, upstreamTTL), Preference: 10, Mx: "mail.a.test."})
	case name == "a.test." && q.Qtype == dns.TypeTXT:
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT, upstreamTTL), Txt: []string{"hello", "world"}})
	case name == "a.test.":
		// NODATA
		m.Ns = append(m.Ns, testSOA())
	case name == "big.test." || name == "medium.test.":
		n := bigTXTCount
		if name == "medium.test." {
			n = mediumTXTCount
		}
		for i := range n {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT, upstreamTTL),
				Txt: []string{fmt.Sprintf("%03d-%s", i, strings.Repeat("x", 196))}})
		}
	case name == "ttl.test.":
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA, 100), A: zoneA.AsSlice()})
	case name == "zero.test.":
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA, 0), A: zoneA.AsSlice()})
	case name == "id.test.":
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT, upstreamTTL), Txt: []string{u.name}})
	case name == "fail.test.":
		m.Rcode = dns.RcodeServerFailure
	case name == "slow.test.":
		select {
		case <-u.release:
		case <-time.After(20 * time.Second):
		}
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA, upstreamTTL), A: zoneA.AsSlice()})
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, testSOA())
	}

	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(1232, opt.Do())
		m.IsEdns0().Option = append(m.IsEdns0().Option,
			&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: "from " + u.name})
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil && name != "medium.test." {
			size = max(size, int(opt.UDPSize()))
		}
		m.Truncate(size) // medium.test. always truncates at 512, like a server ignoring EDNS
	}
	w.WriteMsg(m)
}

func testSOA() *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 600},
		Ns: "ns.test.", Mbox: "admin.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 30}
}

// deadUpstream is an address that takes queries and never answers: a
// bound UDP socket nobody reads, and a TCP listener whose connections are
// accepted and then left silent.
type deadUpstream struct{ addr netip.AddrPort }

func startDeadUpstream(t testing.TB, ip string, port int) *deadUpstream {
	t.Helper()
	pc, l, err := listenBoth(ip, port)
	if err != nil {
		t.Fatalf("starting dead upstream on %s: %v", ip, err)
	}
	return serveDead(t, pc, l)
}

func serveDead(t testing.TB, pc net.PacketConn, l net.Listener) *deadUpstream {
	done := make(chan struct{})
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return &deadUpstream{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// harness is a Server serving UDP and TCP on loopback.
type harness struct {
	s        *Server
	udp, tcp string
}

// startServer builds a Server from cfg, lets tweak adjust its unexported
// knobs before it serves, and serves it on 127.0.0.1. Cleanup closes it
// and checks that both Serve calls returned nil.
func startServer(t testing.TB, cfg Config, tweak ...func(*Server)) *harness {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweak {
		f(s)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	h := &harness{s: s, udp: pc.LocalAddr().String(), tcp: l.Addr().String()}
	errs := make(chan error, 2)
	go func() { errs <- s.ServePacket(context.Background(), pc) }()
	go func() { errs <- s.ServeStream(context.Background(), l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("Serve returned %v after Close, want nil", err)
			}
		}
	})
	return h
}

// exchange sends m to the harness over network and returns the reply.
func (h *harness) exchange(t testing.TB, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	addr := h.udp
	if network == "tcp" {
		addr = h.tcp
	}
	c := &dns.Client{Net: network, Timeout: 10 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %v: %v", network, m.Question, err)
	}
	return r
}

// ask queries name/qtype over network, optionally with EDNS0.
func (h *harness) ask(t testing.TB, network, name string, qtype uint16, edns ...uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	if len(edns) > 0 {
		m.SetEdns0(edns[0], false)
	}
	return h.exchange(t, network, m)
}

// writeResolvConf writes content to a fresh file and returns its path.
func writeResolvConf(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceFile swaps path's content by rename, as resolvconf and
// NetworkManager do.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a settable clock for the cache.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines(level string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, "level="+level) {
			out = append(out, l)
		}
	}
	return out
}

func newLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// checkNoServerGoroutines fails the test if, once its other cleanups have
// run, goroutines of this package's Server are still alive. Register it
// first so it runs last. It polls briefly because a goroutine that has
// signalled its WaitGroup may still be returning.
func checkNoServerGoroutines(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		var leaked []string
		for range 100 {
			leaked = serverGoroutines()
			if len(leaked) == 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("%d Server goroutines still running after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	})
}

// serverGoroutines returns the stacks of goroutines running code of the
// Server (not test code).
func serverGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "github.com/slirp-dev/slirp/dns.(*Server)") ||
				strings.HasPrefix(line, "github.com/slirp-dev/slirp/dns.onDone") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// writeInPlace rewrites path keeping its inode, as an editor saving in
// place does.
func writeInPlace(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}
