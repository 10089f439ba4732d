// Package watch waits for the events that end the daemon's life: the
// exit-fd hanging up (slirp4netns --exit-fd semantics) and the target
// network namespace losing its last process.
//
// Each wait blocks in poll(2) on the watched descriptor together with an
// eventfd that the context's cancellation writes, so a cancelled wait
// returns promptly and leaves no goroutine behind.
package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// pollUntil blocks until fd reports any of events (or an error, hang-up or
// invalid-descriptor condition, which poll always reports) or ctx is done.
// It returns the revents seen, or ctx.Err().
func pollUntil(ctx context.Context, fd int, events int16) (int16, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return 0, fmt.Errorf("eventfd: %w", err)
	}
	defer unix.Close(efd)
	stop := context.AfterFunc(ctx, func() {
		var one = [8]byte{1}
		_, _ = unix.Write(efd, one[:])
	})
	defer stop()
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(efd), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll: %w", err)
		}
		if fds[0].Revents != 0 {
			return fds[0].Revents, nil
		}
		if fds[1].Revents != 0 {
			return 0, ctx.Err()
		}
	}
}

// ExitFD waits until fd hangs up, as slirp4netns does with its exit-fd: it
// polls for POLLHUP only, so data written into the pipe is ignored, and a
// descriptor that is not open (POLLNVAL) or in error ends the wait at once.
// It returns nil when the daemon should exit, or ctx.Err().
//
// A descriptor number that is not open may be taken by the next file this
// process opens, so callers check IsOpen before they open anything.
func ExitFD(ctx context.Context, fd int) error {
	if !IsOpen(fd) {
		return nil
	}
	_, err := pollUntil(ctx, fd, unix.POLLHUP)
	return err
}

// IsOpen reports whether fd is an open file descriptor of this process.
func IsOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// Process is a handle on a running process (a pidfd, Linux 5.3+): unlike a
// PID it cannot come to name another process once this one has exited.
type Process struct {
	pid int
	fd  int // -1 when the process was already gone at OpenProcess
}

// OpenProcess takes a handle on process pid. A process that is already
// gone gives a handle whose Wait returns at once.
func OpenProcess(pid int) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return &Process{pid: pid, fd: -1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	unix.CloseOnExec(fd)
	return &Process{pid: pid, fd: fd}, nil
}

// AdoptPidfd makes a handle of pidfd fd, one this process opened or was
// handed (across an exec, say). The handle owns fd: Close closes it.
func AdoptPidfd(fd int) *Process {
	return &Process{pid: -1, fd: fd}
}

// Pidfd is the handle's descriptor, to hand on; -1 when the process was
// already gone at OpenProcess or the handle is closed.
func (p *Process) Pidfd() int { return p.fd }

// Wait blocks until the process exits (nil) or ctx is done (ctx.Err()).
func (p *Process) Wait(ctx context.Context) error {
	if p.fd < 0 {
		return nil
	}
	_, err := pollUntil(ctx, p.fd, unix.POLLIN)
	return err
}

// Close releases the handle.
func (p *Process) Close() error {
	if p.fd < 0 {
		return nil
	}
	fd := p.fd
	p.fd = -1
	return unix.Close(fd)
}

// ProcessExit waits until process pid exits. It returns nil once the
// process is gone (or when it was already gone), or ctx.Err().
func ProcessExit(ctx context.Context, pid int) error {
	p, err := OpenProcess(pid)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Wait(ctx)
}

// NetnsID identifies a network namespace by the device and inode of its
// nsfs file.
type NetnsID struct{ Dev, Ino uint64 }

// NetnsOf returns the identity of the network namespace file at path (such
// as /proc/PID/ns/net).
func NetnsOf(path string) (NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NetnsID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return NetnsID{Dev: st.Dev, Ino: st.Ino}, nil
}

// ProcessesIn lists the processes visible in /proc whose network namespace
// is ns, leaving out the PIDs in exclude. Processes whose namespace this
// process may not inspect are not counted.
func ProcessesIn(ns NetnsID, exclude ...int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	var pids []int
next:
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for _, x := range exclude {
			if pid == x {
				continue next
			}
		}
		id, err := NetnsOf(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue
		}
		if id == ns {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// NetnsEmpty waits until the target namespace has no process left: first
// until process p exits, then, while other processes still share the
// namespace, by looking again every interval. exclude names processes that
// do not count (the daemon's own helper inside the namespace).
func NetnsEmpty(ctx context.Context, p *Process, ns NetnsID, interval time.Duration, exclude ...int) error {
	if err := p.Wait(ctx); err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pids, err := ProcessesIn(ns, exclude...)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
