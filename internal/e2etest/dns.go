package e2etest

import (
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// ServeDNSIn serves h on addr:53 over UDP and TCP inside ns (a daemon's
// upstream on its namespace's loopback, so that no query leaves the
// machine) until the test ends.
func ServeDNSIn(t *testing.T, ns *nstest.Netns, addr string, h dns.Handler) {
	t.Helper()
	var pc net.PacketConn
	var l net.Listener
	InNetns(t, ns, func() {
		var err error
		if pc, err = net.ListenPacket("udp", addr+":53"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", addr+":53"); err != nil {
			pc.Close()
			t.Fatal(err)
		}
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started, done := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { defer close(done); srv.ActivateAndServe() }()
		// Shutdown only stops a server that has started.
		select {
		case <-started:
		case <-done:
		}
		t.Cleanup(func() { srv.Shutdown(); <-done })
	}
}
