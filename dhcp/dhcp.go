// Package dhcp is the DHCPv4 server of the virtual network, as libslirp
// runs it for slirp4netns: leases from a small pool (N+15..N+30 by
// default) with the gateway as router and server identifier, the DNS
// address, the netmask, a one-day lease and the link MTU. It lets a guest
// that runs a DHCP client (busybox udhcpc, dhclient, systemd-networkd)
// instead of --configure get its address.
//
// The server knows nothing about the stack: it reads requests from a
// net.PacketConn bound to port 67 on the guest-facing side and broadcasts
// its replies to port 68, which every client accepts before it has an
// address. Message parsing and building use github.com/insomniacslk/dhcp.
package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Defaults as in libslirp.
const (
	DefaultPoolSize  = 16
	DefaultLeaseTime = 24 * time.Hour
)

// Config describes the network the server hands out.
type Config struct {
	// Network is the virtual IPv4 network, e.g. 10.0.2.0/24.
	Network netip.Prefix
	// ServerIP is the server identifier and router (the gateway).
	ServerIP netip.Addr
	// DNS are the name servers offered; empty offers none.
	DNS []netip.Addr
	// PoolStart is the first address leased (N+15 in slirp4netns).
	PoolStart netip.Addr
	// PoolSize is how many addresses are leased; 0 means DefaultPoolSize.
	PoolSize int
	// LeaseTime is the lease offered; 0 means DefaultLeaseTime.
	LeaseTime time.Duration
	// MTU, when not 0, is offered as the interface MTU (option 26).
	MTU int
	// Logger receives one line per lease; nil discards.
	Logger *slog.Logger
}

// Server answers DHCPDISCOVER and DHCPREQUEST. Leases are per client
// hardware address and stay for the server's life, as in libslirp.
type Server struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// leases maps a client's hardware address to its address index in
	// the pool. +checklocks:mu
	leases map[string]int
	// owner is the reverse of leases. +checklocks:mu
	owner []string
}

// New validates cfg. It starts nothing.
func New(cfg Config) (*Server, error) {
	if !cfg.Network.IsValid() || !cfg.Network.Addr().Is4() {
		return nil, fmt.Errorf("dhcp: network %v is not an IPv4 prefix", cfg.Network)
	}
	if !cfg.Network.Contains(cfg.ServerIP) {
		return nil, fmt.Errorf("dhcp: server address %v is not in %v", cfg.ServerIP, cfg.Network)
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	last := addrAdd(cfg.PoolStart, cfg.PoolSize-1)
	if !cfg.Network.Contains(cfg.PoolStart) || !cfg.Network.Contains(last) || cfg.PoolSize < 0 {
		return nil, fmt.Errorf("dhcp: pool %v+%d is not inside %v", cfg.PoolStart, cfg.PoolSize, cfg.Network)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: cfg.Logger, leases: make(map[string]int), owner: make([]string, cfg.PoolSize)}, nil
}

// Serve answers requests read from pc until ctx is done or pc fails. It
// closes pc before it returns.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcp: read: %w", err)
		}
		reply, err := s.Reply(buf[:n])
		if err != nil {
			s.log.Debug("DHCP request ignored", "err", err)
			continue
		}
		if _, err := pc.WriteTo(reply, bcast); err != nil {
			s.log.Warn("DHCP reply not sent", "err", err)
		}
	}
}

// Reply returns the answer to one request message, or an error saying why
// there is none.
func (s *Server) Reply(msg []byte) ([]byte, error) {
	req, err := dhcpv4.FromBytes(msg)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, errors.New("not a request")
	}
	if len(req.ClientHWAddr) != 6 {
		return nil, fmt.Errorf("hardware address of %d bytes", len(req.ClientHWAddr))
	}
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeNone: // BOOTP is treated as a request, as libslirp does
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Errorf("message type %v not handled", req.MessageType())
	}
	hw := req.ClientHWAddr.String()
	addr, ok := s.lease(hw)
	if !ok {
		return nil, errors.New("pool exhausted")
	}
	if typ == dhcpv4.MessageTypeAck {
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP.AsSlice()) {
			return nil, errors.New("request for another server")
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		if want != nil && !want.IsUnspecified() && !want.Equal(addr.AsSlice()) {
			return s.nak(req)
		}
	}
	mask := net.CIDRMask(s.cfg.Network.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(addr.AsSlice()),
		dhcpv4.WithServerIP(s.cfg.ServerIP.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithNetmask(mask),
		dhcpv4.WithRouter(s.cfg.ServerIP.AsSlice()),
		dhcpv4.WithLeaseTime(uint32(s.cfg.LeaseTime / time.Second)),
		dhcpv4.WithBroadcast(true),
	}
	if len(s.cfg.DNS) > 0 {
		ips := make([]net.IP, len(s.cfg.DNS))
		for i, a := range s.cfg.DNS {
			ips[i] = a.AsSlice()
		}
		mods = append(mods, dhcpv4.WithDNS(ips...))
	}
	if s.cfg.MTU > 0 {
		var b [2]byte
		binary.BigEndian.PutUint16(b[:], uint16(s.cfg.MTU))
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, b[:]))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("build reply: %w", err)
	}
	if typ == dhcpv4.MessageTypeAck {
		s.log.Info("DHCP lease", "mac", hw, "addr", addr.String())
	}
	return resp.ToBytes(), nil
}

func (s *Server) nak(req *dhcpv4.DHCPv4) ([]byte, error) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithBroadcast(true),
	)
	if err != nil {
		return nil, fmt.Errorf("build NAK: %w", err)
	}
	return resp.ToBytes(), nil
}

// lease returns the address of hw, taking a free one on first sight.
func (s *Server) lease(hw string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.leases[hw]; ok {
		return addrAdd(s.cfg.PoolStart, i), true
	}
	for i, o := range s.owner {
		if o == "" {
			s.owner[i] = hw
			s.leases[hw] = i
			return addrAdd(s.cfg.PoolStart, i), true
		}
	}
	return netip.Addr{}, false
}

func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(n)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
