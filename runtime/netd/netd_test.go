package netd

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

func TestArgs(t *testing.T) {
	c := Config{UsernsPath: "/proc/9/ns/user", NetnsPath: "/proc/9/ns/net", APISocket: "/s"}
	want := []string{"--disable-host-loopback", "--mtu=65520", "--cidr=10.0.2.0/24", "-c", "-r", "3", "-e", "4",
		"--api-socket", "/s", "--userns-path=/proc/9/ns/user", "--netns-type=path", "/proc/9/ns/net", "tap0"}
	if got := c.Args(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Args() = %q\nwant %q", got, want)
	}
	c.AllowHostLoopback, c.IPv6 = true, true
	got := strings.Join(c.Args(), " ")
	if strings.Contains(got, "--disable-host-loopback") || !strings.Contains(got, "--enable-ipv6") {
		t.Fatalf("Args() with loopback and IPv6 = %s", got)
	}
}

func TestParseList(t *testing.T) {
	real := `{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}`
	doc := `{"return":{"entries":[{"id":2,"proto":"udp","host_addr":"127.0.0.1","host_port":53,"guest_addr":"10.0.2.100","guest_port":53}]}}`
	for in, want := range map[string][]Hostfwd{
		real:             {{ID: 1, Proto: "tcp", HostAddr: "0.0.0.0", HostPort: 8080, GuestAddr: "10.0.2.100", GuestPort: 80}},
		doc:              {{ID: 2, Proto: "udp", HostAddr: "127.0.0.1", HostPort: 53, GuestAddr: "10.0.2.100", GuestPort: 53}},
		`{"entries":[]}`: {},
	} {
		got, err := ParseList([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseList(%s) = %+v, %v", in, got, err)
		}
	}
	if _, err := ParseList([]byte(`{"return":{}}`)); err == nil {
		t.Error("a reply without entries was accepted")
	}
}

func FuzzParseList(f *testing.F) {
	f.Add([]byte(`{"entries":[{"id":1}]}`))
	f.Add([]byte(`{"return":{"entries":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseList(b)
	})
}

// fakeAPI answers one request per connection the way slirp4netns does.
func fakeAPI(t *testing.T, reply func(req string) string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Write([]byte(reply(strings.TrimSpace(line))))
			c.Close()
		}
	}()
	return sock
}

func TestAPIClient(t *testing.T) {
	var got []string
	sock := fakeAPI(t, func(req string) string {
		got = append(got, req)
		switch {
		case strings.Contains(req, `"host_port":1`):
			return `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}`
		case strings.Contains(req, "add_hostfwd"):
			return `{"return":{"id":7}}`
		case strings.Contains(req, "list_hostfwd"):
			return `{"entries":[{"id":7,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}`
		}
		return `{"return":{}}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := AddHostfwd(ctx, sock, "tcp", "", 8080, 80)
	if err != nil || id != 7 {
		t.Fatalf("AddHostfwd = %d, %v", id, err)
	}
	if want := `{"arguments":{"guest_addr":"","guest_port":80,"host_addr":"0.0.0.0","host_port":8080,"proto":"tcp"},"execute":"add_hostfwd"}`; got[0] != want {
		t.Errorf("request %s\nwant %s", got[0], want)
	}
	_, err = AddHostfwd(ctx, sock, "tcp", "", 1, 80)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Desc, "slirp_add_hostfwd failed") {
		t.Errorf("error reply: %v", err)
	}
	l, err := ListHostfwd(ctx, sock)
	if err != nil || len(l) != 1 || l[0].HostPort != 8080 {
		t.Errorf("ListHostfwd = %+v, %v", l, err)
	}
	if err := RemoveHostfwd(ctx, sock, 7); err != nil {
		t.Errorf("RemoveHostfwd: %v", err)
	}
}

func TestFindBinary(t *testing.T) {
	if p, err := FindBinary("true"); err != nil || !strings.HasSuffix(p, "/true") {
		t.Errorf("FindBinary(true) = %q, %v", p, err)
	}
	t.Setenv(EnvBinary, "no-such-daemon-binary")
	if _, err := FindBinary(""); err == nil || !strings.Contains(err.Error(), "no-such-daemon-binary") {
		t.Errorf("FindBinary with a bad %s: %v", EnvBinary, err)
	}
}

// TestStartRealDaemon starts slirp4netns (or $SLIRPRUN_SLIRP) for a
// namespace of the test's own and uses its API.
func TestStartRealDaemon(t *testing.T) {
	bin := os.Getenv(EnvBinary)
	if bin == "" {
		bin = "/usr/bin/slirp4netns"
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Skipf("no network daemon (%s): %v", bin, err)
	}
	ns := nstest.NewNetns(t, nstest.WithUserns())
	dir, err := os.MkdirTemp("", "netd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := Start(ctx, Config{
		Binary: bin, UsernsPath: ns.UsernsPath, NetnsPath: ns.Path, APISocket: sock,
		LogFile: filepath.Join(dir, "log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out := ns.Run(t, "ip", "-o", "addr", "show", "tap0")
	if !strings.Contains(out, "10.0.2.100/24") {
		t.Errorf("tap0 not configured: %s", out)
	}
	id, err := AddHostfwd(ctx, sock, "tcp", "127.0.0.1", 0, 80)
	if err == nil {
		t.Errorf("host port 0 was accepted (id %d)", id)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if _, err := AddHostfwd(ctx, sock, "tcp", "127.0.0.1", port, 80); err != nil {
		t.Fatal(err)
	}
	l, err := ListHostfwd(ctx, sock)
	if err != nil || len(l) != 1 || l[0].HostPort != port || l[0].GuestPort != 80 {
		t.Fatalf("ListHostfwd = %+v, %v", l, err)
	}
	d.Close()
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("API socket left after the daemon exited")
	}
}

func TestStartReportsFailure(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Start(ctx, Config{Binary: "false", NetnsPath: "/nonexistent", APISocket: filepath.Join(dir, "s"), LogFile: filepath.Join(dir, "log")})
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("Start(false) = %v", err)
	}
	_, err = Start(ctx, Config{Binary: "true", APISocket: "/" + strings.Repeat("x", 200)})
	if err == nil || !strings.Contains(err.Error(), "shorter --state-dir") {
		t.Fatalf("long socket path: %v", err)
	}
}
