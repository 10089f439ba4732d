package cli

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// This file reproduces the C library routines slirp4netns checks its
// arguments with, so that exactly the same strings are accepted.

// isCSpace is isspace(3) in the C locale.
func isCSpace(b byte) bool {
	return b == ' ' || (b >= '\t' && b <= '\r')
}

// parseCInt is slirp4netns' number check: strtol(s, &end, 10) succeeding
// with errno == 0 and *end == '\0'. So leading white space and a sign are
// accepted, trailing characters are not, and an empty string is 0 (strtol
// leaves end at the terminating NUL). Unlike C, a value that does not fit in
// an int is rejected instead of being silently truncated (which would turn
// "4294967297" into PID 1).
func parseCInt(s string) (int, bool) {
	i, neg := skipSpaceAndSign(s)
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == start {
		// No digits: strtol returns 0 and sets end to s itself.
		return 0, s == ""
	}
	if i != len(s) {
		return 0, false
	}
	v, err := strconv.ParseInt(s[start:i], 10, 64)
	if err != nil {
		return 0, false // ERANGE
	}
	if neg {
		v = -v
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, false
	}
	return int(v), true
}

// scanHex is sscanf(s, "%x", &int) == 1 as glibc does it: skip white space,
// an optional sign, an optional "0x" (which alone reads as 0), then hex
// digits up to the first other character. The value goes through strtoul
// (saturating at ULONG_MAX, negated for "-") and is truncated to 32 bits.
func scanHex(s string) (int32, bool) {
	i, neg := skipSpaceAndSign(s)
	digits := 0
	if i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') {
		i += 2
		digits = 1 // the '0'
	}
	var v uint64
	overflow := false
	for ; i < len(s); i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			break
		}
		digits++
		if v > (math.MaxUint64-d)/16 {
			overflow = true
		}
		v = v*16 + d
	}
	if digits == 0 {
		return 0, false
	}
	switch {
	case overflow:
		v = math.MaxUint64
	case neg:
		v = -v
	}
	return int32(uint32(v)), true
}

func hexDigit(b byte) (uint64, bool) {
	switch {
	case b >= '0' && b <= '9':
		return uint64(b - '0'), true
	case b >= 'a' && b <= 'f':
		return uint64(b-'a') + 10, true
	case b >= 'A' && b <= 'F':
		return uint64(b-'A') + 10, true
	}
	return 0, false
}

// macError is why a --macaddress value was rejected.
type macError struct {
	tooLong bool
}

// parseMAC converts a --macaddress value as slirp4netns'
// slirp4netns_macaddr_hexstring_to_data does: up to six ':'-separated
// fields, each read with sscanf("%x") and 0..255. Fewer than six fields are
// accepted (the rest stay zero); a seventh is "too long". It returns the
// number of bytes read.
func parseMAC(s string) (mac [6]byte, n int, err *macError) {
	cur := 0 // C's macaddr_ptr; -1 is NULL
	for cur >= 0 && n < len(mac) {
		if cur != 0 {
			cur++ // step over the ':'
		}
		v, ok := scanHex(s[cur:])
		if !ok || v < 0 || v > 255 {
			return mac, n, &macError{}
		}
		mac[n] = byte(v)
		n++
		if i := strings.IndexByte(s[cur:], ':'); i >= 0 {
			cur += i
		} else {
			cur = -1
		}
	}
	if cur >= 0 {
		return mac, n, &macError{tooLong: true}
	}
	return mac, n, nil
}

// cidrPattern is slirp4netns' POSIX regular expression for --cidr.
var cidrPattern = regexp.MustCompile(`^(([0-9]{1,3}\.){3}[0-9]{1,3})/([0-9]{1,2})$`)

// Prefix lengths slirp4netns accepts: /26 and longer leave no room for
// network+100.
const (
	minPrefix = 1
	maxPrefix = 25
)

// parseCIDR checks a --cidr value as slirp4netns' parse_cidr does and returns
// the message line it prints when the value is bad.
func parseCIDR(s string) (netip.Prefix, string) {
	m := cidrPattern.FindStringSubmatch(s)
	if m == nil {
		return netip.Prefix{}, "invalid CIDR: " + s
	}
	// inet_pton, like netip, rejects octets over 255 and leading zeros.
	addr, err := netip.ParseAddr(m[1])
	if err != nil || !addr.Is4() {
		return netip.Prefix{}, "invalid network address: " + m[1]
	}
	bits, _ := strconv.Atoi(m[3]) // one or two digits: cannot fail
	if bits < minPrefix || bits > maxPrefix {
		return netip.Prefix{}, fmt.Sprintf("prefix length needs to be %d-%d", minPrefix, maxPrefix)
	}
	p := netip.PrefixFrom(addr, bits)
	if p.Masked() != p {
		return netip.Prefix{}, "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24"
	}
	return p, ""
}

// parseOutbound resolves an --outbound-addr (v6 false) or --outbound-addr6
// value: an address literal of that family (as inet_pton accepts it), else
// the name of an interface whose first address of that family is used, as
// slirp4netns' get_interface_addr does with getifaddrs.
func parseOutbound(s string, v6 bool) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" && a.Is6() == v6 {
		return a, true
	}
	ifi, err := net.InterfaceByName(s)
	if err != nil {
		return netip.Addr{}, false
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		isV4 := ipn.IP.To4() != nil
		if isV4 == v6 {
			continue
		}
		addr, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		if !v6 {
			return addr.Unmap(), true
		}
		if addr.IsLinkLocalUnicast() {
			// Binding to a link-local source needs the interface.
			addr = addr.WithZone(ifi.Name)
		}
		return addr, true
	}
	return netip.Addr{}, false
}

// pathExists is access(path, F_OK) == 0, which, like slirp4netns, checks with
// the real uid. The error text is glibc's strerror.
func pathExists(path string) (bool, string) {
	err := unix.Access(path, unix.F_OK)
	if err == nil {
		return true, ""
	}
	return false, strerror(err)
}

// strerror renders an errno as glibc's strerror(3) does. Go's texts are
// glibc's with a lower-case first letter.
func strerror(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	s := errno.Error()
	r, size := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[size:]
}

// skipSpaceAndSign skips the leading white space and optional sign that C's
// strtol family accepts, returning the index after them and whether the
// sign was '-'.
func skipSpaceAndSign(s string) (i int, neg bool) {
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	return i, neg
}
