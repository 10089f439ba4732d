package watch

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

func TestExitFDHangup(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() { done <- ExitFD(context.Background(), int(r.Fd())) }()

	// Data written into the pipe does not end the wait.
	w.Write([]byte("0123456789"))
	select {
	case err := <-done:
		t.Fatalf("ExitFD returned %v after a write; it must wait for hang-up", err)
	case <-time.After(200 * time.Millisecond):
	}
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ExitFD after hang-up = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ExitFD did not return within 10s of the writer closing")
	}
}

func TestExitFDNotOpen(t *testing.T) {
	// A descriptor that is not open ends the wait at once (POLLNVAL), as
	// in slirp4netns.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ExitFD(ctx, fd); err != nil {
		t.Fatalf("ExitFD on a closed fd = %v, want nil", err)
	}
}

func TestExitFDCancel(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ExitFD(ctx, int(r.Fd())) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ExitFD after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ExitFD ignored cancellation")
	}
}

func TestProcessExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	done := make(chan error, 1)
	go func() { done <- ProcessExit(context.Background(), cmd.Process.Pid) }()
	select {
	case err := <-done:
		t.Fatalf("ProcessExit returned %v while the process runs", err)
	case <-time.After(200 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ProcessExit = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ProcessExit did not notice the exit within 10s")
	}
}

// An adopted pidfd (as the sandboxed daemon gets one across its exec):
// Wait gives up when its context ends, sees the exit, and returns at once
// afterwards.
func TestAdoptPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v", err)
	}
	p := AdoptPidfd(fd)
	defer p.Close()
	if p.Pidfd() != fd {
		t.Errorf("Pidfd() = %d, want %d", p.Pidfd(), fd)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a running process = %v, want the context's deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait(context.Background()) }()
	cmd.Process.Kill()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait after the exit = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10s of the exit")
	}
	if err := p.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on an exited process = %v", err)
	}
	if err := p.Close(); err != nil || p.Pidfd() != -1 {
		t.Errorf("Close = %v, Pidfd() after = %d", err, p.Pidfd())
	}
}

func TestNSNetnsEmpty(t *testing.T) {
	ns := nstest.NewNetns(t)
	id, err := NetnsOf(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	// A second process in the namespace outlives the first.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := ns.Command(ctx, "sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, _ := ProcessesIn(id)
		if len(pids) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expected 2 processes in the namespace, saw %v", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}

	proc, err := OpenProcess(ns.PID)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	done := make(chan error, 1)
	go func() { done <- NetnsEmpty(ctx, proc, id, 20*time.Millisecond) }()
	syscall.Kill(ns.PID, syscall.SIGKILL)
	select {
	case err := <-done:
		t.Fatalf("NetnsEmpty returned %v while a process remains", err)
	case <-time.After(300 * time.Millisecond):
	}
	other.Process.Kill()
	other.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("NetnsEmpty = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("NetnsEmpty did not notice the namespace emptied")
	}
}
