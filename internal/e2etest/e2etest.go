// Package e2etest holds the harness the end-to-end tests share: building
// the binaries under test once per test binary, running a daemon with its
// output kept and waiting for its ready fd, stopping it when the test ends,
// bounded waits for a condition, small servers on the host's loopback, and
// running code inside a network namespace made with nstest.
//
// It is test support: only _test.go files import it. Every helper that
// starts a process or a goroutine stops it, and removes what it made, with
// t.Cleanup, also when the test fails; every wait is bounded in time.
package e2etest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers, such as the
// goroutines that copy a process's output.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BinDir creates a temporary directory for the binaries a TestMain builds,
// which any user may enter (the unprivileged test user runs them). The
// caller removes it.
func BinDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// GoBuild builds package pkg (an import path, or a directory relative to
// the test's) into out, with -race when race is set. The error carries the
// compiler's output.
func GoBuild(out, pkg string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	if b, err := exec.Command("go", append(args, pkg)...).CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// CopyExecutable copies the running test binary to dst, executable by
// anyone: go test keeps the original where only its owner may enter.
func CopyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// WaitFor checks cond every interval until it holds, and fails the test if
// it does not within timeout.
func WaitFor(t testing.TB, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// Tail returns the last n bytes of s, marked "..." when it cut.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
