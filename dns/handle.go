package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// request is one parsed client query.
type request struct {
	// raw is the query as received; it is what goes upstream.
	raw []byte
	msg *dns.Msg
	// transport is "udp" or "tcp", the client's.
	transport string
	// maxSize is the largest reply the client takes: its EDNS0 UDP size
	// (at least 512) or 512 over UDP, 65535 over TCP.
	maxSize int
}

// handle answers one client message and returns the reply to send, or nil
// when the message is to be dropped. It never panics on any input.
func (s *Server) handle(ctx context.Context, raw []byte, transport string) []byte {
	req, early := s.parseRequest(raw, transport)
	if req == nil {
		return early
	}
	return s.answer(ctx, req)
}

// parseRequest parses a client message. It returns the request, or the
// reply to send at once (FORMERR, NOTIMP), or neither when the message is
// to be dropped: shorter than a header, or a response rather than a query
// (answering those could loop between two servers).
func (s *Server) parseRequest(raw []byte, transport string) (*request, []byte) {
	if len(raw) < headerLen {
		return nil, nil
	}
	m := new(dns.Msg)
	err := m.Unpack(raw) // sets the header even when the rest is bad
	if m.Response {
		return nil, nil
	}
	if err != nil || len(m.Question) != 1 || countOPT(m) > 1 {
		s.stats.formErrs.Add(1)
		s.log.Debug("malformed DNS query", slog.Int("bytes", len(raw)), slog.Any("error", err))
		return nil, headerOnlyReply(m, dns.RcodeFormatError)
	}
	if m.Opcode != dns.OpcodeQuery {
		return nil, headerOnlyReply(m, dns.RcodeNotImplemented)
	}
	size := dns.MinMsgSize
	switch {
	case transport == "tcp":
		size = dns.MaxMsgSize
	case m.IsEdns0() != nil:
		size = max(size, int(m.IsEdns0().UDPSize()))
	}
	return &request{raw: raw, msg: m, transport: transport, maxSize: size}, nil
}

func countOPT(m *dns.Msg) int {
	n := 0
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// headerOnlyReply answers a query that could not be understood: only its
// ID, opcode and RD bit are echoed, since the rest may be garbage.
func headerOnlyReply(q *dns.Msg, rcode int) []byte {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id:                 q.Id,
		Response:           true,
		Opcode:             q.Opcode,
		RecursionDesired:   q.RecursionDesired,
		RecursionAvailable: true,
		Rcode:              rcode,
	}}
	out, err := m.Pack()
	if err != nil {
		return nil // cannot happen for a bare header; drop rather than panic
	}
	return out
}

// answer produces the reply for a well-formed query: from Config.Hosts,
// from the cache, or from the upstreams, in that order.
func (s *Server) answer(ctx context.Context, req *request) []byte {
	q := req.msg.Question[0]
	if q.Qclass == dns.ClassINET {
		if addrs, ok := s.hosts[strings.ToLower(q.Name)]; ok {
			s.stats.localAnswers.Add(1)
			return s.encode(req, s.localAnswer(req, addrs), nil)
		}
	}

	// Look at the upstreams first even when the answer may come from the
	// cache: a resolv.conf change must empty the cache before it is used.
	servers := s.upstreams()
	var key cacheKey
	if s.cache != nil {
		key = keyOf(req.msg)
		if m := s.cache.get(key, s.now()); m != nil {
			s.stats.cacheHits.Add(1)
			m.Id = req.msg.Id
			m.Question = slices.Clone(req.msg.Question) // the client's spelling
			m.Compress = true
			return s.encode(req, m, nil)
		}
		s.stats.cacheMisses.Add(1)
	}

	r, err := s.forward(ctx, req, servers)
	if err != nil {
		if ctx.Err() != nil {
			return nil // shutting down: nobody to answer
		}
		return s.upstreamFailed(req, err)
	}
	if s.upstreamDown.CompareAndSwap(true, false) {
		s.log.Info("DNS upstreams answer again")
	}
	if s.cache != nil {
		s.cache.put(key, r.msg, s.now())
	}
	return s.encode(req, r.msg, r.raw)
}

