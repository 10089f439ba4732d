package tap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// vmRSSKiB reads a process's resident set.
func vmRSSKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// After Slim the helper is the small C socket server: same PID, sockets
// still made in the namespace, no more taps, and it still goes on Close.
func TestNSSlim(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	tapFile, err := n.OpenTap(testContext(t), TapConfig{Name: "tap0"})
	if err != nil {
		t.Fatal(err)
	}
	defer tapFile.Close()
	pid := n.PID()
	before := vmRSSKiB(t, pid)
	if err := n.Slim(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if n.PID() != pid || processGone(pid) {
		t.Fatalf("helper %d gone after Slim", pid)
	}

	// A socket from the slim helper lives in the namespace: it connects
	// to a listener on the namespace's own 127.0.0.1.
	l := listenInNetns(t, n, 0)
	port := l.Addr().(*net.TCPAddr).Port
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("slim"))
			c.Close()
		}
	}()
	c := dialFromNetns(t, n, port)
	if b, err := io.ReadAll(c); err != nil || string(b) != "slim" {
		t.Fatalf("through a socket from the slim helper: %q, %v", b, err)
	}
	if _, err := n.Socket(testContext(t), 12345, unix.SOCK_STREAM, 0); !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Fatalf("bogus socket from the slim helper: %v, want EAFNOSUPPORT", err)
	}
	if _, err := n.OpenTap(testContext(t), TapConfig{Name: "tap1"}); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("OpenTap after Slim: %v, want EOPNOTSUPP", err)
	}
	if err := n.Slim(testContext(t)); err != nil {
		t.Fatalf("second Slim: %v", err)
	}
	// It is small now (a Go helper keeps 10 MiB and more).
	if after := vmRSSKiB(t, pid); after > 4<<10 || after >= before {
		t.Errorf("helper RSS %d KiB after Slim (%d KiB before), want under 4 MiB", after, before)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !waitGone(pid) {
		t.Fatalf("slim helper %d still running after Close", pid)
	}
}
