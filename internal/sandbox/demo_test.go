//go:build linux && cgo

package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// mountHolder is a process holding a mount namespace of its own, with
// private propagation, so that the test can change its mounts without
// touching the machine's. It plays the caller's mount namespace.
type mountHolder struct{ pid int }

func newMountHolder(t *testing.T) *mountHolder {
	t.Helper()
	nstest.RequireRoot(t)
	nstest.RequireTools(t, "unshare", "nsenter", "mount")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mount namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
		// unshare(1) execs sleep once the namespace is set up.
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if err == nil && ns != self && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mount namespace holder did not start within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &mountHolder{pid: cmd.Process.Pid}
}

// run runs a shell script in the holder's mount namespace.
func (h *mountHolder) run(t *testing.T, script string) {
	t.Helper()
	out, err := exec.Command("nsenter", "--target", strconv.Itoa(h.pid), "--mount", "--", "sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", script, err, out)
	}
}

// mounts returns the mount points of the holder's namespace, one line per
// mount with its ID, parent, source and options, in order.
func (h *mountHolder) mounts(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", h.pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// demo is a running demo child.
type demo struct {
	cmd            *exec.Cmd
	ready, exitW   *os.File
	stdout, stderr bytes.Buffer
	waited         bool
}

// startDemo starts the test binary bin as a demo child with cfg, inside
// the holder's mount namespace when h is not nil, as user cred when not
// nil.
func startDemo(t *testing.T, bin string, h *mountHolder, cfg demoConfig, cred *syscall.Credential) *demo {
	t.Helper()
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if h != nil {
		args := []string{"--target", strconv.Itoa(h.pid), "--mount", "--no-fork"}
		if cred != nil {
			args = append(args, "--setgid", strconv.Itoa(int(cred.Gid)), "--setuid", strconv.Itoa(int(cred.Uid)))
		}
		cmd = exec.Command("nsenter", append(args, "--", bin)...)
	} else {
		cmd = exec.Command(bin)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.Env = append(os.Environ(), envMode+"=demo", envConfig+"="+string(cfgJSON))
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	exitR, exitW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{cmd: cmd, ready: readyR, exitW: exitW}
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	cmd.Stdout, cmd.Stderr = &d.stdout, &d.stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start demo: %v", err)
	}
	readyW.Close()
	exitR.Close()
	t.Cleanup(func() {
		d.exitW.Close()
		d.ready.Close()
		if !d.waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return d
}

// waitReady waits, for at most 30 s, for "1" on the ready fd.
func (d *demo) waitReady(t *testing.T) {
	t.Helper()
	if err := d.ready.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	n, err := d.ready.Read(buf)
	if err != nil || string(buf[:n]) != "1" {
		d.exitW.Close()
		r := d.finish(t)
		t.Fatalf("ready fd: read %q, %v; child report %+v; stderr:\n%s", buf[:n], err, r, d.stderr.String())
	}
}

// finish closes the exit fd, waits for the child and returns its report.
func (d *demo) finish(t *testing.T) demoReport {
	t.Helper()
	d.exitW.Close()
	err := d.cmd.Wait()
	d.waited = true
	var r demoReport
	if jerr := json.Unmarshal(d.stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("demo child (%v) printed no report: %v\nstdout:\n%s\nstderr:\n%s", err, jerr, d.stdout.String(), d.stderr.String())
	}
	if err != nil && r.Err == "" {
		t.Fatalf("demo child: %v\nstderr:\n%s", err, d.stderr.String())
	}
	return r
}

// status returns the fields of /proc/PID/status of the child.
func (d *demo) status(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// mountinfo returns the child's mounts: mount point -> mount options.
func (d *demo) mountinfo(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("mountinfo line %q", l)
		}
		m[f[4]] = f[5]
	}
	return m
}

// callAPI connects to the socket the child bound before the sandbox and
// exchanges one message with it (the child serves it from inside).
func callAPI(t *testing.T, path string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		t.Fatalf("connect to the API socket: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	b, err := bufio.NewReader(c).ReadString(0)
	if err != nil && b == "" {
		t.Fatalf("read API reply: %v", err)
	}
	return b
}

// checkSandboxed checks, from outside, what the sandbox must look like
// while the child runs.
func checkSandboxed(t *testing.T, d *demo, keep string, recursiveRO bool) {
	t.Helper()
	st := d.status(t)
	t.Logf("child status: Uid %s, Gid %s, CapEff %s, CapBnd %s, NoNewPrivs %s, Seccomp %s, Seccomp_filters %s",
		st["Uid"], st["Gid"], st["CapEff"], st["CapBnd"], st["NoNewPrivs"], st["Seccomp"], st["Seccomp_filters"])
	const netBindService = "0000000000000400"
	for _, k := range []string{"CapEff", "CapPrm", "CapInh", "CapBnd"} {
		if st[k] != netBindService {
			t.Errorf("%s = %s, want %s (cap_net_bind_service only)", k, st[k], netBindService)
		}
	}
	if st["CapAmb"] != "0000000000000000" {
		t.Errorf("CapAmb = %s, want none", st["CapAmb"])
	}
	if st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("NoNewPrivs = %s, Seccomp = %s; want 1 and 2 (filter)", st["NoNewPrivs"], st["Seccomp"])
	}
	if st["Seccomp_filters"] == "0" {
		t.Errorf("Seccomp_filters = %s, want at least 1", st["Seccomp_filters"])
	}
	selfNS, _ := os.Readlink("/proc/self/ns/mnt")
	childNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", d.cmd.Process.Pid))
	if childNS == selfNS {
		t.Error("the child shares the test's mount namespace")
	}

	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := wantRoot(t, keep); !slices.Equal(names, want) {
		t.Errorf("root of the sandbox holds %v, want %v", names, want)
	}

	mounts := d.mountinfo(t)
	t.Logf("child mounts: %v", mounts)
	ro := func(opts string) bool { return slices.Contains(strings.Split(opts, ","), "ro") }
	for mp, opts := range mounts {
		switch {
		case mp == "/":
			if !ro(opts) {
				t.Errorf("/ is mounted %s, want read-only", opts)
			}
		case mp == "/tmp":
			if ro(opts) {
				t.Errorf("/tmp is mounted %s, want writable", opts)
			}
		case mp == keep || isKeptFile(t, mp):
			if !ro(opts) {
				t.Errorf("kept file %s is mounted %s, want read-only", mp, opts)
			}
		case mp == "/etc", mp == "/run":
			if !ro(opts) || !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") || !strings.Contains(opts, "noexec") {
				t.Errorf("%s is mounted %s, want ro,nosuid,nodev,noexec", mp, opts)
			}
		case strings.HasPrefix(mp, "/etc/"), strings.HasPrefix(mp, "/run/"):
			if recursiveRO && !ro(opts) {
				t.Errorf("%s (below a bound tree) is mounted %s, want read-only", mp, opts)
			}
		default:
			t.Errorf("unexpected mount %s (%s) in the sandbox", mp, opts)
		}
	}
	for _, mp := range []string{"/", "/etc", "/run", "/tmp"} {
		if _, ok := mounts[mp]; !ok {
			t.Errorf("no mount at %s in the sandbox; mounts: %v", mp, mounts)
		}
	}
}

// wantRoot returns what the root of the sandbox holds: etc, run and tmp,
// and whatever this machine's /etc/resolv.conf needs besides (nothing
// unless it is a link that leaves /etc and /run).
func wantRoot(t *testing.T, keep string) []string {
	t.Helper()
	p, err := planKeep(append(slices.Clone(DefaultKeep), keep))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"etc", "run", "tmp"}
	for _, e := range p.entries {
		top, _, _ := strings.Cut(strings.TrimPrefix(e.Path, "/"), "/")
		if !slices.Contains(names, top) {
			names = append(names, top)
		}
	}
	slices.Sort(names)
	return names
}

