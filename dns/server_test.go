package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestForwardRecordTypes(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}, CacheSize: -1})

	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			qtype uint16
			want  string // the answer record as dig prints it
		}{
			{dns.TypeA, "a.test.\t300\tIN\tA\t192.0.2.1"},
			{dns.TypeAAAA, "a.test.\t300\tIN\tAAAA\t2001:db8::1"},
			{dns.TypeMX, "a.test.\t300\tIN\tMX\t10 mail.a.test."},
			{dns.TypeTXT, "a.test.\t300\tIN\tTXT\t\"hello\" \"world\""},
		} {
			t.Run(network+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
				before := up.count("a.test.", network)
				q := new(dns.Msg).SetQuestion("a.test.", tc.qtype)
				r := h.exchange(t, network, q)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("got rcode %s with %d answers, want NOERROR with 1:\n%v", dns.RcodeToString[r.Rcode], len(r.Answer), r)
				}
				if got := r.Answer[0].String(); got != tc.want {
					t.Errorf("answer = %q, want %q", got, tc.want)
				}
				if !r.Authoritative {
					t.Errorf("AA bit of the upstream's answer was lost")
				}
				// The upstream got the query over the client's
				// transport, as sent apart from the ID.
				if got := up.count("a.test.", network); got != before+1 {
					t.Fatalf("upstream saw %d %s queries, want %d", got, network, before+1)
				}
				seen := up.queries()
				fwd := seen[len(seen)-1].msg
				fwd.Id, q.Id = 0, 0
				if fwd.String() != q.String() {
					t.Errorf("forwarded query differs from the client's:\n got %v\nwant %v", fwd, q)
				}
			})
		}
	}
}

func TestEDNSAndDNSSECPassThrough(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}, CacheSize: -1})

	q := new(dns.Msg).SetQuestion("a.test.", dns.TypeA)
	q.SetEdns0(1400, true)
	q.CheckingDisabled = true
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	q.IsEdns0().Option = append(q.IsEdns0().Option, cookie)
	r := h.exchange(t, "udp", q)

	fwd := up.queries()[0].msg
	opt := fwd.IsEdns0()
	if opt == nil || opt.UDPSize() != 1400 || !opt.Do() || !fwd.CheckingDisabled {
		t.Fatalf("upstream got OPT %v, CD %t; want size 1400, DO, CD", opt, fwd.CheckingDisabled)
	}
	if len(opt.Option) != 1 || opt.Option[0].String() != cookie.String() {
		t.Errorf("upstream got EDNS options %v, want the client's cookie %v", opt.Option, cookie)
	}

	if !r.AuthenticatedData {
		t.Errorf("AD bit of the upstream's answer was lost")
	}
	if len(r.Answer) != 2 || r.Answer[1].Header().Rrtype != dns.TypeRRSIG {
		t.Fatalf("answer = %v, want A and its RRSIG", r.Answer)
	}
	ropt := r.IsEdns0()
	if ropt == nil || !ropt.Do() || ropt.UDPSize() != 1232 {
		t.Fatalf("reply OPT = %v, want the upstream's (size 1232, DO)", ropt)
	}
	if len(ropt.Option) != 1 || !strings.Contains(ropt.Option[0].String(), "from up") {
		t.Errorf("reply EDNS options = %v, want the upstream's EDE", ropt.Option)
	}
}

func TestNegativeAnswers(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}})

	r := h.ask(t, "udp", "nx.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("nx.test. = %s with authority %v, want NXDOMAIN with the SOA", dns.RcodeToString[r.Rcode], r.Ns)
	}
	r = h.ask(t, "udp", "a.test.", dns.TypeSRV)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("a.test. SRV = %s, %d answers, authority %v; want NODATA with the SOA", dns.RcodeToString[r.Rcode], len(r.Answer), r.Ns)
	}
}