// upstreamFailed logs the failure and returns the SERVFAIL for it.
func (s *Server) upstreamFailed(req *request, err error) []byte {
	if errors.Is(err, errNoNameservers) {
		// resolvConf has already warned, once.
		s.log.Debug("DNS query answered SERVFAIL: no nameserver", slog.String("question", questionString(req)))
		return s.servfail(req, dns.ExtendedErrorCodeNotReady, "no nameserver configured on the host")
	}
	if s.upstreamDown.CompareAndSwap(false, true) {
		s.log.Warn("no DNS upstream answered; answering SERVFAIL until one does",
			slog.String("question", questionString(req)), slog.Any("error", err))
	} else {
		s.log.Debug("DNS query answered SERVFAIL: no upstream answered",
			slog.String("question", questionString(req)), slog.Any("error", err))
	}
	return s.servfail(req, dns.ExtendedErrorCodeNoReachableAuthority, "no upstream nameserver answered")
}

// overloadReply answers a UDP query that found no free slot.
func (s *Server) overloadReply(raw []byte) []byte {
	req, early := s.parseRequest(raw, "udp")
	if req == nil {
		return early
	}
	return s.servfail(req, dns.ExtendedErrorCodeOther, "too many queries in flight")
}

// servfail makes a SERVFAIL answer to req, with an Extended DNS Error
// (RFC 8914) saying why when the client speaks EDNS.
func (s *Server) servfail(req *request, code uint16, why string) []byte {
	s.stats.servFails.Add(1)
	m := new(dns.Msg).SetRcode(req.msg, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	addOPT(req, m, &dns.EDNS0_EDE{InfoCode: code, ExtraText: why})
	return s.encode(req, m, nil)
}

// localAnswer answers a query for a name in Config.Hosts.
func (s *Server) localAnswer(req *request, addrs []netip.Addr) *dns.Msg {
	q := req.msg.Question[0]
	m := new(dns.Msg).SetReply(req.msg)
	m.Authoritative, m.RecursionAvailable = true, true
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: staticTTL}
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case q.Qtype == dns.TypeAAAA && a.Is6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	addOPT(req, m)
	return m
}

// addOPT adds an OPT record to an answer the server makes itself when the
// query had one (RFC 6891 6.1.1), copying the DO bit (RFC 3225).
func addOPT(req *request, m *dns.Msg, options ...dns.EDNS0) {
	qopt := req.msg.IsEdns0()
	if qopt == nil {
		return
	}
	m.SetEdns0(ednsSize, qopt.Do())
	m.IsEdns0().Option = options
}

// encode returns the wire form of m for req's client, with the client's ID.
// raw, when set, is m as the upstream sent it and is passed on byte for
// byte if it fits. Otherwise m is packed and, if too big for the client's
// UDP size, truncated with TC set so the client retries over TCP.
func (s *Server) encode(req *request, m *dns.Msg, raw []byte) []byte {
	if raw != nil && len(raw) <= req.maxSize {
		out := slices.Clone(raw)
		binary.BigEndian.PutUint16(out, req.msg.Id)
		return out
	}
	if raw != nil {
		m = m.Copy()
		m.Compress = true
	}
	m.Id = req.msg.Id
	out, err := m.Pack()
	if err == nil && len(out) > req.maxSize {
		s.stats.truncated.Add(1)
		m.Truncate(req.maxSize)
		out, err = m.Pack()
	}
	if err != nil {
		s.log.Warn("cannot encode DNS answer; answering SERVFAIL",
			slog.String("question", questionString(req)), slog.Any("error", err))
		s.stats.servFails.Add(1)
		return headerOnlyReply(req.msg, dns.RcodeServerFailure)
	}
	return out
}

// questionString names the query in logs.
func questionString(req *request) string {
	q := req.msg.Question[0]
	return q.Name + " " + dns.Class(q.Qclass).String() + " " + dns.Type(q.Qtype).String()
}
