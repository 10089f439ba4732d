package tap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	// roleExec enters the namespaces, keeps the helper with PrepareExec
	// and re-executes itself in place, from another thread than the one
	// that started the helper, as the sandbox does; the new image plays
	// roleAdopted. roleExecUnprepared does the same without PrepareExec.
	roleExec           = "exec"
	roleExecUnprepared = "exec-unprepared"
	// roleAdopted takes the helper back with Adopt (envCtl, envHelperPID),
	// opens and configures tap0 through it, prints "ok NAME PID" (or
	// "error: MESSAGE"), and once its stdin closes, closes the helper and
	// exits 0 only if that went cleanly.
	roleAdopted = "adopted"

	envCtl       = "TAP_TEST_CTL"
	envHelperPID = "TAP_TEST_HELPER_PID"

	// roleMainThread runs with the helper's environment but, instead of
	// serving, checks that main stays on the main thread through
	// blocking system calls while other goroutines compete for the
	// processors; it prints "main thread" or "moved to thread TID".
	roleMainThread = "main-thread"
)

func TestMain(m *testing.M) {
	if os.Getenv(envRole) == roleMainThread {
		os.Exit(playMainThread())
	}
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
	switch role {
	case roleExec, roleExecUnprepared:
		return playExec(ctx, target, role == roleExec)
	case roleAdopted:
		return playAdopted(ctx, target)
	}
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

// playExec starts a helper and re-executes this binary as roleAdopted,
// handing the helper over. It returns only on failure.
func playExec(ctx context.Context, target Target, prepare bool) int {
	n, err := Enter(ctx, target, nil)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 1
	}
	ctl := -1
	if prepare {
		if ctl, err = n.PrepareExec(ctx); err != nil {
			fmt.Printf("error: %v\n", err)
			return 1
		}
	} else {
		rc, err := n.conn.SyscallConn()
		if err == nil {
			err = rc.Control(func(fd uintptr) { ctl = int(fd) })
		}
		if err != nil {
			fmt.Printf("error: %v\n", err)
			return 1
		}
	}
	if _, err := unix.FcntlInt(uintptr(ctl), unix.F_SETFD, 0); err != nil {
		fmt.Printf("error: %v\n", err)
		return 1
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envRole+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, envRole+"="+roleAdopted, envCtl+"="+strconv.Itoa(ctl), envHelperPID+"="+strconv.Itoa(n.PID()))
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	fmt.Printf("error: exec: %v\n", err)
	return 1
}

func playAdopted(ctx context.Context, target Target) int {
	ctl, _ := strconv.Atoi(os.Getenv(envCtl))
	pid, _ := strconv.Atoi(os.Getenv(envHelperPID))
	n, err := Adopt(ctl, pid, target, nil)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 1
	}
	f, err := n.OpenTap(ctx, TapConfig{Name: "tap0", Configure: slirpAddressing()})
	if err != nil {
		fmt.Printf("error: %v\n", err)
		n.Close()
		return 1
	}
	defer f.Close()
	fmt.Printf("ok %s %d\n", f.Name(), n.PID())
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := n.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "close the adopted helper: %v\n", err)
		return 3
	}
	return 0
}

func playMainThread() int {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for range 200 {
		// A blocking call long enough for the runtime to hand the
		// processor to another thread meanwhile.
		ts := unix.Timespec{Nsec: int64(200 * time.Microsecond)}
		_ = unix.Nanosleep(&ts, nil)
		if tid := unix.Gettid(); tid != os.Getpid() {
			fmt.Printf("moved to thread %d\n", tid)
			return 0
		}
	}
	fmt.Println("main thread")
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
