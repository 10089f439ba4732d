package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

func TestE2EHelpAndVersion(t *testing.T) {
	out, err := exec.Command(slirpBin, "--help").Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, flag := range []string{"--netns-type", "--disable-host-loopback", "--mtu", "--enable-sandbox",
		"--enable-seccomp", "--cidr", "--outbound-addr", "--enable-ipv6", "--api-socket"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
	out, err = exec.Command(slirpBin, "-v").Output()
	if err != nil {
		t.Fatalf("-v: %v", err)
	}
	if !strings.Contains(string(out), "\nSLIRP_CONFIG_VERSION_MAX: 4\n") || !strings.HasPrefix(string(out), "slirp4netns version ") {
		t.Errorf("-v printed %q", out)
	}
	cmd := exec.Command(slirpBin, "--mtu", "0", "1", "tap0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "MTU must be a positive integer (< 65522)") {
		t.Errorf("--mtu 0: err %v, stderr %q; want exit 1 and the slirp4netns message", err, stderr.String())
	}
}

// TestE2EConfigureAndHostLoopback is the "done when": an
// `unshare -Urn` namespace with `slirp --configure --mtu=65520 PID tap0`
// gets TCP and UDP to a host loopback server through 10.0.2.2.
func TestE2EConfigureAndHostLoopback(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	d := startDaemon(t, daemonOpts{args: []string{"--configure", "--mtu=65520", strconv.Itoa(ns.PID), "tap0"}})

	addr := ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap0")
	if !strings.Contains(addr, "inet 10.0.2.100/24 brd 10.0.2.255 scope global tap0") {
		t.Errorf("tap0 address: %q", addr)
	}
	if link := ns.Run(t, "ip", "-o", "link", "show", "tap0"); !strings.Contains(link, "mtu 65520") || !strings.Contains(link, ",UP") {
		t.Errorf("tap0 link: %q", link)
	}
	if route := ns.Run(t, "ip", "route", "show", "default"); !strings.Contains(route, "default via 10.0.2.2 dev tap0") {
		t.Errorf("default route: %q", route)
	}
	for _, want := range []string{"Starting slirp", "* MTU:             65520", "* Gateway:         10.0.2.2", "WARNING: 127.0.0.1:* on the host is accessible as 10.0.2.2"} {
		if !strings.Contains(d.stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, d.stdout)
		}
	}

	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), strconv.Itoa(4<<20))
	if r.Err != "" {
		t.Fatalf("guest TCP to 10.0.2.2: %s", r.Err)
	}
	sha, peer := replySHA(r)
	if sha != r.SHA {
		t.Errorf("host received different bytes: sha %s, guest sent %s", sha, r.SHA)
	}
	if host, _, _ := net.SplitHostPort(peer); host != "127.0.0.1" {
		t.Errorf("host saw the guest as %s, want 127.0.0.1", peer)
	}

	rev := startHostServer(t, "tcp4", "127.0.0.1:0", "rev")
	r = client(t, ns, "tcp-rev", "10.0.2.2:"+rev.port(), "100000")
	if r.Err != "" || r.Reply != "hello" {
		t.Fatalf("guest after host half-close: %+v", r)
	}
	select {
	case got := <-rev.got:
		if got != r.SHA {
			t.Errorf("host got %s after its half-close, guest sent %s", got, r.SHA)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("host never finished reading after its half-close")
	}

	pc := startUDPEcho(t, "127.0.0.1:0")
	r = client(t, ns, "udp", "10.0.2.2:"+strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port), "ping")
	if !strings.HasPrefix(r.Reply, "echo:ping 127.0.0.1:") {
		t.Errorf("guest UDP to 10.0.2.2: %+v", r)
	}

	r = client(t, ns, "connect", "10.0.2.2:"+strconv.Itoa(closedPort(t)))
	if r.Errno != "ECONNREFUSED" {
		t.Errorf("connect to a closed host port: %+v, want ECONNREFUSED", r)
	}
}

func TestE2EDisableHostLoopback(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"-c", "--disable-host-loopback", strconv.Itoa(ns.PID), "tap0"}})
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	start := time.Now()
	r := client(t, ns, "connect", "10.0.2.2:"+srv.port())
	if r.Errno != "ENETUNREACH" {
		t.Fatalf("connect to 10.0.2.2 with --disable-host-loopback: %+v, want ENETUNREACH (Network is unreachable)", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v; it must be immediate", d)
	}
}