func TestTruncation(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}, CacheSize: -1})

	t.Run("udp without EDNS gets TC", func(t *testing.T) {
		r := h.ask(t, "udp", "big.test.", dns.TypeTXT)
		if !r.Truncated || len(r.Answer) >= bigTXTCount {
			t.Fatalf("got TC=%t with %d records, want TC with fewer than %d", r.Truncated, len(r.Answer), bigTXTCount)
		}
		// The forwarder asked over UDP, got TC, asked again over TCP.
		if u, c := up.count("big.test.", "udp"), up.count("big.test.", "tcp"); u != 1 || c != 1 {
			t.Errorf("upstream saw %d UDP and %d TCP queries, want 1 and 1", u, c)
		}
	})
	t.Run("tcp gets everything", func(t *testing.T) {
		r := h.ask(t, "tcp", "big.test.", dns.TypeTXT)
		if r.Truncated || len(r.Answer) != bigTXTCount {
			t.Fatalf("got TC=%t with %d records, want all %d", r.Truncated, len(r.Answer), bigTXTCount)
		}
	})
	t.Run("udp retry over tcp fits the client", func(t *testing.T) {
		// The upstream truncates medium.test. at 512 over UDP; the
		// full answer from TCP fits the client's 4096.
		r := h.ask(t, "udp", "medium.test.", dns.TypeTXT, 4096)
		if r.Truncated || len(r.Answer) != mediumTXTCount {
			t.Fatalf("got TC=%t with %d records, want all %d without TC", r.Truncated, len(r.Answer), mediumTXTCount)
		}
		if r.IsEdns0() == nil {
			t.Errorf("OPT record lost in the TCP retry")
		}
		if c := up.count("medium.test.", "tcp"); c != 1 {
			t.Errorf("upstream saw %d TCP queries for medium.test., want 1", c)
		}
	})
	t.Run("udp too big for EDNS size", func(t *testing.T) {
		m := new(dns.Msg).SetQuestion("big.test.", dns.TypeTXT)
		m.SetEdns0(4096, false)
		c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
		r, _, err := c.Exchange(m, h.udp)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= bigTXTCount || r.Len() > 4096 {
			t.Fatalf("got TC=%t, %d records, %d bytes; want TC, some records, at most 4096 bytes", r.Truncated, len(r.Answer), r.Len())
		}
	})
	if st := h.s.Stats(); st.TCPRetries != 3 || st.Truncated != 2 {
		t.Errorf("stats: %d TCP retries, %d truncated; want 3 and 2", st.TCPRetries, st.Truncated)
	}
}

func TestCache(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	clock := newFakeClock()
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}}, func(s *Server) { s.now = clock.Now })

	ttlOf := func(r *dns.Msg) uint32 {
		t.Helper()
		if len(r.Answer) == 0 {
			t.Fatalf("no answer: %v", r)
		}
		return r.Answer[0].Header().Ttl
	}

	if got := ttlOf(h.ask(t, "udp", "ttl.test.", dns.TypeA)); got != 100 {
		t.Fatalf("first TTL = %d, want 100", got)
	}
	clock.Add(40*time.Second + 500*time.Millisecond)
	r := h.ask(t, "udp", "TTL.Test.", dns.TypeA) // case differs: same entry
	if got := ttlOf(r); got != 60 {
		t.Errorf("TTL after 40.5 s in cache = %d, want 60", got)
	}
	if r.Question[0].Name != "TTL.Test." {
		t.Errorf("question = %q, want the client's spelling", r.Question[0].Name)
	}
	if got := ttlOf(h.ask(t, "tcp", "ttl.test.", dns.TypeA)); got != 60 {
		t.Errorf("TTL over TCP from cache = %d, want 60", got)
	}
	if n := up.count("ttl.test.", ""); n != 1 {
		t.Fatalf("upstream saw %d queries, want 1 (the rest from cache)", n)
	}
	clock.Add(60 * time.Second)
	if got := ttlOf(h.ask(t, "udp", "ttl.test.", dns.TypeA)); got != 100 {
		t.Errorf("TTL after expiry = %d, want a fresh 100", got)
	}
	if n := up.count("ttl.test.", ""); n != 2 {
		t.Errorf("upstream saw %d queries, want 2 after expiry", n)
	}

	// Negative answers live for the SOA minimum (30 s).
	h.ask(t, "udp", "nx.test.", dns.TypeA)
	clock.Add(29 * time.Second)
	r = h.ask(t, "udp", "nx.test.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || r.Ns[0].Header().Ttl != 600-29 {
		t.Errorf("cached NXDOMAIN = %s, SOA TTL %d; want NXDOMAIN, 571", dns.RcodeToString[r.Rcode], r.Ns[0].Header().Ttl)
	}
	clock.Add(time.Second)
	h.ask(t, "udp", "nx.test.", dns.TypeA)
	if n := up.count("nx.test.", ""); n != 2 {
		t.Errorf("upstream saw %d nx.test. queries, want 2 (one cached, one after the SOA minimum)", n)
	}

	// A query with EDNS is a different entry, and its answer keeps OPT.
	if r := h.ask(t, "udp", "ttl.test.", dns.TypeA, 1232); r.IsEdns0() == nil {
		t.Errorf("EDNS query got no OPT")
	}
	if r := h.ask(t, "udp", "ttl.test.", dns.TypeA); r.IsEdns0() != nil {
		t.Errorf("plain query got the OPT of a cached EDNS answer")
	}

	// Never cached: TTL 0, SERVFAIL.
	for _, name := range []string{"zero.test.", "fail.test."} {
		h.ask(t, "udp", name, dns.TypeA)
		h.ask(t, "udp", name, dns.TypeA)
		if n := up.count(name, ""); n != 2 {
			t.Errorf("upstream saw %d queries for %s, want 2 (not cached)", n, name)
		}
	}
	if st := h.s.Stats(); st.CacheHits != 4 {
		t.Errorf("stats: %d cache hits, want 4", st.CacheHits)
	}
}

