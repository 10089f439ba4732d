package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/portfwd/api"
)

// The end-to-end tests of --enable-sandbox and --enable-seccomp: the real
// daemon, as root and as the unprivileged test user in its own
// `unshare -Urn` namespace, in pid mode and in path mode with
// --userns-path. The daemon runs in a "router" namespace the test made, so
// that its host side (10.0.2.2, the DNS upstream) is that namespace's
// loopback and nothing leaves the machine.

// sandboxEnv is what one sandboxed daemon serves and uses.
type sandboxEnv struct {
	router, guest *nstest.Netns
	// user runs the daemon; nil is root.
	user *syscall.Credential
	// dir holds the API socket, the pid file and resolv.conf, and belongs
	// to the daemon's user.
	dir, resolv string
}

func newSandboxEnv(t *testing.T, rootless bool) *sandboxEnv {
	t.Helper()
	e := &sandboxEnv{router: nstest.NewNetns(t)}
	var uid, gid uint32
	if rootless {
		nstest.RequireUnprivilegedTun(t)
		uid, gid = nstest.UnprivilegedUser(t)
		e.user = &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
		e.guest = nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	} else {
		e.guest = nstest.NewNetns(t, nstest.WithUserns())
	}
	e.dir = t.TempDir()
	os.Chmod(filepath.Dir(e.dir), 0o755)
	if err := os.Chown(e.dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	// The upstream nameserver lives on the router's loopback; the daemon
	// learns it from this file only (never the machine's resolver).
	e.resolv = filepath.Join(e.dir, "resolv.conf")
	if err := os.WriteFile(e.resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startTestDNS(t, e.router, "127.0.0.1", 1)
	startTestDNS(t, e.router, "127.0.0.2", 2)
	return e
}

// target is the command line's target: the guest's PID, or in path mode
// its network namespace file with its user namespace.
func (e *sandboxEnv) target(path bool) []string {
	if path {
		return []string{"--userns-path=" + e.guest.UsernsPath, "--netns-type=path", e.guest.Path, "tap0"}
	}
	return []string{strconv.Itoa(e.guest.PID), "tap0"}
}

type sandboxedOpts struct {
	args []string
	user *syscall.Credential
	// netns and mountns run the daemon inside them (nsenter).
	netns   *nstest.Netns
	mountns string
	// extra become fds 4, 5, ... (fd 3 is the ready pipe).
	extra []*os.File
}

// startSandboxed starts slirp with "-r 3" (under nsenter when asked to
// run in namespaces, which drops to o.user itself) and waits for the ready
// fd. Like startDaemon, it stops the daemon when the test ends.
func startSandboxed(t *testing.T, o sandboxedOpts) *daemonProc {
	t.Helper()
	args := append([]string{"-r", "3"}, o.args...)
	name := slirpBin
	cred := o.user
	var enter []string
	if o.netns != nil {
		enter = append(enter, "--net="+o.netns.Path)
	}
	if o.mountns != "" {
		enter = append(enter, "--mount="+o.mountns)
	}
	if len(enter) > 0 {
		if o.user != nil {
			enter = append(enter, "-S", strconv.Itoa(int(o.user.Uid)), "-G", strconv.Itoa(int(o.user.Gid)))
		}
		args = append(append(enter, "--", slirpBin), args...)
		name, cred = "nsenter", nil
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), e2etest.RaceEnv)
	cmd.ExtraFiles = o.extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	return newDaemonProc(e2etest.Start(t, cmd, slirpProcess(o.args, true)))
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// capNetBindService is CAP_NET_BIND_SERVICE (10) as a capability mask.
const capNetBindService = "0000000000000400"

// checkConfined checks the daemon the way slirp4netns' sandbox test does,
// and more: only CAP_NET_BIND_SERVICE, no new privileges, a seccomp
// filter, and a root holding only etc, run and tmp (plus the top
// directory of the kept --resolv-conf, when that is not in /tmp).
func checkConfined(t *testing.T, pid int, resolv string) {
	t.Helper()
	st := procStatus(t, pid)
	for k, want := range map[string]string{
		"CapEff": capNetBindService, "CapPrm": capNetBindService, "CapBnd": capNetBindService,
		"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if st[k] != want {
			t.Errorf("/proc/%d/status %s = %q, want %q", pid, k, st[k], want)
		}
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{"etc", "run", "tmp"}
	if top, _, _ := strings.Cut(strings.TrimPrefix(resolv, "/"), "/"); !slices.Contains(want, top) {
		want = append(want, top)
		slices.Sort(want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("/proc/%d/root holds %v, want %v", pid, got, want)
	}
	outside, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	if inside, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, resolv)); err != nil || string(inside) != string(outside) {
		t.Errorf("--resolv-conf inside the sandbox: %q, %v; want %q", inside, err, outside)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "slirp" {
		t.Errorf("the sandboxed daemon is named %q, want slirp", comm)
	}
}

// apiRequest sends one request to the API socket as the daemon's user (a
// rootless daemon that joined the guest's user namespace sees the host's
// root as the overflow uid, which its API refuses) and returns the reply.
func (e *sandboxEnv) apiRequest(t *testing.T, sock, req string) string {
	t.Helper()
	if e.user == nil {
		return apiRequest(t, sock, req)
	}
	cmd := exec.Command(clientBin, sock, req)
	// No second of sleep at exit in a -race build.
	cmd.Env = append(os.Environ(), apiClientEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.user}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("API request %q as uid %d: %v: %s", req, e.user.Uid, err, stderr.String())
	}
	return string(out)
}

// addPort publishes a port through the HTTP API, as the daemon's user.
func (e *sandboxEnv) addPort(t *testing.T, sock string, spec api.PortSpec) api.PortStatus {
	t.Helper()
	body, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	reply := e.apiRequest(t, sock, fmt.Sprintf("POST /v1/ports HTTP/1.1\r\nHost: slirp\r\nConnection: close\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(reply)), nil)
	if err != nil {
		t.Fatalf("add %+v: reply %q: %v", spec, reply, err)
	}
	defer resp.Body.Close()
	var st api.PortStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); resp.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("add %+v: %s: %q (%v)", spec, resp.Status, reply, err)
	}
	return st
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}

// TestE2ESandbox runs the sandboxed, seccomp-filtered daemon as podman
// does and checks the confinement, guest TCP, UDP and DNS, port forwarding
// through the API on both data paths (the namespace helper survived the
// re-execution), and the exit fd.
func TestE2ESandbox(t *testing.T) {
	for _, tc := range []struct {
		name           string
		rootless, path bool
	}{
		{"root/pid", false, false},
		{"root/path", false, true},
		{"rootless/pid", true, false},
		{"rootless/path", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testSandboxed(t, tc.rootless, tc.path) })
	}
}

