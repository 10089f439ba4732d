package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/slirp-dev/slirp/netem"
	"github.com/slirp-dev/slirp/portfwd"
)

// Defaults for the optional Config fields.
const (
	// DefaultRequestTimeout is how long a client of the slirp4netns
	// protocol has to send its request, and an HTTP client its headers.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxConns bounds the connections being read or answered at
	// once (HTTP keep-alive connections idle at the server do not count).
	DefaultMaxConns = 64
)

// drainLimit and drainTime bound how much of a client's extra input is
// read and thrown away after the reply, so that closing the connection
// does not turn into a reset that could destroy the reply in transit.
const (
	drainLimit = 1 << 20
	drainTime  = time.Second
)

// Config describes what a Server serves.
type Config struct {
	// Manager holds the forwards; required.
	Manager *portfwd.Manager
	// Info returns the daemon's description for GET /v1/info; nil serves
	// only the API version.
	Info func() Info
	// StackStats returns the user-mode stack's counters for GET /v1/stats
	// as a JSON-encodable value; nil leaves them out.
	StackStats func() any
	// Flows returns the flows the guest opened, for GET /v1/conns
	// (Direction "out"); the forwards' connections are added to them. Nil
	// lists the forwards' only.
	Flows func() []Conn
	// Netem and SetNetem read and replace the test rig's impairments for
	// /v1/netem; nil answers 501.
	Netem    func() netem.Spec
	SetNetem func(netem.Spec)
	// RequestTimeout is how long a client may take to send its request;
	// a slirp4netns-protocol client that is slower gets an error reply.
	RequestTimeout time.Duration
	// MaxConns bounds the connections handled at once; more get a "busy"
	// error at once.
	MaxConns int
	// AllowUIDs are the peer uids served; others get a permission error.
	// Nil allows this process's effective uid and root.
	AllowUIDs []uint32
	// Logger gets one Debug line per request; nil discards.
	Logger *slog.Logger
}

// Server serves the port-forwarding API on a unix socket: on every
// connection, slirp4netns' JSON protocol or the HTTP API, told apart by the
// first bytes (an HTTP request starts with a method name and a space, such
// as "GET "; a slirp4netns request with "{" or white space).
//
// Unlike slirp4netns, which handles one connection at a time and stops
// forwarding while it waits for a client, every connection is served on
// its own goroutine with a deadline, so a slow or silent client holds up
// nobody.
type Server struct {
	cfg  Config
	log  *slog.Logger
	http *http.Server
	// httpConns feeds HTTP connections to http; it is closed by Close.
	httpConns *connListener
	sem       chan struct{}

	// wg counts the accept loop and every connection goroutine.
	wg sync.WaitGroup

	// mu guards the fields below it.
	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	closed    bool
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("api: server closed")

// New checks cfg and returns a Server with its HTTP dispatcher running;
// Serve then takes connections and Close stops everything.
func New(cfg Config) (*Server, error) {
	if cfg.Manager == nil {
		return nil, errors.New("api: a Manager is required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.AllowUIDs == nil {
		cfg.AllowUIDs = []uint32{uint32(os.Geteuid()), 0}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		sem:   make(chan struct{}, cfg.MaxConns),
		conns: make(map[net.Conn]struct{}),
	}
	s.httpConns = newConnListener()
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.RequestTimeout,
		ReadTimeout:       3 * cfg.RequestTimeout,
		WriteTimeout:      3 * cfg.RequestTimeout,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	s.wg.Go(func() {
		if err := s.http.Serve(s.httpConns); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP API stopped", "err", err)
		}
	})
	return s, nil
}

// Serve accepts connections on l until Close (then it returns nil) or
// until l fails. l is closed when Serve returns. A unix listener gets its
// peers checked against AllowUIDs.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				s.log.Warn("API accept failed; retrying", "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("api: accept: %w", err)
		}
		if !s.track(c) {
			c.Close()
			return nil
		}
		s.wg.Go(func() { s.handle(c) })
	}
}

