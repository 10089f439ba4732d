package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

const (
	// DefaultTimeout is the budget per query when Config.Timeout is 0.
	// glibc and musl wait 5 s for an answer before they retry or give up,
	// so the SERVFAIL for a query no upstream answered must arrive well
	// before that; 3 s still leaves a cold recursive lookup (rarely over
	// a second or two) time to finish, and 1.5 s per nameserver when the
	// first of two is dead.
	DefaultTimeout = 3 * time.Second

	// defaultMaxInFlight bounds the UDP queries handled at once. Beyond it
	// a query is answered SERVFAIL at once from the read loop rather than
	// queued, so a flood cannot grow goroutines or memory without bound
	// and clients fail fast instead of timing out.
	defaultMaxInFlight = 256
	// defaultMaxConns bounds the TCP connections served at once; a
	// connection beyond it is closed on accept.
	defaultMaxConns = 64
	// defaultIdleTimeout closes a TCP connection that sent no query for
	// that long; RFC 7766 asks for an idle timeout of seconds.
	defaultIdleTimeout = 10 * time.Second

	// ednsSize is the UDP payload size advertised in answers the server
	// makes itself (the DNS flag day 2020 value, safe on any MTU).
	ednsSize = 1232
	// staticTTL is the TTL of answers for Config.Hosts; the addresses do
	// not change while the daemon runs.
	staticTTL = 60
)

