package dns

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// defaultCacheSize is the number of answers cached when
	// Config.CacheSize is 0. A guest seldom looks up more than a few
	// hundred names within their TTLs.
	defaultCacheSize = 1024
	// maxCacheTTL bounds how long an answer is kept, whatever its TTLs
	// say, so a wrong answer or a clock jump cannot stick for days.
	maxCacheTTL = time.Hour
	// maxCacheEntryBytes keeps huge answers out of the cache, which bounds
	// its memory to defaultCacheSize*maxCacheEntryBytes (16 MiB) at worst.
	maxCacheEntryBytes = 16 << 10
)

// cacheKey tells apart queries whose answers differ: the name (DNS names
// compare case-insensitively), type and class, and the header and EDNS bits
// that change what an upstream returns. EDNS presence is part of the key so
// that a client that sent no OPT never gets one back.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	rd, cd, ad    bool
	edns, do      bool
}

func keyOf(q *dns.Msg) cacheKey {
	k := cacheKey{
		name:   strings.ToLower(q.Question[0].Name),
		qtype:  q.Question[0].Qtype,
		qclass: q.Question[0].Qclass,
		rd:     q.RecursionDesired,
		cd:     q.CheckingDisabled,
		ad:     q.AuthenticatedData,
	}
	if opt := q.IsEdns0(); opt != nil {
		k.edns, k.do = true, opt.Do()
	}
	return k
}

type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// cache is a bounded LRU of upstream answers. It is safe for concurrent
// use.
type cache struct {
	max int

	// mu guards entries and lru.
	mu sync.Mutex
	// entries maps a key to its element in lru.
	entries map[cacheKey]*list.Element
	// lru holds *cacheEntry, most recently used at the front.
	lru *list.List
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[cacheKey]*list.Element), lru: list.New()}
}

// get returns a copy of the cached answer for k with every TTL lowered by
// the whole seconds it spent in the cache, or nil.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	c.mu.Lock()
	el, ok := c.entries[k]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) || now.Before(e.stored) {
		c.lru.Remove(el)
		delete(c.entries, k)
		c.mu.Unlock()
		return nil
	}
	c.lru.MoveToFront(el)
	c.mu.Unlock()

	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, rr := range allRecords(m) {
		h := rr.Header()
		if h.Rrtype == dns.TypeOPT {
			continue // the OPT "TTL" holds flags, not a time
		}
		h.Ttl -= min(age, h.Ttl)
	}
	return m
}

// put stores m, an upstream answer to a query with key k, when it may be
// cached: see cacheTTL. It reports whether it stored it.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) bool {
	ttl, ok := cacheTTL(m)
	if !ok || m.Len() > maxCacheEntryBytes {
		return false
	}
	m = m.Copy()
	stripCookie(m)
	e := &cacheEntry{key: k, msg: m, stored: now, expires: now.Add(ttl)}

	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return true
	}
	c.entries[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
	return true
}

// flush drops every entry, for when the upstreams change and old answers
// may no longer be what the new ones would say (split DNS on a VPN).
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.lru.Init()
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// cacheTTL returns how long m may be cached: the smallest TTL of its
// records, and no longer than the SOA minimum when it carries a SOA
// (RFC 2308). Only complete NOERROR and NXDOMAIN answers are cached; a
// negative answer without a SOA is not (RFC 2308 section 5), nor are
// truncated, signed (TSIG) or zero-TTL answers.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) || m.IsTsig() != nil {
		return 0, false
	}
	ttl := uint32(maxCacheTTL / time.Second)
	var soa bool
	for _, rr := range allRecords(m) {
		h := rr.Header()
		if h.Rrtype == dns.TypeOPT {
			continue
		}
		ttl = min(ttl, h.Ttl)
		if s, ok := rr.(*dns.SOA); ok {
			soa = true
			ttl = min(ttl, s.Minttl)
		}
	}
	negative := m.Rcode == dns.RcodeNameError || len(m.Answer) == 0
	if (negative && !soa) || ttl == 0 {
		return 0, false
	}
	return time.Duration(ttl) * time.Second, true
}

// allRecords returns the records of every section of m.
func allRecords(m *dns.Msg) []dns.RR {
	rrs := make([]dns.RR, 0, len(m.Answer)+len(m.Ns)+len(m.Extra))
	rrs = append(rrs, m.Answer...)
	rrs = append(rrs, m.Ns...)
	return append(rrs, m.Extra...)
}

// stripCookie removes the EDNS COOKIE option (RFC 7873) from m: the
// upstream's server cookie answers one client cookie and must not be handed
// to other clients from the cache.
func stripCookie(m *dns.Msg) {
	opt := m.IsEdns0()
	if opt == nil {
		return
	}
	kept := opt.Option[:0]
	for _, o := range opt.Option {
		if o.Option() != dns.EDNS0COOKIE {
			kept = append(kept, o)
		}
	}
	opt.Option = kept
}