// isTemporary reports accept errors worth retrying (out of descriptors).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Close stops every Serve, closes every connection and waits for all
// goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	ls := s.listeners
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, l := range ls {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	s.http.Close()
	s.httpConns.Close()
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// handle reads the first bytes of a connection and serves it with the
// protocol they announce.
func (s *Server) handle(c net.Conn) {
	handedOver := false
	defer func() {
		if !handedOver {
			s.untrack(c)
			c.Close()
		}
	}()
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		// Too many at once: answer without reading (as JSON, since
		// nothing was read to tell the protocol).
		s.log.Warn("API connection refused: too many at once", "max", s.cfg.MaxConns)
		s.reply(c, (&slirpError{desc: descBusy}).reply())
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
	buf := make([]byte, maxSlirpRequest)
	var n int
	var err error
	isHTTP, decided := false, false
	for !decided && err == nil && n < len(buf) {
		var k int
		k, err = c.Read(buf[n:])
		n += k
		isHTTP, decided = classify(buf[:n])
	}
	allowed := s.allowed(c)
	if isHTTP {
		if !allowed {
			s.log.Warn("API connection refused: peer uid not allowed")
			s.reply(c, []byte("HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"+
				string(marshal(Error{Message: descNotPermitted}))+"\n"))
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		s.untrack(c)
		pc := &prefixConn{Conn: c, prefix: buf[:n]}
		if s.httpConns.push(pc) {
			handedOver = true
		}
		return
	}
	if !allowed {
		s.log.Warn("API connection refused: peer uid not allowed")
		s.reply(c, (&slirpError{desc: descNotPermitted}).reply())
		return
	}
	s.serveSlirp(c, buf, n, err)
}

// allowed checks the peer's uid on a unix connection.
func (s *Server) allowed(c net.Conn) bool {
	uid, ok := peerUID(c)
	if !ok {
		_, isUnix := c.(*net.UnixConn)
		// Other transports carry no credentials; only tests use them.
		return !isUnix
	}
	return slices.Contains(s.cfg.AllowUIDs, uid)
}

// httpMethods are the starts of an HTTP request.
var httpMethods = []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "PATCH ", "OPTIONS ", "CONNECT ", "TRACE "}

// classify tells an HTTP request from a slirp4netns one by its first
// bytes: HTTP starts with a method and a space. decided is false while b
// is still a prefix of one (more bytes are needed).
func classify(b []byte) (isHTTP, decided bool) {
	if len(b) == 0 {
		return false, false
	}
	for _, m := range httpMethods {
		if len(b) >= len(m) {
			if string(b[:len(m)]) == m {
				return true, true
			}
		} else if m[:len(b)] == string(b) {
			return false, false
		}
	}
	return false, true
}

// serveSlirp reads the rest of a slirp4netns request, whose first read
// (n bytes of buf, then err) is done, and answers it.
func (s *Server) serveSlirp(c net.Conn, buf []byte, n int, err error) {
	for err == nil && n < len(buf) && !completeJSON(buf[:n]) {
		var k int
		k, err = c.Read(buf[n:])
		n += k
	}
	var reply []byte
	switch {
	case n == len(buf):
		reply = (&slirpError{desc: descTooLarge}).reply()
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !completeJSON(buf[:n]):
		reply = (&slirpError{desc: descTimeout}).reply()
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Debug("API read failed", "err", err)
		return
	default:
		req, perr := parseSlirpRequest(buf[:n])
		if perr != nil {
			reply = perr.reply()
		} else {
			reply = executeSlirp(s.cfg.Manager, req)
		}
	}
	s.log.Debug("API request", "protocol", "slirp4netns", "request", string(buf[:n]), "reply", string(reply))
	s.reply(c, reply)
}

// reply writes b in one write, half-closes, and reads what the client
// still sends (bounded) before the deferred close, so that the reply is
// not lost to a reset.
func (s *Server) reply(c net.Conn, b []byte) {
	_ = c.SetWriteDeadline(time.Now().Add(s.cfg.RequestTimeout))
	if _, err := c.Write(b); err != nil {
		s.log.Debug("API reply failed", "err", err)
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(drainTime))
	_, _ = io.CopyN(io.Discard, c, drainLimit)
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// connListener is a net.Listener fed by push: how http.Server gets the
// connections that turned out to speak HTTP.
type connListener struct {
	ch     chan net.Conn
	done   chan struct{}
	mu     sync.Mutex
	closed bool
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; it reports false (and closes c) after Close.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.UnixAddr{Name: "api", Net: "unix"} }
