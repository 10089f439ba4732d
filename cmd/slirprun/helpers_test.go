package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
	"github.com/slirp-dev/slirp/runtime/netd"
)

// The binaries under test, built once by TestMain.
var (
	slirprunBin string
	daemonBin   string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		// Every end-to-end test needs root to create the unprivileged
		// test user; they skip, so nothing needs building.
		return m.Run()
	}
	// The unprivileged test user must reach the binaries.
	dir, err := e2etest.BinDir("slirprun-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	slirprunBin = filepath.Join(dir, "slirprun")
	if err := e2etest.GoBuild(slirprunBin, ".", false); err != nil {
		fmt.Fprintf(os.Stderr, "build slirprun: %v\n", err)
		return 1
	}
	// Prefer this project's daemon; fall back to slirp4netns (same
	// command line) while it is not buildable.
	daemonBin = "/usr/bin/slirp4netns"
	if _, err := os.Stat("../slirp"); err == nil {
		ours := filepath.Join(dir, "slirp")
		err := e2etest.GoBuild(ours, "../slirp", false)
		if err == nil {
			err = probeDaemon(ours)
		}
		if err == nil {
			daemonBin = ours
		} else {
			fmt.Fprintf(os.Stderr, "e2e: not using ./cmd/slirp (%v); using %s\n", err, daemonBin)
		}
	}
	if v := os.Getenv("SLIRPRUN_E2E_DAEMON"); v != "" {
		daemonBin = v
	}
	fmt.Fprintf(os.Stderr, "e2e: network daemon %s\n", daemonBin)
	return m.Run()
}

