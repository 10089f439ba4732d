package dns

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// memPacketConn is an in-memory net.PacketConn: the test puts datagrams in
// with send and takes replies out of replies.
type memPacketConn struct {
	in      chan []byte
	replies chan []byte
	done    chan struct{}
	once    sync.Once
}

var memClient = &net.UDPAddr{IP: net.IPv4(10, 0, 2, 100), Port: 5353}

func newMemPacketConn() *memPacketConn {
	return &memPacketConn{in: make(chan []byte), replies: make(chan []byte, 16), done: make(chan struct{})}
}

func (c *memPacketConn) send(p []byte) bool {
	select {
	case c.in <- p:
		return true
	case <-c.done:
		return false
	}
}

func (c *memPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case b := <-c.in:
		return copy(p, b), memClient, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *memPacketConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case c.replies <- append([]byte(nil), p...):
		return len(p), nil
	case <-c.done:
		return 0, net.ErrClosed
	}
}

func (c *memPacketConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *memPacketConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(10, 0, 2, 3), Port: 53}
}
func (c *memPacketConn) SetDeadline(time.Time) error      { return nil }
func (c *memPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memPacketConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServePacket feeds arbitrary datagrams to a serving Server, which
// forwards what parses to a test upstream on loopback, and checks that it
// does not panic and that each datagram gets either nothing or one
// well-formed reply carrying the query's ID.
func FuzzServePacket(f *testing.F) {
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	edns := new(dns.Msg).SetQuestion("big.test.", dns.TypeTXT)
	edns.SetEdns0(1232, true)
	twoOPT := new(dns.Msg).SetQuestion("a.test.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.SetEdns0(4096, true)
	for _, seed := range [][]byte{
		nil,
		{0, 1, 2},
		make([]byte, 12),
		pack(new(dns.Msg).SetQuestion("a.test.", dns.TypeA)),
		pack(new(dns.Msg).SetQuestion("a.test.", dns.TypeMX)),
		pack(new(dns.Msg).SetQuestion("big.test.", dns.TypeTXT)),
		pack(new(dns.Msg).SetQuestion("host.containers.internal.", dns.TypeAAAA)),
		pack(new(dns.Msg).SetQuestion("nx.test.", dns.TypeA)),
		pack(edns),
		pack(twoOPT),
		pack(new(dns.Msg).SetReply(new(dns.Msg).SetQuestion("a.test.", dns.TypeA))),
		{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, // pointer loop
	} {
		f.Add(seed)
	}

	up := startUpstream(f, "up", "127.0.0.1", 0)
	s, err := New(Config{
		Upstreams: []netip.AddrPort{up.addr},
		Hosts:     map[string][]netip.Addr{"host.containers.internal.": {netip.MustParseAddr("10.0.2.2")}},
		Timeout:   5 * time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	pc := newMemPacketConn()
	served := make(chan error, 1)
	go func() { served <- s.ServePacket(context.Background(), pc) }()
	f.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			f.Errorf("ServePacket: %v", err)
		}
	})

	f.Fuzz(func(t *testing.T, data []byte) {
		before := s.Stats()
		if !pc.send(data) {
			t.Fatal("server stopped")
		}
		// Bounded wait until the datagram has been answered or dropped.
		for i := 0; ; i++ {
			st := s.Stats()
			if st.Received == before.Received+1 && st.Replied+st.Dropped == st.Received {
				break
			}
			if i == 20000 {
				t.Fatalf("datagram %x not handled after 20 s", data)
			}
			time.Sleep(time.Millisecond)
		}
		var reply []byte
		select {
		case reply = <-pc.replies:
		default:
			if s.Stats().Replied != before.Replied {
				t.Fatal("reply counted but not written")
			}
			return
		}
		if len(data) < headerLen || data[2]&0x80 != 0 {
			t.Fatalf("replied to %x, which is not a query", data)
		}
		r := new(dns.Msg)
		if err := r.Unpack(reply); err != nil {
			t.Fatalf("reply %x to %x does not parse: %v", reply, data, err)
		}
		if !r.Response || r.Id != uint16(data[0])<<8|uint16(data[1]) {
			t.Fatalf("reply id %#x QR %t to query %x", r.Id, r.Response, data)
		}
		q := new(dns.Msg)
		if q.Unpack(data) == nil && len(q.Question) == 1 {
			limit := dns.MinMsgSize
			if opt := q.IsEdns0(); opt != nil {
				limit = max(limit, int(opt.UDPSize()))
			}
			if len(reply) > limit {
				t.Fatalf("%d-byte reply over the client's %d", len(reply), limit)
			}
		}
	})
}
