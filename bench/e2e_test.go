package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// TestMain lets the test binary be the guest-side peer too, as the bench
// binary is: the harness runs os.Executable() inside the namespace.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == peerCommand {
		os.Exit(runPeer(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testLogWriter sends the harness's log lines to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestNSPassEveryDaemon runs one short pass of every workload against each
// daemon found on the machine, with real namespaces, taps and traffic, and
// checks that every row got a number. It checks the harness, not the
// daemons' speed: no number is compared with anything.
func TestNSPassEveryDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemons; skipped with -short")
	}
	nstest.RequireRoot(t)
	nstest.RequireNamespaces(t)
	nstest.RequireTools(t, "iperf3", "nsenter", "ip", "go")
	impls := []string{ours}
	for _, name := range []string{slirp4netns, pasta} {
		if _, err := os.Stat(newImplementations("")[name].binary); err == nil {
			impls = append(impls, name)
		} else {
			t.Logf("%s not installed; not run", name)
		}
	}
	opts := options{
		iperfTime: time.Second, connTime: 200 * time.Millisecond, latencyCount: 200, idleConns: 20,
		mtus: []int{65520}, rounds: 1, impls: impls, workloads: map[string]bool{},
	}
	for _, w := range workloadNames {
		opts.workloads[w] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := newBench(ctx, opts, slog.New(slog.NewTextHandler(testLogWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)

	for _, name := range impls {
		if err := b.runPass(ctx, b.impls[name], 65520, true); err != nil {
			t.Errorf("%s pass: %v", name, err)
		}
	}
	for _, name := range impls {
		for _, id := range []string{"ready", "rss", "rss-main", "g2h", "h2g", "g2h4", "cpu-g2h", "latency", "latency99",
			"connrate", "idle-rss", "idle-per-conn", "fwd"} {
			v := b.res.get(65520, name, id)
			if id == "fwd" && name == ours && v.why == "n/a (API missing)" {
				t.Logf("%s has no port-forward API yet: %s", name, v.why)
				continue
			}
			if !v.ok || v.v < 0 {
				t.Errorf("%s %s: %+v", name, id, v)
			}
		}
	}
	if len(b.commands) != len(impls) {
		t.Errorf("recorded %d command lines for %d daemons", len(b.commands), len(impls))
	}
	report := b.report()
	for _, want := range []string{"| MTU 65520 |", "start to ready", "/usr/bin/slirp4netns --configure"} {
		if !strings.Contains(report, want) && (want != "/usr/bin/slirp4netns --configure" || len(impls) > 1) {
			t.Errorf("report lacks %q", want)
		}
	}
}
