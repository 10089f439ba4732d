package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/tap"
)

// The end-to-end tests re-execute this test binary as a child that plays
// the daemon; envMode says which part it plays:
//
//	demo         set up descriptors like the daemon, Exec into the sandbox,
//	             resume, install seccomp, and report what it finds (demoMain)
//	echo-helper  the stand-in for the namespace helper: answers "pong X" to
//	             every "X" on descriptor 3 until EOF
//	seccomp      install the filter and make one system call (seccompMain)
const (
	envMode   = "SANDBOX_TEST_MODE"
	envConfig = "SANDBOX_TEST_CONFIG"
)

// Descriptors the parent passes to a demo child (exec.Cmd.ExtraFiles).
const (
	childReadyFD = 3
	childExitFD  = 4
)

func TestMain(m *testing.M) {
	tap.HelperMain()
	if mode := os.Getenv(envMode); mode != "" {
		os.Exit(childMain(mode))
	}
	// A race-enabled program sleeps a second before it exits, to catch
	// late reports; the children need not.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

func childMain(mode string) int {
	switch mode {
	case "demo":
		return demoMain()
	case "echo-helper":
		return echoHelperMain()
	case "seccomp":
		return seccompMain()
	}
	fmt.Fprintf(os.Stderr, "unknown %s=%q\n", envMode, mode)
	return 2
}

// demoConfig is what the parent asks of a demo child.
type demoConfig struct {
	// NetnsPath and UsernsPath name the namespaces of the tap; no tap
	// when NetnsPath is "".
	NetnsPath  string
	UsernsPath string
	// SandboxUserns is State.UsernsPath.
	SandboxUserns string
	// APISocket is where the API listener is bound; none when "".
	APISocket string
	// Helper starts the echo helper; HelperOtherThread starts it from
	// another thread than the one that calls Exec.
	Helper            bool
	HelperOtherThread bool
	// Keep is a file to keep (State.Keep), KeepContent what it holds.
	Keep        string
	KeepContent string
	// LegacyMounts makes mount_setattr fail with ENOSYS, as on Linux
	// before 5.12, with a seccomp filter installed before Exec.
	LegacyMounts bool
	// Unchecked skips Exec's checks, to reach the constructor's errors.
	Unchecked bool
}

// demoReport is what a demo child found, printed as JSON on its stdout.
type demoReport struct {
	Stage      string // "setup" or "resumed"
	Err        string
	Root       []string // entries of /
	Kept       string   // content of the kept file
	EtcWrite   string   // error creating a file in /etc
	RootWrite  string   // error creating a file in /
	TmpWrite   string   // error writing a file in /tmp
	Proc       string   // error looking at /proc/self
	UID, GID   int
	ARP        string // error of the ARP exchange on the tap
	Helper     string // the helper's reply
	HelperExit string // how the helper ended
	Unlisted   string // errno of a call the filter does not list
	API        string // what the API client sent
}

func (r demoReport) print() {
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func demoMain() int {
	// Exec must run on the thread that starts the echo helper, or the
	// helper's PR_SET_PDEATHSIG fires when execve ends that thread. The
	// main goroutine stays on this thread from here on.
	runtime.LockOSThread()
	var cfg demoConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
		demoReport{Stage: "setup", Err: err.Error()}.print()
		return 1
	}
	s, ok, err := Resumed()
	if err != nil {
		demoReport{Stage: "resumed", Err: err.Error()}.print()
		return 1
	}
	if ok {
		return demoResumed(s, cfg)
	}
	err = demoSetup(cfg)
	demoReport{Stage: "setup", Err: errText(err)}.print()
	return 1
}

// demoSetup does what the daemon does before the sandbox: a real tap in
// the target namespace, a bound API socket, a live helper child; then it
// Execs. It returns only on error.
func demoSetup(cfg demoConfig) error {
	s := NewState()
	s.ReadyFD, s.ExitFD = childReadyFD, childExitFD
	s.UsernsPath = cfg.SandboxUserns
	s.Seccomp = true
	if cfg.Keep != "" {
		s.Keep = []string{cfg.Keep}
	}
	var keepAlive []*os.File
	defer runtime.KeepAlive(keepAlive)

	if cfg.NetnsPath != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ns, err := tap.Enter(ctx, tap.Target{NetnsPath: cfg.NetnsPath, UsernsPath: cfg.UsernsPath}, nil)
		if err != nil {
			return err
		}
		f, err := ns.OpenTap(ctx, tap.TapConfig{Name: "tap0", Configure: &tap.Addressing{
			MTU:     1500,
			Address: netip.MustParsePrefix("10.0.2.100/24"),
		}})
		ns.Close()
		if err != nil {
			return err
		}
		keepAlive = append(keepAlive, f)
		s.TapFD = int(f.Fd())
	}
	if cfg.APISocket != "" {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.APISocket, Net: "unix"})
		if err != nil {
			return err
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		l.Close()
		if err != nil {
			return err
		}
		keepAlive = append(keepAlive, f)
		s.APIFD = int(f.Fd())
	}
	if cfg.Helper {
		ctl, pid, err := startEchoHelper(cfg.HelperOtherThread)
		if err != nil {
			return err
		}
		s.HelperCtlFD, s.HelperPID = ctl, pid
	}
	if cfg.LegacyMounts {
		err := seccomp.LoadFilter(seccomp.Filter{
			NoNewPrivs: true,
			Flag:       seccomp.FilterFlagTSync,
			Policy: seccomp.Policy{
				DefaultAction: seccomp.ActionAllow,
				Syscalls: []seccomp.SyscallGroup{{
					Names:  []string{"mount_setattr"},
					Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
				}},
			},
		})
		if err != nil {
			return err
		}
	}
	if cfg.Unchecked {
		return execInto(s, s.UsernsPath)
	}
	return Exec(s)
}

