package portfwd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slirp-dev/slirp/internal/lazyclose"
	"github.com/slirp-dev/slirp/internal/sockconn"
)

// GuestDialer opens connections into the namespace through the user-mode
// stack (the preserve path). src is the address the guest sees as the
// peer; a src whose address is invalid means the stack's gateway of dst's
// family, keeping src's port. netstack.Stack implements it.
type GuestDialer interface {
	DialTCP(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	DialUDP(src, dst netip.AddrPort) (net.Conn, error)
}

// SocketOpener creates kernel sockets inside the namespace (the fast path).
// The returned file is non-blocking; the Manager closes it.
// tap.Namespace implements it.
type SocketOpener interface {
	Socket(ctx context.Context, domain, typ, proto int) (*os.File, error)
}

// Defaults for the optional Config fields.
const (
	DefaultConnectTimeout = 10 * time.Second
	// DefaultUDPIdleTimeout is slirp4netns' (libslirp's) UDP timeout.
	DefaultUDPIdleTimeout = 240 * time.Second
	DefaultMaxUDPFlows    = 1024
)

// Config describes how a Manager reaches the namespace.
type Config struct {
	// Dialer is the preserve path; nil leaves only the fast path.
	Dialer GuestDialer
	// Opener is the fast path; nil leaves only the preserve path (as in
	// the daemon's tapfd and bess modes, where there is no helper inside
	// the namespace).
	Opener SocketOpener
	// Guest is the default guest address of a forward (N+100).
	Guest netip.Addr
	// ConnectTimeout bounds the connect to the guest for each new
	// connection; the client is reset when it runs out.
	ConnectTimeout time.Duration
	// UDPIdleTimeout ends a UDP flow after this long without a datagram
	// in either direction.
	UDPIdleTimeout time.Duration
	// MaxUDPFlows bounds the flows of one UDP forward; datagrams that
	// would open more are dropped and counted.
	MaxUDPFlows int
	// Logger gets lifecycle lines at Info and per-connection lines at
	// Debug; nil discards.
	Logger *slog.Logger
}

// Forward is one forward as the Manager lists it; its Spec has every
// default filled in.
type Forward struct {
	ID   int
	Spec Spec
}

// Counters are a forward's traffic counters since it was added.
type Counters struct {
	// Connections counts accepted TCP connections, or UDP flows opened.
	Connections uint64 `json:"connections"`
	// Active is how many of them are open now.
	Active int64 `json:"active"`
	// Fast and Preserve split Connections by data path.
	Fast     uint64 `json:"fast"`
	Preserve uint64 `json:"preserve"`
	// BytesToGuest and BytesToHost count payload bytes each way.
	BytesToGuest uint64 `json:"bytesToGuest"`
	BytesToHost  uint64 `json:"bytesToHost"`
	// Failed counts connections the guest side refused or never answered;
	// their clients were reset.
	Failed uint64 `json:"failed"`
	// Dropped counts UDP datagrams that could not be delivered (flow
	// table full, send errors).
	Dropped uint64 `json:"dropped"`
	// Errors counts accept and read errors and connections that ended
	// with an error rather than a clean close.
	Errors uint64 `json:"errors"`
}

// ForwardStats is a forward with its counters.
type ForwardStats struct {
	Forward
	Counters
}

// Manager owns a set of forwards. Its methods may be called from any
// goroutine at any time, also while traffic flows.
type Manager struct {
	cfg Config
	log *slog.Logger

	// ctx is cancelled by Close; dials and relays watch it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the Manager starts.
	wg sync.WaitGroup
	// closer closes the sockets of connections that ended both ways, a
	// batch at a time (package lazyclose).
	closer *lazyclose.Closer

	// mu guards the fields below it.
	mu sync.Mutex
	// lastID is the id of the last successful Add; ids are never reused.
	lastID   int
	forwards map[int]*forward
	// relays are the open connections of every forward, including those
	// of removed forwards, which keep running until they end.
	relays map[*tcpRelay]struct{}
	closed bool
}

// New checks cfg and returns an empty Manager. It starts nothing.
func New(cfg Config) (*Manager, error) {
	if cfg.Dialer == nil && cfg.Opener == nil {
		return nil, errors.New("portfwd: a Dialer or an Opener is required")
	}
	if !cfg.Guest.IsValid() {
		return nil, errors.New("portfwd: the default guest address is required")
	}
	cfg.Guest = cfg.Guest.Unmap()
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.UDPIdleTimeout <= 0 {
		cfg.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if cfg.MaxUDPFlows <= 0 {
		cfg.MaxUDPFlows = DefaultMaxUDPFlows
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:      cfg,
		log:      cfg.Logger,
		ctx:      ctx,
		cancel:   cancel,
		closer:   lazyclose.New(closeDelay, closeBatch),
		forwards: make(map[int]*forward),
		relays:   make(map[*tcpRelay]struct{}),
	}, nil
}

// Add opens the forward's host listeners and starts serving them. It
// returns the forward with its new id and defaults filled in. On error
// nothing stays open and no id is used up.
func (m *Manager) Add(spec Spec) (Forward, error) {
	spec, err := m.normalize(spec)
	if err != nil {
		return Forward{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Forward{}, ErrClosed
	}
	f := &forward{m: m, spec: spec}
	if err := f.listen(); err != nil {
		f.close()
		return Forward{}, err
	}
	m.lastID++
	f.id = m.lastID
	f.log = m.log.With("forward", f.id, "spec", spec.String())
	m.forwards[f.id] = f
	f.start()
	f.log.Info("port forward added", "mode", spec.Mode)
	return Forward{ID: f.id, Spec: spec}, nil
}

// normalize fills in the defaults and checks that the Manager can serve
// the forward's mode.
func (m *Manager) normalize(spec Spec) (Spec, error) {
	if err := spec.Validate(); err != nil {
		return Spec{}, err
	}
	mode, _ := ParseMode(string(spec.Mode))
	spec.Mode = mode
	if spec.Count == 0 {
		spec.Count = 1
	}
	if !spec.HostAddr.IsValid() {
		spec.HostAddr = netip.IPv4Unspecified()
	}
	spec.HostAddr = spec.HostAddr.Unmap()
	if !spec.GuestAddr.IsValid() {
		spec.GuestAddr = m.cfg.Guest
	}
	spec.GuestAddr = spec.GuestAddr.Unmap()
	if spec.GuestAddr.IsUnspecified() || spec.GuestAddr.IsMulticast() {
		return Spec{}, fmt.Errorf("guest address %v: give an address of the namespace", spec.GuestAddr)
	}
	switch {
	case spec.Mode == ModeFast && m.cfg.Opener == nil:
		return Spec{}, fmt.Errorf("mode fast needs sockets inside the namespace, which this daemon cannot open (no namespace helper with --netns-type=tapfd or --target-type=bess); use mode auto or preserve: %w", ErrPathUnavailable)
	case spec.Mode == ModePreserve && m.cfg.Dialer == nil:
		return Spec{}, fmt.Errorf("mode preserve needs the user-mode stack, which is not available here; use mode auto or fast: %w", ErrPathUnavailable)
	}
	return spec, nil
}

// Remove closes the forward's listeners. Its open TCP connections keep
// running until they end (as with slirp4netns); its UDP flows end with it,
// since they share its socket. Other forwards are not touched.
func (m *Manager) Remove(id int) error {
	m.mu.Lock()
	f, ok := m.forwards[id]
	delete(m.forwards, id)
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("port forward %d: %w", id, ErrNotFound)
	}
	f.close()
	f.log.Info("port forward removed")
	return nil
}

// List returns the forwards in the order they were added.
func (m *Manager) List() []Forward {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Forward, 0, len(m.forwards))
	for _, f := range m.forwards {
		out = append(out, Forward{ID: f.id, Spec: f.spec})
	}
	slices.SortFunc(out, func(a, b Forward) int { return a.ID - b.ID })
	return out
}

// Stats returns every forward with its counters, in the order they were
// added.
func (m *Manager) Stats() []ForwardStats {
	m.mu.Lock()
	fs := make([]*forward, 0, len(m.forwards))
	for _, f := range m.forwards {
		fs = append(fs, f)
	}
	m.mu.Unlock()
	slices.SortFunc(fs, func(a, b *forward) int { return a.id - b.id })
	out := make([]ForwardStats, 0, len(fs))
	for _, f := range fs {
		out = append(out, ForwardStats{Forward: Forward{ID: f.id, Spec: f.spec}, Counters: f.counters.snapshot()})
	}
	return out
}

// Close removes every forward, resets every open connection and waits for
// all goroutines to stop. It is safe to call more than once.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.wg.Wait()
		return nil
	}
	m.closed = true
	m.cancel()
	fs := make([]*forward, 0, len(m.forwards))
	for id, f := range m.forwards {
		fs = append(fs, f)
		delete(m.forwards, id)
	}
	rs := make([]*tcpRelay, 0, len(m.relays))
	for r := range m.relays {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, f := range fs {
		f.close()
	}
	for _, r := range rs {
		r.abort()
	}
	m.wg.Wait()
	m.closer.Close()
	return nil
}