// Config configures a Server. The zero value follows /etc/resolv.conf with
// the default timeout and cache.
type Config struct {
	// ResolvConf is the resolv.conf whose nameserver lines give the
	// upstreams, re-read when it changes. Default DefaultResolvConf.
	// Ignored when Upstreams is set.
	ResolvConf string
	// Upstreams, if set, are used instead of resolv.conf, in order.
	Upstreams []netip.AddrPort
	// Hosts are names answered locally instead of forwarded: A queries
	// get the IPv4 addresses, AAAA queries the IPv6 ones, any other type
	// an empty NOERROR answer (NODATA). Names are case-insensitive; a
	// missing trailing dot is added. Typically host.containers.internal.
	// and host.slirp.internal. map to the gateway.
	Hosts map[string][]netip.Addr
	// Dial opens host-side connections to upstreams ("udp" or "tcp",
	// "ip:53"). The daemon passes one that binds --outbound-addr.
	// Default: a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Timeout is the budget for one query across all upstreams, after
	// which the client gets SERVFAIL. Default DefaultTimeout.
	Timeout time.Duration
	// CacheSize is the most answers cached; 0 means 1024, a negative
	// value disables the cache.
	CacheSize int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Stats are counters since New. Every client message read ends up either
// Replied or Dropped.
type Stats struct {
	// Received counts messages read from clients, over UDP and TCP.
	Received uint64
	// Replied counts replies written to clients.
	Replied uint64
	// Dropped counts messages left unanswered: too short to have a
	// header, DNS responses instead of queries, stopped by Close, or a
	// failed write.
	Dropped uint64
	// FormErrs counts malformed queries answered FORMERR.
	FormErrs uint64
	// ServFails counts SERVFAIL answers the server made itself: no
	// nameserver configured, none answered, or overload. A SERVFAIL
	// passed through from an upstream is not counted.
	ServFails uint64
	// Overloaded counts UDP queries answered SERVFAIL and TCP
	// connections closed because too many were in flight.
	Overloaded uint64
	// LocalAnswers counts queries answered from Config.Hosts.
	LocalAnswers uint64
	// CacheHits and CacheMisses count cache lookups.
	CacheHits, CacheMisses uint64
	// Forwarded counts exchanges with an upstream, each try separately;
	// a TCP retry of a truncated answer is counted in TCPRetries.
	Forwarded uint64
	// TCPRetries counts truncated UDP answers asked again over TCP.
	TCPRetries uint64
	// UpstreamErrors counts tries that got no usable answer: timeout,
	// network error, or an answer not matching the query.
	UpstreamErrors uint64
	// Truncated counts answers cut to fit the client's UDP size.
	Truncated uint64
}

type counters struct {
	received, replied, dropped, formErrs, servFails, overloaded atomic.Uint64
	localAnswers, cacheHits, cacheMisses                        atomic.Uint64
	forwarded, tcpRetries, upstreamErrors, truncated            atomic.Uint64
}

// Server is the DNS forwarder. Its methods are safe for concurrent use.
type Server struct {
	log     *slog.Logger
	dial    func(ctx context.Context, network, address string) (net.Conn, error)
	timeout time.Duration
	hosts   map[string][]netip.Addr
	// static is Config.Upstreams; when empty, resolv supplies upstreams.
	static []netip.AddrPort
	resolv *resolvConf
	// cache is nil when disabled.
	cache *cache
	// now is the cache's clock; tests move it instead of sleeping.
	now         func() time.Time
	idleTimeout time.Duration
	// inFlight and conns are semaphores bounding UDP queries in progress
	// and TCP connections served.
	inFlight chan struct{}
	conns    chan struct{}
	// lastOverloadLog is when warnOverload last logged, in Unix
	// nanoseconds.
	lastOverloadLog atomic.Int64

	// ctx is cancelled by Close and stops every Serve call.
	ctx    context.Context
	cancel context.CancelFunc
	// mu guards closed; it orders wg.Add in the Serve calls before the
	// wg.Wait in Close.
	mu     sync.Mutex
	closed bool
	// wg counts running Serve calls; each waits for its own goroutines.
	wg sync.WaitGroup

	// upstreamDown is set while upstreams fail, so an outage is logged
	// once when it starts and once when it ends.
	upstreamDown atomic.Bool
	stats        counters
}

// New checks cfg and returns a Server. It starts nothing and reads no file:
// resolv.conf is read on the first query.
func New(cfg Config) (*Server, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("DNS timeout %v is negative; use 0 for the default %v", cfg.Timeout, DefaultTimeout)
	}
	for _, up := range cfg.Upstreams {
		if !up.IsValid() || up.Port() == 0 {
			return nil, fmt.Errorf("DNS upstream %q is not an address with a port, like 192.0.2.1:53", up)
		}
	}
	hosts, err := normalizeHosts(cfg.Hosts)
	if err != nil {
		return nil, err
	}

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:         log,
		dial:        cfg.Dial,
		timeout:     cfg.Timeout,
		hosts:       hosts,
		static:      slices.Clone(cfg.Upstreams),
		now:         time.Now,
		idleTimeout: defaultIdleTimeout,
		inFlight:    make(chan struct{}, defaultMaxInFlight),
		conns:       make(chan struct{}, defaultMaxConns),
	}
	if s.dial == nil {
		s.dial = (&net.Dialer{}).DialContext
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if len(s.static) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = DefaultResolvConf
		}
		s.resolv = newResolvConf(path, log)
	}
	switch {
	case cfg.CacheSize == 0:
		s.cache = newCache(defaultCacheSize)
	case cfg.CacheSize > 0:
		s.cache = newCache(cfg.CacheSize)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// normalizeHosts lower-cases the names, adds the trailing dot, unmaps
// IPv4-mapped addresses and rejects what cannot be answered.
func normalizeHosts(in map[string][]netip.Addr) (map[string][]netip.Addr, error) {
	out := make(map[string][]netip.Addr, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		fqdn := dns.Fqdn(strings.ToLower(name))
		if _, ok := dns.IsDomainName(fqdn); !ok || fqdn == "." {
			return nil, fmt.Errorf("DNS host name %q is not a valid domain name", name)
		}
		if _, dup := out[fqdn]; dup {
			return nil, fmt.Errorf("DNS host name %q is given twice (names are case-insensitive)", name)
		}
		addrs := make([]netip.Addr, 0, len(in[name]))
		for _, a := range in[name] {
			if !a.IsValid() {
				return nil, fmt.Errorf("DNS host %q has an invalid address", name)
			}
			addrs = append(addrs, a.Unmap())
		}
		out[fqdn] = addrs
	}
	return out, nil
}

// enter registers a Serve call; it fails after Close.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// serveContext returns a context done when ctx is or when Close is called.
func (s *Server) serveContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// ServePacket answers DNS over UDP on pc until ctx is done or Close is
// called, and then returns nil; it returns the error if reading from pc
// fails otherwise (pc closed by someone else, say). ServePacket owns pc:
// it closes it before returning, after every query it started has been
// answered or abandoned.
//
// Each query is handled in its own goroutine, at most 256 at once across
// all ServePacket calls; a query beyond that is answered SERVFAIL at once.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	if pc == nil {
		return errors.New("dns: ServePacket needs a PacketConn")
	}
	if !s.enter() {
		pc.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()
	ctx, cancel := s.serveContext(ctx)
	stopClose := onDone(ctx, func() { pc.Close() })
	var queries sync.WaitGroup
	defer func() {
		cancel()
		queries.Wait()
		stopClose()
		pc.Close()
	}()

	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading DNS query: %w", err)
		}
		s.stats.received.Add(1)
		pkt := slices.Clone(buf[:n])
		select {
		case s.inFlight <- struct{}{}:
			queries.Go(func() {
				defer func() { <-s.inFlight }()
				s.sendPacket(ctx, pc, addr, s.handle(ctx, pkt, "udp"))
			})
		default:
			s.stats.overloaded.Add(1)
			s.warnOverload("DNS query answered SERVFAIL: too many in flight", slog.String("client", addr.String()))
			s.sendPacket(ctx, pc, addr, s.overloadReply(pkt))
		}
	}
}

