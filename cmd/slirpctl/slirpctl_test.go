package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/buildinfo"
	"github.com/slirp-dev/slirp/netem"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/api"
)

func TestParseAdd(t *testing.T) {
	tests := []struct {
		mode    string
		args    []string
		want    []api.PortSpec
		wantErr string
	}{
		{mode: "auto", args: []string{"8080:80"}, want: []api.PortSpec{{Proto: "tcp", ParentPort: 8080, ChildPort: 80, Mode: "auto"}}},
		{mode: "auto", args: []string{"127.0.0.1:5353:53/udp"}, want: []api.PortSpec{{Proto: "udp", ParentIP: "127.0.0.1", ParentPort: 5353, ChildPort: 53, Mode: "auto"}}},
		{mode: "preserve", args: []string{"[::1]:8080:80", "8000-8010:8000-8010"}, want: []api.PortSpec{
			{Proto: "tcp", ParentIP: "::1", ParentPort: 8080, ChildPort: 80, Mode: "preserve"},
			{Proto: "tcp", ParentPort: 8000, ChildPort: 8000, Count: 11, Mode: "preserve"},
		}},
		{mode: "fast", args: []string{"0.0.0.0:80:10.0.2.50:8080"}, want: []api.PortSpec{{Proto: "tcp", ParentIP: "0.0.0.0", ParentPort: 80, ChildIP: "10.0.2.50", ChildPort: 8080, Mode: "fast"}}},
		{mode: "auto", args: nil, wantErr: "add needs at least one SPEC"},
		{mode: "turbo", args: []string{"1:1"}, wantErr: "unknown mode"},
		{mode: "auto", args: []string{"8080"}, wantErr: "want [HOSTADDR:]HOSTPORT"},
		{mode: "auto", args: []string{"1:1", "::1:8080:80"}, wantErr: "brackets"},
	}
	for _, tt := range tests {
		got, err := parseAdd(tt.mode, tt.args)
		if tt.wantErr != "" {
			if _, ok := err.(*usageError); !ok || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseAdd(%q, %q) = %v, %v; want usage error %q", tt.mode, tt.args, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseAdd(%q, %q): %v", tt.mode, tt.args, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseAdd(%q, %q) = %+v, want %+v", tt.mode, tt.args, got, tt.want)
		}
	}
}

func TestParseIDs(t *testing.T) {
	if ids, err := parseIDs([]string{"1", "22"}); err != nil || fmt.Sprint(ids) != "[1 22]" {
		t.Errorf("parseIDs: %v, %v", ids, err)
	}
	for _, bad := range [][]string{nil, {"x"}, {"0"}, {"-1"}, {"1", "1.5"}} {
		if _, err := parseIDs(bad); err == nil {
			t.Errorf("parseIDs(%q) accepted", bad)
		}
	}
}

// runCtl runs slirpctl in-process and returns its status and output.
func runCtl(env map[string]string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		code int
		err  string
	}{
		{nil, nil, 2, "no command given"},
		{[]string{"frob"}, nil, 2, `unknown command "frob"`},
		{[]string{"ls"}, nil, 2, "give --api-socket PATH or set SLIRP_API_SOCKET"},
		{[]string{"--bogus", "ls"}, nil, 2, "flag provided but not defined: -bogus"},
		{[]string{"--api-socket=/x", "ls", "extra"}, nil, 2, "ls takes no arguments"},
		{[]string{"add", "8080:80"}, map[string]string{envSocket: "/nonexistent/api.sock"}, 1, "is the daemon running with --api-socket /nonexistent/api.sock?"},
		{[]string{"--api-socket", "/x", "rm"}, nil, 2, "rm needs at least one ID"},
	} {
		code, _, stderr := runCtl(tt.env, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.err) {
			t.Errorf("slirpctl %q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.code, tt.err)
		}
	}
	code, stdout, _ := runCtl(nil, "--help")
	if code != 0 || !strings.Contains(stdout, "Usage: slirpctl") {
		t.Errorf("--help: %d %q", code, stdout)
	}
	code, stdout, _ = runCtl(nil, "--version")
	if want := buildinfo.Text("slirpctl"); code != 0 || stdout != want {
		t.Errorf("--version: %d %q, want 0 %q", code, stdout, want)
	}
}