// TestE2ERootless runs everything as an unprivileged user: the namespace is
// that user's own `unshare -Urn`, and slirp runs as the same user.
func TestE2ERootless(t *testing.T) {
	nstest.RequireUnprivilegedTun(t)
	uid, gid := nstest.UnprivilegedUser(t)
	ns := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	startDaemon(t, daemonOpts{
		args: []string{"-c", "--mtu=65520", strconv.Itoa(ns.PID), "tap0"},
		user: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	})
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), "1000000")
	if sha, _ := replySHA(r); r.Err != "" || sha != r.SHA {
		t.Fatalf("rootless guest TCP: %+v", r)
	}
	pc := startUDPEcho(t, "127.0.0.1:0")
	r = client(t, ns, "udp", "10.0.2.2:"+strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port), "x")
	if !strings.HasPrefix(r.Reply, "echo:x ") {
		t.Fatalf("rootless guest UDP: %+v", r)
	}
}

// TestE2ERemoteHosts runs the daemon inside a namespace whose only way out is
// a veth to a "remote" namespace (198.51.100.0/24), to stage reachable,
// refusing and unreachable hosts without any traffic leaving the machine.
func TestE2ERemoteHosts(t *testing.T) {
	router := nstest.NewNetns(t)
	remote := nstest.NewNetns(t)
	nstest.Veth(t, router, "eth0", "198.51.100.1/24", remote, "eth0", "198.51.100.2/24")
	guest := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{in: router, args: []string{"-c", "--mtu=65520", "--disable-host-loopback", strconv.Itoa(guest.PID), "tap0"}})

	var tcpSrv *hostServer
	var udp net.PacketConn
	inNetns(t, remote, func() {
		tcpSrv = startHostServer(t, "tcp4", "198.51.100.2:0", "sha")
		udp = startUDPEcho(t, "198.51.100.2:0")
	})

	r := client(t, guest, "tcp", "198.51.100.2:"+tcpSrv.port(), strconv.Itoa(2<<20))
	sha, peer := replySHA(r)
	if r.Err != "" || sha != r.SHA {
		t.Fatalf("guest TCP to the remote host: %+v", r)
	}
	if host, _, _ := net.SplitHostPort(peer); host != "198.51.100.1" {
		t.Errorf("remote host saw the connection from %s, want the router's 198.51.100.1", peer)
	}
	r = client(t, guest, "udp", "198.51.100.2:"+strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port), "hi")
	if !strings.HasPrefix(r.Reply, "echo:hi 198.51.100.1:") {
		t.Errorf("guest UDP to the remote host: %+v", r)
	}
	// Refusing host: its kernel answers RST, and so does the stack.
	r = client(t, guest, "connect", "198.51.100.2:1")
	if r.Errno != "ECONNREFUSED" {
		t.Errorf("connect to a closed remote port: %+v, want ECONNREFUSED", r)
	}
	// No route on the router: the host connect fails at once with
	// ENETUNREACH, which reaches the guest as ICMP network unreachable.
	r = client(t, guest, "connect", "203.0.113.1:80")
	if r.Errno != "ENETUNREACH" {
		t.Errorf("connect to an unroutable address: %+v, want ENETUNREACH", r)
	}
	// A dead address on the router's link: ARP fails, the host connect
	// gets EHOSTUNREACH, and the guest an ICMP host unreachable.
	r = client(t, guest, "connect", "198.51.100.99:80")
	if r.Errno != "EHOSTUNREACH" {
		t.Errorf("connect to a dead address: %+v, want EHOSTUNREACH", r)
	}
}

func TestE2ECIDRAndOutboundAddr(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	// 127.0.0.2 is a host loopback address like any other: a listener on
	// all of 127/8 sees which source the daemon bound.
	startDaemon(t, daemonOpts{args: []string{"-c", "--cidr=10.0.135.128/25", "--outbound-addr=127.0.0.2", strconv.Itoa(ns.PID), "tap0"}})
	if addr := ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap0"); !strings.Contains(addr, "inet 10.0.135.228/25") {
		t.Errorf("tap0 with --cidr=10.0.135.128/25: %q", addr)
	}
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	r := client(t, ns, "tcp", "10.0.135.130:"+srv.port(), "10")
	if _, peer := replySHA(r); !strings.HasPrefix(peer, "127.0.0.2:") {
		t.Errorf("with --outbound-addr=127.0.0.2 the host saw %q (%+v)", peer, r)
	}
}

func TestE2EMACAndMTU(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"-c", "--macaddress", "0e:d4:18:d9:38:fb", "-m", "4000", strconv.Itoa(ns.PID), "tap11"}})
	link := ns.Run(t, "ip", "-o", "link", "show", "tap11")
	if !strings.Contains(link, "link/ether 0e:d4:18:d9:38:fb") || !strings.Contains(link, "mtu 4000") {
		t.Errorf("tap11: %q", link)
	}
}

func TestE2EExitFD(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{args: []string{"-e", "4", strconv.Itoa(ns.PID), "tap0"}, extra: []*os.File{r}})
	r.Close()
	// Data does not stop it; hang-up does.
	w.Write([]byte("0123456789"))
	select {
	case <-d.done:
		t.Fatalf("slirp exited after a write to the exit fd; stderr:\n%s", d.stderr)
	case <-time.After(300 * time.Millisecond):
	}
	w.Close()
	if code := d.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status after exit-fd hang-up = %d, want 0", code)
	}
	// The tap went with it.
	waitFor(t, 10*time.Second, "tap0 to disappear", func() bool {
		_, err := ns.Output("ip", "link", "show", "tap0")
		return err != nil
	})
}

