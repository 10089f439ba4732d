package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/portfwd/api"
	apiclient "github.com/slirp-dev/slirp/portfwd/client"
)

// The end-to-end tests of port forwarding and the API socket: a real daemon
// serving a real namespace, servers inside the namespace that report the
// peer address they see, and clients on the host's loopback or, for the
// address-preserving path, in a namespace of their own linked to the
// daemon's by a veth.

// apiClientEnv makes the test binary send one API request and print the
// reply (used to talk to the socket as another user).
const apiClientEnv = "SLIRP_E2E_API_CLIENT"

func init() {
	if os.Getenv(apiClientEnv) != "" {
		// api-request SOCKET REQUEST
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: SOCKET REQUEST")
			os.Exit(2)
		}
		reply, err := apiExchange(os.Args[1], os.Args[2], false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(reply)
		os.Exit(0)
	}
}

// apiExchange sends one slirp4netns-protocol request. As podman does, it
// half-closes and reads once into 2048 bytes (once = true); as rootlesskit
// does, it reads to EOF.
func apiExchange(sock, req string, once bool) (string, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		return "", err
	}
	if once {
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func apiRequest(t *testing.T, sock, req string) string {
	t.Helper()
	reply, err := apiExchange(sock, req, false)
	if err != nil {
		t.Fatalf("API request %q: %v", req, err)
	}
	return reply
}

// listenIn listens inside ns (nil: the test's own namespace).
func listenIn(t *testing.T, ns *nstest.Netns, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	open := func() { l, err = net.Listen(network, addr) }
	if ns == nil {
		open()
	} else {
		inNetns(t, ns, open)
	}
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	return l
}

// dialIn connects from inside ns (nil: the test's own namespace).
func dialIn(t *testing.T, ns *nstest.Netns, network, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	dial := func() { c, err = net.DialTimeout(network, addr, 10*time.Second) }
	if ns == nil {
		dial()
	} else {
		inNetns(t, ns, dial)
	}
	return c, err
}

// freePortIn returns a port that was free for network in ns a moment ago.
func freePortIn(t *testing.T, ns *nstest.Netns, network string) int {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		var pc net.PacketConn
		var err error
		open := func() { pc, err = net.ListenPacket(network, ":0") }
		if ns == nil {
			open()
		} else {
			inNetns(t, ns, open)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	l := listenIn(t, ns, network, ":0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// guestEcho serves TCP echo on l: everything comes back, then a FIN.
func guestEcho(t *testing.T, l net.Listener) {
	e2etest.ServeTCP(t, l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(90 * time.Second))
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// shaThrough sends size random bytes on c to a "sha" server, half-closes,
// and checks the digest it replies; it returns the peer address the server
// saw.
func shaThrough(t *testing.T, c net.Conn, size int) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	sum := sha256.Sum256(data)
	if _, err := c.Write(data); err != nil {
		t.Fatalf("send %d bytes: %v", size, err)
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the digest: %v", err)
	}
	got, peer, _ := strings.Cut(string(reply), " ")
	if got != hex.EncodeToString(sum[:]) {
		t.Fatalf("the guest received different bytes: its sha256 %q, sent %x", got, sum)
	}
	return peer
}

// echoThrough sends size random bytes on c to an echo server while reading
// the echo, and checks both directions byte for byte.
func echoThrough(t *testing.T, c net.Conn, size int) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	data, got, werr, err := e2etest.EchoExchange(c, size)
	if werr != nil {
		t.Fatalf("send: %v", werr)
	}
	if err != nil {
		t.Fatalf("read the echo: %v (after %d bytes)", err, len(got))
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo differs: got %d bytes sha256 %x, sent %d bytes sha256 %x", len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// TestE2EAPISlirp4netnsProtocol replays podman's and rootlesskit's API
// calls exactly as they send them, checks every error of slirp4netns'
// protocol, and the socket itself: mode 0600, other users refused, a slow
// client blocking no one, removed on SIGTERM.
func TestE2EAPISlirp4netnsProtocol(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	sockDir := t.TempDir()
	sock := filepath.Join(sockDir, "api.sock")
	d := startDaemon(t, daemonOpts{args: []string{"-c", "--mtu=65520", "--api-socket", sock, strconv.Itoa(ns.PID), "tap0"}})

	st, err := os.Lstat(sock)
	if err != nil {
		t.Fatalf("API socket after ready: %v", err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("API socket mode %v, want a socket with 0600", st.Mode())
	}

	// A server in the namespace on port 80 that reports the peer it sees.
	serveHost(t, listenIn(t, ns, "tcp4", "0.0.0.0:80"), "sha")

	// A client that connects and says nothing must not stop the daemon
	// (slirp4netns blocks until it writes).
	silent, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	errDesc := func(desc string) string { return `{"error":{"desc":"` + desc + `"}}` }
	for _, tt := range []struct{ req, want string }{
		{"badjson\n", errDesc("bad request: cannot parse JSON")},
		{`{"unexpectedjson": 42}` + "\n", errDesc("bad request: no execute found")},
		{`{"execute": "bad"}` + "\n", errDesc("bad request: unknown execute")},
		{`{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}` + "\n", errDesc("bad request: add_hostfwd: bad arguments.proto")},
		// slirp4netns crashes on this one.
		{`{"execute":"add_hostfwd","arguments":{"host_port":8080,"guest_port":80}}`, errDesc("bad request: add_hostfwd: bad arguments.proto")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::","host_port":8080,"guest_port":80}}`, errDesc("bad request: add_hostfwd: bad arguments.host_addr")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"8080","guest_port":80}}`, errDesc("bad request: add_hostfwd: bad arguments.host_port")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_addr":"10.0.2","guest_port":80}}`, errDesc("bad request: add_hostfwd: bad arguments.guest_addr")},
		{`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":0}}`, errDesc("bad request: add_hostfwd: bad arguments.guest_port")},
		{`{"execute":"remove_hostfwd","arguments":{"id":1}}`, errDesc("bad request: remove_hostfwd: bad arguments.id")},
		{`{"execute": "list_hostfwd"}` + "\n", `{"entries":[],"return":{"entries":[]}}`},
	} {
		if got := apiRequest(t, sock, tt.req); got != tt.want {
			t.Errorf("request %q:\n got %s\nwant %s", tt.req, got, tt.want)
		}
	}
	// The upstream test's flood (cat /dev/zero | ncat -U): a single read.
	flood, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	flood.SetDeadline(time.Now().Add(20 * time.Second))
	go flood.Write(make([]byte, 1<<20))
	buf := make([]byte, 2048)
	n, err := flood.Read(buf)
	flood.Close()
	if got := string(buf[:n]); err != nil || got != errDesc("bad request: too large message") {
		t.Errorf("flood: %q, %v", got, err)
	}

	// podman (containers/common libnetwork/slirp4netns): guest_addr "",
	// a newline, half-close, one read into 2048 bytes, "error" means
	// failure.
	podmanPort := freePortIn(t, nil, "tcp4")
	reply, err := apiExchange(sock, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":%d,"guest_addr":"","guest_port":80}}`+"\n", podmanPort), true)
	if err != nil || strings.Contains(reply, "error") || reply != `{"return":{"id":1}}` {
		t.Fatalf("podman's add_hostfwd: %q, %v", reply, err)
	}
	// A loopback client takes the fast path: the server sees a peer on the
	// namespace's own address, as for any connection made inside it.
	c, err := dialIn(t, nil, "tcp4", "127.0.0.1:"+strconv.Itoa(podmanPort))
	if err != nil {
		t.Fatal(err)
	}
	if peer := shaThrough(t, c, 1<<20); hostOf(peer) != "10.0.2.100" {
		t.Errorf("the guest saw the loopback client as %s, want 10.0.2.100 (namespace-local)", peer)
	}

	// rootlesskit (pkg/port/slirp4netns): json.Encoder, host_addr as given
	// (here empty), guest_addr the child IP, read to EOF, return.id must
	// be a JSON number; remove_hostfwd with that id.
	rkPort := freePortIn(t, nil, "tcp4")
	var req bytes.Buffer
	json.NewEncoder(&req).Encode(map[string]any{"execute": "add_hostfwd", "arguments": struct {
		Proto     string `json:"proto"`
		HostAddr  string `json:"host_addr"`
		HostPort  int    `json:"host_port"`
		GuestAddr string `json:"guest_addr"`
		GuestPort int    `json:"guest_port"`
	}{"tcp", "", rkPort, "10.0.2.100", 80}})
	var rep struct {
		Return map[string]any `json:"return"`
		Error  map[string]any `json:"error"`
	}
	if err := json.Unmarshal([]byte(apiRequest(t, sock, req.String())), &rep); err != nil || len(rep.Error) != 0 {
		t.Fatalf("rootlesskit's add_hostfwd: %+v, %v", rep, err)
	}
	id, ok := rep.Return["id"].(float64)
	if !ok || id != 2 {
		t.Fatalf("rootlesskit's add_hostfwd: return.id %#v, want the number 2", rep.Return["id"])
	}
	c, err = dialIn(t, nil, "tcp4", "127.0.0.1:"+strconv.Itoa(rkPort))
	if err != nil {
		t.Fatal(err)
	}
	shaThrough(t, c, 1000)

	want := fmt.Sprintf(`{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80},`+
		`{"id":2,"proto":"tcp","host_addr":"0.0.0.0","host_port":%d,"guest_addr":"10.0.2.100","guest_port":80}]`, podmanPort, rkPort)
	if got := apiRequest(t, sock, `{"execute":"list_hostfwd"}`); !strings.HasPrefix(got, want+`,"return":{"entries":[`) {
		t.Errorf("list_hostfwd:\n got %s\nwant %s,\"return\":...", got, want)
	}
	req.Reset()
	json.NewEncoder(&req).Encode(map[string]any{"execute": "remove_hostfwd", "arguments": map[string]int{"id": int(id)}})
	if got := apiRequest(t, sock, req.String()); got != `{"return":{}}` {
		t.Errorf("rootlesskit's remove_hostfwd: %s", got)
	}
	if _, err := dialIn(t, nil, "tcp4", "127.0.0.1:"+strconv.Itoa(rkPort)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect to a removed forward: %v, want ECONNREFUSED", err)
	}

	// The same socket speaks HTTP.
	cl := apiclient.New(sock)
	defer cl.Close()
	info, err := cl.Info(context.Background())
	if err != nil || info.GuestIP != "10.0.2.100" || info.Gateway != "10.0.2.2" || info.MTU != 65520 || !info.FastPath || !info.PreservePath {
		t.Errorf("GET /v1/info: %+v, %v", info, err)
	}

	// Another user is refused even when the file mode would let it in.
	uid, gid := nstest.UnprivilegedUser(t)
	os.Chmod(filepath.Dir(sockDir), 0o755)
	os.Chmod(sockDir, 0o755)
	os.Chmod(sock, 0o666)
	cmd := exec.Command(clientBin, sock, `{"execute":"list_hostfwd"}`)
	cmd.Env = append(os.Environ(), apiClientEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != errDesc("permission denied: this API socket serves only its owner and root") {
		t.Errorf("request as uid %d: %q, %v", uid, out, err)
	}
	os.Chmod(sock, 0o600)

	// The silent client held up nothing and is still waiting for its
	// time limit (its error reply is tested in portfwd/api).
	silent.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := silent.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent client: %q, %v; want no reply yet", buf[:n], err)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d", code)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("API socket after SIGTERM: %v, want it removed", err)
	}
}

// TestE2EAPISocketErrors: the socket path problems slirp4netns reports, with
// exit status 1.
func TestE2EAPISocketErrors(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("a", api.MaxSocketPath-len(dir)-1))
	for _, tt := range []struct{ path, msg string }{
		{long, "the specified API socket path is too long (>= 108)"},
		{filepath.Join(dir, "missing", "api.sock"), "does not exist"},
	} {
		cmd := exec.Command(slirpBin, "--resolv-conf=/dev/null", "--api-socket", tt.path, strconv.Itoa(ns.PID), "tap0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("--api-socket %s: %v, stderr %q; want exit 1 and %q", tt.path, err, stderr.String(), tt.msg)
		}
	}
}

// addPort adds a forward through the HTTP API and fails the test on error.
func addPort(t *testing.T, cl *apiclient.Client, spec api.PortSpec) api.PortStatus {
	t.Helper()
	st, err := cl.AddPort(context.Background(), spec)
	if err != nil {
		t.Fatalf("add %+v: %v", spec, err)
	}
	return st
}

// udpExchange sends msg on c and returns the first reply.
func udpExchange(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

// expectReset checks that a connection through addr is reset well before
// the daemon's connect timeout: nothing listens behind the forward.
func expectReset(t *testing.T, ns *nstest.Netns, addr string) {
	t.Helper()
	c, err := dialIn(t, ns, "tcp4", addr)
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection through %s to a closed guest port: %v, want ECONNRESET", addr, err)
	}
}

// TestE2EPortForwardPaths runs the daemon in a "router" namespace whose
// veth leads to a "remote" namespace (198.51.100.0/24): clients on the
// router's loopback take the fast path, clients from the remote namespace
// the address-preserving one. Servers in the guest report the peer they
// see, for TCP and UDP, and a 64 MiB echo checks each path byte for byte.
func TestE2EPortForwardPaths(t *testing.T) {
	router := nstest.NewNetns(t)
	remote := nstest.NewNetns(t)
	nstest.Veth(t, router, "eth0", "198.51.100.1/24", remote, "eth0", "198.51.100.2/24")
	router.Run(t, "ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad")
	remote.Run(t, "ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
	guest := nstest.NewNetns(t, nstest.WithUserns())
	sock := filepath.Join(t.TempDir(), "api.sock")
	startDaemon(t, daemonOpts{in: router, args: []string{"-c", "-6", "--mtu=65520", "--api-socket", sock, strconv.Itoa(guest.PID), "tap0"}})
	cl := apiclient.New(sock)
	defer cl.Close()

	serveHost(t, listenIn(t, guest, "tcp4", "0.0.0.0:8080"), "sha")
	serveHost(t, listenIn(t, guest, "tcp6", "[::]:8086"), "sha")
	guestEcho(t, listenIn(t, guest, "tcp4", "0.0.0.0:9090"))
	inNetns(t, guest, func() {
		startUDPEcho(t, "0.0.0.0:5353")
		startUDPEcho(t, "[fd00::100]:5356")
	})

	free := func(network string) int { return freePortIn(t, router, network) }
	peerAuto := addPort(t, cl, api.PortSpec{Proto: "tcp", ParentPort: free("tcp4"), ChildPort: 8080})
	peerPreserve := addPort(t, cl, api.PortSpec{Proto: "tcp", ParentPort: free("tcp4"), ChildPort: 8080, Mode: "preserve"})
	echo := addPort(t, cl, api.PortSpec{Proto: "tcp", ParentPort: free("tcp4"), ChildPort: 9090})
	udp := addPort(t, cl, api.PortSpec{Proto: "udp", ParentPort: free("udp4"), ChildPort: 5353})
	closedFast := addPort(t, cl, api.PortSpec{Proto: "tcp", ParentPort: free("tcp4"), ChildPort: 1, Mode: "fast"})
	closedPreserve := addPort(t, cl, api.PortSpec{Proto: "tcp", ParentPort: free("tcp4"), ChildPort: 1, Mode: "preserve"})
	loopback := func(st api.PortStatus) string { return "127.0.0.1:" + strconv.Itoa(st.Spec.ParentPort) }
	external := func(st api.PortStatus) string { return "198.51.100.1:" + strconv.Itoa(st.Spec.ParentPort) }

	// TCP peer addresses.
	c, err := dialIn(t, router, "tcp4", loopback(peerAuto))
	if err != nil {
		t.Fatal(err)
	}
	if peer := shaThrough(t, c, 100000); hostOf(peer) != "10.0.2.100" {
		t.Errorf("fast path: the guest saw %s, want the namespace's own 10.0.2.100", peer)
	}
	c, err = dialIn(t, remote, "tcp4", external(peerAuto))
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	if peer := shaThrough(t, c, 100000); peer != local {
		t.Errorf("preserve path: the guest saw %s, want the client's own %s", peer, local)
	}
	c, err = dialIn(t, router, "tcp4", loopback(peerPreserve))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	if peer := shaThrough(t, c, 1000); peer != "10.0.2.2:"+port {
		t.Errorf("preserve mode, loopback client: the guest saw %s, want the gateway with the client's port, 10.0.2.2:%s", peer, port)
	}

	// UDP peer addresses.
	u, err := dialIn(t, router, "udp4", loopback(udp))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := udpExchange(t, u, "lo"); !strings.HasPrefix(got, "echo:lo 10.0.2.100:") {
		t.Errorf("UDP fast path: %q, want the namespace's own 10.0.2.100", got)
	}
	u, err = dialIn(t, remote, "udp4", external(udp))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got, want := udpExchange(t, u, "ext"), "echo:ext "+u.LocalAddr().String(); got != want {
		t.Errorf("UDP preserve path: %q, want %q", got, want)
	}

	// IPv6 on both sides: the host's [::] to the guest's fd00::100.
	peer6 := addPort(t, cl, api.PortSpec{Proto: "tcp6", ParentPort: free("tcp6"), ChildIP: "fd00::100", ChildPort: 8086})
	udp6 := addPort(t, cl, api.PortSpec{Proto: "udp", ParentIP: "::", ParentPort: free("udp6"), ChildIP: "fd00::100", ChildPort: 5356})
	c, err = dialIn(t, router, "tcp6", "[::1]:"+strconv.Itoa(peer6.Spec.ParentPort))
	if err != nil {
		t.Fatal(err)
	}
	if peer := shaThrough(t, c, 100000); hostOf(peer) != "fd00::100" {
		t.Errorf("IPv6 fast path: the guest saw %s, want fd00::100", peer)
	}
	c, err = dialIn(t, remote, "tcp6", "[2001:db8:1::1]:"+strconv.Itoa(peer6.Spec.ParentPort))
	if err != nil {
		t.Fatal(err)
	}
	local = c.LocalAddr().String()
	if peer := shaThrough(t, c, 100000); peer != local {
		t.Errorf("IPv6 preserve path: the guest saw %s, want the client's own %s", peer, local)
	}
	u, err = dialIn(t, remote, "udp6", "[2001:db8:1::1]:"+strconv.Itoa(udp6.Spec.ParentPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got, want := udpExchange(t, u, "ext6"), "echo:ext6 "+u.LocalAddr().String(); got != want {
		t.Errorf("IPv6 UDP preserve path: %q, want %q", got, want)
	}

	// 64 MiB each way through each path.
	for _, tc := range []struct {
		name string
		ns   *nstest.Netns
		addr string
	}{{"fast", router, loopback(echo)}, {"preserve", remote, external(echo)}} {
		c, err := dialIn(t, tc.ns, "tcp4", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		echoThrough(t, c, 64<<20)
		t.Logf("%s path: 64 MiB each way in %v", tc.name, time.Since(start).Round(time.Millisecond))
	}

	// Nothing listens at the guest port: the client is reset at once.
	expectReset(t, router, loopback(closedFast))
	expectReset(t, router, loopback(closedPreserve))
	expectReset(t, remote, external(closedPreserve))

	st, err := cl.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int]api.PortStats{}
	for _, p := range st.Ports {
		byID[p.ID] = p
	}
	if p := byID[peerAuto.ID]; p.Connections != 2 || p.Fast != 1 || p.Preserve != 1 || p.BytesToGuest != 200000 {
		t.Errorf("stats of the auto forward: %+v", p)
	}
	if p := byID[echo.ID]; p.BytesToGuest != 128<<20 || p.BytesToHost != 128<<20 {
		t.Errorf("stats of the echo forward: %+v", p)
	}
	if p := byID[closedPreserve.ID]; p.Failed != 2 || p.Connections != 0 {
		t.Errorf("stats of the closed forward: %+v", p)
	}
	if p := byID[udp.ID]; p.Connections != 2 || p.Fast != 1 || p.Preserve != 1 {
		t.Errorf("stats of the UDP forward: %+v", p)
	}
	if m, ok := st.Stack.(map[string]any); !ok || m["tcp_opened"] == nil {
		t.Errorf("stack stats: %#v", st.Stack)
	}
}

// slirpctlBin is built on first use by slirpctl.
var (
	slirpctlOnce sync.Once
	slirpctlBin  string
	slirpctlErr  error
)

// slirpctl runs the slirpctl command against sock and returns its stdout;
// a non-zero exit fails the test unless wantFail.
func slirpctl(t *testing.T, sock string, wantFail bool, args ...string) (string, string) {
	t.Helper()
	slirpctlOnce.Do(func() {
		slirpctlBin = filepath.Join(filepath.Dir(slirpBin), "slirpctl")
		out, err := exec.Command("go", "build", "-o", slirpctlBin, "../slirpctl").CombinedOutput()
		if err != nil {
			slirpctlErr = fmt.Errorf("build slirpctl: %v: %s", err, out)
		}
	})
	if slirpctlErr != nil {
		t.Fatal(slirpctlErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, slirpctlBin, args...)
	cmd.Env = append(os.Environ(), "SLIRP_API_SOCKET="+sock)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err != nil) != wantFail {
		t.Fatalf("slirpctl %q: %v\nstdout: %s\nstderr: %s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// TestE2ESlirpctl drives a daemon with slirpctl: an IPv6 host address to
// the IPv4 guest, a UDP forward, a port range, listing as a table and as
// JSON, counters, removal; and forwards added and removed while another
// forward carries a large transfer, which must arrive intact.
func TestE2ESlirpctl(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	sock := filepath.Join(t.TempDir(), "api.sock")
	startDaemon(t, daemonOpts{args: []string{"-c", "--mtu=65520", "--api-socket", sock, strconv.Itoa(ns.PID), "tap0"}})

	serveHost(t, listenIn(t, ns, "tcp4", "0.0.0.0:8080"), "sha")
	guestEcho(t, listenIn(t, ns, "tcp4", "0.0.0.0:9090"))
	inNetns(t, ns, func() { startUDPEcho(t, "0.0.0.0:5353") })
	for i := range 3 {
		serveHost(t, listenIn(t, ns, "tcp4", "0.0.0.0:"+strconv.Itoa(7000+i)), "sha")
	}

	// [::1]:PORT on the host to 10.0.2.100:8080.
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Logf("no IPv6 loopback on this host (%v); skipping the IPv6 forward", err)
	} else {
		p6 := l.Addr().(*net.TCPAddr).Port
		l.Close()
		out, _ := slirpctl(t, sock, false, "add", fmt.Sprintf("[::1]:%d:8080", p6))
		if !strings.Contains(out, fmt.Sprintf("[::1]:%d", p6)) || !strings.Contains(out, "10.0.2.100:8080") {
			t.Errorf("slirpctl add [::1]: %s", out)
		}
		c, err := net.DialTimeout("tcp6", fmt.Sprintf("[::1]:%d", p6), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if peer := shaThrough(t, c, 1<<20); hostOf(peer) != "10.0.2.100" {
			t.Errorf("IPv6 client through the fast path: the guest saw %s", peer)
		}
		// Forced through the stack, an IPv6 client of an IPv4 guest
		// appears as the gateway.
		l, _ = net.Listen("tcp6", "[::1]:0")
		p6b := l.Addr().(*net.TCPAddr).Port
		l.Close()
		slirpctl(t, sock, false, "add", "--mode=preserve", fmt.Sprintf("[::1]:%d:8080", p6b))
		if c, err = net.DialTimeout("tcp6", fmt.Sprintf("[::1]:%d", p6b), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if peer := shaThrough(t, c, 1000); hostOf(peer) != "10.0.2.2" {
			t.Errorf("IPv6 client through the stack: the guest saw %s, want 10.0.2.2", peer)
		}
	}

	udpPort := freePortIn(t, nil, "udp4")
	slirpctl(t, sock, false, "add", fmt.Sprintf("127.0.0.1:%d:5353/udp", udpPort))
	u, err := net.Dial("udp4", "127.0.0.1:"+strconv.Itoa(udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := udpExchange(t, u, "q"); !strings.HasPrefix(got, "echo:q 10.0.2.100:") {
		t.Errorf("UDP through slirpctl's forward: %q", got)
	}
	// The open UDP flow is listed by slirpctl conns as incoming.
	out, _ := slirpctl(t, sock, false, "conns")
	if !regexp.MustCompile(`(?m)^in +udp +10\.0\.2\.100:5353 +forward \d+ \(fast\) +` + regexp.QuoteMeta(u.LocalAddr().String()) + ` +\d+ +1 `).MatchString(out) {
		t.Errorf("slirpctl conns does not list the UDP flow from %s:\n%s", u.LocalAddr(), out)
	}

	// A range of three host ports to guest ports 7000-7002.
	var base int
	for try := range 50 {
		base = 20000 + (int(time.Now().UnixNano())/1000+try*997)%30000
		free := true
		for i := range 3 {
			l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			break
		}
	}
	out, _ = slirpctl(t, sock, false, "--json", "add", fmt.Sprintf("127.0.0.1:%d-%d:7000-7002", base, base+2))
	var added []api.PortStatus
	if err := json.Unmarshal([]byte(out), &added); err != nil || len(added) != 1 || added[0].Spec.Count != 3 {
		t.Fatalf("add a range: %s (%v)", out, err)
	}
	for i := range 3 {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(base+i), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		shaThrough(t, c, 100)
	}

	// A large transfer on one forward while others come and go.
	echoPort := freePortIn(t, nil, "tcp4")
	slirpctl(t, sock, false, "add", fmt.Sprintf("127.0.0.1:%d:9090", echoPort))
	c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(echoPort), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		echoThrough(t, c, 48<<20)
	}()
	for i := range 6 {
		p := freePortIn(t, nil, "tcp4")
		var id int
		if i%2 == 0 {
			out, _ := slirpctl(t, sock, false, "--json", "add", fmt.Sprintf("%d:8080", p))
			var st []api.PortStatus
			if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
				t.Fatalf("add: %s", out)
			}
			id = st[0].ID
			slirpctl(t, sock, false, "rm", strconv.Itoa(id))
		} else {
			reply := apiRequest(t, sock, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":%d,"guest_port":8080}}`, p))
			var r struct{ Return struct{ ID int } }
			if err := json.Unmarshal([]byte(reply), &r); err != nil || r.Return.ID == 0 {
				t.Fatalf("add_hostfwd: %s", reply)
			}
			if got := apiRequest(t, sock, fmt.Sprintf(`{"execute":"remove_hostfwd","arguments":{"id":%d}}`, r.Return.ID)); got != `{"return":{}}` {
				t.Fatalf("remove_hostfwd: %s", got)
			}
		}
	}
	<-done

	out, _ = slirpctl(t, sock, false, "ls")
	if !strings.HasPrefix(out, "ID  PROTO  HOST") || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d-%d", base, base+2)) ||
		!strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", udpPort)) {
		t.Errorf("slirpctl ls:\n%s", out)
	}
	out, _ = slirpctl(t, sock, false, "stats", "--json")
	var st api.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats --json: %s", out)
	}
	var echoStats *api.PortStats
	for i := range st.Ports {
		if st.Ports[i].Spec.ParentPort == echoPort {
			echoStats = &st.Ports[i]
		}
	}
	if echoStats == nil || echoStats.BytesToGuest != 48<<20 || echoStats.BytesToHost != 48<<20 || echoStats.Fast != 1 {
		t.Errorf("stats of the echo forward: %+v", echoStats)
	}
	if _, ok := st.Stack.(map[string]any); !ok {
		t.Errorf("no stack counters in %s", out)
	}
	out, _ = slirpctl(t, sock, false, "info")
	if !strings.Contains(out, "10.0.2.100") || !strings.Contains(out, "fast, preserve") {
		t.Errorf("slirpctl info:\n%s", out)
	}
	_, stderr := slirpctl(t, sock, true, "rm", "999")
	if !strings.Contains(stderr, "no such port forward") {
		t.Errorf("slirpctl rm 999: %s", stderr)
	}
	_, stderr = slirpctl(t, sock+".missing", true, "ls")
	if !strings.Contains(stderr, "is the daemon running with --api-socket") {
		t.Errorf("slirpctl with a missing socket: %s", stderr)
	}
}

// TestE2EPrivilegedPortRootless runs the daemon as an unprivileged user:
// a host port below ip_unprivileged_port_start is refused with a message
// that says how to allow it, and an ordinary port works, through the fast
// path whose sockets the rootless helper opens in the namespace.
func TestE2EPrivilegedPortRootless(t *testing.T) {
	nstest.RequireUnprivilegedTun(t)
	uid, gid := nstest.UnprivilegedUser(t)
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Skipf("no ip_unprivileged_port_start: %v", err)
	}
	start, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if start <= 80 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start is %d here: port 80 is not privileged", start)
	}
	ns := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	startDaemon(t, daemonOpts{
		args: []string{"-c", "--mtu=65520", "--api-socket", sock, strconv.Itoa(ns.PID), "tap0"},
		user: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	})
	// Root may talk to any user's socket.
	cl := apiclient.New(sock)
	defer cl.Close()
	_, err = cl.AddPort(context.Background(), api.PortSpec{Proto: "tcp", ParentPort: 80, ChildPort: 8080})
	t.Logf("port 80: %v", err)
	for _, want := range []string{"privileged", "sysctl -w net.ipv4.ip_unprivileged_port_start=80", "setcap cap_net_bind_service=+ep"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("port 80 as an unprivileged daemon: %v; want it to mention %q", err, want)
		}
	}
	reply := apiRequest(t, sock, `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":80,"guest_port":8080}}`)
	if !strings.HasPrefix(reply, `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed","detail":"`) || !strings.Contains(reply, "ip_unprivileged_port_start") {
		t.Errorf("add_hostfwd on port 80: %s", reply)
	}

	serveHost(t, listenIn(t, ns, "tcp4", "0.0.0.0:8080"), "sha")
	port := freePortIn(t, nil, "tcp4")
	st := addPort(t, cl, api.PortSpec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: port, ChildPort: 8080})
	if st.ID != 1 {
		t.Errorf("first successful add got id %d", st.ID)
	}
	c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if peer := shaThrough(t, c, 4<<20); hostOf(peer) != "10.0.2.100" {
		t.Errorf("rootless fast path: the guest saw %s", peer)
	}
}

// TestE2EAPISocketRemovedOnExit: the socket file goes away on the other
// clean exits too: the exit fd hanging up, and the target namespace
// emptying.
func TestE2EAPISocketRemovedOnExit(t *testing.T) {
	t.Run("exit-fd", func(t *testing.T) {
		ns := nstest.NewNetns(t, nstest.WithUserns())
		sock := filepath.Join(t.TempDir(), "api.sock")
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, daemonOpts{args: []string{"-e", "4", "--api-socket", sock, strconv.Itoa(ns.PID), "tap0"}, extra: []*os.File{r}})
		r.Close()
		if got := apiRequest(t, sock, `{"execute":"list_hostfwd"}`); !strings.HasPrefix(got, `{"entries":[]`) {
			t.Fatalf("list: %s", got)
		}
		w.Close()
		if code := d.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("exit status %d", code)
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("API socket after the exit fd hung up: %v", err)
		}
	})
	t.Run("target-exit", func(t *testing.T) {
		ns := nstest.NewNetns(t, nstest.WithUserns())
		sock := filepath.Join(t.TempDir(), "api.sock")
		d := startDaemon(t, daemonOpts{args: []string{"--api-socket", sock, strconv.Itoa(ns.PID), "tap0"}})
		syscall.Kill(ns.PID, syscall.SIGKILL)
		if code := d.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("exit status %d", code)
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("API socket after the target exited: %v", err)
		}
	})
}
