package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/portfwd"
	"github.com/slirp-dev/slirp/portfwd/api"
	"github.com/slirp-dev/slirp/portfwd/client"
)

// These tests serve a real Manager (with kernel sockets of the test's own
// network namespace as the "namespace" side) on a real unix socket.

type fixture struct {
	path   string
	mgr    *portfwd.Manager
	server *api.Server
	ln     *api.Listener
}

func newFixture(t *testing.T, edit func(*api.Config)) *fixture {
	t.Helper()
	mgr, err := portfwd.New(portfwd.Config{Opener: e2etest.HostOpener{}, Guest: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Manager: mgr}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		mgr.Close()
	})
	return &fixture{path: path, mgr: mgr, server: srv, ln: ln}
}

// request sends b the way podman does (write, half-close) and reads the
// reply to EOF, as rootlesskit does.
func (f *fixture) request(t *testing.T, b string) string {
	t.Helper()
	c, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, b); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reply to %q: %v", b, err)
	}
	return string(reply)
}

func guestEcho(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e2etest.ServeTCP(t, l, func(c net.Conn) { io.Copy(c, c) })
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// freeTCPPort returns a TCP port that was free on 127.0.0.1 a moment ago.
var freeTCPPort = e2etest.FreeTCPPort

func TestSlirp4netnsProtocol(t *testing.T) {
	f := newFixture(t, nil)
	guest := guestEcho(t)
	hostPort := freeTCPPort(t)

	errReply := func(desc string) string { return `{"error":{"desc":"` + desc + `"}}` }
	for _, tt := range []struct{ req, reply string }{
		{"badjson", errReply("bad request: cannot parse JSON")},
		{"BADJSON", errReply("bad request: cannot parse JSON")},
		{"GET", errReply("bad request: cannot parse JSON")},
		{"POSTAL {}", errReply("bad request: cannot parse JSON")},
		{"", errReply("bad request: cannot parse JSON")},
		{`{"unexpectedjson":42}`, errReply("bad request: no execute found")},
		{`[{"execute":"list_hostfwd"}]`, errReply("bad request: json_object() failed")},
		{`{"execute":"bad"}`, errReply("bad request: unknown execute")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"bad","host_port":8080,"guest_port":80}}`, errReply("bad request: add_hostfwd: bad arguments.proto")},
		{`{"execute":"add_hostfwd","arguments":{"host_port":8080,"guest_port":80}}`, errReply("bad request: add_hostfwd: bad arguments.proto")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":8080,"guest_port":80}}`, errReply("bad request: add_hostfwd: bad arguments.host_addr")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":80}}`, errReply("bad request: add_hostfwd: bad arguments.host_port")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_addr":"x","guest_port":80}}`, errReply("bad request: add_hostfwd: bad arguments.guest_addr")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080}}`, errReply("bad request: add_hostfwd: bad arguments.guest_port")},
		{`{"execute":"remove_hostfwd","arguments":{"id":1}}`, errReply("bad request: remove_hostfwd: bad arguments.id")},
		{`{"execute":"list_hostfwd"}`, `{"entries":[],"return":{"entries":[]}}`},
		// podman's request, with its newline.
		{fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"","guest_port":%d}}`+"\n", hostPort, guest),
			`{"return":{"id":1}}`},
		{`{"execute":"list_hostfwd"}`, fmt.Sprintf(`{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"127.0.0.1","guest_port":%d}],`+
			`"return":{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"127.0.0.1","guest_port":%d}]}}`, hostPort, guest, hostPort, guest)},
	} {
		if got := f.request(t, tt.req); got != tt.reply {
			t.Errorf("request %q:\n got %s\nwant %s", tt.req, got, tt.reply)
		}
	}

	// The forward carries traffic.
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through the forward: %q, %v", buf, err)
	}
	c.Close()

	// The same port again: slirp4netns' generic failure, plus the reason.
	got := f.request(t, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_port":1}}`, hostPort))
	if !strings.HasPrefix(got, `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed","detail":"`) || !strings.Contains(got, "already in use") {
		t.Errorf("add on a busy port: %s", got)
	}
	// rootlesskit's remove.
	if got := f.request(t, `{"execute":"remove_hostfwd","arguments":{"id":1}}`); got != `{"return":{}}` {
		t.Errorf("remove: %s", got)
	}
	if got := f.request(t, `{"execute":"remove_hostfwd","arguments":{"id":1}}`); got != errReply("bad request: remove_hostfwd: bad arguments.id") {
		t.Errorf("second remove: %s", got)
	}
	// ids are never reused.
	if got := f.request(t, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":%d,"guest_port":%d}}`, hostPort, guest)); got != `{"return":{"id":2}}` {
		t.Errorf("add after remove: %s", got)
	}
}

