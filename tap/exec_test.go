package tap

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// The helper outlives an execve of its daemon when the daemon asked for it
// with PrepareExec, and the new image takes it back with Adopt: it opens a
// tap through it, and Close stops and reaps it cleanly.
func TestNSHelperAcrossExec(t *testing.T) {
	ns := nstest.NewNetns(t)
	p := startRole(t, "", roleExec, pidTarget(ns), nil)
	var name string
	var pid int
	if _, err := fmt.Sscanf(p.line, "ok %s %d", &name, &pid); err != nil || name != "tap0" {
		t.Fatalf("the re-executed daemon said %q", p.line)
	}
	checkConfigured(t, ns)
	if processGone(pid) {
		t.Fatalf("helper %d gone after the exec", pid)
	}
	if ppid := parentOf(t, pid); ppid != p.cmd.Process.Pid {
		t.Errorf("helper %d has parent %d, want the daemon %d (same PID across execve)", pid, ppid, p.cmd.Process.Pid)
	}
	// Close in the new image: the helper exits on EOF and is reaped.
	p.stdin.Close()
	if err := waitExit(t, p.cmd); err != nil {
		t.Fatalf("the adopting daemon: %v", err)
	}
	if !processGone(pid) {
		t.Errorf("helper %d still running after Close", pid)
	}
}

// Without PrepareExec the execve kills the helper (its parent-death signal
// fires when the thread that forked it ends): the obstacle PrepareExec
// removes. Adopt still takes the dead child, and a request reports it.
func TestNSHelperDiesAtExecUnprepared(t *testing.T) {
	ns := nstest.NewNetns(t)
	p := startRole(t, "", roleExecUnprepared, pidTarget(ns), nil)
	if !strings.HasPrefix(p.line, "error: ") || !strings.Contains(p.line, "tap helper exited unexpectedly: signal: killed") {
		t.Fatalf("the re-executed daemon said %q, want the helper reported killed", p.line)
	}
}

// TestNSHelperParentDiesAfterExec: a helper kept across exec no longer
// has a death signal, but still goes when its daemon is killed outright,
// through EOF on its control socket.
func TestNSHelperParentDiesAfterExec(t *testing.T) {
	ns := nstest.NewNetns(t)
	p := startRole(t, "", roleExec, pidTarget(ns), nil)
	var name string
	var pid int
	if _, err := fmt.Sscanf(p.line, "ok %s %d", &name, &pid); err != nil {
		t.Fatalf("the re-executed daemon said %q", p.line)
	}
	t.Cleanup(func() {
		if !processGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	if !waitGone(pid) {
		t.Fatalf("helper %d still running 10s after its daemon was killed", pid)
	}
}

func TestAdoptRejects(t *testing.T) {
	// Not a child of this process.
	a, b := socketpair(t)
	defer unix.Close(b)
	if _, err := Adopt(a, 1, Target{}, nil); err == nil || !strings.Contains(err.Error(), "not a child of this process") {
		t.Errorf("Adopt of PID 1: %v", err)
	}
	if isOpen(a) {
		t.Errorf("Adopt left descriptor %d open after failing", a)
	}

	// Not a SOCK_SEQPACKET socket.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Adopt(fd, os.Getpid(), Target{}, nil); err == nil || !errors.Is(err, unix.ENOTSOCK) {
		t.Errorf("Adopt of /dev/null: %v, want ENOTSOCK", err)
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Adopt(s, os.Getpid(), Target{}, nil); err == nil || !strings.Contains(err.Error(), "not a SOCK_SEQPACKET socket") {
		t.Errorf("Adopt of a stream socket: %v", err)
	}
	if _, err := Adopt(-1, 1, Target{}, nil); err == nil {
		t.Error("Adopt of descriptor -1 succeeded")
	}
}

// An adopted helper that has to be killed: child.kill signals it while it
// runs, wait reports the signal, and kill after the reap signals nothing.
func TestChildKillAndWait(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("start sleep: %v", err)
	}
	c := &child{pid: cmd.Process.Pid}
	done := make(chan error, 1)
	go func() { done <- c.wait() }()
	if err := c.kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || err.Error() != "signal: killed" {
			t.Errorf("wait after kill = %v, want signal: killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return within 10s of SIGKILL")
	}
	if err := c.kill(); err != nil {
		t.Errorf("kill after the reap = %v, want nil (nothing sent)", err)
	}

	ok := exec.Command("true")
	if err := ok.Start(); err != nil {
		t.Fatal(err)
	}
	if err := (&child{pid: ok.Process.Pid}).wait(); err != nil {
		t.Errorf("wait for true = %v, want nil", err)
	}
	fails := exec.Command("sh", "-c", "exit 7")
	if err := fails.Start(); err != nil {
		t.Fatal(err)
	}
	if err := (&child{pid: fails.Process.Pid}).wait(); err == nil || err.Error() != "exit status 7" {
		t.Errorf("wait for exit 7 = %v", err)
	}
}

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// parentOf reads the parent PID of pid from /proc.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	var state string
	var ppid int
	if _, err := fmt.Sscanf(s[i+2:], "%s %d", &state, &ppid); err != nil {
		t.Fatalf("parse /proc/%d/stat %q: %v", pid, s, err)
	}
	return ppid
}

// waitExit waits up to 20s for cmd and returns its failure, with what it
// printed to stderr left to the test's own stderr.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("did not exit within 20s")
	}
}

// The helper serves on its main thread, the only one whose parent-death
// signal PrepareExec can clear (a thread's signal is its own, and the
// runtime's threads start without one): the helper's environment alone
// keeps main there, through blocking calls and competing goroutines.
func TestHelperStaysOnMainThread(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"="+roleMainThread, envHelper+"=3")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "main thread" {
		t.Fatalf("the helper's main goroutine %s", got)
	}
}
