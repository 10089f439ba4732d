package slirp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// Prepare creates the tap through the helper; Start on the result uses
// that tap and that helper, and the guest reaches the host through them.
func TestPrepareThenStart(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts, err := slirp.Prepare(ctx, slirp.Options{PID: ns.PID, Configure: true, AllowHostLoopback: true, TapName: "tap7"})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Link == nil || opts.Helper == nil || !opts.LinkVnetHdr {
		t.Fatalf("Prepare gave Link %v, Helper %v, LinkVnetHdr %v", opts.Link, opts.Helper, opts.LinkVnetHdr)
	}
	if out := ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap7"); !strings.Contains(out, "inet 10.0.2.100/24") {
		t.Errorf("tap7 after Prepare: %q", out)
	}
	// Prepared options prepare to themselves.
	again, err := slirp.Prepare(ctx, opts)
	if err != nil || again.Link != opts.Link || again.Helper != opts.Helper {
		t.Fatalf("Prepare of prepared options: %v (link %v, helper %v)", err, again.Link, again.Helper)
	}

	n, err := slirp.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.HelperPID() != opts.Helper.PID() {
		t.Errorf("the network's helper is %d, Prepare started %d", n.HelperPID(), opts.Helper.PID())
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			io.WriteString(c, "from the host")
			c.Close()
		}
	}()
	gc, err := n.Dial(ctx, "tcp", fmt.Sprintf("10.0.2.2:%d", l.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	gc.SetDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(gc); err != nil || string(b) != "from the host" {
		t.Fatalf("guest read %q, %v", b, err)
	}

	// Close takes the prepared tap and helper down.
	pid := opts.Helper.PID()
	n.Close()
	if _, err := ns.Output("ip", "link", "show", "tap7"); err == nil {
		t.Error("tap7 still exists after Close")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("helper %d still running after Close", pid)
	}
}

func TestPrepareFailsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Once first, so that what the runtime keeps open (the poller) is.
	slirp.Prepare(ctx, slirp.Options{NetnsPath: "/nonexistent/netns"})
	before, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := slirp.Prepare(ctx, slirp.Options{NetnsPath: "/nonexistent/netns"})
	if err == nil || opts.Link != nil || opts.Helper != nil {
		t.Fatalf("Prepare with a missing namespace: %v, link %v, helper %v", err, opts.Link, opts.Helper)
	}
	after, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d descriptors open before the failed Prepare, %d after", len(before), len(after))
	}
	if _, err := slirp.Prepare(ctx, slirp.Options{}); err == nil || !strings.Contains(err.Error(), "no target") {
		t.Errorf("Prepare without a target: %v", err)
	}
}
