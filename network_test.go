package slirp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/client"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNetworkForwardsFlowsAndAPI drives an embedded network through its Go
// methods and through its API socket.
func TestNetworkForwardsFlowsAndAPI(t *testing.T) {
	nstest.RequireTools(t, "ncat")
	ns := nstest.NewNetns(t, nstest.WithUserns())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "api.sock")
	n, err := slirp.Start(ctx, slirp.Options{PID: ns.PID, Configure: true, AllowHostLoopback: true, APISocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	// A server inside the namespace, published on the host.
	srv := ns.Command(ctx, "ncat", "-l", "-k", "8080", "--sh-exec", "echo from inside")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	hostPort := freePort(t)
	spec, err := portfwd.ParseSpec(fmt.Sprintf("127.0.0.1:%d:8080", hostPort))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := n.AddForward(spec)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for i := 0; i < 50 && got != "from inside\n"; i++ {
		if c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort), 5*time.Second); err == nil {
			b, _ := io.ReadAll(c)
			c.Close()
			got = string(b)
		}
		if got != "from inside\n" {
			time.Sleep(100 * time.Millisecond) // ncat may not listen yet
		}
	}
	if got != "from inside\n" {
		t.Fatalf("through the forward: %q", got)
	}
	if err := n.RemoveForward(fw.ID); err != nil || len(n.Forwards()) != 0 {
		t.Fatalf("RemoveForward: %v, %d left", err, len(n.Forwards()))
	}

	// A connection the guest holds open shows up as a flow, over the API too.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	gc, err := n.Dial(ctx, "tcp", fmt.Sprintf("10.0.2.2:%d", l.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	gc.Write([]byte("12345"))
	cl := client.New(sock)
	defer cl.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		flows, err := cl.Conns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(flows) == 1 && flows[0].ToHost == 5 && flows[0].Direction == "out" && strings.HasPrefix(flows[0].Guest, "10.0.2.100:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/v1/conns = %v, want the guest's one connection with 5 bytes sent", flows)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Impairments set over the API are the network's.
	if _, err := cl.SetNetem(ctx, "egress:delay=5ms loss=1%"); err != nil {
		t.Fatal(err)
	}
	if s := n.Netem(); s.Egress.Delay != 5*time.Millisecond || s.Ingress.Loss != 0.01 {
		t.Fatalf("after PUT /v1/netem the network has %+v", s)
	}
	if st := n.Stats(); st.Stack.TCPOpened != 1 || len(st.Forwards) != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestStartNeedsATarget(t *testing.T) {
	if _, err := slirp.Start(context.Background(), slirp.Options{}); err == nil || !strings.Contains(err.Error(), "no target") {
		t.Fatalf("Start without a target: %v", err)
	}
}
