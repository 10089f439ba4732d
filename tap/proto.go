package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// The daemon and the helper talk over a SOCK_SEQPACKET socketpair, one
// message per packet, integers big-endian:
//
//	request = kind:u8 id:u32 body
//	reply   = id:u32 status:u8 errno:u32 text            (+ at most one fd)
//
// Request bodies by kind:
//
//	kindOpenTap         flags:u8 name:bytes [mtu:u32 mac:bytes
//	                    address:prefix gateway:addr address6:prefix
//	                    gateway6:addr]
//	                    flags bit 0 asks for IFF_VNET_HDR; bit 1 says the
//	                    bracketed addressing follows (TapConfig.Configure
//	                    != nil)
//	kindSocket          domain:i32 type:i32 protocol:i32
//	kindKeepAcrossExec  (no body)
//	kindSlim            (no body)
//
// bytes is a length byte then that many bytes; addr is bytes holding 0
// (unset), 4 (IPv4) or 16 (IPv6) bytes; prefix is addr then bits:u8 (0 when
// the addr is unset).
//
// A reply carries the id of the request it answers. status 0 is success: for
// kindOpenTap the text is the device's name and the packet carries the tap
// fd; for kindSocket the text is empty and the packet carries the socket;
// for kindKeepAcrossExec the text is empty, the packet carries nothing, and
// the helper has cleared its parent-death signal (Namespace.PrepareExec);
// for kindSlim the text is empty and, after the reply, the helper has
// become the minimal socket server of internal/sockserve, which answers
// kindSocket and kindKeepAcrossExec (and kindSlim) only.
// status 1 is failure: text is the whole message for the user and errno the
// underlying errno (0 when there is none). Right after it starts, before
// reading any request, the helper sends one unsolicited reply with id 0
// saying whether it entered the namespaces (its text may hold a warning).
//
// The decoders are strict: they reject unknown kinds, flags and statuses,
// lengths that do not fit, and trailing bytes, so that decoding and encoding
// again gives back the same bytes.

const (
	kindOpenTap        uint8 = 1
	kindSocket         uint8 = 2
	kindKeepAcrossExec uint8 = 3
	kindSlim           uint8 = 4

	flagVnetHdr   uint8 = 1 << 0
	flagConfigure uint8 = 1 << 1

	statusOK     uint8 = 0
	statusFailed uint8 = 1

	// helloID is the id of the reply the helper sends when it starts.
	helloID uint32 = 0

	// maxPacket bounds every message; the largest real one is an error
	// text of a few hundred bytes.
	maxPacket = 16 << 10

	// maxNameLen is IFNAMSIZ minus the terminating NUL.
	maxNameLen = 15
)

var errMalformed = errors.New("malformed message")

// request is a decoded request; tap is set for kindOpenTap and sock for
// kindSocket (kindKeepAcrossExec has no body).
type request struct {
	kind uint8
	id   uint32
	tap  TapConfig
	sock socketArgs
}

type socketArgs struct {
	domain, typ, proto int32
}

// reply is a decoded reply, without its fd.
type reply struct {
	id     uint32
	status uint8
	errno  uint32
	text   string
}

// validate checks what the kernel would otherwise report less clearly, and
// what the wire format cannot carry.
func (c TapConfig) validate() error {
	if len(c.Name) > maxNameLen {
		return fmt.Errorf("tap device name %q is %d bytes long; the kernel allows at most %d", c.Name, len(c.Name), maxNameLen)
	}
	if strings.ContainsRune(c.Name, 0) {
		return fmt.Errorf("tap device name %q contains a NUL byte", c.Name)
	}
	a := c.Configure
	if a == nil {
		return nil
	}
	if a.MTU < 0 || a.MTU > 65535 {
		return fmt.Errorf("MTU %d is out of range: a tap device takes 68 to 65535 (0 keeps the default)", a.MTU)
	}
	if a.MAC != nil && len(a.MAC) != 6 {
		return fmt.Errorf("MAC address %v is %d bytes long; an Ethernet address has 6", a.MAC, len(a.MAC))
	}
	for _, p := range []struct {
		what string
		ok   bool
	}{
		{"IPv4 address " + a.Address.String(), !a.Address.IsValid() || a.Address.Addr().Is4()},
		{"IPv4 gateway " + a.Gateway.String(), !a.Gateway.IsValid() || a.Gateway.Is4()},
		{"IPv6 address " + a.Address6.String(), !a.Address6.IsValid() || (a.Address6.Addr().Is6() && !a.Address6.Addr().Is4In6())},
		{"IPv6 gateway " + a.Gateway6.String(), !a.Gateway6.IsValid() || (a.Gateway6.Is6() && !a.Gateway6.Is4In6() && a.Gateway6.Zone() == "")},
	} {
		if !p.ok {
			return fmt.Errorf("%s is not of that family (and IPv6 gateways take no zone)", p.what)
		}
	}
	return nil
}