func TestTooLarge(t *testing.T) {
	f := newFixture(t, nil)
	// A flood like the upstream test's /dev/zero: far more than 4096 bytes,
	// without a half-close.
	c, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go c.Write(make([]byte, 64<<10))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != `{"error":{"desc":"bad request: too large message"}}` {
		t.Errorf("flood: %s", got)
	}
	// Exactly 4096 bytes is too large too, as in slirp4netns; 4095 is not.
	if got := f.request(t, strings.Repeat(" ", 4096)); !strings.Contains(got, "too large message") {
		t.Errorf("4096 bytes: %s", got)
	}
	if got := f.request(t, `{"execute":"list_hostfwd"}`+strings.Repeat(" ", 4095-26)); !strings.HasPrefix(got, `{"entries":[]`) {
		t.Errorf("4095 bytes: %s", got)
	}
}

// TestSlowClients: a silent client and one that stops halfway each get an
// error after the timeout, while other clients are answered at once.
func TestSlowClients(t *testing.T) {
	f := newFixture(t, func(c *api.Config) { c.RequestTimeout = 500 * time.Millisecond })
	silent, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	half, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	io.WriteString(half, `{"execute":"li`)

	// Others are served while those two wait; with the timeout far away
	// these replies cannot be waiting for it.
	for range 5 {
		if got := f.request(t, `{"execute":"list_hostfwd"}`); !strings.HasPrefix(got, `{"entries":[]`) {
			t.Fatalf("list while slow clients wait: %s", got)
		}
	}
	// A request without a half-close is answered as soon as it is whole.
	c, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, `{"execute":"list_hostfwd"}`)
	buf := make([]byte, 2048)
	if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), `{"entries":[]`) {
		t.Fatalf("request without half-close: %q, %v", buf[:n], err)
	}
	// A request in two writes (slirp4netns parses only the first read).
	c2, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c2, `{"execute":`)
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c2, `"list_hostfwd"}`)
	if n, err := c2.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), `{"entries":[]`) {
		t.Fatalf("request in two writes: %q, %v", buf[:n], err)
	}

	for name, conn := range map[string]net.Conn{"silent": silent, "half": half} {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil || !strings.Contains(string(got), "no complete request within the time limit") {
			t.Errorf("%s client: %q, %v", name, got, err)
		}
	}
}

func TestBusy(t *testing.T) {
	f := newFixture(t, func(c *api.Config) { c.MaxConns = 1 })
	// A connection that sends nothing holds the one slot once its
	// handler runs. Handlers start in no set order, so the request may
	// still take the slot first (then hold is the one refused): try again
	// with a new holder, a bounded number of times.
	var got string
	for range 50 {
		hold, err := net.Dial("unix", f.path)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		got = f.request(t, `{"execute":"list_hostfwd"}`)
		hold.Close()
		if strings.Contains(got, "busy") {
			break
		}
	}
	if got != `{"error":{"desc":"busy: too many API connections at once; retry"}}` {
		t.Errorf("second connection with MaxConns 1: %s", got)
	}
}

func TestPeerNotAllowed(t *testing.T) {
	f := newFixture(t, func(c *api.Config) { c.AllowUIDs = []uint32{uint32(os.Geteuid()) + 4242} })
	if got := f.request(t, `{"execute":"list_hostfwd"}`); got != `{"error":{"desc":"permission denied: this API socket serves only its owner and root"}}` {
		t.Errorf("JSON request from a refused uid: %s", got)
	}
	cl := client.New(f.path)
	defer cl.Close()
	_, err := cl.Ports(context.Background())
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "permission denied") {
		t.Errorf("HTTP request from a refused uid: %v", err)
	}
	if len(f.mgr.List()) != 0 {
		t.Error("refused requests changed the forwards")
	}
}

