package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

const envAction = "SANDBOX_TEST_ACTION"

// seccompActions are what a seccomp child does after InstallSeccomp. Each
// returns the error of the call (nil when it went through).
var seccompActions = map[string]func() error{
	"execve": func() error { return syscall.Exec("/bin/true", []string{"true"}, nil) },
	"mount":  func() error { return unix.Mount("", "", "", 0, "") },
	"unshare": func() error {
		return unix.Unshare(unix.CLONE_NEWNS)
	},
	"setns": func() error {
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open (before the call under test): %w", err)
		}
		return unix.Setns(fd, unix.CLONE_NEWNET)
	},
	"pivot_root": func() error { return unix.PivotRoot("", "") },
	"clone-newuser": func() error {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		return cmd.Run()
	},
	"sysinfo": func() error {
		var info unix.Sysinfo_t
		return unix.Sysinfo(&info)
	},
	"clone3": func() error {
		_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
		return errnoErr(e)
	},
	"pidfd_open": func() error {
		fd, err := unix.PidfdOpen(os.Getpid(), 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"prctl-other": func() error {
		_, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		return err
	},
	"workload": workload,
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

type seccompResult struct {
	Err   string
	Errno int
}

func seccompMain() int {
	action, ok := seccompActions[os.Getenv(envAction)]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", envAction, os.Getenv(envAction))
		return 2
	}
	if err := InstallSeccomp(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	err := action()
	r := seccompResult{Err: errText(err)}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r.Errno = int(errno)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// runSeccompChild runs this binary as a seccomp child doing action, and
// returns how it ended and what it printed.
func runSeccompChild(t *testing.T, action string) (*os.ProcessState, seccompResult, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Env = append(os.Environ(), envMode+"=seccomp", envAction+"="+action)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	_ = cmd.Run()
	var r seccompResult
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("%s: bad report %q: %v", action, stdout.String(), err)
		}
	}
	return cmd.ProcessState, r, stderr.String()
}

// TestSeccompKills: the calls of slirp4netns' blocklist kill the process.
func TestSeccompKills(t *testing.T) {
	for _, action := range []string{"execve", "mount", "unshare", "setns", "pivot_root", "clone-newuser"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			ps, r, stderr := runSeccompChild(t, action)
			ws, ok := ps.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
				t.Errorf("%s under the filter: child ended with %v (call returned %q), want killed by SIGSYS\n%s", action, ps, r.Err, stderr)
			}
		})
	}
}

// TestSeccompRefuses: calls off the allow-list fail with EPERM, and the
// probed ones with ENOSYS, and the process goes on.
func TestSeccompRefuses(t *testing.T) {
	for action, want := range map[string]syscall.Errno{
		"sysinfo":     unix.EPERM,
		"prctl-other": unix.EPERM,
		"clone3":      unix.ENOSYS,
		"pidfd_open":  unix.ENOSYS,
	} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			ps, r, stderr := runSeccompChild(t, action)
			if !ps.Success() {
				t.Fatalf("%s: child ended with %v\n%s", action, ps, stderr)
			}
			if syscall.Errno(r.Errno) != want {
				t.Errorf("%s under the filter: %q (errno %d), want %v", action, r.Err, r.Errno, want)
			}
		})
	}
}

// TestSeccompWorkload runs what the daemon does all day under the filter:
// many threads, TCP and UDP over loopback with socket-to-socket copies,
// descriptor passing, file reads, garbage collection, signals, timers;
// starting a program fails without taking the process down.
func TestSeccompWorkload(t *testing.T) {
	ps, r, stderr := runSeccompChild(t, "workload")
	if !ps.Success() || r.Err != "" {
		t.Fatalf("workload under the filter: %v: %s\n%s", ps, r.Err, stderr)
	}
}