func testSandboxed(t *testing.T, rootless, path bool) {
	e := newSandboxEnv(t, rootless)
	sock := filepath.Join(e.dir, "api.sock")
	pidFile := filepath.Join(e.dir, "slirp.pid")
	exitR, exitW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer exitW.Close()
	args := append([]string{"--enable-sandbox", "--enable-seccomp", "-c", "--mtu=65520", "--resolv-conf=" + e.resolv,
		"-e", "4", "--api-socket", sock, "--pid-file=" + pidFile}, e.target(path)...)
	d := startSandboxed(t, sandboxedOpts{args: args, user: e.user, netns: e.router, extra: []*os.File{exitR}})
	exitR.Close()
	pid := d.cmd.Process.Pid

	// Written before the ready fd; the copy from the pipe may lag.
	waitFor(t, 10*time.Second, "slirp4netns' seccomp line on stdout", func() bool {
		return strings.Contains(d.stdout.String(), "\nseccomp: The following syscalls are blocked: execve execveat ptrace ")
	})
	if strings.Contains(d.stderr.String(), "not enforced") {
		t.Errorf("stderr still says a flag is not enforced:\n%s", d.stderr)
	}
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Errorf("pid file: %q, %v; want %d", b, err, pid)
	}
	checkConfined(t, pid, e.resolv)
	helpers := childrenOf(t, pid)
	if len(helpers) != 1 {
		ps, _ := exec.Command("ps", "-eo", "pid,ppid,stat,comm,args").CombinedOutput()
		t.Fatalf("the daemon %d has children %v, want its one namespace helper; processes:\n%s", pid, helpers, ps)
	}
	if addr := e.guest.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap0"); !strings.Contains(addr, "inet 10.0.2.100/24") {
		t.Errorf("tap0: %q", addr)
	}

	// Guest TCP and UDP to the host's (the router's) loopback.
	var srv *hostServer
	var udp net.PacketConn
	inNetns(t, e.router, func() {
		srv = startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
		udp = startUDPEcho(t, "127.0.0.1:0")
	})
	r := client(t, e.guest, "tcp", "10.0.2.2:"+srv.port(), strconv.Itoa(1<<20))
	if sha, _ := replySHA(r); r.Err != "" || sha != r.SHA {
		t.Errorf("guest TCP to 10.0.2.2: %+v", r)
	}
	r = client(t, e.guest, "udp", "10.0.2.2:"+strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port), "ping")
	if !strings.HasPrefix(r.Reply, "echo:ping 127.0.0.1:") {
		t.Errorf("guest UDP to 10.0.2.2: %+v", r)
	}

	// DNS through 10.0.2.3, from the kept --resolv-conf; a change written
	// into the file is followed (checked once: it is the same everywhere).
	if r := client(t, e.guest, "dns", "10.0.2.3:53", "a.test", "A"); !strings.Contains(r.Reply, "192.0.2.1") {
		t.Errorf("DNS through 10.0.2.3: %+v", r)
	}
	if !rootless && !path {
		if err := os.WriteFile(e.resolv, []byte("nameserver 127.0.0.2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "the rewritten resolv.conf to be followed", func() bool {
			return strings.Contains(client(t, e.guest, "dns", "10.0.2.3:53", "a.test", "A").Reply, "192.0.2.2")
		})
	}

	// Port forwarding over the API socket, bound before the sandbox: the
	// fast path through sockets the adopted helper opens in the guest's
	// namespace, and the address-preserving path through the stack. The
	// requests come from the daemon's owner, as podman's do.
	serveHost(t, listenIn(t, e.guest, "tcp4", "0.0.0.0:8080"), "sha")
	free := func() int { return freePortIn(t, e.router, "tcp4") }
	fast := e.addPort(t, sock, api.PortSpec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: free(), ChildPort: 8080, Mode: "fast"})
	preserve := e.addPort(t, sock, api.PortSpec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: free(), ChildPort: 8080, Mode: "preserve"})
	c, err := dialIn(t, e.router, "tcp4", "127.0.0.1:"+strconv.Itoa(fast.Spec.ParentPort))
	if err != nil {
		t.Fatal(err)
	}
	if peer := shaThrough(t, c, 1<<20); hostOf(peer) != "10.0.2.100" {
		t.Errorf("fast path: the guest saw %s, want the namespace's own 10.0.2.100", peer)
	}
	c, err = dialIn(t, e.router, "tcp4", "127.0.0.1:"+strconv.Itoa(preserve.Spec.ParentPort))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	if peer := shaThrough(t, c, 1<<20); peer != "10.0.2.2:"+port {
		t.Errorf("preserve path: the guest saw %s, want 10.0.2.2:%s", peer, port)
	}
	// podman's request, in slirp4netns' protocol.
	hp := free()
	reply := e.apiRequest(t, sock, fmt.Sprintf(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":%d,"guest_addr":"","guest_port":8080}}`+"\n", hp))
	if reply != `{"return":{"id":3}}` {
		t.Errorf("add_hostfwd: %s", reply)
	}
	c, err = dialIn(t, e.router, "tcp4", "127.0.0.1:"+strconv.Itoa(hp))
	if err != nil {
		t.Fatal(err)
	}
	shaThrough(t, c, 1000)

	// The exit fd ends it, cleanly; the tap and the helper go with it.
	exitW.Close()
	if code := d.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit status after the exit fd hung up = %d, want 0", code)
	}
	waitFor(t, 10*time.Second, "tap0 to disappear", func() bool {
		_, err := e.guest.Output("ip", "link", "show", "tap0")
		return err != nil
	})
	waitFor(t, 10*time.Second, "the helper to exit", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", helpers[0]))
		return err != nil
	})
	// Documented: the files outside the sandbox stay behind.
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("API socket after a sandboxed exit: %v (documented to stay)", err)
	}
}

