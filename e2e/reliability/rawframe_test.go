package reliability

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// rawProbe is the guest action "raw IFACE GWMAC PORT PROBE...", each PROBE
// "PROTO,SRC,DST" (PROTO tcp or udp). For each it writes one hand-made
// Ethernet frame to the tap, a TCP SYN or a UDP datagram from SRC to
// DST:PORT addressed to the gateway's MAC, whatever the guest's routing
// table says (the guest's kernel would deliver 127.0.0.1 to its own
// loopback; a hostile guest writes what it likes). It then watches the tap
// for two seconds and reports in Replies, by PROBE, what the daemon
// answered: "icmp-unreachable/CODE", "rst", "synack", "udp" or "none".
func rawProbe(args []string) (guestReport, error) {
	if len(args) < 4 {
		return guestReport{}, errors.New("usage: raw IFACE GWMAC PORT PROTO,SRC,DST...")
	}
	ifi, err := net.InterfaceByName(args[0])
	if err != nil {
		return guestReport{}, err
	}
	gw, err := net.ParseMAC(args[1])
	if err != nil {
		return guestReport{}, err
	}
	port, _ := strconv.Atoi(args[2])
	type probe struct {
		name  string
		dst   netip.Addr
		sport uint16
		frame []byte
	}
	var probes []probe
	for i, spec := range args[3:] {
		f := strings.Split(spec, ",")
		if len(f) != 3 {
			return guestReport{}, fmt.Errorf("probe %q: want PROTO,SRC,DST", spec)
		}
		src, err := netip.ParseAddr(f[1])
		if err != nil {
			return guestReport{}, err
		}
		dst, err := netip.ParseAddr(f[2])
		if err != nil {
			return guestReport{}, err
		}
		// Distinct source ports tell the answers apart.
		sport := uint16(40000 + rand.IntN(1000)*20 + i)
		frame, err := buildFrame(gw, ifi.HardwareAddr, src, dst, f[0], sport, uint16(port))
		if err != nil {
			return guestReport{}, err
		}
		probes = append(probes, probe{name: spec, dst: dst, sport: sport, frame: frame})
	}

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return guestReport{}, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return guestReport{}, fmt.Errorf("bind packet socket to %s: %w", ifi.Name, err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return guestReport{}, err
	}
	r := guestReport{Replies: map[string]string{}}
	for _, p := range probes {
		if _, err := unix.Write(fd, p.frame); err != nil {
			return guestReport{}, fmt.Errorf("send the frame for %s: %w", p.name, err)
		}
		r.Replies[p.name] = "none"
	}
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // the receive timeout
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		for _, p := range probes {
			if what := classifyReply(buf[:n], p.dst, uint16(port), p.sport); what != "" && r.Replies[p.name] == "none" {
				r.Replies[p.name] = what
			}
		}
	}
	r.OK = len(probes)
	return r, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// buildFrame makes an Ethernet frame carrying a TCP SYN or a UDP datagram
// ("probe") with correct checksums.
func buildFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, proto string, sport, dport uint16) ([]byte, error) {
	var l4 []byte
	var protoNum byte
	switch proto {
	case "tcp":
		protoNum = unix.IPPROTO_TCP
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint32(l4[4:], rand.Uint32())
		l4[12] = 5 << 4 // data offset: 5 words
		l4[13] = 0x02   // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case "udp":
		protoNum = unix.IPPROTO_UDP
		l4 = append(make([]byte, 8), "probe"...)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	default:
		return nil, fmt.Errorf("protocol %q: want tcp or udp", proto)
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("source %v and destination %v are of different families", src, dst)
	}
	frame := append(append(append([]byte{}, dstMAC...), srcMAC...), 0, 0)
	// The pseudo-header sum covers addresses, protocol and length.
	pseudo := append(append([]byte{}, src.AsSlice()...), dst.AsSlice()...)
	pseudo = append(pseudo, 0, protoNum, byte(len(l4)>>8), byte(len(l4)))
	csum := checksum(append(pseudo, l4...))
	if proto == "udp" {
		binary.BigEndian.PutUint16(l4[6:], csum)
	} else {
		binary.BigEndian.PutUint16(l4[16:], csum)
	}
	if src.Is4() {
		binary.BigEndian.PutUint16(frame[12:], unix.ETH_P_IP)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], uint16(rand.Uint32()))
		ip[6] = 0x40 // don't fragment
		ip[8] = 64
		ip[9] = protoNum
		copy(ip[12:], src.AsSlice())
		copy(ip[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(ip[10:], checksum(ip))
		return append(append(frame, ip...), l4...), nil
	}
	binary.BigEndian.PutUint16(frame[12:], unix.ETH_P_IPV6)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6] = protoNum
	ip[7] = 64
	copy(ip[8:], src.AsSlice())
	copy(ip[24:], dst.AsSlice())
	return append(append(frame, ip...), l4...), nil
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// classifyReply says what an inbound frame is, if it answers the probe
// (sent to dst:dport from sport): "" for unrelated frames.
func classifyReply(f []byte, dst netip.Addr, dport, sport uint16) string {
	if len(f) < 14 {
		return ""
	}
	var proto byte
	var from netip.Addr
	var l4 []byte
	switch binary.BigEndian.Uint16(f[12:]) {
	case unix.ETH_P_IP:
		ip := f[14:]
		if len(ip) < 20 {
			return ""
		}
		hl := int(ip[0]&0x0f) * 4
		if len(ip) < hl {
			return ""
		}
		proto, l4 = ip[9], ip[hl:]
		from = netip.AddrFrom4([4]byte(ip[12:16]))
		if proto == unix.IPPROTO_ICMP && len(l4) >= 8 && l4[0] == 3 && quotesPort(l4[8:], false, sport) {
			return "icmp-unreachable/" + strconv.Itoa(int(l4[1]))
		}
	case unix.ETH_P_IPV6:
		ip := f[14:]
		if len(ip) < 40 {
			return ""
		}
		proto, l4 = ip[6], ip[40:]
		from = netip.AddrFrom16([16]byte(ip[8:24]))
		if proto == unix.IPPROTO_ICMPV6 && len(l4) >= 8 && l4[0] == 1 && quotesPort(l4[8:], true, sport) {
			return "icmp-unreachable/" + strconv.Itoa(int(l4[1]))
		}
	default:
		return ""
	}
	if from != dst || len(l4) < 4 || binary.BigEndian.Uint16(l4[0:]) != dport || binary.BigEndian.Uint16(l4[2:]) != sport {
		return ""
	}
	switch {
	case proto == unix.IPPROTO_UDP:
		return "udp"
	case proto == unix.IPPROTO_TCP && len(l4) >= 14 && l4[13]&0x04 != 0:
		return "rst"
	case proto == unix.IPPROTO_TCP && len(l4) >= 14 && l4[13]&0x12 == 0x12:
		return "synack"
	}
	return ""
}

// quotesPort says an ICMP error's quoted packet came from source port sport.
func quotesPort(q []byte, v6 bool, sport uint16) bool {
	hl := 40
	if !v6 {
		if len(q) < 20 {
			return false
		}
		hl = int(q[0]&0x0f) * 4
	}
	return len(q) >= hl+2 && binary.BigEndian.Uint16(q[hl:]) == sport
}
