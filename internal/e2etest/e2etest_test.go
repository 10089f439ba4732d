package e2etest

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprint(&b, "x")
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Fatalf("got %d bytes, want 400", n)
	}
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	WaitFor(t, 10*time.Second, time.Millisecond, "three checks", func() bool { return n.Add(1) >= 3 })
}

func TestTail(t *testing.T) {
	if got := Tail("abcdef", 3); got != "...def" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("ab", 3); got != "ab" {
		t.Errorf("Tail = %q", got)
	}
}

func TestServeTCPAndUDP(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeTCP(t, l, func(c net.Conn) { fmt.Fprint(c, "hello") })
	c, err := net.DialTimeout("tcp4", l.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("TCP reply %q, %v", buf[:n], err)
	}

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeUDP(t, pc, 64, func(p []byte, _ net.Addr) []byte { return append([]byte("echo:"), p...) })
	u, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(10 * time.Second))
	u.Write([]byte("ping"))
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "echo:ping" {
		t.Errorf("UDP reply %q, %v", buf[:n], err)
	}
}

func TestStartReadyAndExitCode(t *testing.T) {
	cmd := exec.Command("sh", "-c", `echo out; printf 1 >&3; exec 3>&-; read x <&4 || true; exit 7`)
	p := Start(t, cmd, ProcessOptions{Name: "sh", ReadyFD: true, ReadyTimeout: 10 * time.Second, StopTimeout: 5 * time.Second})
	// fd 4 is not given: read fails at once and the script exits 7.
	if code := p.ExitCode(t, 10*time.Second); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	if !strings.Contains(p.Stdout.String(), "out") {
		t.Errorf("stdout %q", p.Stdout)
	}
}

func TestStopSendsSIGTERM(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	p := Start(t, cmd, ProcessOptions{Name: "sleep", StopTimeout: 10 * time.Second})
	p.Stop(t)
	select {
	case <-p.Done():
	default:
		t.Fatal("still running after Stop")
	}
}