// isKeptFile says whether the plan for DefaultKeep binds a file at p.
func isKeptFile(t *testing.T, p string) bool {
	t.Helper()
	plan, err := planKeep(DefaultKeep)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(plan.entries, func(e planEntry) bool { return e.Kind == kindFile && e.Path == p })
}

// checkReport checks what the child found from inside.
func checkReport(t *testing.T, r demoReport, keep, keepContent string, tap bool) {
	t.Helper()
	if r.Err != "" || r.Stage != "resumed" {
		t.Fatalf("child failed at %s: %s", r.Stage, r.Err)
	}
	if want := wantRoot(t, keep); !slices.Equal(r.Root, want) {
		t.Errorf("child sees / holding %v, want %v", r.Root, want)
	}
	if r.Kept != keepContent {
		t.Errorf("kept file reads %q, want %q", r.Kept, keepContent)
	}
	for what, e := range map[string]string{"/etc": r.EtcWrite, "/": r.RootWrite} {
		if !strings.Contains(e, "read-only file system") {
			t.Errorf("writing to %s: %q, want read-only file system", what, e)
		}
	}
	if r.TmpWrite != "" {
		t.Errorf("writing to /tmp: %s", r.TmpWrite)
	}
	if !strings.Contains(r.Proc, "no such file") {
		t.Errorf("/proc/self in the sandbox: %q, want no such file", r.Proc)
	}
	if r.UID != 0 || r.GID != 0 {
		t.Errorf("uid/gid in the sandbox %d/%d, want 0/0", r.UID, r.GID)
	}
	if !strings.Contains(r.Unlisted, "operation not permitted") {
		t.Errorf("sysinfo (not on the allow-list): %q, want operation not permitted", r.Unlisted)
	}
	if tap && r.ARP != "" {
		t.Errorf("ARP through the inherited tap: %s", r.ARP)
	}
	if r.Helper != "pong hello" || r.HelperExit != "exit 0" {
		t.Errorf("helper answered %q and ended with %q; want \"pong hello\", exit 0", r.Helper, r.HelperExit)
	}
	if r.API != "hello" {
		t.Errorf("API request seen inside: %q", r.API)
	}
}

