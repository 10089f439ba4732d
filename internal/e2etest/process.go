package e2etest

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RaceEnv is the GORACE setting for a daemon built with -race: a race
// report makes it exit 66 at once, which fails the test, and it does not
// sleep at exit.
const RaceEnv = "GORACE=halt_on_error=1 exitcode=66 atexit_sleep_ms=0"

// ProcessOptions says how Start runs a daemon and how it stops it.
type ProcessOptions struct {
	// Name is what the messages call the program, e.g. "slirp".
	Name string
	// Args describe the run in the log written when the test fails.
	Args []string
	// ReadyFD makes fd 3 a pipe the daemon writes "1" to, and closes, when
	// it is ready; Start waits up to ReadyTimeout for it. Without it fd 3
	// stays closed. Either way cmd.ExtraFiles become fds 4, 5, ...
	ReadyFD      bool
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM.
	StopTimeout time.Duration
	// Stuck, when set, is called when the daemon has not exited within
	// StopTimeout of SIGTERM, to make it exit; what it returns is added to
	// the test's error. By default the daemon is killed. Stop kills it in
	// any case when Stuck leaves it running.
	Stuck func(t *testing.T, p *Process) string
	// StderrTail limits the standard error logged when the test fails to
	// its last StderrTail bytes (a multiple of KiB); 0 logs all of it.
	StderrTail int
}

// Process is a daemon under test: its output is kept, and it is stopped
// when the test ends.
type Process struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *SyncBuffer

	opts    ProcessOptions
	done    chan struct{}
	waitErr error
}

// Start starts cmd (set up but for its output and fd 3) and, with
// o.ReadyFD, waits for it to be ready. When the test ends the daemon is
// stopped (see Stop), a data race it reported fails the test, and, when the
// test failed, its command line and output are logged.
func Start(t *testing.T, cmd *exec.Cmd, o ProcessOptions) *Process {
	t.Helper()
	var readyR, readyW *os.File
	if o.ReadyFD {
		var err error
		if readyR, readyW, err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		defer readyR.Close()
	}
	p := &Process{Cmd: cmd, Stdout: &SyncBuffer{}, Stderr: &SyncBuffer{}, opts: o, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if readyW != nil {
		cmd.ExtraFiles = append([]*os.File{readyW}, cmd.ExtraFiles...)
	} else {
		cmd.ExtraFiles = append([]*os.File{nil}, cmd.ExtraFiles...)
	}
	err := cmd.Start()
	if readyW != nil {
		readyW.Close()
	}
	if err != nil {
		t.Fatalf("start %s: %v", o.Name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if strings.Contains(p.Stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in %s", o.Name)
		}
		if t.Failed() {
			if o.StderrTail > 0 {
				t.Logf("%s %v\nstdout:\n%s\nstderr (last %d KiB):\n%s", o.Name, o.Args, p.Stdout, o.StderrTail>>10, Tail(p.Stderr.String(), o.StderrTail))
			} else {
				t.Logf("%s %v\nstdout:\n%s\nstderr:\n%s", o.Name, o.Args, p.Stdout, p.Stderr)
			}
		}
	})
	if readyR != nil {
		got := make(chan string, 1)
		go func() {
			// Ends when the daemon closes its end or exits.
			b, _ := io.ReadAll(readyR)
			got <- string(b)
		}()
		select {
		case s := <-got:
			if s != "1" {
				t.Fatalf("ready fd said %q, want \"1\"; stderr:\n%s", s, p.Stderr)
			}
		case <-time.After(o.ReadyTimeout):
			t.Fatalf("%s not ready within %v; stderr:\n%s", o.Name, o.ReadyTimeout, p.Stderr)
		}
	}
	return p
}

// Done is closed when the daemon has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM, unless the daemon has exited already, and waits
// StopTimeout for it to exit; then it fails the test and makes it exit (see
// ProcessOptions.Stuck).
func (p *Process) Stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.opts.StopTimeout):
		// Whatever Stuck does (it may end the test), the daemon goes.
		defer func() {
			select {
			case <-p.done:
			default:
				p.Cmd.Process.Kill()
				<-p.done
			}
		}()
		var more string
		if p.opts.Stuck != nil {
			more = p.opts.Stuck(t, p)
		}
		t.Errorf("%s did not exit within %v of SIGTERM%s", p.opts.Name, p.opts.StopTimeout, more)
	}
}

// ExitCode waits up to timeout for the daemon to exit and returns its exit
// status; it fails the test when the daemon is still running then.
func (p *Process) ExitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running %v later", p.opts.Name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		t.Fatalf("wait for %s: %v", p.opts.Name, p.waitErr)
	}
	return 0
}