func workload() error {
	steps := []struct {
		name string
		fn   func() error
	}{
		{"blocking threads", blockingThreads},
		{"tcp", tcpEcho},
		{"udp", udpEcho},
		{"descriptor passing", passDescriptor},
		{"files", func() error {
			_, err := os.ReadFile("/proc/self/status")
			return err
		}},
		{"memory", func() error {
			var keep [][]byte
			for range 8 {
				keep = append(keep, make([]byte, 16<<20))
			}
			_ = keep
			keep = nil
			debug.FreeOSMemory()
			return nil
		}},
		{"signals", func() error {
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, syscall.SIGUSR1)
			defer signal.Stop(ch)
			if err := unix.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
				return err
			}
			select {
			case <-ch:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("SIGUSR1 not delivered within 10s")
			}
		}},
		{"timers", func() error {
			done := make(chan struct{})
			time.AfterFunc(time.Millisecond, func() { close(done) })
			select {
			case <-done:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("timer did not fire within 10s")
			}
		}},
		{"starting a program", func() error {
			err := exec.Command("/bin/true").Run()
			if err == nil || !strings.Contains(err.Error(), "bad system call") {
				return fmt.Errorf("got %v, want the child killed (bad system call)", err)
			}
			return nil
		}},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// blockingThreads blocks goroutines in raw reads, which makes the runtime
// start a thread for each, then releases them.
func blockingThreads() error {
	const n = 16
	var pipes [n][2]int
	for i := range pipes {
		if err := unix.Pipe2(pipes[i][:], unix.O_CLOEXEC); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range pipes {
		wg.Go(func() {
			buf := make([]byte, 1)
			if _, err := unix.Read(pipes[i][0], buf); err != nil {
				errs <- err
			}
		})
	}
	for i := range pipes {
		if _, err := unix.Write(pipes[i][1], []byte{1}); err != nil {
			return err
		}
	}
	wg.Wait()
	for i := range pipes {
		unix.Close(pipes[i][0])
		unix.Close(pipes[i][1])
	}
	close(errs)
	return <-errs
}

// tcpEcho sends data through a proxy to an echo server and back. The
// proxy copies with io.Copy between two TCP sockets, which splices, as the
// port forwarder does.
func tcpEcho() error {
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(l net.Listener, handle func(net.Conn)) {
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					handle(c)
				})
			}
		})
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer echo.Close()
	serve(echo, func(c net.Conn) { _, _ = io.Copy(c, c) })
	proxy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer proxy.Close()
	serve(proxy, func(c net.Conn) {
		up, err := net.DialTimeout("tcp", echo.Addr().String(), 10*time.Second)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(up, c)
			_ = up.(*net.TCPConn).CloseWrite()
		}()
		_, _ = io.Copy(c, up)
		<-done
	})
	errs := make(chan error, 8)
	var clients sync.WaitGroup
	for range 8 {
		clients.Go(func() { errs <- echoOnce("tcp", proxy.Addr().String(), 64<<10) })
	}
	clients.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// echoOnce sends size random bytes to an echo server and checks the reply.
func echoOnce(network, addr string, size int) error {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := make([]byte, size)
	_, _ = rand.Read(msg)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs")
	}
	return nil
}

func udpEcho() error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return echoOnce("udp", pc.LocalAddr().String(), 1000)
}

// passDescriptor sends a pipe's write end over a unix socket, as the
// helper sends taps and sockets, and writes through the received copy.
func passDescriptor() error {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	if err := unix.Sendmsg(pair[0], []byte("fd"), unix.UnixRights(int(w.Fd())), nil, 0); err != nil {
		return err
	}
	w.Close()
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(pair[1], make([]byte, 8), oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("rights: %v", err)
	}
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		return err
	}
	unix.Close(fds[0])
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "x" {
		return fmt.Errorf("read through the passed descriptor: %q, %v", b, err)
	}
	return nil
}

// TestPolicyNames guards the lists against typos: every name must be a
// system call of a common architecture, and the policies must assemble
// here.
func TestPolicyNames(t *testing.T) {
	for _, list := range [][]string{killedSyscalls, enosysSyscalls, allowedSyscalls} {
		for _, n := range list {
			found := false
			for _, a := range []*arch.Info{arch.X86_64, arch.AARCH64, arch.I386, arch.ARM} {
				if _, ok := a.SyscallNames[n]; ok {
					found = true
				}
			}
			if !found {
				t.Errorf("%q is no system call of x86_64, arm64, i386 or arm", n)
			}
		}
	}
	for _, n := range killedSyscalls {
		if slicesContains(allowedSyscalls, n) || slicesContains(enosysSyscalls, n) {
			t.Errorf("%q is both killed and allowed or refused", n)
		}
	}
	ps, err := Policies()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if _, err := p.Assemble(); err != nil {
			t.Fatalf("assemble: %v", err)
		}
	}
	if k := Killed(); len(k) < 20 || !slicesContains(k, "execve") {
		t.Errorf("Killed() = %v", k)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