// testDir returns a temporary directory any user may enter, with a
// resolv.conf-like file to keep.
func testDir(t *testing.T, owner *syscall.Credential) (dir, keep, content string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parent is only for its owner; the file is kept through
	// the chain of directories, so every one must be enterable.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	content = "nameserver 192.0.2.53 # test " + t.Name() + "\n"
	keep = filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(keep, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if owner != nil {
		if err := os.Chown(dir, int(owner.Uid), int(owner.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, keep, content
}

// runDemo goes through the whole path in the holder's mount namespace,
// which has a shared /run with a submount (slirp4netns'
// sandbox-no-unmount test), and checks that the holder's mounts are the
// same afterwards.
func runDemo(t *testing.T, bin string, cfg demoConfig, cred *syscall.Credential, dir string) {
	h := newMountHolder(t)
	h.run(t, "mount -t tmpfs tmpfs /run && mkdir /run/foo && mount -t tmpfs tmpfs /run/foo && mount --make-rshared /run")
	before := h.mounts(t)

	d := startDemo(t, bin, h, cfg, cred)
	d.waitReady(t)
	checkSandboxed(t, d, cfg.Keep, !cfg.LegacyMounts)
	if cfg.SandboxUserns != "" {
		want, _ := os.Readlink(cfg.SandboxUserns)
		got, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", d.cmd.Process.Pid))
		if got != want {
			t.Errorf("the child is in user namespace %s, want %s", got, want)
		}
	}

	// The sandbox's /run is a slave of the caller's: a mount made there
	// later shows up inside, and goes when it is unmounted, so that the
	// sandbox does not keep, say, a network namespace file alive.
	h.run(t, "mkdir -p /run/late && mount -t tmpfs tmpfs /run/late")
	if _, ok := d.mountinfo(t)["/run/late"]; !ok {
		t.Error("a mount made on the caller's /run after the sandbox was built did not reach it")
	}
	h.run(t, "umount /run/late && rmdir /run/late")
	if _, ok := d.mountinfo(t)["/run/late"]; ok {
		t.Error("a mount removed from the caller's /run stays in the sandbox")
	}
	if got := callAPI(t, cfg.APISocket); got != "pong hello" {
		t.Errorf("API reply %q, want \"pong hello\"", got)
	}
	r := d.finish(t)
	t.Logf("the child's report: %+v", r)
	checkReport(t, r, cfg.Keep, cfg.KeepContent, cfg.NetnsPath != "")

	// The mounts the test made must be untouched, and nothing may have
	// been added. Other mounts may go: the machine's /run/netns files and
	// the like, copied into the holder's namespace, are detached there
	// when their owners unlink them on the host.
	after := h.mounts(t)
	ours := func(mounts []string) []string {
		var out []string
		for _, l := range mounts {
			if mp := strings.Fields(l)[4]; mp == "/" || mp == "/run" || mp == "/run/foo" {
				out = append(out, l)
			}
		}
		return out
	}
	if !slices.Equal(ours(before), ours(after)) || len(ours(after)) != 3 {
		t.Errorf("the caller's mounts changed:\nbefore:\n%s\nafter:\n%s", strings.Join(ours(before), "\n"), strings.Join(ours(after), "\n"))
	}
	for _, l := range after {
		if !slices.Contains(before, l) {
			t.Errorf("a mount appeared in the caller's namespace: %s", l)
		}
	}
}

// TestSandboxAsRoot goes through the whole path as root: tap, API socket
// and helper set up, Exec, the constructor's sandbox, Resumed, seccomp.
func TestSandboxAsRoot(t *testing.T) {
	nstest.RequireRoot(t)
	target := nstest.NewNetns(t)
	dir, keep, content := testDir(t, nil)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runDemo(t, bin, demoConfig{
		NetnsPath:   target.Path,
		APISocket:   filepath.Join(dir, "api.sock"),
		Helper:      true,
		Keep:        keep,
		KeepContent: content,
	}, nil, dir)
}

// TestSandboxLegacyKernel is TestSandboxAsRoot on a kernel without
// mount_setattr (before 5.12), made with a seccomp filter that answers it
// with ENOSYS: the fallback remounts make the bound trees read-only (their
// top mounts only).
func TestSandboxLegacyKernel(t *testing.T) {
	nstest.RequireRoot(t)
	dir, keep, content := testDir(t, nil)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runDemo(t, bin, demoConfig{
		APISocket:    filepath.Join(dir, "api.sock"),
		Helper:       true,
		Keep:         keep,
		KeepContent:  content,
		LegacyMounts: true,
	}, nil, dir)
}

// TestSandboxRootless goes through the whole path as the unprivileged test
// user, whose target namespaces live in a user namespace it owns: the
// constructor joins that user namespace and becomes root in it first.
func TestSandboxRootless(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	nstest.RequireUnprivilegedTun(t)
	target := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	dir, keep, content := testDir(t, cred)
	runDemo(t, nstest.CopyTestBinary(t), demoConfig{
		NetnsPath:     target.Path,
		UsernsPath:    target.UsernsPath,
		SandboxUserns: target.UsernsPath,
		APISocket:     filepath.Join(dir, "api.sock"),
		Helper:        true,
		Keep:          keep,
		KeepContent:   content,
	}, cred, dir)
}

// TestExecKillsHelperOfAnotherThread shows why Exec must run on the
// thread that started the helper: a child with PR_SET_PDEATHSIG (as
// tap.Enter starts its helper) started from another thread is killed by
// the kernel when execve ends that thread.
func TestExecKillsHelperOfAnotherThread(t *testing.T) {
	nstest.RequireRoot(t)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := startDemo(t, bin, newMountHolder(t), demoConfig{Helper: true, HelperOtherThread: true}, nil)
	d.waitReady(t)
	r := d.finish(t)
	t.Logf("the child's report: %+v", r)
	if r.Err != "" {
		t.Fatalf("child failed at %s: %s", r.Stage, r.Err)
	}
	if r.HelperExit != "signal killed" || r.Helper == "pong hello" {
		t.Errorf("helper started from another thread answered %q and ended with %q; want no answer, killed", r.Helper, r.HelperExit)
	}
}

// TestSandboxUnprivilegedErrors: an unprivileged daemon that cannot become
// root in the target's user namespace gets an error that says why and
// what to do, from Exec before anything is executed, or from Resumed when
// the constructor fails.
func TestSandboxUnprivilegedErrors(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	rootOwned := nstest.NewNetns(t, nstest.WithUserns())
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	bin := nstest.CopyTestBinary(t)
	for _, tc := range []struct {
		name      string
		cfg       demoConfig
		stage     string
		wantParts []string
	}{
		{"no user namespace", demoConfig{}, "setup",
			[]string{"running as uid " + strconv.Itoa(int(uid)), "--userns-path"}},
		{"another user's namespace", demoConfig{SandboxUserns: rootOwned.UsernsPath}, "setup",
			[]string{"cannot join user namespace " + rootOwned.UsernsPath, "permission denied", "belongs to another user"}},
		{"its own user namespace", demoConfig{SandboxUserns: "/proc/self/ns/user"}, "setup",
			[]string{"slirp's own user namespace", "not root"}},
		{"not a user namespace", demoConfig{SandboxUserns: "/proc/self/ns/net"}, "setup",
			[]string{"is not a user namespace"}},
		{"constructor: another user's namespace", demoConfig{SandboxUserns: rootOwned.UsernsPath, Unchecked: true}, "resumed",
			[]string{"sandbox: open " + rootOwned.UsernsPath + ": Permission denied", "run slirp as the user that owns it"}},
		{"constructor: cannot become root", demoConfig{SandboxUserns: "/proc/self/ns/user", Unchecked: true}, "resumed",
			[]string{"sandbox: become gid 0 in the user namespace", "Operation not permitted", "must be mapped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDemo(t, bin, nil, tc.cfg, cred)
			r := d.finish(t)
			if r.Stage != tc.stage {
				t.Errorf("failed at %q, want %q: %s", r.Stage, tc.stage, r.Err)
			}
			for _, p := range tc.wantParts {
				if !strings.Contains(r.Err, p) {
					t.Errorf("error %q does not say %q", r.Err, p)
				}
			}
			if d.cmd.ProcessState.ExitCode() != 1 {
				t.Errorf("exit status %v, want 1", d.cmd.ProcessState)
			}
		})
	}
}