// TestE2ESandboxEnds: SIGTERM and the target's exit end the sandboxed
// daemon with status 0, as root and rootless.
func TestE2ESandboxEnds(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		name := "root"
		if rootless {
			name = "rootless"
		}
		t.Run(name+"/sigterm", func(t *testing.T) {
			e := newSandboxEnv(t, rootless)
			d := startSandboxed(t, sandboxedOpts{args: append([]string{"--enable-sandbox", "--enable-seccomp", "--resolv-conf=" + e.resolv}, e.target(false)...), user: e.user, netns: e.router})
			d.cmd.Process.Signal(syscall.SIGTERM)
			if code := d.wait(t, 15*time.Second); code != 0 {
				t.Fatalf("exit status after SIGTERM = %d, want 0", code)
			}
		})
		t.Run(name+"/target-exit", func(t *testing.T) {
			e := newSandboxEnv(t, rootless)
			d := startSandboxed(t, sandboxedOpts{args: append([]string{"--enable-sandbox", "--enable-seccomp", "--resolv-conf=" + e.resolv}, e.target(false)...), user: e.user, netns: e.router})
			syscall.Kill(e.guest.PID, syscall.SIGKILL)
			if code := d.wait(t, 15*time.Second); code != 0 {
				t.Fatalf("exit status after the target exited = %d, want 0", code)
			}
			if !strings.Contains(d.stderr.String(), "the target process exited") {
				t.Errorf("stderr does not give the reason:\n%s", d.stderr)
			}
		})
	}
}