func TestFailover(t *testing.T) {
	checkNoServerGoroutines(t)
	dead := startDeadUpstream(t, "127.0.0.1", 0)
	sick := startUpstream(t, "sick", "127.0.0.1", 0)
	sick.servfail.Store(true)
	live := startUpstream(t, "live", "127.0.0.1", 0)
	h := startServer(t, Config{
		Upstreams: []netip.AddrPort{dead.addr, sick.addr, live.addr},
		Timeout:   3 * time.Second,
		CacheSize: -1,
	})
	for _, network := range []string{"udp", "tcp"} {
		r := h.ask(t, network, "id.test.", dns.TypeTXT)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "live" {
			t.Fatalf("%s: got %v, want the answer of the live upstream", network, r)
		}
		if sick.count("id.test.", network) != 1 {
			t.Errorf("%s: the SERVFAILing upstream was not asked before the live one", network)
		}
	}
	if st := h.s.Stats(); st.UpstreamErrors != 2 {
		t.Errorf("stats: %d upstream errors, want 2 (the dead one, once per transport)", st.UpstreamErrors)
	}

	// When all fail with SERVFAIL the last one's answer is passed on.
	h2 := startServer(t, Config{Upstreams: []netip.AddrPort{sick.addr, sick.addr}, CacheSize: -1})
	if r := h2.ask(t, "udp", "a.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("got %s, want the upstreams' SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if h2.s.Stats().ServFails != 0 {
		t.Errorf("a passed-through SERVFAIL was counted as the server's own")
	}
}

func TestServfailWhenUpstreamsDead(t *testing.T) {
	checkNoServerGoroutines(t)
	var logs logBuffer
	dead1 := startDeadUpstream(t, "127.0.0.1", 0)
	dead2 := startDeadUpstream(t, "127.0.0.1", 0)
	h := startServer(t, Config{
		Upstreams: []netip.AddrPort{dead1.addr, dead2.addr},
		Timeout:   500 * time.Millisecond,
		Logger:    newLogger(&logs),
	})
	// The client waits 10 s; the forwarder must answer within its budget.
	for _, network := range []string{"udp", "tcp"} {
		for range 2 {
			r := h.ask(t, network, "a.test.", dns.TypeA, 1232)
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s: got %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
			}
			opt := r.IsEdns0()
			if opt == nil || len(opt.Option) != 1 {
				t.Fatalf("%s: SERVFAIL has OPT %v, want one with an extended error", network, opt)
			}
			if ede, ok := opt.Option[0].(*dns.EDNS0_EDE); !ok || ede.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
				t.Errorf("%s: extended error %v, want No Reachable Authority", network, opt.Option[0])
			}
		}
	}
	if st := h.s.Stats(); st.ServFails != 4 || st.UpstreamErrors != 8 {
		t.Errorf("stats: %d SERVFAILs, %d upstream errors; want 4 and 8", st.ServFails, st.UpstreamErrors)
	}
	if w := logs.lines("WARN"); len(w) != 1 {
		t.Errorf("got %d warnings for one outage, want 1:\n%s", len(w), strings.Join(w, "\n"))
	}
}

