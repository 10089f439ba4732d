package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/slirp-dev/slirp/netem"
	"github.com/slirp-dev/slirp/portfwd"
)

// Version is the version of the HTTP API, served in Info.
const Version = "1.0.0"

// PortSpec is a forward as the HTTP API takes and returns it, modelled on
// rootlesskit's /v1/ports objects.
type PortSpec struct {
	// Proto is "tcp" or "udp"; rootlesskit's "tcp4", "tcp6", "udp4" and
	// "udp6" are accepted and pick the family of an empty ParentIP.
	Proto string `json:"proto"`
	// ParentIP is the host address to listen on; empty means 0.0.0.0
	// (or :: with tcp6/udp6).
	ParentIP   string `json:"parentIP,omitempty"`
	ParentPort int    `json:"parentPort"`
	// ChildIP is the address inside the namespace; empty means the
	// default guest address.
	ChildIP   string `json:"childIP,omitempty"`
	ChildPort int    `json:"childPort"`
	// Count is the number of consecutive ports from ParentPort and
	// ChildPort (a port range); 0 or 1 means one port.
	Count int `json:"count,omitempty"`
	// Mode is the data path: "auto" (default), "fast" or "preserve".
	Mode string `json:"mode,omitempty"`
}

// PortStatus is an added forward.
type PortStatus struct {
	ID   int      `json:"id"`
	Spec PortSpec `json:"spec"`
}

// PortStats is a forward with its traffic counters.
type PortStats struct {
	ID   int      `json:"id"`
	Spec PortSpec `json:"spec"`
	portfwd.Counters
}

// Stats is the reply of GET /v1/stats.
type Stats struct {
	Ports []PortStats `json:"ports"`
	// Stack holds the user-mode stack's counters, as the daemon reports
	// them; absent when it reports none.
	Stack any `json:"stack,omitempty"`
}

// Conn is one live connection or UDP flow, as GET /v1/conns lists them.
type Conn struct {
	// Direction is "out" for a flow the guest opened (NAT'ed to a host
	// socket) and "in" for a host client reaching the guest through a
	// forward.
	Direction string `json:"direction"`
	Proto     string `json:"proto"` // "tcp" or "udp"
	Guest     string `json:"guest"` // the guest's address and port
	// Dest is where the guest sent an outgoing flow (such as
	// 10.0.2.2:8080); empty for incoming ones.
	Dest string `json:"dest,omitempty"`
	// Host is the host side: the address an outgoing flow was connected
	// to, or the client of an incoming one.
	Host string `json:"host"`
	// Forward and Path say which forward an incoming connection came
	// through and on which data path ("fast" or "preserve").
	Forward int       `json:"forward,omitempty"`
	Path    string    `json:"path,omitempty"`
	Started time.Time `json:"started"`
	ToHost  uint64    `json:"to_host"`  // bytes guest → host
	ToGuest uint64    `json:"to_guest"` // bytes host → guest
}

// FromConn describes a forward's connection as the API lists it.
func FromConn(c portfwd.Conn) Conn {
	return Conn{
		Direction: "in", Proto: string(c.Proto), Guest: c.Guest.String(), Host: c.Client.String(),
		Forward: c.Forward, Path: c.Path, Started: c.Started, ToHost: c.ToHost, ToGuest: c.ToGuest,
	}
}