// track registers an open relay so that Close can reset it; it reports
// false after Close, when the caller must drop the connection itself.
func (m *Manager) track(r *tcpRelay) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.relays[r] = struct{}{}
	return true
}

func (m *Manager) untrack(r *tcpRelay) {
	m.mu.Lock()
	delete(m.relays, r)
	m.mu.Unlock()
}

// path is a data path.
type path int

const (
	pathFast path = iota
	pathPreserve
)

func (p path) String() string {
	if p == pathFast {
		return "fast"
	}
	return "preserve"
}

// pathFor chooses the data path for a client of a forward in mode.
func (m *Manager) pathFor(mode Mode, client netip.Addr) path {
	switch {
	case m.cfg.Opener == nil:
		return pathPreserve
	case m.cfg.Dialer == nil:
		return pathFast
	case mode == ModeFast:
		return pathFast
	case mode == ModePreserve:
		return pathPreserve
	}
	if c := client.Unmap(); c.IsLoopback() || c.IsUnspecified() {
		return pathFast
	}
	return pathPreserve
}

// guestSource is the peer address the guest sees for a client on the
// preserve path (slirp4netns §2.4): the client itself, except that the
// host's loopback and unspecified addresses appear as the gateway (the
// invalid address tells the dialer so), and so do clients the guest could
// not answer: of the other family, or with the guest's own address. The
// client's port is kept.
func guestSource(client netip.AddrPort, guest netip.Addr) netip.AddrPort {
	c := client.Addr().Unmap().WithZone("")
	if c.IsLoopback() || c.IsUnspecified() || c.Is4() != guest.Is4() || c == guest {
		return netip.AddrPortFrom(netip.Addr{}, client.Port())
	}
	return netip.AddrPortFrom(c, client.Port())
}