type hostOpener struct{}

func (hostOpener) Socket(_ context.Context, domain, typ, proto int) (*os.File, error) {
	fd, err := unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "test socket"), nil
}

// TestAgainstServer runs the commands against a real API server (in this
// process) whose forwards reach a server on the host's loopback. The test
// against the real daemon is in cmd/slirp (TestE2ESlirpctl).
func TestAgainstServer(t *testing.T) {
	mgr, err := portfwd.New(portfwd.Config{Opener: hostOpener{}, Guest: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Manager: mgr, Info: func() api.Info {
		return api.Info{Version: "x", Network: "10.0.2.0/24", GuestIP: "10.0.2.100", MTU: 1500, FastPath: true}
	}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done; mgr.Close() })

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	guestPort := l.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hi")
			c.Close()
		}
	}()
	hostPort := func() int {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}()

	env := map[string]string{envSocket: sock}
	spec := fmt.Sprintf("127.0.0.1:%d:%d", hostPort, guestPort)
	code, stdout, stderr := runCtl(env, "add", spec)
	if code != 0 {
		t.Fatalf("add: %d %s", code, stderr)
	}
	wantRow := fmt.Sprintf("1   tcp    127.0.0.1:%d  127.0.0.1:%d  auto", hostPort, guestPort)
	if !strings.Contains(stdout, "ID  PROTO  HOST") || !strings.Contains(stdout, wantRow) {
		t.Errorf("add printed:\n%s\nwant a row %q", stdout, wantRow)
	}
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
		t.Errorf("through the forward: %q, %v", b, err)
	}
	c.Close()

	code, stdout, _ = runCtl(env, "ls", "--json")
	var ports []api.PortStatus
	if code != 0 || json.Unmarshal([]byte(stdout), &ports) != nil || len(ports) != 1 || ports[0].Spec.ParentPort != hostPort {
		t.Errorf("ls --json: %d %s", code, stdout)
	}
	code, stdout, _ = runCtl(env, "--json", "stats")
	var st api.Stats
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil || len(st.Ports) != 1 || st.Ports[0].Connections != 1 || st.Ports[0].BytesToHost != 2 {
		t.Errorf("stats --json: %d %s", code, stdout)
	}
	code, stdout, _ = runCtl(env, "stats")
	if code != 0 || !strings.Contains(stdout, "CONNS") {
		t.Errorf("stats: %d %s", code, stdout)
	}
	code, stdout, _ = runCtl(env, "info")
	if code != 0 || !strings.Contains(stdout, "Guest IP:") || !strings.Contains(stdout, "10.0.2.100") || !strings.Contains(stdout, "Data paths:     fast") {
		t.Errorf("info: %d %s", code, stdout)
	}
	// A busy port: the daemon's reason, exit 1; the other spec still added.
	other := fmt.Sprintf("127.0.0.1:%d:%d/udp", hostPort, guestPort)
	code, stdout, stderr = runCtl(env, "add", spec, other, "--json")
	if code != 1 || !strings.Contains(stderr, "already in use") {
		t.Errorf("add on a busy port: %d %q", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &ports); err != nil || len(ports) != 1 || ports[0].ID != 2 || ports[0].Spec.Proto != "udp" {
		t.Errorf("add with one failure printed %s", stdout)
	}
	code, stdout, stderr = runCtl(env, "rm", "1", "2", "7")
	if code != 1 || stdout != "removed 1\nremoved 2\n" || !strings.Contains(stderr, "rm 7: port forward 7: no such port forward") {
		t.Errorf("rm: %d %q %q", code, stdout, stderr)
	}
	code, stdout, _ = runCtl(env, "ls")
	if code != 0 || strings.TrimSpace(stdout) != "ID  PROTO  HOST  GUEST  MODE" {
		t.Errorf("ls after rm: %d %q", code, stdout)
	}
}

