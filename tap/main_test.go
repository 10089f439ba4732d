package tap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
