package clients

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
)

// world is what the scenarios of one test share: a short directory any
// user may enter, the test's DNS server, web servers on the host's
// loopback, and the container image.
type world struct {
	t   *testing.T
	dir string
	// uid and gid of the unprivileged test user.
	uid, gid uint32
	dns      *dnsServer
	// web serves on 127.0.0.1, web6 on [::1] (nil without IPv6 loopback).
	web, web6 *webServer
	// resolvConf names the test DNS server as the only nameserver: the
	// daemons' upstream in every scenario.
	resolvConf string
	// imageToken is what the image's web root serves, so a published
	// port is proven to reach this container.
	imageToken string
}

// newWorld sets up the shared parts, or skips when the machine lacks what
// every client test needs.
func newWorld(t *testing.T) *world {
	t.Helper()
	nstest.RequireRoot(t)
	if buildErr != nil {
		t.Skipf("binaries not built: %v", buildErr)
	}
	nstest.RequireTools(t, "unshare", "setpriv", "nsenter", "mount")
	if _, err := os.Stat(slirp4netnsBin); err != nil {
		t.Skipf("needs Debian's slirp4netns for the side-by-side runs: %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs busybox-static (/bin/busybox) for the container image")
	}
	uid, gid := nstest.UnprivilegedUser(t)
	// Short: podman's API socket is <tmpdir>/<64 hex>.net and must stay
	// under 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "scl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove test directory: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: dir, uid: uid, gid: gid, imageToken: "image-" + randomHex(8)}
	w.dns = startDNS(t)
	w.web = startWeb(t, "tcp4", "127.0.0.1:0")
	if hasIPv6Loopback() {
		w.web6 = startWeb(t, "tcp6", "[::1]:0")
	}
	w.resolvConf = w.path("resolv.conf")
	w.writeFile(w.resolvConf, fmt.Sprintf("# the test's DNS server; never the host's\nnameserver %s\n", w.dns.addr), 0o644)
	return w
}

// path joins parts onto the test directory.
func (w *world) path(parts ...string) string {
	return filepath.Join(append([]string{w.dir}, parts...)...)
}

func (w *world) writeFile(path, content string, mode os.FileMode) {
	w.t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		w.t.Fatal(err)
	}
}

// userDir makes a directory owned by the test user.
func (w *world) userDir(parts ...string) string {
	w.t.Helper()
	p := w.path(parts...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Chown(p, int(w.uid), int(w.gid)); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// chownAll gives the test user everything under p.
func (w *world) chownAll(p string) {
	w.t.Helper()
	if err := e2etest.ChownAll(p, w.uid, w.gid); err != nil {
		w.t.Fatal(err)
	}
}

// imageFiles is the container image: busybox-static with the applets the
// scenarios use, and a web root /www whose index.html is imageToken.
func (w *world) imageFiles() []imagetest.File {
	w.t.Helper()
	files, err := imagetest.Busybox("sh", "ip", "wget", "nslookup", "httpd", "cat", "sleep", "echo",
		"grep", "ls", "id", "true", "seq", "ping", "ping6", "timeout")
	if err != nil {
		w.t.Skip(err)
	}
	return append(files, imagetest.Dir("www"), imagetest.Reg("www/index.html", w.imageToken))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
var freePort = e2etest.FreeTCPPort

// dnsServer answers for one name, on port 53 of a random 127.0.0.0/8
// address (resolv.conf has no port syntax, and the daemons ask port 53),
// and refuses to resolve anything else: it never forwards.
type dnsServer struct {
	addr netip.Addr
	// name resolves to a4 and a6; every other name is NXDOMAIN.
	name string
	a4   netip.Addr
	a6   netip.Addr

	mu      sync.Mutex
	queries []string
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	n := byte(1 + mrand.IntN(250))
	s := &dnsServer{
		name: "host.slirp.test.",
		a4:   netip.AddrFrom4([4]byte{198, 51, 100, n}),
		a6:   netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", n)),
	}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		// 127.x.y.z with x >= 100: clear of 127.0.0.1 and the stub
		// resolvers' 127.0.0.53 and 127.0.1.1.
		s.addr = netip.AddrFrom4([4]byte{127, byte(100 + mrand.IntN(100)), byte(mrand.IntN(256)), byte(1 + mrand.IntN(254))})
		hp := net.JoinHostPort(s.addr.String(), "53")
		var err error
		if pc, err = net.ListenPacket("udp4", hp); err == nil {
			if ln, err = net.Listen("tcp4", hp); err == nil {
				break
			}
			pc.Close()
		}
		if try == 10 {
			t.Fatalf("test DNS server: %v", err)
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s}
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { _ = srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return s
}

func (s *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for _, q := range req.Question {
		s.mu.Lock()
		s.queries = append(s.queries, dns.TypeToString[q.Qtype]+" "+strings.ToLower(q.Name))
		s.mu.Unlock()
		if !strings.EqualFold(q.Name, s.name) {
			m.Rcode = dns.RcodeNameError
			continue
		}
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 5, Rrtype: q.Qtype}
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: s.a4.AsSlice()})
		case dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: s.a6.AsSlice()})
		}
	}
	_ = w.WriteMsg(m)
}

// asked says how many queries for name (any type) reached the server.
func (s *dnsServer) asked(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if strings.HasSuffix(q, " "+strings.ToLower(name)) {
			n++
		}
	}
	return n
}

// webServer is a host service on the loopback: it answers every request
// with its token and remembers who asked.
type webServer struct {
	port  int
	token string

	mu      sync.Mutex
	clients []string
}

func startWeb(t *testing.T, network, addr string) *webServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &webServer{port: ln.Addr().(*net.TCPAddr).Port, token: "host-" + randomHex(8)}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.clients = append(s.clients, r.RemoteAddr)
			s.mu.Unlock()
			io.WriteString(w, s.token)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return s
}

// takeClients returns the remote addresses seen since the last call.
func (s *webServer) takeClients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients
	s.clients = nil
	return c
}

// httpGet fetches url from the host side with a bounded wait.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// eventually retries f every 200 ms for up to limit and returns its last
// error.
func eventually(limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs cmd to completion (it should carry a context with a deadline).
func run(cmd *exec.Cmd) result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	err := cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// credential runs a command as the test user, with no supplementary groups.
func (w *world) credential() *syscall.Credential {
	return &syscall.Credential{Uid: w.uid, Gid: w.gid, Groups: []uint32{}}
}

// inMountns returns a command that runs argv as the test user inside a
// new mount namespace (made by root) where /etc/resolv.conf is the test's:
// the daemons that a launcher started as that user read it, and cannot
// reach the host's real nameserver.
func (w *world) inMountns(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	script := `set -e; f=$0 u=$1 g=$2; shift 2
mount --bind "$f" /etc/resolv.conf
exec setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"`
	args := append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", script,
		w.resolvConf, strconv.Itoa(int(w.uid)), strconv.Itoa(int(w.gid))}, argv...)
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group: the launchers start helpers of their own.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// requireSubuid gives the test user the subordinate id range
// e2etest.SubuidStart, SubuidCount in /etc/subuid and /etc/subgid when it
// has none (rootlesskit refuses to start without a range), and removes it
// again when the test ends. A range already there (set up by CI, or by a
// test of another package running now) is left alone.
func (w *world) requireSubuid() {
	w.t.Helper()
	e2etest.RequireSubuid(w.t, false)
}