// TestNetemAndConnsAgainstServer runs netem, partition and conns against a
// real API server whose hooks record what they are given.
func TestNetemAndConnsAgainstServer(t *testing.T) {
	mgr, err := portfwd.New(portfwd.Config{Opener: hostOpener{}, Guest: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var current netem.Spec
	started := time.Now().Add(-90 * time.Second)
	srv, err := api.New(api.Config{
		Manager:  mgr,
		Netem:    func() netem.Spec { mu.Lock(); defer mu.Unlock(); return current },
		SetNetem: func(s netem.Spec) { mu.Lock(); current = s; mu.Unlock() },
		Flows: func() []api.Conn {
			return []api.Conn{{Direction: "out", Proto: "tcp", Guest: "10.0.2.100:40000", Dest: "10.0.2.2:80",
				Host: "127.0.0.1:80", Started: started, ToHost: 12, ToGuest: 3400}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done; mgr.Close() })
	env := map[string]string{envSocket: sock}

	code, stdout, stderr := runCtl(env, "netem", "set", "delay=50ms", "egress:loss=1%")
	if code != 0 || !strings.Contains(stdout, "egress:delay=50ms") || !strings.Contains(stdout, "egress:loss=1%") || !strings.Contains(stdout, "ingress:delay=50ms") {
		t.Fatalf("netem set: %d %q %q", code, stdout, stderr)
	}
	mu.Lock()
	if current.Egress.Delay != 50*time.Millisecond || current.Egress.Loss != 0.01 || current.Ingress.Loss != 0 {
		t.Errorf("the daemon got %+v", current)
	}
	mu.Unlock()
	if code, stdout, _ = runCtl(env, "partition", "on"); code != 0 || !strings.Contains(stdout, "partition") || !strings.Contains(stdout, "delay=50ms") {
		t.Errorf("partition on: %d %q (the other impairments must stay)", code, stdout)
	}
	if code, stdout, _ = runCtl(env, "partition", "off"); code != 0 || strings.Contains(stdout, "partition") {
		t.Errorf("partition off: %d %q", code, stdout)
	}
	if code, stdout, _ = runCtl(env, "netem", "clear"); code != 0 || strings.TrimSpace(stdout) != "none" {
		t.Errorf("netem clear: %d %q", code, stdout)
	}
	if code, _, stderr = runCtl(env, "netem", "set", "loss=200%"); code != 2 || !strings.Contains(stderr, "probability") {
		t.Errorf("netem set loss=200%%: %d %q", code, stderr)
	}

	// An open connection through a forward is listed as incoming, with
	// the client's address and its bytes, next to the guest's own flow.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := uint16(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	if _, err := mgr.Add(portfwd.Spec{Proto: portfwd.TCP, HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort,
		GuestPort: uint16(l.Addr().(*net.TCPAddr).Port)}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	var gc net.Conn
	select {
	case gc = <-accepted:
		defer gc.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the forward did not connect within 10s")
	}
	gc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(gc, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCtl(env, "conns")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "DIR") {
		t.Fatalf("conns: %d %q", code, stdout)
	}
	if out := lines[1]; !strings.HasPrefix(out, "out") || !strings.Contains(out, "10.0.2.100:40000") || !strings.Contains(out, "3400") || !strings.Contains(out, "1m30s") {
		t.Errorf("conns: the guest's flow reads %q", out)
	}
	in := strings.Fields(lines[2])
	if want := []string{"in", "tcp", l.Addr().String(), "forward", "1", "(fast)", c.LocalAddr().String(), "0", "5"}; len(in) != 10 || !slices.Equal(in[:9], want) {
		t.Errorf("conns: the forwarded connection reads %q, want %q and an age", lines[2], want)
	}
	code, stdout, _ = runCtl(env, "conns", "--json")
	var conns []api.Conn
	if code != 0 || json.Unmarshal([]byte(stdout), &conns) != nil || len(conns) != 2 {
		t.Fatalf("conns --json: %d %q", code, stdout)
	}
	if got := conns[1]; got.Direction != "in" || got.Forward != 1 || got.Path != "fast" || got.Host != c.LocalAddr().String() || got.ToGuest != 5 || got.Dest != "" {
		t.Errorf("conns --json: the forwarded connection is %+v", got)
	}
}