func TestNoNameserver(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string // "" means no file at all
	}{
		{"empty", "# nothing here\nsearch example.org\noptions ndots:2\n"},
		{"missing", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoServerGoroutines(t)
			var logs logBuffer
			path := writeResolvConf(t, tc.content)
			if tc.content == "" {
				path += ".missing"
			}
			// A budget of an hour: a SERVFAIL within the client's 10 s
			// proves nothing waited for it.
			h := startServer(t, Config{ResolvConf: path, Timeout: time.Hour, Logger: newLogger(&logs)})
			for range 3 {
				if r := h.ask(t, "udp", "a.test.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
					t.Fatalf("got %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
				}
			}
			w := logs.lines("WARN")
			if len(w) != 1 || !strings.Contains(w[0], "resolv.conf") {
				t.Errorf("got warnings %q, want exactly one about resolv.conf", w)
			}
		})
	}
}

func TestResolvConfChange(t *testing.T) {
	checkNoServerGoroutines(t)
	one := startUpstream53(t, "one", "127.53.0.1", "127.53.0.11", "127.53.0.21")
	two := startUpstream53(t, "two", "127.53.0.2", "127.53.0.12", "127.53.0.22")
	path := writeResolvConf(t, "# generated\nnameserver "+one.addr.Addr().String()+"\n")
	h := startServer(t, Config{ResolvConf: path})

	answeredBy := func() string {
		r := h.ask(t, "udp", "id.test.", dns.TypeTXT)
		if len(r.Answer) != 1 {
			t.Fatalf("id.test. = %v", r)
		}
		return r.Answer[0].(*dns.TXT).Txt[0]
	}
	waitUntilAnsweredBy := func(want string) {
		t.Helper()
		// resolv.conf is looked at again at most once a second.
		for range 50 {
			if answeredBy() == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("still not answered by %s after 5 s", want)
	}

	if got := answeredBy(); got != "one" {
		t.Fatalf("answered by %q, want one", got)
	}
	// Replaced by rename (new inode). The cached answer from "one" must
	// not outlive the change.
	replaceFile(t, path, "nameserver "+two.addr.Addr().String()+"\n")
	waitUntilAnsweredBy("two")
	// Rewritten in place (new size and mtime).
	if err := writeInPlace(path, "nameserver "+one.addr.Addr().String()+"\n# back to one\n"); err != nil {
		t.Fatal(err)
	}
	waitUntilAnsweredBy("one")
}

func TestResolvConfFailover(t *testing.T) {
	checkNoServerGoroutines(t)
	pc, l := listen53(t, "127.53.0.3", "127.53.0.13", "127.53.0.23")
	dead := serveDead(t, pc, l)
	live := startUpstream53(t, "live", "127.53.0.4", "127.53.0.14", "127.53.0.24")
	path := writeResolvConf(t, "nameserver "+dead.addr.Addr().String()+"\nnameserver "+live.addr.Addr().String()+"\n")
	h := startServer(t, Config{ResolvConf: path, Timeout: 2 * time.Second})
	r := h.ask(t, "udp", "id.test.", dns.TypeTXT)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "live" {
		t.Fatalf("got %v, want the answer of the second nameserver", r)
	}
}

// TestLoopbackNameserver is why the forwarder resolves from the host: a
// stub resolver on 127.0.0.53 (systemd-resolved) or 127.0.0.1 (dnsmasq)
// listed in the host's resolv.conf must work.
func TestLoopbackNameserver(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream53(t, "stub", "127.0.0.53", "127.0.0.54", "127.0.0.153", "127.0.0.253")
	path := writeResolvConf(t, "nameserver "+up.addr.Addr().String()+"\noptions edns0 trust-ad\nsearch .\n")
	h := startServer(t, Config{ResolvConf: path})
	for _, network := range []string{"udp", "tcp"} {
		r := h.ask(t, network, "a.test.", dns.TypeAAAA)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != zoneAAAA.String() {
			t.Fatalf("%s: got %v, want the stub's AAAA", network, r)
		}
	}
}

func TestIPv6Upstream(t *testing.T) {
	checkNoServerGoroutines(t)
	pc, l, err := listenBoth("::1", 0)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	up := serveUpstream(t, "v6", pc, l)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	if r := h.ask(t, "udp", "a.test.", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("got %v, want the answer from [::1]", r)
	}
}

func TestStaticHosts(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	gw4, gw6 := netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("fd00::2")
	h := startServer(t, Config{
		Upstreams: []netip.AddrPort{up.addr},
		Hosts: map[string][]netip.Addr{
			"host.containers.internal.": {gw4, gw6},
			"Host.Slirp.Internal":       {netip.AddrFrom16(gw4.As16())}, // v4-mapped, no dot
		},
	})
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []string
	}{
		{"host.containers.internal.", dns.TypeA, []string{"10.0.2.2"}},
		{"HOST.containers.internal.", dns.TypeAAAA, []string{"fd00::2"}},
		{"host.slirp.internal.", dns.TypeA, []string{"10.0.2.2"}},
		{"host.slirp.internal.", dns.TypeAAAA, nil},
		{"host.containers.internal.", dns.TypeMX, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			r := h.ask(t, network, tc.name, tc.qtype, 1232)
			var got []string
			for _, rr := range r.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					got = append(got, rr.A.String())
				case *dns.AAAA:
					got = append(got, rr.AAAA.String())
				}
				if rr.Header().Name != tc.name {
					t.Errorf("owner name %q, want the question's %q", rr.Header().Name, tc.name)
				}
			}
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative || !slices.Equal(got, tc.want) || r.IsEdns0() == nil {
				t.Errorf("%s %s %s: rcode %s AA %t answers %v OPT %t; want NOERROR, AA, %v, OPT",
					network, tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], r.Authoritative, got, r.IsEdns0() != nil, tc.want)
			}
		}
	}
	if n := len(up.queries()); n != 0 {
		t.Errorf("upstream saw %d queries for static names, want none", n)
	}
	// A name below a static one is not static.
	if r := h.ask(t, "udp", "x.host.containers.internal.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("x.host.containers.internal. = %s, want the upstream's NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

func TestDialIsUsed(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	src := netip.MustParseAddr("127.0.0.9")
	var mu sync.Mutex
	var dials []string
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		dials = append(dials, network+" "+address)
		mu.Unlock()
		d := net.Dialer{LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
		if network == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		return d.DialContext(ctx, network, address)
	}
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}, Dial: dial, CacheSize: -1})
	h.ask(t, "udp", "a.test.", dns.TypeA)
	h.ask(t, "tcp", "a.test.", dns.TypeA)
	for _, q := range up.queries() {
		if q.remote.Addr() != src {
			t.Errorf("upstream saw a %s query from %v, want from %v (the Dial's bind address)", q.network, q.remote, src)
		}
	}
	want := []string{"udp " + up.addr.String(), "tcp " + up.addr.String()}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(dials, want) {
		t.Errorf("dials = %q, want %q", dials, want)
	}
}

