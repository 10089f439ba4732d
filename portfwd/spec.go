package portfwd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is the transport protocol of a forward.
type Proto string

// The protocols a forward can carry.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Mode chooses the data path of a forward's connections.
type Mode string

// The data path modes.
const (
	// ModeAuto takes the fast path for clients on the host's loopback and
	// the preserve path for the others. The empty Mode means ModeAuto.
	ModeAuto Mode = "auto"
	// ModeFast always splices to a kernel socket inside the namespace.
	ModeFast Mode = "fast"
	// ModePreserve always goes through the user-mode stack so that the
	// guest sees the client's address.
	ModePreserve Mode = "preserve"
)

// MaxRange is the largest number of ports one forward may cover.
const MaxRange = 1024

// Spec describes a forward. The zero values of the optional fields pick
// the documented defaults; Manager.Add fills them in, and the Spec a
// Forward reports has them filled.
type Spec struct {
	Proto Proto
	// HostAddr is where the forward listens on the host; zero means
	// 0.0.0.0. It selects the family of the listener: an IPv6 address
	// listens on IPv6 only.
	HostAddr netip.Addr
	HostPort uint16
	// GuestAddr is the address inside the namespace; zero means the
	// Manager's default guest address. It may be of either family,
	// independently of HostAddr.
	GuestAddr netip.Addr
	GuestPort uint16
	// Count is how many consecutive ports the forward covers, starting at
	// HostPort on the host and GuestPort in the guest; 0 means 1.
	Count int
	// Mode is the data path; empty means ModeAuto.
	Mode Mode
}

// ParseProto accepts "tcp" and "udp", and rootlesskit's "tcp4", "tcp6",
// "udp4" and "udp6" (the family suffix is returned as 4 or 6, 0 for none).
func ParseProto(s string) (Proto, int, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, 0, nil
	case "udp":
		return UDP, 0, nil
	case "tcp4":
		return TCP, 4, nil
	case "tcp6":
		return TCP, 6, nil
	case "udp4":
		return UDP, 4, nil
	case "udp6":
		return UDP, 6, nil
	}
	return "", 0, fmt.Errorf("unknown protocol %q: use tcp or udp", s)
}

// ParseMode accepts "", "auto", "fast" and "preserve".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case "":
		return ModeAuto, nil
	case ModeAuto, ModeFast, ModePreserve:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q: use auto, fast or preserve", s)
}

// Validate checks a Spec as Manager.Add would, without the defaults that
// depend on the Manager.
func (s Spec) Validate() error {
	if s.Proto != TCP && s.Proto != UDP {
		return fmt.Errorf("unknown protocol %q: use tcp or udp", s.Proto)
	}
	if _, err := ParseMode(string(s.Mode)); err != nil {
		return err
	}
	if s.HostAddr.IsValid() && s.HostAddr.Zone() != "" {
		return fmt.Errorf("host address %v: zones are not supported", s.HostAddr)
	}
	if s.HostPort == 0 {
		return fmt.Errorf("host port 0: give a port 1-65535")
	}
	if s.GuestPort == 0 {
		return fmt.Errorf("guest port 0: give a port 1-65535")
	}
	n := s.count()
	if n < 1 || n > MaxRange {
		return fmt.Errorf("port count %d: a forward covers 1 to %d ports", s.Count, MaxRange)
	}
	if int(s.HostPort)+n-1 > 65535 || int(s.GuestPort)+n-1 > 65535 {
		return fmt.Errorf("port range of %d from %d:%d goes past 65535", n, s.HostPort, s.GuestPort)
	}
	return nil
}

func (s Spec) count() int {
	if s.Count == 0 {
		return 1
	}
	return s.Count
}

// String renders the Spec in the syntax ParseSpec reads (with the guest
// address when it is set, and the mode when it is not auto).
func (s Spec) String() string {
	var b strings.Builder
	if s.HostAddr.IsValid() {
		b.WriteString(addrString(s.HostAddr))
		b.WriteByte(':')
	}
	b.WriteString(portRange(s.HostPort, s.count()))
	b.WriteByte(':')
	if s.GuestAddr.IsValid() {
		b.WriteString(addrString(s.GuestAddr))
		b.WriteByte(':')
	}
	b.WriteString(portRange(s.GuestPort, s.count()))
	if s.Proto != "" {
		b.WriteString("/" + string(s.Proto))
	}
	return b.String()
}