// forward is one added forward with its listeners.
type forward struct {
	m    *Manager
	id   int
	spec Spec
	log  *slog.Logger

	tcp []*sockconn.Listener
	udp []*udpListener

	counters  counters
	closeOnce sync.Once
}

// counters are Counters as atomics.
type counters struct {
	connections, fast, preserve, toGuest, toHost, failed, dropped, errors atomic.Uint64
	active                                                                atomic.Int64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Connections:  c.connections.Load(),
		Active:       c.active.Load(),
		Fast:         c.fast.Load(),
		Preserve:     c.preserve.Load(),
		BytesToGuest: c.toGuest.Load(),
		BytesToHost:  c.toHost.Load(),
		Failed:       c.failed.Load(),
		Dropped:      c.dropped.Load(),
		Errors:       c.errors.Load(),
	}
}

func (c *counters) opened(p path) {
	c.connections.Add(1)
	c.active.Add(1)
	if p == pathFast {
		c.fast.Add(1)
	} else {
		c.preserve.Add(1)
	}
}

// listen opens every host socket of the forward; on error the caller
// closes what was opened.
func (f *forward) listen() error {
	network := string(f.spec.Proto) + "4"
	if f.spec.HostAddr.Is6() {
		network = string(f.spec.Proto) + "6"
	}
	for i := range f.spec.Count {
		port := f.spec.HostPort + uint16(i)
		ap := netip.AddrPortFrom(f.spec.HostAddr, port)
		switch f.spec.Proto {
		case TCP:
			tl, err := net.ListenTCP(network, net.TCPAddrFromAddrPort(ap))
			if err != nil {
				return annotateListenError(err, network, ap.String(), port)
			}
			l, err := sockconn.NewListener(tl)
			if err != nil {
				tl.Close()
				return fmt.Errorf("listen on %s: %w", ap, err)
			}
			f.tcp = append(f.tcp, l)
		case UDP:
			u, err := listenUDP(f, network, ap, netip.AddrPortFrom(f.spec.GuestAddr, f.spec.GuestPort+uint16(i)))
			if err != nil {
				return annotateListenError(err, network, ap.String(), port)
			}
			f.udp = append(f.udp, u)
		}
	}
	return nil
}

// start starts one goroutine per host socket.
func (f *forward) start() {
	for i, l := range f.tcp {
		guest := netip.AddrPortFrom(f.spec.GuestAddr, f.spec.GuestPort+uint16(i))
		f.m.wg.Go(func() { f.acceptLoop(l, guest) })
	}
	for _, u := range f.udp {
		f.m.wg.Go(u.serve)
	}
}

// close closes the forward's host sockets, which ends its goroutines.
func (f *forward) close() {
	f.closeOnce.Do(func() {
		for _, l := range f.tcp {
			l.Close()
		}
		for _, u := range f.udp {
			u.close()
		}
	})
}