// overloadLogInterval is the least time between two warnings about the
// server's limits: a flood of queries must not flood the log too.
const overloadLogInterval = 10 * time.Second

// warnOverload logs a limit being hit, at most once per
// overloadLogInterval; the Overloaded counter has every occurrence.
func (s *Server) warnOverload(msg string, attrs ...any) {
	now := time.Now().UnixNano()
	last := s.lastOverloadLog.Load()
	if now-last < int64(overloadLogInterval) || !s.lastOverloadLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg+" (logged at most every 10s; see the overloaded counter)", attrs...)
}

// sendPacket writes a UDP reply; a nil reply counts as dropped.
func (s *Server) sendPacket(ctx context.Context, pc net.PacketConn, addr net.Addr, reply []byte) {
	if reply == nil || ctx.Err() != nil {
		s.stats.dropped.Add(1)
		return
	}
	if _, err := pc.WriteTo(reply, addr); err != nil {
		s.stats.dropped.Add(1)
		s.log.Debug("cannot send DNS reply", slog.String("client", addr.String()), slog.Any("error", err))
		return
	}
	s.stats.replied.Add(1)
}

// ServeStream answers DNS over TCP (two-byte length framing, RFC 1035
// 4.2.2) on l until ctx is done or Close is called, and then returns nil;
// it returns the error if Accept fails otherwise. ServeStream owns l and
// closes it, and every connection it accepted, before returning.
//
// A connection may carry many queries; they are answered in order. It is
// closed after 10 s without a query, or at once when 64 connections are
// already being served.
func (s *Server) ServeStream(ctx context.Context, l net.Listener) error {
	if l == nil {
		return errors.New("dns: ServeStream needs a Listener")
	}
	if !s.enter() {
		l.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()
	ctx, cancel := s.serveContext(ctx)
	stopClose := onDone(ctx, func() { l.Close() })
	var conns sync.WaitGroup
	defer func() {
		cancel()
		conns.Wait()
		stopClose()
		l.Close()
	}()

	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting DNS connection: %w", err)
		}
		select {
		case s.conns <- struct{}{}:
			conns.Go(func() {
				defer func() { <-s.conns }()
				s.serveConn(ctx, c)
			})
		default:
			s.stats.overloaded.Add(1)
			s.warnOverload("DNS connection over TCP closed: too many open", slog.String("client", c.RemoteAddr().String()))
			c.Close()
		}
	}
}

// serveConn answers the queries on one TCP connection until the client
// closes it, stays idle, sends something without a DNS header, or ctx is
// done.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := onDone(ctx, func() { c.Close() })
	defer stop()

	var lenBuf [2]byte
	for {
		if err := c.SetReadDeadline(time.Now().Add(s.idleTimeout)); err != nil {
			return
		}
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		s.stats.received.Add(1)
		if len(msg) < headerLen {
			// Not even a header: nothing to answer, and the
			// stream cannot be trusted any more.
			s.stats.dropped.Add(1)
			return
		}
		reply := s.handle(ctx, msg, "tcp")
		if reply == nil || ctx.Err() != nil {
			s.stats.dropped.Add(1)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		framed := make([]byte, 2+len(reply))
		binary.BigEndian.PutUint16(framed, uint16(len(reply)))
		copy(framed[2:], reply)
		if err := c.SetWriteDeadline(time.Now().Add(s.idleTimeout)); err != nil {
			s.stats.dropped.Add(1)
			return
		}
		if _, err := c.Write(framed); err != nil {
			s.stats.dropped.Add(1)
			s.log.Debug("cannot send DNS reply", slog.String("client", c.RemoteAddr().String()), slog.Any("error", err))
			return
		}
		s.stats.replied.Add(1)
	}
}

// Close stops every Serve call, abandons the queries in flight and waits
// until all goroutines the Server started have returned. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Received:       c.received.Load(),
		Replied:        c.replied.Load(),
		Dropped:        c.dropped.Load(),
		FormErrs:       c.formErrs.Load(),
		ServFails:      c.servFails.Load(),
		Overloaded:     c.overloaded.Load(),
		LocalAnswers:   c.localAnswers.Load(),
		CacheHits:      c.cacheHits.Load(),
		CacheMisses:    c.cacheMisses.Load(),
		Forwarded:      c.forwarded.Load(),
		TCPRetries:     c.tcpRetries.Load(),
		UpstreamErrors: c.upstreamErrors.Load(),
		Truncated:      c.truncated.Load(),
	}
}

// upstreams returns the nameservers to ask, re-reading resolv.conf when due.
// A changed list empties the cache.
func (s *Server) upstreams() []netip.AddrPort {
	if s.resolv == nil {
		return s.static
	}
	servers, changed := s.resolv.nameservers(time.Now())
	if changed && s.cache != nil {
		s.cache.flush()
	}
	return servers
}
