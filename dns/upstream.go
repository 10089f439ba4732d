package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// headerLen is the size of the fixed DNS header (RFC 1035 4.1.1).
const headerLen = 12

// reply is one upstream answer: the bytes as the upstream sent them (the ID
// is the one we sent, restored to the client's only when replying) and
// their parse.
type reply struct {
	raw []byte
	msg *dns.Msg
}

// errBadReply marks an answer that does not belong to the query sent: wrong
// ID, not a response, or another question.
var errBadReply = errors.New("reply does not match the query")

// forward asks servers, in order, until one gives a usable answer,
// within s.timeout overall. Each try gets an equal share of what is left of
// the budget, so a dead first nameserver leaves time for the next ones,
// and one that fails fast (connection refused) gives its share to the rest.
//
// A SERVFAIL, REFUSED or NOTIMP answer makes forward try the next
// nameserver, as glibc does; when every nameserver answered like that, the
// last such answer is passed through. With no answer at all forward returns
// an error and the client gets SERVFAIL from the caller.
func (s *Server) forward(ctx context.Context, req *request, servers []netip.AddrPort) (*reply, error) {
	if len(servers) == 0 {
		return nil, errNoNameservers
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	var lastBad *reply
	var errs []error
	for i, up := range servers {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			errs = append(errs, context.DeadlineExceeded)
			break
		}
		share := left / time.Duration(len(servers)-i)
		r, err := s.exchange(ctx, share, up, req)
		if err != nil {
			s.stats.upstreamErrors.Add(1)
			s.log.Debug("DNS upstream failed", slog.String("upstream", up.String()),
				slog.String("question", questionString(req)), slog.Any("error", err))
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			continue
		}
		switch r.msg.Rcode {
		case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented:
			s.log.Debug("DNS upstream refused the query", slog.String("upstream", up.String()),
				slog.String("question", questionString(req)), slog.String("rcode", dns.RcodeToString[r.msg.Rcode]))
			lastBad = r
			continue
		}
		return r, nil
	}
	if lastBad != nil {
		return lastBad, nil
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return nil, context.DeadlineExceeded
}

// exchange asks one upstream over the client's transport, within share.
// A truncated UDP answer is asked again over TCP, with a fresh share (still
// within the overall budget in ctx); if that fails the truncated answer is
// returned, and the client will retry over TCP itself.
func (s *Server) exchange(ctx context.Context, share time.Duration, up netip.AddrPort, req *request) (*reply, error) {
	tryCtx, cancel := context.WithTimeout(ctx, share)
	defer cancel()
	s.stats.forwarded.Add(1)
	r, err := s.exchangeOnce(tryCtx, req.transport, up, req)
	if err != nil || req.transport != "udp" || !r.msg.Truncated {
		return r, err
	}

	s.stats.tcpRetries.Add(1)
	tcpCtx, cancel := context.WithTimeout(ctx, share)
	defer cancel()
	full, err := s.exchangeOnce(tcpCtx, "tcp", up, req)
	if err != nil {
		s.log.Debug("DNS upstream TCP retry failed; passing the truncated answer on",
			slog.String("upstream", up.String()), slog.String("question", questionString(req)), slog.Any("error", err))
		return r, nil
	}
	return full, nil
}

// exchangeOnce sends the client's query, under a fresh random ID, to up
// over network ("udp" or "tcp") and reads the matching answer. The query
// bytes are forwarded as received apart from the ID, so EDNS options and
// header bits reach the upstream untouched.
//
// The framing is done here rather than by dns.Conn because the Dial
// function may return a net.Conn that is not a net.PacketConn for "udp",
// which dns.Conn would frame as TCP.
func (s *Server) exchangeOnce(ctx context.Context, network string, up netip.AddrPort, req *request) (*reply, error) {
	id := dns.Id()
	query := slices.Clone(req.raw)
	binary.BigEndian.PutUint16(query, id)

	conn, err := s.dial(ctx, network, up.String())
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", network, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("setting deadline: %w", err)
		}
	}
	// Unblock the reads below when ctx is cancelled before its deadline
	// (Close, or the client went away).
	stop := onDone(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if network == "tcp" {
		return exchangeStream(conn, query, id, req)
	}
	return exchangePacket(conn, query, id, req)
}

// exchangePacket does a UDP exchange. Datagrams that are not the answer to
// this query (late answers to an earlier query on a reused port, garbage)
// are skipped until the deadline.
func exchangePacket(conn net.Conn, query []byte, id uint16, req *request) (*reply, error) {
	if _, err := conn.Write(query); err != nil {
		return nil, fmt.Errorf("sending query: %w", err)
	}
	buf := make([]byte, dns.MaxMsgSize)
	var skipped error
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if skipped != nil {
				err = fmt.Errorf("%w (after skipping: %w)", err, skipped)
			}
			return nil, fmt.Errorf("reading answer: %w", err)
		}
		r, err := parseReply(slices.Clone(buf[:n]), id, req)
		if err != nil {
			skipped = err
			continue
		}
		return r, nil
	}
}

// exchangeStream does a TCP exchange with two-byte length framing
// (RFC 1035 4.2.2). The query is written with its length in one write.
func exchangeStream(conn net.Conn, query []byte, id uint16, req *request) (*reply, error) {
	framed := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(framed, uint16(len(query)))
	copy(framed[2:], query)
	if _, err := conn.Write(framed); err != nil {
		return nil, fmt.Errorf("sending query: %w", err)
	}
	var lenBuf [2]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("reading answer length: %w", err)
	}
	raw := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
	if _, err := io.ReadFull(conn, raw); err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	return parseReply(raw, id, req)
}

// parseReply checks that raw answers the query sent with id and parses it.
//
// An answer cut short inside a record is accepted when its TC bit is set
// (some servers truncate at the byte): it becomes a header-and-question
// answer with TC, which makes a UDP caller retry over TCP. A header-only
// error answer (no question, as some servers send with REFUSED) is
// accepted too.
func parseReply(raw []byte, id uint16, req *request) (*reply, error) {
	if len(raw) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes", errBadReply, len(raw))
	}
	m := new(dns.Msg)
	err := m.Unpack(raw)
	if m.Id != id || !m.Response {
		return nil, fmt.Errorf("%w: id %d response %t", errBadReply, m.Id, m.Response)
	}
	if err != nil {
		if !m.Truncated {
			return nil, fmt.Errorf("parsing answer: %w", err)
		}
		m.Question = slices.Clone(req.msg.Question)
		m.Answer, m.Ns, m.Extra = nil, nil, nil
		packed, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("repacking truncated answer: %w", err)
		}
		return &reply{raw: packed, msg: m}, nil
	}
	if len(m.Question) == 0 && m.Rcode != dns.RcodeSuccess {
		return &reply{raw: raw, msg: m}, nil
	}
	if len(m.Question) != 1 || !sameQuestion(m.Question[0], req.msg.Question[0]) {
		return nil, fmt.Errorf("%w: question %v", errBadReply, m.Question)
	}
	return &reply{raw: raw, msg: m}, nil
}

func sameQuestion(a, b dns.Question) bool {
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// onDone runs f in its own goroutine once ctx is done. The returned stop
// cancels that if it has not started and otherwise waits for f to return,
// so f never outlives the caller.
func onDone(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(done)
		f()
	})
	return func() {
		if !stopAfter() {
			<-done
		}
	}
}
