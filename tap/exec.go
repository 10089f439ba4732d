package tap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// PrepareExec readies the helper to outlive an execve of this process, for
// a daemon that re-executes itself in place (internal/sandbox.Exec). Enter
// starts the helper with a parent-death signal, and the kernel sends that
// signal when the thread that forked the helper ends, as every thread but
// the caller's does at execve; so PrepareExec asks the helper to clear it.
// The helper still exits when its control socket reaches EOF, that is when
// the last image of the daemon has gone.
//
// It returns the control socket's descriptor. Hand it and PID to the new
// image under the same number, with close-on-exec cleared (sandbox.Exec
// does both for the descriptors of its State), and take the helper back
// there with Adopt. If the execve does not happen, n goes on working (and
// Close still stops the helper); if it does, n is gone with the old image.
func (n *Namespace) PrepareExec(ctx context.Context) (ctlFD int, err error) {
	if _, _, err := n.roundTrip(ctx, request{kind: kindKeepAcrossExec}, false); err != nil {
		return -1, fmt.Errorf("keep the tap helper across exec: %w", err)
	}
	rc, err := n.conn.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("keep the tap helper across exec: control socket: %w", err)
	}
	ctlFD = -1
	if err := rc.Control(func(fd uintptr) { ctlFD = int(fd) }); err != nil {
		return -1, fmt.Errorf("keep the tap helper across exec: control socket: %w", err)
	}
	return ctlFD, nil
}

// Adopt takes back a helper that an earlier image of this process started
// with Enter and kept with PrepareExec: ctlFD is its control socket and pid
// its process, which must be a child of this process (a process keeps its
// children across execve). Adopt owns ctlFD from then on, also when it
// fails. t names the namespaces in messages only. log may be nil.
//
// The helper is reaped with wait4, which needs no /proc and no pidfd (the
// seccomp filter of --enable-seccomp refuses pidfd_open).
func Adopt(ctlFD, pid int, t Target, log *slog.Logger) (*Namespace, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ctlFD < 0 {
		return nil, fmt.Errorf("adopt tap helper: control descriptor %d is not a descriptor", ctlFD)
	}
	fail := func(err error) (*Namespace, error) {
		unix.Close(ctlFD)
		return nil, fmt.Errorf("adopt tap helper %d: %w", pid, err)
	}
	if pid <= 0 {
		return fail(fmt.Errorf("PID %d is not a process", pid))
	}
	typ, err := unix.GetsockoptInt(ctlFD, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fail(fmt.Errorf("control descriptor %d: %w", ctlFD, err))
	}
	if typ != unix.SOCK_SEQPACKET {
		return fail(fmt.Errorf("control descriptor %d is not a SOCK_SEQPACKET socket", ctlFD))
	}
	// Only a child can be waited for; WNOWAIT leaves an exited one for
	// the reaper, which reports it.
	var info unix.Siginfo
	if err := waitid(pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT); err != nil {
		if errors.Is(err, unix.ECHILD) {
			return fail(errors.New("not a child of this process"))
		}
		return fail(err)
	}
	unix.CloseOnExec(ctlFD)
	if err := unix.SetNonblock(ctlFD, true); err != nil {
		return fail(fmt.Errorf("set control socket non-blocking: %w", err))
	}
	f := os.NewFile(uintptr(ctlFD), "tap helper control")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("adopt tap helper %d: control socket: %w", pid, err)
	}
	c := &child{pid: pid}
	n := &Namespace{
		log:    log.With("netns", t.NetnsPath),
		target: t,
		pid:    pid,
		kill:   c.kill,
		conn:   fc.(*net.UnixConn),
		sem:    make(chan struct{}, 1),
		buf:    make([]byte, maxPacket),
		oob:    make([]byte, unix.CmsgSpace(4*4)),
		done:   make(chan struct{}),
	}
	go func() {
		n.waitErr = c.wait()
		close(n.done)
	}()
	n.log.Debug("tap helper adopted", "pid", pid)
	return n, nil
}

// child is a child process known only by its PID. kill never signals the
// PID once the child has been reaped, when the PID could name another
// process: wait marks the child exited, under mu, before it reaps it.
type child struct {
	pid    int
	mu     sync.Mutex
	exited bool // +checklocks:mu
}

// wait blocks until the child exits, reaps it, and returns its status as
// an error (nil for exit status 0), in exec.ExitError's words.
func (c *child) wait() error {
	var info unix.Siginfo
	if err := waitid(c.pid, &info, unix.WEXITED|unix.WNOWAIT); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(c.pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait4: %w", err)
		}
		break
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return fmt.Errorf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Errorf("signal: %v", ws.Signal())
	}
	return fmt.Errorf("wait status %#x", uint32(ws))
}

// kill sends SIGKILL unless the child has exited.
func (c *child) kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited {
		return nil
	}
	return unix.Kill(c.pid, syscall.SIGKILL)
}

// waitid is waitid(P_PID, pid), retried on EINTR.
func waitid(pid int, info *unix.Siginfo, options int) error {
	for {
		err := unix.Waitid(unix.P_PID, pid, info, options, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