// startEchoHelper starts the stand-in for the namespace helper, with
// PR_SET_PDEATHSIG like the tap helper, from this thread or, with
// otherThread, from a thread of its own that stays alive until Exec. It
// returns the control socket and the helper's PID.
func startEchoHelper(otherThread bool) (ctl, pid int, err error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	theirs := os.NewFile(uintptr(pair[1]), "helper end")
	defer theirs.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), envMode+"=echo-helper")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if !otherThread {
		err = cmd.Start()
	} else {
		started := make(chan error)
		go func() {
			// Never unlocked: the thread lives until execve ends it,
			// as tap.Enter's thread does.
			runtime.LockOSThread()
			started <- cmd.Start()
			select {}
		}()
		err = <-started
	}
	if err != nil {
		unix.Close(pair[0])
		return -1, 0, err
	}
	return pair[0], cmd.Process.Pid, nil
}

// demoResumed runs in the sandbox: it installs seccomp, looks around, uses
// every inherited descriptor, writes the ready fd, serves one API client,
// and waits for the exit fd to hang up.
func demoResumed(s State, cfg demoConfig) int {
	r := demoReport{Stage: "resumed"}
	fail := func(err error) int {
		r.Err = err.Error()
		r.print()
		return 1
	}
	if s.ReadyFD != childReadyFD || s.ExitFD != childExitFD || !s.Seccomp {
		return fail(fmt.Errorf("state not handed over: %+v", s))
	}
	if err := InstallSeccomp(); err != nil {
		return fail(err)
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return fail(err)
	}
	for _, e := range entries {
		r.Root = append(r.Root, e.Name())
	}
	if cfg.Keep != "" {
		b, err := os.ReadFile(cfg.Keep)
		r.Kept = string(b)
		if err != nil {
			r.Kept = "error: " + err.Error()
		}
	}
	r.EtcWrite = errText(os.WriteFile("/etc/slirp-sandbox-test", []byte("x"), 0o644))
	r.RootWrite = errText(os.WriteFile("/slirp-sandbox-test", []byte("x"), 0o644))
	r.TmpWrite = errText(os.WriteFile("/tmp/slirp-sandbox-test", []byte("x"), 0o644))
	_, err = os.Stat("/proc/self/status")
	r.Proc = errText(err)
	r.UID, r.GID = os.Getuid(), os.Getgid()
	var info unix.Sysinfo_t
	r.Unlisted = errText(unix.Sysinfo(&info))

	if s.TapFD >= 0 {
		r.ARP = errText(arpExchange(s.TapFD))
	}
	if s.HelperCtlFD >= 0 {
		r.Helper, r.HelperExit = talkToHelper(s.HelperCtlFD, s.HelperPID)
	}

	// Ready, as the daemon: seccomp and the sandbox are in place.
	if _, err := unix.Write(s.ReadyFD, []byte("1")); err != nil {
		return fail(fmt.Errorf("write ready fd: %w", err))
	}
	unix.Close(s.ReadyFD)

	if s.APIFD >= 0 {
		msg, err := serveOneAPIClient(s.APIFD)
		if err != nil {
			return fail(err)
		}
		r.API = msg
	}
	if err := waitHangUp(s.ExitFD); err != nil {
		return fail(err)
	}
	r.print()
	return 0
}

