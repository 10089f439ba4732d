// Package spec parses the container options users type on the slirprun
// command line (-p, -v, -e, --env-file, --user) into typed values.
//
// The parsers only check syntax; whether a path exists or a port is free is
// decided later by the part of the launcher that uses the value.
package spec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Publish is one -p [IP:]HOST:CONTAINER[/tcp|udp] mapping.
type Publish struct {
	// HostIP is the host address to listen on; the zero value means all
	// IPv4 addresses (0.0.0.0).
	HostIP        netip.Addr `json:"host_ip,omitzero"`
	HostPort      uint16     `json:"host_port"`
	ContainerPort uint16     `json:"container_port"`
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
}

// String formats p the way the user would type it.
func (p Publish) String() string {
	host := strconv.Itoa(int(p.HostPort))
	if p.HostIP.IsValid() {
		host = p.HostIP.String() + ":" + host
	}
	return fmt.Sprintf("%s:%d/%s", host, p.ContainerPort, p.Proto)
}

// ParsePublish parses a -p value: [IP:]HOST:CONTAINER[/tcp|udp].
func ParsePublish(s string) (Publish, error) {
	p := Publish{Proto: "tcp"}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p.Proto = rest[i+1:]
		rest = rest[:i]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return Publish{}, fmt.Errorf("publish %q: protocol %q: use tcp or udp", s, p.Proto)
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Publish{}, fmt.Errorf("publish %q: want [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]", s)
	}
	ctr, host := rest[i+1:], rest[:i]
	if j := strings.LastIndexByte(host, ':'); j >= 0 {
		ip := strings.TrimSuffix(strings.TrimPrefix(host[:j], "["), "]")
		host = host[j+1:]
		if ip != "" {
			addr, err := netip.ParseAddr(ip)
			if err != nil {
				return Publish{}, fmt.Errorf("publish %q: host address: %w", s, err)
			}
			if !addr.Is4() {
				return Publish{}, fmt.Errorf("publish %q: host address %s: only IPv4 host addresses can be published", s, addr)
			}
			p.HostIP = addr
		}
	}
	var err error
	if p.HostPort, err = parsePort(host); err != nil {
		return Publish{}, fmt.Errorf("publish %q: host port: %w", s, err)
	}
	if p.ContainerPort, err = parsePort(ctr); err != nil {
		return Publish{}, fmt.Errorf("publish %q: container port: %w", s, err)
	}
	return p, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// Volume is one -v SRC:DST[:ro|rw] bind mount.
type Volume struct {
	// Source is the host path, absolute.
	Source string `json:"source"`
	// Target is the path inside the container, absolute and clean.
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ParseVolume parses a -v value: SRC:DST[:ro|rw]. SRC and DST must be
// absolute paths (the caller makes a relative SRC absolute first if it
// wants to allow that).
func ParseVolume(s string) (Volume, error) {
	parts := strings.Split(s, ":")
	var v Volume
	switch len(parts) {
	case 2:
	case 3:
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				v.ReadOnly = true
			case "rw", "":
			default:
				return Volume{}, fmt.Errorf("volume %q: option %q: use ro or rw", s, o)
			}
		}
	default:
		return Volume{}, fmt.Errorf("volume %q: want SRC:DST[:ro]", s)
	}
	if !path.IsAbs(parts[0]) || !path.IsAbs(parts[1]) {
		return Volume{}, fmt.Errorf("volume %q: source and destination must be absolute paths", s)
	}
	v.Source = path.Clean(parts[0])
	v.Target = path.Clean(parts[1])
	if v.Target == "/" {
		return Volume{}, fmt.Errorf("volume %q: cannot mount over the container's root; use --rootfs", s)
	}
	return v, nil
}

// ParseEnv parses a -e value. KEY=VAL is used as is; a bare KEY takes its
// value from lookup (the caller's environment), and is dropped when lookup
// does not know it, as docker and podman do.
func ParseEnv(s string, lookup func(string) (string, bool)) (kv string, ok bool, err error) {
	key, val, hasVal := strings.Cut(s, "=")
	if key == "" || strings.ContainsAny(key, "\x00") {
		return "", false, fmt.Errorf("environment variable %q: empty or invalid name", s)
	}
	if strings.ContainsRune(val, 0) {
		return "", false, fmt.Errorf("environment variable %q: value contains a NUL byte", key)
	}
	if hasVal {
		return key + "=" + val, true, nil
	}
	if lookup == nil {
		return "", false, nil
	}
	v, found := lookup(key)
	if !found {
		return "", false, nil
	}
	return key + "=" + v, true, nil
}

// ParseEnvFile reads an --env-file: one KEY=VAL or KEY per line; blank lines
// and lines starting with # are skipped. Values are taken literally (no
// quotes are removed), as docker does.
func ParseEnvFile(r io.Reader, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		line = strings.TrimSuffix(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		kv, ok, err := ParseEnv(line, lookup)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if ok {
			out = append(out, kv)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	return out, nil
}

// MergeEnv returns base with the entries of over applied on top: a key in
// over replaces the same key in base, new keys are appended in order.
func MergeEnv(base []string, over ...[]string) []string {
	out := append([]string(nil), base...)
	idx := make(map[string]int, len(out))
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, list := range over {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// User is a parsed --user (or image User) value: USER[:GROUP], each part a
// number or a name to look up in the container's /etc/passwd and /etc/group.
type User struct {
	User  string `json:"user"`
	Group string `json:"group,omitempty"`
}

// ErrEmptyUser is returned by ParseUser for an empty string.
var ErrEmptyUser = errors.New("empty user")

// ParseUser parses USER[:GROUP].
func ParseUser(s string) (User, error) {
	if s == "" {
		return User{}, ErrEmptyUser
	}
	u, g, hasGroup := strings.Cut(s, ":")
	if u == "" || (hasGroup && g == "") {
		return User{}, fmt.Errorf("user %q: want USER[:GROUP] (names or numbers)", s)
	}
	for _, part := range []string{u, g} {
		if strings.ContainsAny(part, ":\n\x00/") {
			return User{}, fmt.Errorf("user %q: invalid character", s)
		}
	}
	return User{User: u, Group: g}, nil
}
