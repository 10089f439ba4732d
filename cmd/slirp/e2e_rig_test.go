package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// TestE2EBlackhole: --blackhole silences one destination only.
func TestE2EBlackhole(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"-c", "--seed=7", "--netem=egress:delay=1ms", "--blackhole=10.0.2.2", strconv.Itoa(ns.PID), "tap0"}})
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	if r := client(t, ns, "connect", "10.0.2.2:"+srv.port(), "2s"); r.Errno != "TIMEOUT" {
		t.Fatalf("connect to a blackholed address: %+v, want a timeout", r)
	}
	// The DNS address is not blackholed: its local names still answer.
	if r := client(t, ns, "dns", "10.0.2.3:53", "host.containers.internal", "A"); !strings.Contains(r.Reply, "10.0.2.2") {
		t.Fatalf("DNS next to a blackhole: %+v", r)
	}
}

// TestE2EDropAfter: --drop-after partitions the network after a while.
func TestE2EDropAfter(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	start := time.Now()
	startDaemon(t, daemonOpts{args: []string{"-c", "--drop-after=3s", strconv.Itoa(ns.PID), "tap0"}})
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	if r := client(t, ns, "connect", "10.0.2.2:"+srv.port(), "2s"); r.Err != "" {
		if time.Since(start) > 3*time.Second {
			t.Skip("the machine was too slow to connect before the partition")
		}
		t.Fatalf("connect before --drop-after: %+v", r)
	}
	time.Sleep(time.Until(start.Add(4 * time.Second)))
	if r := client(t, ns, "connect", "10.0.2.2:"+srv.port(), "2s"); r.Errno != "TIMEOUT" {
		t.Fatalf("connect after --drop-after: %+v, want a timeout", r)
	}
}