func (r request) encode() ([]byte, error) {
	b := []byte{r.kind}
	b = binary.BigEndian.AppendUint32(b, r.id)
	switch r.kind {
	case kindOpenTap:
		if err := r.tap.validate(); err != nil {
			return nil, err
		}
		var flags uint8
		if r.tap.VnetHdr {
			flags |= flagVnetHdr
		}
		if r.tap.Configure != nil {
			flags |= flagConfigure
		}
		b = append(b, flags)
		b = appendBytes(b, []byte(r.tap.Name))
		if a := r.tap.Configure; a != nil {
			b = binary.BigEndian.AppendUint32(b, uint32(a.MTU))
			b = appendBytes(b, a.MAC)
			b = appendPrefix(b, a.Address)
			b = appendAddr(b, a.Gateway)
			b = appendPrefix(b, a.Address6)
			b = appendAddr(b, a.Gateway6)
		}
	case kindSocket:
		b = binary.BigEndian.AppendUint32(b, uint32(r.sock.domain))
		b = binary.BigEndian.AppendUint32(b, uint32(r.sock.typ))
		b = binary.BigEndian.AppendUint32(b, uint32(r.sock.proto))
	case kindKeepAcrossExec, kindSlim:
	default:
		return nil, fmt.Errorf("unknown request kind %d", r.kind)
	}
	return b, nil
}

func decodeRequest(b []byte) (request, error) {
	d := decoder{b: b}
	r := request{kind: d.u8(), id: d.u32()}
	switch r.kind {
	case kindOpenTap:
		flags := d.u8()
		if flags&^(flagVnetHdr|flagConfigure) != 0 {
			return request{}, fmt.Errorf("%w: unknown tap flags %#x", errMalformed, flags)
		}
		r.tap.VnetHdr = flags&flagVnetHdr != 0
		r.tap.Name = string(d.bytes())
		if flags&flagConfigure != 0 {
			a := &Addressing{MTU: int(d.u32())}
			if mac := d.bytes(); len(mac) > 0 {
				a.MAC = net.HardwareAddr(mac)
			}
			a.Address = d.prefix()
			a.Gateway = d.addr()
			a.Address6 = d.prefix()
			a.Gateway6 = d.addr()
			r.tap.Configure = a
		}
	case kindSocket:
		r.sock = socketArgs{domain: int32(d.u32()), typ: int32(d.u32()), proto: int32(d.u32())}
	case kindKeepAcrossExec, kindSlim:
	default:
		if d.err == nil {
			return request{}, fmt.Errorf("%w: unknown request kind %d", errMalformed, r.kind)
		}
	}
	if err := d.finish(); err != nil {
		return request{}, err
	}
	if r.kind == kindOpenTap {
		if err := r.tap.validate(); err != nil {
			return request{}, fmt.Errorf("%w: %v", errMalformed, err)
		}
	}
	return r, nil
}

func (r reply) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, r.id)
	b = append(b, r.status)
	b = binary.BigEndian.AppendUint32(b, r.errno)
	text := r.text
	if max := maxPacket - len(b); len(text) > max {
		text = text[:max]
	}
	return append(b, text...)
}

func decodeReply(b []byte) (reply, error) {
	d := decoder{b: b}
	r := reply{id: d.u32(), status: d.u8(), errno: d.u32()}
	if d.err != nil {
		return reply{}, d.err
	}
	switch {
	case r.status != statusOK && r.status != statusFailed:
		return reply{}, fmt.Errorf("%w: unknown reply status %d", errMalformed, r.status)
	case r.status == statusOK && r.errno != 0:
		return reply{}, fmt.Errorf("%w: successful reply with errno %d", errMalformed, r.errno)
	case len(b) > maxPacket:
		return reply{}, fmt.Errorf("%w: reply of %d bytes", errMalformed, len(b))
	}
	r.text = string(d.b)
	return r, nil
}

func appendBytes(b, v []byte) []byte {
	b = append(b, byte(len(v)))
	return append(b, v...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, 0)
	}
	return appendBytes(b, a.AsSlice())
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	if !p.IsValid() {
		return append(b, 0, 0)
	}
	return append(appendAddr(b, p.Addr()), byte(p.Bits()))
}

// decoder reads a message; the first error sticks and later reads return
// zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", errMalformed)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) bytes() []byte {
	return d.take(int(d.u8()))
}

func (d *decoder) addr() netip.Addr {
	v := d.bytes()
	switch len(v) {
	case 0:
		return netip.Addr{}
	case 4:
		return netip.AddrFrom4([4]byte(v))
	case 16:
		return netip.AddrFrom16([16]byte(v))
	}
	if d.err == nil {
		d.err = fmt.Errorf("%w: address of %d bytes", errMalformed, len(v))
	}
	return netip.Addr{}
}

func (d *decoder) prefix() netip.Prefix {
	a := d.addr()
	bits := int(d.u8())
	if d.err != nil {
		return netip.Prefix{}
	}
	if !a.IsValid() {
		if bits != 0 {
			d.err = fmt.Errorf("%w: prefix length %d without an address", errMalformed, bits)
		}
		return netip.Prefix{}
	}
	if bits > a.BitLen() {
		d.err = fmt.Errorf("%w: prefix length %d for a %d-bit address", errMalformed, bits, a.BitLen())
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, bits)
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.b))
	}
	return d.err
}
