package portfwd

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

var testGuest = netip.MustParseAddr("127.0.0.1")

// The benchmarks compare a forward's data paths with a plain loopback
// connection, on kernel sockets of the test's own namespace: one
// connection, b.N chunks of 1 MiB to a server that discards them.

func discardServer(b *testing.B) uint16 {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func benchSend(b *testing.B, addr string) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoopbackDirect(b *testing.B) {
	port := discardServer(b)
	benchSend(b, netip.AddrPortFrom(testGuest, port).String())
}

func BenchmarkForward(b *testing.B) {
	for _, mode := range []Mode{ModeFast, ModePreserve} {
		b.Run(string(mode), func(b *testing.B) {
			port := discardServer(b)
			m, err := New(Config{Dialer: &kernelDialer{}, Opener: &hostOpener{}, Guest: testGuest})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			l, _ := net.Listen("tcp4", "127.0.0.1:0")
			hp := uint16(l.Addr().(*net.TCPAddr).Port)
			l.Close()
			fw, err := m.Add(Spec{Proto: TCP, HostAddr: testGuest, HostPort: hp, GuestPort: port, Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			benchSend(b, hostAddr(fw, 0))
		})
	}
}
