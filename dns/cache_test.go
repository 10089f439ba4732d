package dns

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("NewRR(%q): %v", s, err)
	}
	return rr
}

func answerMsg(t *testing.T, rcode int, answer, ns []string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion("a.test.", dns.TypeA)
	m.Response, m.Rcode = true, rcode
	for _, s := range answer {
		m.Answer = append(m.Answer, mustRR(t, s))
	}
	for _, s := range ns {
		m.Ns = append(m.Ns, mustRR(t, s))
	}
	return m
}

const soa = "test. 600 IN SOA ns.test. admin.test. 1 3600 600 86400 30"

func TestCacheTTL(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  func(t *testing.T) *dns.Msg
		want time.Duration // 0: not cacheable
	}{
		{"positive: smallest TTL", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeSuccess, []string{"a.test. 300 IN A 192.0.2.1", "a.test. 120 IN A 192.0.2.2"}, nil)
		}, 120 * time.Second},
		{"positive: authority counts", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeSuccess, []string{"a.test. 300 IN A 192.0.2.1"}, []string{"test. 60 IN NS ns.test."})
		}, 60 * time.Second},
		{"positive: capped", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeSuccess, []string{"a.test. 604800 IN A 192.0.2.1"}, nil)
		}, maxCacheTTL},
		{"positive: OPT is not a TTL", func(t *testing.T) *dns.Msg {
			m := answerMsg(t, dns.RcodeSuccess, []string{"a.test. 300 IN A 192.0.2.1"}, nil)
			return m.SetEdns0(1232, true) // DO sets the OPT "TTL" to 0x8000
		}, 300 * time.Second},
		{"NXDOMAIN: SOA minimum", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeNameError, nil, []string{soa})
		}, 30 * time.Second},
		{"NODATA: SOA minimum", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeSuccess, nil, []string{soa})
		}, 30 * time.Second},
		{"CNAME then NXDOMAIN", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeNameError, []string{"a.test. 300 IN CNAME b.test."}, []string{soa})
		}, 30 * time.Second},
		{"negative without SOA", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeNameError, nil, nil)
		}, 0},
		{"SERVFAIL", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeServerFailure, nil, []string{soa})
		}, 0},
		{"REFUSED", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeRefused, nil, nil)
		}, 0},
		{"truncated", func(t *testing.T) *dns.Msg {
			m := answerMsg(t, dns.RcodeSuccess, []string{"a.test. 300 IN A 192.0.2.1"}, nil)
			m.Truncated = true
			return m
		}, 0},
		{"zero TTL", func(t *testing.T) *dns.Msg {
			return answerMsg(t, dns.RcodeSuccess, []string{"a.test. 0 IN A 192.0.2.1"}, nil)
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cacheTTL(tc.msg(t))
			if ok != (tc.want != 0) || got != tc.want {
				t.Errorf("cacheTTL = %v, %t; want %v", got, ok, tc.want)
			}
		})
	}
}

func TestCacheGetPut(t *testing.T) {
	c := newCache(2)
	now := time.Unix(1_700_000_000, 0)
	q := new(dns.Msg).SetQuestion("A.Test.", dns.TypeA)
	k := keyOf(q)
	m := answerMsg(t, dns.RcodeSuccess, []string{"a.test. 300 IN A 192.0.2.1"}, []string{"test. 200 IN NS ns.test."})
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = []dns.EDNS0{
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708aabbccddeeff0011"},
		&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: "kept"},
	}
	if !c.put(k, m, now) {
		t.Fatal("put refused a cacheable answer")
	}
	if m.IsEdns0().Option[0].Option() != dns.EDNS0COOKIE {
		t.Errorf("put changed the caller's message")
	}

	got := c.get(keyOf(new(dns.Msg).SetQuestion("a.TEST.", dns.TypeA)), now.Add(99*time.Second+999*time.Millisecond))
	if got == nil {
		t.Fatal("miss for the same name in other case")
	}
	if a, ns := got.Answer[0].Header().Ttl, got.Ns[0].Header().Ttl; a != 201 || ns != 101 {
		t.Errorf("TTLs after 99.999 s = %d, %d; want 201, 101", a, ns)
	}
	if opts := got.IsEdns0().Option; len(opts) != 1 || opts[0].Option() != dns.EDNS0EDE {
		t.Errorf("cached OPT options = %v, want the cookie removed and the EDE kept", opts)
	}
	got.Answer[0].Header().Ttl = 1
	if again := c.get(k, now); again.Answer[0].Header().Ttl != 300 {
		t.Errorf("changing a returned answer changed the cache")
	}
	if c.get(k, now.Add(200*time.Second)) != nil {
		t.Errorf("hit after the smallest TTL ran out")
	}
	if c.len() != 0 {
		t.Errorf("expired entry still held")
	}

	// Other query bits make other keys.
	for name, mod := range map[string]func(*dns.Msg){
		"type":    func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA },
		"class":   func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS },
		"no RD":   func(m *dns.Msg) { m.RecursionDesired = false },
		"CD":      func(m *dns.Msg) { m.CheckingDisabled = true },
		"AD":      func(m *dns.Msg) { m.AuthenticatedData = true },
		"EDNS":    func(m *dns.Msg) { m.SetEdns0(512, false) },
		"EDNS DO": func(m *dns.Msg) { m.SetEdns0(512, true) },
	} {
		q2 := new(dns.Msg).SetQuestion("a.test.", dns.TypeA)
		mod(q2)
		if keyOf(q2) == k {
			t.Errorf("%s: same cache key as the plain query", name)
		}
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newCache(2)
	now := time.Unix(1_700_000_000, 0)
	key := func(i int) cacheKey {
		return keyOf(new(dns.Msg).SetQuestion(fmt.Sprintf("n%d.test.", i), dns.TypeA))
	}
	m := answerMsg(t, dns.RcodeSuccess, []string{"a.test. 300 IN A 192.0.2.1"}, nil)
	c.put(key(1), m, now)
	c.put(key(2), m, now)
	c.get(key(1), now) // 1 is now the most recent
	c.put(key(3), m, now)
	if c.len() != 2 || c.get(key(2), now) != nil || c.get(key(1), now) == nil || c.get(key(3), now) == nil {
		t.Errorf("after overflow: len %d; want 2 kept (1 and 3), 2 evicted", c.len())
	}
	c.flush()
	if c.len() != 0 || c.get(key(1), now) != nil {
		t.Errorf("flush left entries")
	}
}

func TestCacheSkipsHugeAnswers(t *testing.T) {
	c := newCache(10)
	m := answerMsg(t, dns.RcodeSuccess, nil, nil)
	for i := range 100 {
		m.Answer = append(m.Answer, mustRR(t, fmt.Sprintf("a.test. 300 IN TXT \"%03d%0200d\"", i, 0)))
	}
	if c.put(keyOf(m), m, time.Now()) {
		t.Errorf("cached a %d-byte answer, over the %d-byte limit", m.Len(), maxCacheEntryBytes)
	}
}