func TestHTTPAPI(t *testing.T) {
	f := newFixture(t, func(c *api.Config) {
		c.Info = func() api.Info { return api.Info{Version: "test", Network: "10.0.2.0/24", MTU: 65520} }
		c.StackStats = func() any { return map[string]uint64{"tcp_opened": 7} }
	})
	ctx := context.Background()
	cl := client.New(f.path)
	defer cl.Close()

	info, err := cl.Info(ctx)
	if err != nil || info.APIVersion != api.Version || info.Version != "test" || info.MTU != 65520 {
		t.Fatalf("info %+v, %v", info, err)
	}
	guest := guestEcho(t)
	hostPort := freeTCPPort(t)
	st, err := cl.AddPort(ctx, api.PortSpec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: hostPort, ChildPort: int(guest), Mode: "fast"})
	if err != nil {
		t.Fatal(err)
	}
	want := api.PortStatus{ID: 1, Spec: api.PortSpec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: hostPort, ChildIP: "127.0.0.1", ChildPort: int(guest), Mode: "fast"}}
	if st != want {
		t.Fatalf("added %+v, want %+v", st, want)
	}
	// rootlesskit's shape with the family in proto; no mode given.
	if _, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		st6, err := cl.AddPort(ctx, api.PortSpec{Proto: "tcp6", ParentIP: "::1", ParentPort: hostPort, ChildPort: int(guest)})
		if err != nil || st6.ID != 2 || st6.Spec.ParentIP != "::1" || st6.Spec.Mode != "auto" {
			t.Fatalf("add tcp6: %+v, %v", st6, err)
		}
	}

	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hello")
	io.ReadFull(c, make([]byte, 5))
	c.Close()

	ports, err := cl.Ports(ctx)
	if err != nil || len(ports) < 1 || ports[0] != want {
		t.Fatalf("ports %+v, %v", ports, err)
	}
	stats, err := cl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats.Ports) < 1 || stats.Ports[0].ID != 1 || stats.Ports[0].Connections != 1 || stats.Ports[0].BytesToGuest != 5 {
		t.Errorf("stats %+v", stats.Ports)
	}
	if m, ok := stats.Stack.(map[string]any); !ok || m["tcp_opened"] != float64(7) {
		t.Errorf("stack stats %#v", stats.Stack)
	}

	for _, tt := range []struct {
		spec   api.PortSpec
		status int
		msg    string
	}{
		{api.PortSpec{Proto: "sctp", ParentPort: 1, ChildPort: 1}, 400, "unknown protocol"},
		{api.PortSpec{Proto: "tcp", ParentPort: 0, ChildPort: 1}, 400, "parentPort 0"},
		{api.PortSpec{Proto: "tcp", ParentPort: 1, ChildPort: 70000}, 400, "childPort 70000"},
		{api.PortSpec{Proto: "tcp", ParentIP: "nope", ParentPort: 1, ChildPort: 1}, 400, "not an IP address"},
		{api.PortSpec{Proto: "tcp4", ParentIP: "::1", ParentPort: 1, ChildPort: 1}, 400, "does not match"},
		{api.PortSpec{Proto: "tcp", ParentPort: 1, ChildPort: 1, Mode: "turbo"}, 400, "unknown mode"},
		{api.PortSpec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: hostPort, ChildPort: 1}, 400, "already in use"},
		{api.PortSpec{Proto: "tcp", ParentPort: 65535, ChildPort: 1, Count: 2}, 400, "past 65535"},
		{api.PortSpec{Proto: "tcp", ParentPort: 1, ChildPort: 1, Mode: "preserve"}, 400, "mode preserve needs the user-mode stack"},
	} {
		_, err := cl.AddPort(ctx, tt.spec)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != tt.status || !strings.Contains(ae.Message, tt.msg) {
			t.Errorf("add %+v: %v, want %d %q", tt.spec, err, tt.status, tt.msg)
		}
	}
	var ae *client.APIError
	if err := cl.RemovePort(ctx, 99); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("remove 99: %v", err)
	}
	if err := cl.RemovePort(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after DELETE: %v", err)
	}
	// Raw HTTP: unknown paths, bad ids, bad bodies.
	for _, tt := range []struct{ req, status string }{
		{"GET /v2/ports HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404"},
		{"DELETE /v1/ports/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "400"},
		{"POST /v1/ports HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\n{nope", "400"},
		{"POST /v1/ports HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "400"},
	} {
		got := f.request(t, tt.req)
		if !strings.HasPrefix(got, "HTTP/1.1 "+tt.status+" ") || !strings.Contains(got, `{"message":`) {
			t.Errorf("%q:\n%s", tt.req, got)
		}
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	path := filepath.Join(dir, "api.sock")
	// A stale file from a crashed daemon is replaced.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := api.Listen(path)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", st.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(entries))
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file after Close: %v", err)
	}

	// A path near the limit works although the temporary name is longer.
	long := filepath.Join(dir, strings.Repeat("x", api.MaxSocketPath-1-len(dir)-1))
	if len(long) != api.MaxSocketPath-1 {
		t.Fatalf("test path has %d bytes", len(long))
	}
	ln, err = api.Listen(long)
	if err != nil {
		t.Fatalf("107-byte path: %v", err)
	}
	ln.Close()

	if _, err := api.Listen(long + "y"); err == nil || err.Error() != "the specified API socket path is too long (>= 108)" {
		t.Errorf("108-byte path: %v", err)
	}
	if _, err := api.Listen(filepath.Join(dir, "missing", "api.sock")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing directory: %v", err)
	}
	// Close leaves alone a file someone else put in the socket's place.
	ln, err = api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	os.WriteFile(path, []byte("mine"), 0o644)
	ln.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != "mine" {
		t.Errorf("Close removed a file that was not its socket: %q, %v", b, err)
	}
}

// TestCloseWithOpenConnections: Close does not wait for slow clients.
func TestCloseWithOpenConnections(t *testing.T) {
	f := newFixture(t, nil)
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("unix", f.path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// An idle HTTP keep-alive connection too.
	cl := client.New(f.path)
	if _, err := cl.Ports(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.server.Close()
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("read after Close: %v", err)
		}
	}
	if _, err := os.Lstat(f.path); !os.IsNotExist(err) {
		t.Errorf("socket file after Close: %v", err)
	}
}
