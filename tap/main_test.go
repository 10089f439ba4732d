package tap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
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

// Roles the test binary plays when re-executed by a test, chosen by
// envRole; envNetns and envUserns carry the Target.
const (
	envRole   = "TAP_TEST_ROLE"
	envNetns  = "TAP_TEST_NETNS"
	envUserns = "TAP_TEST_USERNS"

	// roleDaemon enters the namespaces, prints "pid HELPERPID" and waits
	// until killed or until its stdin closes.
	roleDaemon = "daemon"
	// roleConfigure enters the namespaces, opens and configures tap0,
	// prints "ok NAME" (or "error: MESSAGE") and waits until its stdin
	// closes.
	roleConfigure = "configure"
)

func TestMain(m *testing.M) {
	HelperMain()
	if role := os.Getenv(envRole); role != "" {
		os.Exit(playRole(role))
	}
	// A race-enabled program sleeps a second before it exits, to catch
	// late reports; the helpers (this binary) need not, or every Close
	// takes a second.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

func playRole(role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := Target{NetnsPath: os.Getenv(envNetns), UsernsPath: os.Getenv(envUserns)}
	n, err := Enter(ctx, target, nil)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 1
	}
	defer n.Close()
	switch role {
	case roleDaemon:
		fmt.Printf("pid %d\n", n.cmd.Process.Pid)
	case roleConfigure:
		f, err := n.OpenTap(ctx, TapConfig{Name: "tap0", Configure: slirpAddressing()})
		if err != nil {
			fmt.Printf("error: %v\n", err)
			return 1
		}
		defer f.Close()
		fmt.Printf("ok %s\n", f.Name())
	default:
		fmt.Printf("error: unknown role %q\n", role)
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// slirpAddressing is what slirp4netns -c sets up by default.
func slirpAddressing() *Addressing {
	return &Addressing{
		MTU:     1500,
		Address: netip.MustParsePrefix("10.0.2.100/24"),
		Gateway: netip.MustParseAddr("10.0.2.2"),
	}
}

// roleProcess is a re-executed test binary playing a role.
type roleProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	line  string // the first line it printed
}

// startRole runs exe (the test binary when "") in role against target,
// with cred when not nil, and waits for its first line of output. The
// process is stopped when the test ends.
func startRole(t *testing.T, exe, role string, target Target, cred *syscall.Credential) *roleProcess {
	t.Helper()
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"="+role, envNetns+"="+target.NetnsPath, envUserns+"="+target.UsernsPath)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		return &roleProcess{cmd: cmd, stdin: stdin, line: line}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed nothing within 30s", role)
		return nil
	}
}

// copyTestBinary copies the test binary where the unprivileged test user
// can run it; go test keeps it in a directory only root may enter.
func copyTestBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tap-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "tap.test")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// newRootlessNetns is nstest.NewNetns(t, nstest.WithUserns(),
// nstest.AsUser(uid, gid)) without its race: nstest waits only until the
// holder has left our network namespace, but unshare(1) writes the uid and
// gid maps after that, and nsenter before then fails ("setgid failed:
// Invalid argument"). This waits for the maps too.
func newRootlessNetns(t *testing.T, uid, gid uint32) *nstest.Netns {
	t.Helper()
	nstest.RequireNamespaces(t)
	nstest.RequireTools(t, "unshare")
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL,
		Setpgid:    true,
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rootless namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ready := func() bool {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || ns == self {
			return false
		}
		for _, m := range []string{"uid_map", "gid_map"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, m))
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !ready(); {
		if time.Now().After(deadline) {
			t.Fatalf("rootless namespace holder %d not set up within 10s", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := &nstest.Netns{
		PID:        pid,
		Path:       fmt.Sprintf("/proc/%d/ns/net", pid),
		UsernsPath: fmt.Sprintf("/proc/%d/ns/user", pid),
		OwnUserns:  true,
	}
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// processGone reports whether pid has exited (it may linger as a zombie
// when nobody reaps orphans).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// waitGone waits up to 10s for pid to exit and reports whether it did.
func waitGone(pid int) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if processGone(pid) {
			return true
		}
	}
	return processGone(pid)
}