// Info is the reply of GET /v1/info. The daemon fills in everything but
// APIVersion.
type Info struct {
	APIVersion string `json:"apiVersion"`
	// Version is the daemon's version.
	Version string `json:"version"`
	// Network is the virtual network (CIDR); Gateway, DNS and GuestIP are
	// its special addresses.
	Network string `json:"network,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	DNS     string `json:"dns,omitempty"`
	GuestIP string `json:"guestIP,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	// Network6, Gateway6, DNS6 and GuestIP6 describe the IPv6 network,
	// when it is enabled.
	Network6 string `json:"network6,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
	DNS6     string `json:"dns6,omitempty"`
	GuestIP6 string `json:"guestIP6,omitempty"`
	// HostLoopback says the guest can reach the host's 127.0.0.1 through
	// the gateway.
	HostLoopback bool `json:"hostLoopback"`
	// FastPath and PreservePath say which data paths forwards can use.
	FastPath     bool `json:"fastPath"`
	PreservePath bool `json:"preservePath"`
}

// Error is the body of every HTTP error reply (as in rootlesskit).
type Error struct {
	Message string `json:"message"`
}

// maxBody bounds the body of a POST.
const maxBody = 64 << 10

// DecodePortSpec reads a PortSpec from a request body: one JSON object,
// unknown fields ignored.
func DecodePortSpec(r io.Reader) (PortSpec, error) {
	var p PortSpec
	dec := json.NewDecoder(io.LimitReader(r, maxBody))
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return PortSpec{}, errors.New("empty body: send a JSON object like {\"proto\":\"tcp\",\"parentPort\":8080,\"childPort\":80}")
		}
		return PortSpec{}, fmt.Errorf("body is not a port object: %w", err)
	}
	return p, nil
}

// ToSpec checks a PortSpec and converts it.
func (p PortSpec) ToSpec() (portfwd.Spec, error) {
	proto, family, err := portfwd.ParseProto(p.Proto)
	if err != nil {
		return portfwd.Spec{}, fmt.Errorf("proto: %w", err)
	}
	s := portfwd.Spec{Proto: proto}
	if p.Count > 1 {
		s.Count = p.Count
	}
	if s.Mode, err = portfwd.ParseMode(p.Mode); err != nil {
		return portfwd.Spec{}, fmt.Errorf("mode: %w", err)
	}
	if p.ParentIP != "" {
		if s.HostAddr, err = parseIP(p.ParentIP); err != nil {
			return portfwd.Spec{}, fmt.Errorf("parentIP: %w", err)
		}
	} else if family == 6 {
		s.HostAddr = netip.IPv6Unspecified()
	}
	if family == 4 && s.HostAddr.Is6() || family == 6 && s.HostAddr.Is4() {
		return portfwd.Spec{}, fmt.Errorf("proto %s does not match parentIP %s", p.Proto, p.ParentIP)
	}
	if p.ChildIP != "" {
		if s.GuestAddr, err = parseIP(p.ChildIP); err != nil {
			return portfwd.Spec{}, fmt.Errorf("childIP: %w", err)
		}
	}
	if p.ParentPort < 1 || p.ParentPort > 65535 {
		return portfwd.Spec{}, fmt.Errorf("parentPort %d: give a port 1-65535", p.ParentPort)
	}
	if p.ChildPort < 1 || p.ChildPort > 65535 {
		return portfwd.Spec{}, fmt.Errorf("childPort %d: give a port 1-65535", p.ChildPort)
	}
	if p.Count < 0 {
		return portfwd.Spec{}, fmt.Errorf("count %d: give the number of ports, 1 or more", p.Count)
	}
	s.HostPort, s.GuestPort = uint16(p.ParentPort), uint16(p.ChildPort)
	if err := s.Validate(); err != nil {
		return portfwd.Spec{}, err
	}
	return s, nil
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zones are not supported", s)
	}
	return a.Unmap(), nil
}

// FromSpec converts a Spec (as the Manager lists it, defaults filled in).
func FromSpec(s portfwd.Spec) PortSpec {
	p := PortSpec{
		Proto:      string(s.Proto),
		ParentPort: int(s.HostPort),
		ChildPort:  int(s.GuestPort),
		Mode:       string(s.Mode),
	}
	if s.HostAddr.IsValid() {
		p.ParentIP = s.HostAddr.String()
	}
	if s.GuestAddr.IsValid() {
		p.ChildIP = s.GuestAddr.String()
	}
	if s.Count > 1 {
		p.Count = s.Count
	}
	return p
}

// Netem is the body of GET and PUT /v1/netem: the impairments in the
// --netem syntax ("delay=50ms jitter=10ms loss=1% egress:rate=10mbit
// partition"; "none" or "" clears them). Replies also carry them
// structured in Details.
type Netem struct {
	Spec    string      `json:"spec"`
	Details *netem.Spec `json:"details,omitempty"`
}