func TestE2ETargetExit(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	d := startDaemon(t, daemonOpts{args: []string{strconv.Itoa(ns.PID), "tap0"}})
	syscall.Kill(ns.PID, syscall.SIGKILL)
	if code := d.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit status after the target exited = %d, want 0", code)
	}
}

func TestE2ESIGTERMCleansUp(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	pidFile := filepath.Join(t.TempDir(), "slirp.pid")
	d := startDaemon(t, daemonOpts{args: []string{"--pid-file=" + pidFile, strconv.Itoa(ns.PID), "tap0"}})
	b, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(d.cmd.Process.Pid) {
		t.Fatalf("pid file: %q, %v", b, err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0", code)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
}

func TestE2ENetnsPathAndUsernsPath(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	startDaemon(t, daemonOpts{args: []string{"-c", "--userns-path=" + ns.UsernsPath, "--netns-type=path", ns.Path, "tap11"}})
	if addr := ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap11"); !strings.Contains(addr, "10.0.2.100/24") {
		t.Errorf("tap11 in path mode: %q", addr)
	}
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	if r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), "100"); r.Err != "" {
		t.Errorf("guest TCP in path mode: %+v", r)
	}
}

func TestE2EMissingTarget(t *testing.T) {
	cmd := exec.Command(slirpBin, "999999999", "tap0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("slirp with a PID that does not exist: %v, want exit status 1", err)
	}
	// One line that says what happened and what to do.
	got := stderr.String()
	if n := strings.Count(strings.TrimRight(got, "\n"), "\n"); n != 0 {
		t.Errorf("stderr has %d lines, want one: %q", n+1, got)
	}
	if !strings.Contains(got, "no process 999999999") || !strings.Contains(got, "--netns-type=path") {
		t.Errorf("stderr does not name the missing process and what to give instead: %q", got)
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// TestE2EUserErrors causes the failures a user can cause and checks that
// each ends the daemon with exit status 1 and one line on stderr that says
// what happened and what to do. /dev/net/tun is hidden or locked in a
// private mount namespace, never on the machine.
func TestE2EUserErrors(t *testing.T) {
	nstest.RequireTools(t, "unshare", "setpriv", "mknod")
	uid, gid := nstest.UnprivilegedUser(t)
	asUser := []string{"setpriv", "--reuid=" + strconv.Itoa(int(uid)), "--regid=" + strconv.Itoa(int(gid)), "--clear-groups"}
	rootNs := nstest.NewNetns(t)
	userNs := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	// In a private mount namespace: an empty /dev/net, or one whose tun
	// node only root may open.
	noTun := []string{"unshare", "-m", "sh", "-c", `mount -t tmpfs tmpfs /dev/net && exec "$@"`, "sh"}
	lockedTun := []string{"unshare", "-m", "sh", "-c", `mount -t tmpfs tmpfs /dev/net && mknod -m 600 /dev/net/tun c 10 200 && exec "$@"`, "sh"}
	slirp := func(target *nstest.Netns) []string { return []string{slirpBin, "-c", strconv.Itoa(target.PID), "tap0"} }
	cat := func(parts ...[]string) []string {
		var all []string
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	for _, tc := range []struct {
		name string
		argv []string
		want []string
	}{
		{"no such process", []string{slirpBin, "999999999", "tap0"},
			[]string{"no process 999999999", "--netns-type=path"}},
		{"another user's namespace", cat(asUser, slirp(rootNs)),
			[]string{"permission denied", "run slirp as that user, or as root"}},
		{"no /dev/net/tun", cat(noTun, slirp(rootNs)),
			[]string{"open /dev/net/tun", "modprobe tun", "--device /dev/net/tun"}},
		{"/dev/net/tun not open to users", cat(lockedTun, asUser, slirp(userNs)),
			[]string{"open /dev/net/tun", "permission denied", "chmod 0666 /dev/net/tun"}},
		{"bad MTU", []string{slirpBin, "--mtu=70000", strconv.Itoa(rootNs.PID), "tap0"},
			[]string{"MTU"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("%s: still running after 20 s", strings.Join(tc.argv, " "))
			}
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("%s: %v, want exit status 1; stderr %q", strings.Join(tc.argv, " "), err, stderr.String())
			}
			got := strings.TrimRight(stderr.String(), "\n")
			if strings.Contains(got, "\n") {
				t.Errorf("stderr has %d lines, want one: %q", strings.Count(got, "\n")+1, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.ToLower(got), strings.ToLower(w)) {
					t.Errorf("stderr %q does not say %q", got, w)
				}
			}
		})
	}
}