// TestE2ESandboxKeepsCallerMounts is slirp4netns' sandbox-no-unmount: in
// the caller's mount namespace, /run is a tmpfs with a mount under it,
// shared; the sandbox (which binds /run and detaches the old root) must
// leave every one of the caller's mounts alone, while it runs and after.
func TestE2ESandboxKeepsCallerMounts(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "unshare", "nsenter", "mount")
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	mntns := fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid)
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the mount namespace holder", func() bool {
		ns, err := os.Readlink(mntns)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid))
		return err == nil && ns != self && strings.TrimSpace(string(comm)) == "sleep"
	})
	script := "mount -t tmpfs slirp-test-run /run && mkdir /run/foo && mount -t tmpfs slirp-test-foo /run/foo && mount --make-rshared /run"
	if out, err := exec.Command("nsenter", "--mount="+mntns, "--", "sh", "-ec", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, out)
	}
	mounts := func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", holder.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := mounts()
	if !strings.Contains(before, " /run/foo ") {
		t.Fatalf("test setup: no /run/foo in\n%s", before)
	}

	e := newSandboxEnv(t, false)
	d := startSandboxed(t, sandboxedOpts{
		args:  append([]string{"--enable-sandbox", "--resolv-conf=" + e.resolv, "--netns-type=path", e.guest.Path}, "tap0"),
		netns: e.router, mountns: mntns,
	})
	if diff := mountsChanged(before, mounts()); diff != "" {
		t.Errorf("the caller's mounts changed while the sandboxed daemon runs: %s", diff)
	}
	// The caller's /run, /run/foo with it, is bound inside.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/foo", d.cmd.Process.Pid)); err != nil {
		t.Errorf("/run/foo inside the sandbox (bound from the caller): %v", err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if code := d.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0", code)
	}
	if diff := mountsChanged(before, mounts()); diff != "" {
		t.Errorf("the caller's mounts changed after the sandboxed daemon exited: %s", diff)
	}
}