// arpExchange asks, through the tap, who has 10.0.2.100 (the tap's
// address inside the namespace) and waits for the kernel's answer.
func arpExchange(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "tap")
	defer f.Close()
	ours := []byte{0x52, 0x55, 10, 0, 2, 2}
	frame := make([]byte, 42)
	copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[6:12], ours)
	binary.BigEndian.PutUint16(frame[12:], 0x0806)
	arp := frame[14:]
	binary.BigEndian.PutUint16(arp[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(arp[2:], 0x0800) // IPv4
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], 1) // request
	copy(arp[8:14], ours)
	copy(arp[14:18], []byte{10, 0, 2, 2})
	copy(arp[24:28], []byte{10, 0, 2, 100})
	if _, err := f.Write(frame); err != nil {
		return fmt.Errorf("write ARP request to the tap: %w", err)
	}
	if err := f.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for range 200 {
		n, err := f.Read(buf)
		if err != nil {
			return fmt.Errorf("read the ARP reply from the tap: %w", err)
		}
		b := buf[:n]
		if n >= 42 && binary.BigEndian.Uint16(b[12:]) == 0x0806 && binary.BigEndian.Uint16(b[20:]) == 2 &&
			netip.AddrFrom4([4]byte(b[28:32])) == netip.MustParseAddr("10.0.2.100") {
			return nil
		}
	}
	return errors.New("no ARP reply among 200 frames")
}

// talkToHelper sends one request to the helper, closes the control socket
// and reaps the helper, which exits at EOF (or was killed before).
func talkToHelper(ctl, pid int) (reply, exit string) {
	defer func() {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			exit = "wait4: " + err.Error()
			return
		}
		switch {
		case ws.Exited():
			exit = fmt.Sprintf("exit %d", ws.ExitStatus())
		case ws.Signaled():
			exit = "signal " + ws.Signal().String()
		}
	}()
	defer unix.Close(ctl)
	if err := unix.Sendmsg(ctl, []byte("hello"), nil, nil, unix.MSG_NOSIGNAL); err != nil {
		return "write: " + err.Error(), ""
	}
	buf := make([]byte, 64)
	n, err := unix.Read(ctl, buf)
	if err != nil || n == 0 {
		return fmt.Sprintf("read %d bytes: %v", n, err), ""
	}
	return string(buf[:n]), ""
}

// serveOneAPIClient accepts one connection on the inherited listener,
// reads a line and answers "pong LINE".
func serveOneAPIClient(fd int) (string, error) {
	f := os.NewFile(uintptr(fd), "api")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("API listener: %w", err)
	}
	defer l.Close()
	ul := l.(*net.UnixListener)
	if err := ul.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return "", err
	}
	c, err := ul.Accept()
	if err != nil {
		return "", fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("read API request: %w", err)
	}
	msg := strings.TrimSpace(string(buf[:n]))
	if _, err := c.Write([]byte("pong " + msg)); err != nil {
		return "", fmt.Errorf("write API reply: %w", err)
	}
	return msg, nil
}

// waitHangUp waits, for at most 60 s, until the other end of the exit fd
// is closed.
func waitHangUp(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "exit-fd")
	defer f.Close()
	if err := f.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, 16)
	for {
		if _, err := f.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return errors.New("exit fd did not hang up within 60s")
			}
			return nil // EOF: the parent closed its end
		}
	}
}

func echoHelperMain() int {
	buf := make([]byte, 64)
	for {
		n, err := unix.Read(3, buf)
		if err != nil || n == 0 {
			return 0
		}
		if _, err := unix.Write(3, append([]byte("pong "), buf[:n]...)); err != nil {
			return 1
		}
	}
}