// probeDaemon checks that bin configures a tap and serves the API the way
// slirprun uses them, against a throw-away user+net namespace.
func probeDaemon(bin string) error {
	holder := exec.Command("unshare", "--user", "--map-root-user", "--net", "sleep", "30")
	holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		return fmt.Errorf("probe namespace: %w", err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	self, _ := os.Readlink("/proc/self/ns/net")
	pid := holder.Process.Pid
	for i := 0; i < 200; i++ {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ns != self {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	dir, err := os.MkdirTemp("", "probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock := filepath.Join(dir, "api.sock")
	d, err := netd.Start(ctx, netd.Config{
		Binary: bin, UsernsPath: fmt.Sprintf("/proc/%d/ns/user", pid), NetnsPath: fmt.Sprintf("/proc/%d/ns/net", pid),
		APISocket: sock, LogFile: filepath.Join(dir, "log"),
	})
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := netd.ListHostfwd(ctx, sock); err != nil {
		return fmt.Errorf("API: %w", err)
	}
	return nil
}

// env is one test's rootless environment: the unprivileged user, and a
// directory it owns for state, cache, images and volumes.
type env struct {
	t        *testing.T
	uid, gid uint32
	dir      string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	uid, gid := nstest.UnprivilegedUser(t)
	nstest.RequireNamespaces(t)
	if slirprunBin == "" {
		t.Skip("slirprun was not built (needs root)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs busybox-static (/bin/busybox)")
	}
	// Short, so that the daemon's API socket path stays under 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "srt-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, uid: uid, gid: gid, dir: dir}
	t.Cleanup(func() {
		e.checkNoLeaks()
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove test dir: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	return e
}

// path returns a path in the test directory.
func (e *env) path(parts ...string) string {
	return filepath.Join(append([]string{e.dir}, parts...)...)
}

// chownAll gives the test user everything under p.
func (e *env) chownAll(p string) {
	e.t.Helper()
	if err := e2etest.ChownAll(p, e.uid, e.gid); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// command returns slirprun args... as the unprivileged user.
func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, slirprunBin, args...)
	cmd.Dir = e.dir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + e.dir,
		"SLIRPRUN_STATE=" + e.path("state"),
		"SLIRPRUN_CACHE=" + e.path("cache"),
		"SLIRPRUN_SLIRP=" + daemonBin,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: e.uid, Gid: e.gid, Groups: []uint32{}},
		Setpgid:    true,
	}
	cmd.WaitDelay = 5 * time.Second
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	return cmd
}

// run runs slirprun to completion (at most 90 s).
func (e *env) run(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = 128 + int(ws.Signal())
		}
	default:
		e.t.Fatalf("run slirprun %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		e.t.Fatalf("slirprun %s timed out\n%s", strings.Join(args, " "), r)
	}
	return r
}

// mustRun runs slirprun and fails the test unless it exits 0.
func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("slirprun %s:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// started is a slirprun running in the background.
type started struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *bytes.Buffer
	done   chan struct{}
}

// start starts slirprun and hands its stdout line by line.
func (e *env) start(args ...string) *started {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := e.command(ctx, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	s := &started{cmd: cmd, lines: make(chan string, 100), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	go func() {
		_ = cmd.Wait()
		cancel()
		close(s.done)
	}()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

// waitLine waits (at most 60 s) for a stdout line containing want.
func (s *started) waitLine(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				<-s.done
				t.Fatalf("slirprun ended before printing %q; stderr: %s", want, s.stderr)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q from slirprun within 60s; stderr: %s", want, s.stderr)
		}
	}
}

// wait waits for slirprun to exit and returns its exit code.
func (s *started) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("slirprun did not exit within 60s; stderr: %s", s.stderr)
	}
	ws := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// busyboxTree writes a busybox root filesystem owned by the test user.
func (e *env) busyboxTree(name string, extra ...imagetest.File) string {
	e.t.Helper()
	files, err := imagetest.Busybox(applets...)
	if err != nil {
		e.t.Skip(err)
	}
	dir := e.path(name)
	if err := imagetest.WriteTree(dir, append(files, extra...)); err != nil {
		e.t.Fatal(err)
	}
	e.chownAll(dir)
	return dir
}

var applets = []string{"sh", "ls", "cat", "echo", "id", "hostname", "wget", "nc", "httpd", "sleep",
	"touch", "mkdir", "rm", "stat", "grep", "tty", "stty", "ps", "kill", "true", "false", "env",
	"pwd", "unshare", "mount", "test", "ip", "head", "wc", "printf", "readlink"}

// checkNoLeaks fails the test when, within 15 s of its end, a process of
// the test user (or its subordinate ids) is still running in another pid
// namespace (a container) or runs slirprun or the daemon, or a mount
// under the test directory exists on the host, or state is left behind.
func (e *env) checkNoLeaks() {
	t := e.t
	deadline := time.Now().Add(15 * time.Second)
	var leaks []string
	for {
		leaks = e.leakedProcesses()
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(leaks) > 0 {
		t.Errorf("processes left behind: %s", strings.Join(leaks, "; "))
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil && bytes.Contains(mi, []byte(e.dir)) {
		t.Errorf("host mounts left under %s", e.dir)
	}
	for _, sub := range []string{"state/containers", "state/pods"} {
		ents, _ := os.ReadDir(e.path(sub))
		for _, ent := range ents {
			t.Errorf("state left behind: %s/%s", sub, ent.Name())
		}
	}
}

func (e *env) leakedProcesses() []string {
	hostPidNS, _ := os.Readlink("/proc/1/ns/pid")
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		uid := -1
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "Uid:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					uid, _ = strconv.Atoi(f[0])
				}
			}
			if strings.HasPrefix(l, "State:") && strings.Contains(l, "Z") {
				uid = -1 // a zombie is its parent's business
				break
			}
		}
		if uid != int(e.uid) && !(uid >= e2etest.SubuidStart && uid < e2etest.SubuidStart+e2etest.SubuidCount) {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		pidNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if exe == slirprunBin || exe == daemonBin || (pidNS != "" && pidNS != hostPidNS) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			out = append(out, fmt.Sprintf("pid %d uid %d %q", pid, uid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return out
}

// requireSubuid adds the subordinate id range e2etest.SubuidStart,
// SubuidCount for the test user to /etc/subuid and /etc/subgid (when it has
// none) and removes it again; the test skips when the user has another
// range, which the leak check would not recognise.
func (e *env) requireSubuid() {
	e.t.Helper()
	e2etest.RequireSubuid(e.t, true)
}