// mountsChanged compares two readings of a mountinfo file and describes
// any mount that appeared or changed, and the loss of any mount at or
// under /run (the ones the test made). Other mounts may vanish: the holder
// copied the machine's mounts when it unshared, and the kernel detaches a
// copy when another process (a concurrent test package, podman) removes
// its mount point.
func mountsChanged(before, now string) string {
	was := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(before), "\n") {
		was[l] = true
	}
	var diff []string
	is := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(now), "\n") {
		is[l] = true
		if !was[l] {
			diff = append(diff, "new or changed: "+l)
		}
	}
	for l := range was {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == "/run" || strings.HasPrefix(f[4], "/run/foo")) && !is[l] {
			diff = append(diff, "gone: "+l)
		}
	}
	return strings.Join(diff, "; ")
}

// TestE2ESeccompOnly: --enable-seccomp without the sandbox, as slirp4netns
// allows (its seccomp test): the filter is in before the ready fd, the
// daemon keeps its capabilities, and everything the unsandboxed daemon does
// after that still works under the filter: traffic, watching the target
// namespace through /proc, removing the pid file at exit.
func TestE2ESeccompOnly(t *testing.T) {
	ns := nstest.NewNetns(t, nstest.WithUserns())
	pidFile := filepath.Join(t.TempDir(), "slirp.pid")
	d := startDaemon(t, daemonOpts{args: []string{"-c", "--enable-seccomp", "--pid-file=" + pidFile,
		"--userns-path=" + ns.UsernsPath, strconv.Itoa(ns.PID), "tap11"}})
	st := procStatus(t, d.cmd.Process.Pid)
	if st["Seccomp"] != "2" || st["NoNewPrivs"] != "1" || st["CapEff"] == capNetBindService {
		t.Errorf("/proc/PID/status: Seccomp %q, NoNewPrivs %q, CapEff %q; want 2, 1 and root's capabilities", st["Seccomp"], st["NoNewPrivs"], st["CapEff"])
	}
	waitFor(t, 10*time.Second, "slirp4netns' seccomp line on stdout", func() bool {
		return strings.Contains(d.stdout.String(), "\nseccomp: The following syscalls are blocked: execve ")
	})
	if addr := ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap11"); !strings.Contains(addr, "10.0.2.100/24") {
		t.Errorf("tap11: %q", addr)
	}
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	if r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), "100000"); r.Err != "" {
		t.Errorf("guest TCP under seccomp: %+v", r)
	}
	syscall.Kill(ns.PID, syscall.SIGKILL)
	if code := d.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit status after the target exited = %d, want 0", code)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file after exit: %v", err)
	}
	if strings.Contains(d.stderr.String(), "level=ERROR") {
		t.Errorf("errors under seccomp:\n%s", d.stderr)
	}
}

// TestE2ESandboxTapFD: an inherited tap (--netns-type=tapfd), which needs
// no helper, crosses into the sandbox too.
func TestE2ESandboxTapFD(t *testing.T) {
	ns := nstest.NewNetns(t)
	var tapFile *os.File
	inNetns(t, ns, func() {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open /dev/net/tun: %v", err)
		}
		ifr, err := unix.NewIfreq("tap0")
		if err != nil {
			t.Fatal(err)
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			t.Fatalf("TUNSETIFF: %v", err)
		}
		tapFile = os.NewFile(uintptr(fd), "tap0")
	})
	ns.Run(t, "ip", "addr", "add", "10.0.2.100/24", "dev", "tap0")
	ns.Run(t, "ip", "link", "set", "tap0", "up")
	ns.Run(t, "ip", "route", "add", "default", "via", "10.0.2.2")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# no nameservers: tests never use the real one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startSandboxed(t, sandboxedOpts{args: []string{"--enable-sandbox", "--enable-seccomp", "--resolv-conf=" + resolv, "--netns-type=tapfd", "4"},
		extra: []*os.File{tapFile}})
	tapFile.Close()
	checkConfined(t, d.cmd.Process.Pid, resolv)
	if kids := childrenOf(t, d.cmd.Process.Pid); len(kids) != 0 {
		t.Errorf("the daemon has children %v; in tapfd mode it starts no helper", kids)
	}
	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), "100000")
	if sha, _ := replySHA(r); r.Err != "" || sha != r.SHA {
		t.Fatalf("guest TCP over an inherited tap in the sandbox: %+v", r)
	}
}
