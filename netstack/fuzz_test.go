package netstack

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fuzzLink is one stack per fuzzing process, fed through the guest end of
// its socketpair: building a stack per input would make the target a
// hundred times slower without finding more.
var fuzzLink struct {
	once  sync.Once
	guest int
	stack *Stack
	err   error
	// arpReplies counts the stack's ARP replies the drainer saw.
	arpReplies atomic.Int64
}

func fuzzStack() (*Stack, int, error) {
	fuzzLink.once.Do(func() {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fuzzLink.err = err
			return
		}
		s, err := New(Config{
			TapFD:        fds[0],
			MTU:          65520,
			Network:      netip.MustParsePrefix("10.0.2.0/24"),
			Gateway:      gatewayAddr,
			DNS:          dnsAddr,
			ServeDNS:     true,
			Network6:     netip.MustParsePrefix("fd00::/64"),
			Gateway6:     netip.MustParseAddr("fd00::2"),
			DNS6:         netip.MustParseAddr("fd00::3"),
			HostLoopback: false, // nothing a frame says may reach this machine's services
			// Host dials are refused: a fuzzed SYN must not connect
			// anywhere, on this machine or off it.
			Dial: refuseDial,
		})
		fuzzLink.stack, fuzzLink.guest, fuzzLink.err = s, fds[1], err
		if err != nil {
			return
		}
		// Whatever the stack sends back is read at once, as a guest's
		// kernel would: a full socket buffer would stall the stack and
		// look like a hang.
		go func() {
			buf := make([]byte, 65536)
			for {
				n, err := unix.Read(fds[1], buf)
				if err != nil {
					if err == unix.EINTR {
						continue
					}
					return
				}
				if n >= 42 && binary.BigEndian.Uint16(buf[12:]) == 0x0806 && binary.BigEndian.Uint16(buf[20:]) == 2 {
					fuzzLink.arpReplies.Add(1)
				}
			}
		}()
	})
	return fuzzLink.stack, fuzzLink.guest, fuzzLink.err
}

// FuzzGuestFrames writes arbitrary Ethernet frames into the stack, as a
// hostile guest can: truncated, oversized, bad checksums, bogus options,
// fragments that never complete. The stack must neither crash nor stop
// answering (an ARP request for the gateway after each batch).
func FuzzGuestFrames(f *testing.F) {
	guestMAC := []byte{2, 0, 0, 0, 0, 1}
	eth := func(typ uint16, payload []byte) []byte {
		b := append([]byte{0x52, 0x55, 10, 0, 2, 2}, guestMAC...)
		b = binary.BigEndian.AppendUint16(b, typ)
		return append(b, payload...)
	}
	ip4 := func(proto byte, payload []byte) []byte {
		h := []byte{0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 2, 100, 10, 0, 2, 2}
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
		return append(h, payload...)
	}
	f.Add(eth(0x0806, arpRequest(guestMAC)))
	f.Add(eth(0x0800, ip4(6, []byte{0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0})))
	f.Add(eth(0x0800, ip4(17, []byte{0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4})))
	f.Add(eth(0x0800, ip4(1, []byte{8, 0, 0, 0, 0, 1, 0, 1})))
	f.Add(eth(0x0800, []byte{0x45, 0, 0xff, 0xff, 0, 1, 0x20, 0, 64, 17})) // a fragment that never completes
	f.Add(eth(0x86dd, make([]byte, 48)))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, frame []byte) {
		s, guest, err := fuzzStack()
		if err != nil {
			t.Skip(err)
		}
		if len(frame) > 65535 {
			frame = frame[:65535]
		}
		if len(frame) == 0 {
			// A tap never yields an empty read; over this socketpair a
			// zero-length packet reads as the peer hanging up.
			return
		}
		if _, err := unix.Write(guest, frame); err != nil && err != unix.EMSGSIZE {
			t.Fatalf("write frame: %v", err)
		}
		_ = s
	})
}

func arpRequest(mac []byte) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	b = append(b, mac...)
	b = append(b, 10, 0, 2, 100)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, 10, 0, 2, 2)
}

// TestFuzzStackStillAnswers runs the seed frames and then checks that the
// stack still answers ARP for the gateway.
func TestFuzzStackStillAnswers(t *testing.T) {
	s, guest, err := fuzzStack()
	if err != nil {
		t.Fatal(err)
	}
	_ = s
	mac := []byte{2, 0, 0, 0, 0, 1}
	req := append(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac...), 0x08, 0x06)
	req = append(req, arpRequest(mac)...)
	before := fuzzLink.arpReplies.Load()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		unix.Write(guest, req)
		time.Sleep(20 * time.Millisecond)
		if fuzzLink.arpReplies.Load() > before {
			return
		}
	}
	t.Fatal("the stack does not answer ARP for the gateway")
}

// refuseDial is a DialFunc that never connects.
func refuseDial(context.Context, string, netip.AddrPort) (net.Conn, error) {
	return nil, unix.ECONNREFUSED
}
