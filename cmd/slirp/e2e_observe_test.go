package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// TestE2EObservability: --pcap writes a capture tcpdump reads, --metrics
// serves Prometheus counters, --log-format=json logs JSON lines.
func TestE2EObservability(t *testing.T) {
	nstest.RequireTools(t, "tcpdump")
	ns := nstest.NewNetns(t, nstest.WithUserns())
	dir := t.TempDir()
	pcap := filepath.Join(dir, "tap.pcap")
	sock := filepath.Join(dir, "metrics.sock")
	d := startDaemon(t, daemonOpts{args: []string{"-c", "--pcap=" + pcap, "--metrics=" + sock, "--log-format=json", strconv.Itoa(ns.PID), "tap0"}})

	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	if r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), "5000"); r.Err != "" {
		t.Fatalf("guest TCP: %+v", r)
	}

	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://slirp/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"slirp_stack_tcp_opened_total 1\n", "slirp_stack_tcp_to_host_total 5000\n", "# TYPE slirp_dns_received_total counter"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	d.stop(t)
	out, err := exec.Command("tcpdump", "-n", "-r", pcap, "tcp", "port", srv.port()).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "10.0.2.100.") || !strings.Contains(string(out), "> 10.0.2.2."+srv.port()+": Flags [S]") {
		t.Errorf("the capture does not show the guest's SYN to 10.0.2.2:%s:\n%s", srv.port(), out)
	}
	// Frames are captured with their Ethernet header: ARP reads as ARP.
	out, err = exec.Command("tcpdump", "-n", "-e", "-r", pcap, "arp").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Request who-has 10.0.2.2 tell 10.0.2.100") || !strings.Contains(string(out), "Reply 10.0.2.2 is-at ") {
		t.Errorf("the capture does not show the guest's ARP exchange for the gateway:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(d.stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] == nil {
			t.Errorf("stderr line is not a JSON log record: %q", line)
		}
	}
}