func addrString(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func portRange(p uint16, n int) string {
	if n <= 1 {
		return strconv.Itoa(int(p))
	}
	return strconv.Itoa(int(p)) + "-" + strconv.Itoa(int(p)+n-1)
}

// ParseSpec reads the port syntax of slirpctl (and of docker -p and
// rootlessctl):
//
//	[HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT[/PROTO]
//
// HOSTPORT and GUESTPORT may be ranges (8000-8010) of the same length. IPv6
// addresses are written in brackets ([::1]:8080:80). PROTO is tcp (the
// default) or udp. The mode is left empty (auto).
func ParseSpec(s string) (Spec, error) {
	var spec Spec
	body, proto, hasProto := strings.Cut(s, "/")
	spec.Proto = TCP
	if hasProto {
		p, fam, err := ParseProto(proto)
		if err != nil {
			return Spec{}, fmt.Errorf("port %q: %w", s, err)
		}
		if fam != 0 {
			return Spec{}, fmt.Errorf("port %q: write the protocol as tcp or udp; the host address chooses the family", s)
		}
		spec.Proto = p
	}
	parts, err := splitHostPorts(body)
	if err != nil {
		return Spec{}, fmt.Errorf("port %q: %w", s, err)
	}
	var hostAddr, hostPorts, guestAddr, guestPorts string
	switch len(parts) {
	case 2:
		hostPorts, guestPorts = parts[0], parts[1]
	case 3:
		hostAddr, hostPorts, guestPorts = parts[0], parts[1], parts[2]
	case 4:
		hostAddr, hostPorts, guestAddr, guestPorts = parts[0], parts[1], parts[2], parts[3]
	default:
		return Spec{}, fmt.Errorf("port %q: want [HOSTADDR:]HOSTPORT:[GUESTADDR:]GUESTPORT[/tcp|/udp], e.g. 8080:80 or 127.0.0.1:5353:53/udp", s)
	}
	if len(parts) >= 3 && hostAddr == "" || len(parts) == 4 && guestAddr == "" {
		return Spec{}, fmt.Errorf("port %q: empty address; leave the address out (8080:80) or give one (127.0.0.1:8080:80)", s)
	}
	if hostAddr != "" {
		if spec.HostAddr, err = parseAddr(hostAddr); err != nil {
			return Spec{}, fmt.Errorf("port %q: host address: %w", s, err)
		}
	}
	if guestAddr != "" {
		if spec.GuestAddr, err = parseAddr(guestAddr); err != nil {
			return Spec{}, fmt.Errorf("port %q: guest address: %w", s, err)
		}
	}
	hp, hn, err := parsePortRange(hostPorts)
	if err != nil {
		return Spec{}, fmt.Errorf("port %q: host port: %w", s, err)
	}
	gp, gn, err := parsePortRange(guestPorts)
	if err != nil {
		return Spec{}, fmt.Errorf("port %q: guest port: %w", s, err)
	}
	if hn != gn {
		return Spec{}, fmt.Errorf("port %q: the host range has %d ports and the guest range %d; they must be the same length", s, hn, gn)
	}
	spec.HostPort, spec.GuestPort = hp, gp
	if hn > 1 {
		spec.Count = hn
	}
	if err := spec.Validate(); err != nil {
		return Spec{}, fmt.Errorf("port %q: %w", s, err)
	}
	return spec, nil
}

// splitHostPorts splits on colons outside brackets.
func splitHostPorts(s string) ([]string, error) {
	var parts []string
	for len(s) > 0 {
		if s[0] == '[' {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf("missing ] after IPv6 address")
			}
			parts = append(parts, s[:end+1])
			s = s[end+1:]
			if s == "" {
				break
			}
			if s[0] != ':' {
				return nil, fmt.Errorf("want : after ]")
			}
			s = s[1:]
			if s == "" {
				return nil, fmt.Errorf("missing port after %s", parts[len(parts)-1])
			}
			continue
		}
		p, rest, found := strings.Cut(s, ":")
		parts = append(parts, p)
		if len(parts) > 4 {
			return nil, fmt.Errorf("too many colons; write IPv6 addresses in brackets, like [::1]:8080:80")
		}
		s = rest
		if found && s == "" {
			parts = append(parts, "")
		}
	}
	return parts, nil
}

func parseAddr(s string) (netip.Addr, error) {
	bracketed := strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")
	if bracketed {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zones are not supported", s)
	}
	if a.Is6() && !bracketed {
		return netip.Addr{}, fmt.Errorf("write IPv6 address %s in brackets: [%s]", s, s)
	}
	if a.Is4() && bracketed {
		return netip.Addr{}, fmt.Errorf("%s is an IPv4 address: write it without brackets", s)
	}
	return a.Unmap(), nil
}

// parsePortRange reads "P" or "P-Q" and returns the first port and the
// number of ports.
func parsePortRange(s string) (uint16, int, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	first, err := parsePort(lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, 1, nil
	}
	last, err := parsePort(hi)
	if err != nil {
		return 0, 0, err
	}
	if last < first {
		return 0, 0, fmt.Errorf("range %s ends before it starts", s)
	}
	return first, int(last-first) + 1, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("missing port number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a port number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	}
	return uint16(n), nil
}