func TestMalformedQueries(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	valid, err := new(dns.Msg).SetQuestion("a.test.", dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	header := func(id uint16, flags uint16, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		for i, v := range []uint16{id, flags, qd, an, ns, ar} {
			b[2*i], b[2*i+1] = byte(v>>8), byte(v)
		}
		return b
	}
	twoQuestions := append(header(0x2222, 0x0100, 2, 0, 0, 0), valid[12:]...)
	twoQuestions = append(twoQuestions, valid[12:]...)
	update := append(header(0x3333, 5<<11, 1, 0, 0, 0), valid[12:]...)

	for _, tc := range []struct {
		name      string
		pkt       []byte
		wantRcode int // -1: no reply
	}{
		{"too short", []byte{1, 2, 3, 4, 5}, -1},
		{"a response", append(header(0x1111, 0x8000, 1, 0, 0, 0), valid[12:]...), -1},
		{"question cut short", append(header(0x4444, 0x0100, 1, 0, 0, 0), valid[12:16]...), dns.RcodeFormatError},
		{"no question", header(0x5555, 0x0100, 0, 0, 0, 0), dns.RcodeFormatError},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"update opcode", update, dns.RcodeNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.s.Stats()
			c, err := net.Dial("udp", h.udp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the packet to be handled", func() bool {
				st := h.s.Stats()
				return st.Received == before.Received+1 && st.Replied+st.Dropped == st.Received
			})
			st := h.s.Stats()
			if tc.wantRcode < 0 {
				if st.Dropped != before.Dropped+1 {
					t.Fatalf("packet answered, want dropped")
				}
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if r.Id != uint16(tc.pkt[0])<<8|uint16(tc.pkt[1]) || !r.Response || r.Rcode != tc.wantRcode {
				t.Errorf("reply id %#x QR %t rcode %s; want the query's id, QR, %s",
					r.Id, r.Response, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.wantRcode])
			}
		})
	}
	if n := len(up.queries()); n != 0 {
		t.Errorf("malformed queries reached the upstream %d times", n)
	}

	// Over TCP a malformed query gets FORMERR and the connection goes on.
	co, err := dns.Dial("tcp", h.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := co.Write(header(0x6666, 0x0100, 0, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || r.Rcode != dns.RcodeFormatError || r.Id != 0x6666 {
		t.Fatalf("TCP: got %v, %v; want FORMERR for id 0x6666", r, err)
	}
	if err := co.WriteMsg(new(dns.Msg).SetQuestion("a.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Fatalf("TCP after FORMERR: got %v, %v; want the answer", r, err)
	}
}

func TestTCPConnection(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}},
		func(s *Server) { s.idleTimeout = 200 * time.Millisecond })

	co, err := dns.Dial("tcp", h.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(10 * time.Second))
	// Several queries on one connection, the second pipelined before
	// the first answer is read.
	q1 := new(dns.Msg).SetQuestion("a.test.", dns.TypeA)
	q2 := new(dns.Msg).SetQuestion("a.test.", dns.TypeAAAA)
	q3 := new(dns.Msg).SetQuestion("a.test.", dns.TypeMX)
	for _, q := range []*dns.Msg{q1, q2} {
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []*dns.Msg{q1, q2} {
		r, err := co.ReadMsg()
		if err != nil || r.Id != q.Id || len(r.Answer) != 1 {
			t.Fatalf("got %v, %v; want the answer to %v", r, err, q.Question)
		}
	}
	if err := co.WriteMsg(q3); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || r.Id != q3.Id {
		t.Fatalf("third query: %v, %v", r, err)
	}
	// Then idle: the server closes the connection (EOF, not our 10 s
	// deadline).
	if _, err := co.ReadMsg(); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("read on idle connection: %v, want EOF from the server closing it", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestConcurrencyBound(t *testing.T) {
	checkNoServerGoroutines(t)
	up := startUpstream(t, "up", "127.0.0.1", 0)
	h := startServer(t, Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 30 * time.Second},
		func(s *Server) { s.inFlight = make(chan struct{}, 2) })

	type result struct {
		r   *dns.Msg
		err error
	}
	slow := make(chan result, 2)
	for range 2 {
		go func() {
			c := &dns.Client{Net: "udp", Timeout: 20 * time.Second}
			r, _, err := c.Exchange(new(dns.Msg).SetQuestion("slow.test.", dns.TypeA), h.udp)
			slow <- result{r, err}
		}()
	}
	waitFor(t, "both slow queries at the upstream", func() bool { return up.count("slow.test.", "") == 2 })

	// Both slots are taken: the next query is answered SERVFAIL at once,
	// without reaching the upstream.
	r := h.ask(t, "udp", "a.test.", dns.TypeA, 1232)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("third query: %s, want SERVFAIL while two are in flight", dns.RcodeToString[r.Rcode])
	}
	if up.count("a.test.", "") != 0 {
		t.Errorf("an overloaded query was forwarded")
	}
	if st := h.s.Stats(); st.Overloaded != 1 {
		t.Errorf("stats: %d overloaded, want 1", st.Overloaded)
	}

	up.unblock()
	for range 2 {
		res := <-slow
		if res.err != nil || len(res.r.Answer) != 1 {
			t.Errorf("slow query: %v, %v; want an answer once the upstream answers", res.r, res.err)
		}
	}
	if r := h.ask(t, "udp", "a.test.", dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("query after the slots freed: %v", r)
	}
}

func TestCloseWaitsForGoroutines(t *testing.T) {
	up := startUpstream(t, "up", "127.0.0.1", 0)
	s, err := New(Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveDone := make(chan error, 2)
	go func() { serveDone <- s.ServePacket(context.Background(), pc) }()
	go func() { serveDone <- s.ServeStream(context.Background(), l) }()

	// Queries in flight on UDP and TCP, and an idle TCP connection. The
	// UDP clients never read: Close abandons their queries.
	query, err := new(dns.Msg).SetQuestion("slow.test.", dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(query); err != nil {
			t.Fatal(err)
		}
	}
	tcpDone := make(chan error, 1)
	go func() {
		c := &dns.Client{Net: "tcp", Timeout: 20 * time.Second}
		_, _, err := c.Exchange(new(dns.Msg).SetQuestion("slow.test.", dns.TypeA), l.Addr().String())
		tcpDone <- err
	}()
	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitFor(t, "three queries at the upstream", func() bool { return up.count("slow.test.", "") == 3 })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited: every query was accounted for, the sockets are
	// closed, and nothing of the server runs any more.
	if st := s.Stats(); st.Received != 3 || st.Dropped != 3 {
		t.Errorf("right after Close: %d received, %d dropped; want the 3 in flight abandoned", st.Received, st.Dropped)
	}
	if _, _, err := pc.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("PacketConn still open right after Close: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listener still open right after Close: %v", err)
	}
	// Poll briefly
	// only for goroutines that signalled done and are returning.
	var leaked []string
	for range 100 {
		if leaked = serverGoroutines(); len(leaked) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(leaked) > 0 {
		t.Fatalf("goroutines left after Close:\n%s", strings.Join(leaked, "\n\n"))
	}
	for range 2 {
		if err := <-serveDone; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	}
	// The idle connection was closed by the server.
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("idle connection still open after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	pc2, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ServePacket(context.Background(), pc2); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServePacket after Close = %v, want ErrServerClosed", err)
	}
	if _, _, err := pc2.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServePacket after Close left its PacketConn open")
	}
	// The TCP client saw its connection closed, not a timeout.
	if err := <-tcpDone; err == nil || isTimeout(err) {
		t.Errorf("TCP query in flight at Close: %v, want the connection closed", err)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	checkNoServerGoroutines(t)
	s, err := New(Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServePacket(ctx, pc) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServePacket after cancel = %v, want nil", err)
	}

	// A PacketConn closed by someone else ends ServePacket with an error.
	pc, err = net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.ServePacket(context.Background(), pc) }()
	pc.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServePacket on a closed PacketConn = %v, want net.ErrClosed", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"negative timeout", Config{Timeout: -time.Second}},
		{"upstream without port", Config{Upstreams: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 0)}}},
		{"invalid upstream", Config{Upstreams: []netip.AddrPort{{}}}},
		{"bad host name", Config{Hosts: map[string][]netip.Addr{"a..b": {netip.MustParseAddr("10.0.2.2")}}}},
		{"root as host name", Config{Hosts: map[string][]netip.Addr{".": {netip.MustParseAddr("10.0.2.2")}}}},
		{"invalid host address", Config{Hosts: map[string][]netip.Addr{"gw.internal.": {{}}}}},
		{"duplicate host name", Config{Hosts: map[string][]netip.Addr{"gw.internal.": nil, "GW.internal": nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Errorf("New accepted %+v", tc.cfg)
			}
		})
	}
	if _, err := New(Config{}); err != nil {
		t.Errorf("New(Config{}) = %v, want the defaults", err)
	}
}
