package reliability

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fault scenarios run the daemon built with -race (when the tests
// are), so that a race on an error path fails them. Each runs healthy
// connections through the fault and checks that every byte on them
// arrives intact, and each ends with the daemon's connections, flows and
// descriptors back where they started (memory is measured by the load
// tests: the race detector's own would drown it).

// faultArgs are the daemon options of the fault scenarios.
var faultArgs = []string{"-c", "--mtu=65520"}

// healthyConns is how many healthy connections stream through a fault.
const healthyConns = 4

// healthy keeps healthyConns connections streaming 64 KiB chunks through
// srv, each echoed and compared, until check stops them.
type healthy struct{ g *guestProc }

func startHealthy(t *testing.T, e *env, srv *hostServer) *healthy {
	t.Helper()
	g := startGuest(t, e.guest, "stream", srv.via(gw), strconv.Itoa(healthyConns))
	g.ready(t, time.Minute)
	return &healthy{g: g}
}

// check stops the streams and fails the test unless every one of them
// still works and never got a byte wrong.
func (h *healthy) check(t *testing.T) {
	t.Helper()
	if r := h.g.result(t, time.Minute); r.OK != healthyConns || r.Failed != 0 {
		t.Errorf("healthy connections through the fault: %d of %d kept echoing intact; failures %v: %q",
			r.OK, healthyConns, r.Kinds, r.Errors)
	}
}

// faultEnv starts a daemon and returns it with an echo server and the
// daemon's usage after a warm-up.
func faultEnv(t *testing.T) (*env, *hostServer, usage) {
	t.Helper()
	e := newEnv(t, envOpts{args: faultArgs})
	srv := startServer(t, e.router, echo)
	return e, srv, baseline(t, e)
}

// closedPort returns a port on 127.0.0.1 inside the daemon's namespace
// that nothing listens on.
func closedPort(t *testing.T, e *env) string {
	t.Helper()
	l := listenTCP(t, e.router, "127.0.0.1:0")
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

// onlyKinds fails the test when r has a failure of a kind not in allowed.
func onlyKinds(t *testing.T, what string, r guestReport, allowed ...string) {
	t.Helper()
	for kind, n := range r.Kinds {
		ok := false
		for _, a := range allowed {
			ok = ok || kind == a
		}
		if !ok {
			t.Errorf("%s: %d connections ended with %s, want only %v; errors: %q", what, n, kind, allowed, r.Errors)
		}
	}
}

// TestFaultHostRefuses: the host refuses 200 connections (nothing listens):
// the guest gets a reset for each, at once, and healthy connections run on.
func TestFaultHostRefuses(t *testing.T) {
	e, srv, base := faultEnv(t)
	h := startHealthy(t, e, srv)
	r := runGuest(t, e.guest, 2*time.Minute, "echo", gw+":"+closedPort(t, e), "200", "1")
	if r.Failed != 200 || r.Kinds["ECONNREFUSED"] != 200 {
		t.Errorf("200 connects to a closed host port: %d refused, failures %v: %q; want all ECONNREFUSED", r.Kinds["ECONNREFUSED"], r.Kinds, r.Errors)
	}
	h.check(t)
	e.d.settled(t, base, 30*time.Second)
	figure(t, "200 connects to a closed host port: %v", r.Kinds)
	noGoroutineLeak(t, e)
}

// TestFaultHostVanishes: the host service is killed (SIGKILL) while eight
// guest connections stream data through it: each guest connection ends with a
// reset or EOF, none hangs or sees wrong data, and healthy connections to
// another service run on.
func TestFaultHostVanishes(t *testing.T) {
	e, srv, base := faultEnv(t)
	// The doomed service is a process of its own in the daemon's
	// namespace, so that it dies the way services die.
	svc := startGuest(t, e.router, "serve", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(svc.ready(t, 30*time.Second).Reply)
	h := startHealthy(t, e, srv)
	victim := startGuest(t, e.guest, "stream", gw+":"+port, "8")
	victim.ready(t, time.Minute)
	svc.kill()
	r := victim.wait(t, time.Minute)
	if r.Failed != 8 {
		t.Errorf("connections to a service killed mid-transfer: %+v; want all 8 to fail", r)
	}
	onlyKinds(t, "connections to a service killed mid-transfer", r, "ECONNRESET", "EPIPE", "EOF")
	h.check(t)
	e.d.settled(t, base, 30*time.Second)
	figure(t, "8 connections to a service killed mid-transfer ended: %v", r.Kinds)
	noGoroutineLeak(t, e)
}

// TestFaultHostSlow: a host service that answers in small pieces with a
// pause before each: transfers through it complete intact, and healthy
// connections run on meanwhile.
func TestFaultHostSlow(t *testing.T) {
	e, srv, base := faultEnv(t)
	slow := startServer(t, e.router, slowEcho)
	h := startHealthy(t, e, srv)
	r := runGuest(t, e.guest, 3*time.Minute, "echo", slow.via(gw), "4", strconv.Itoa(2<<20))
	if r.OK != 4 {
		t.Errorf("transfers through a slow host service: %d of 4 echoed 2 MiB intact; failures %v: %q", r.OK, r.Kinds, r.Errors)
	}
	h.check(t)
	e.d.settled(t, base, 30*time.Second)
	noGoroutineLeak(t, e)
}

// endKind is how a host-side connection ended: "EOF" or an error kind.
func endKind(err error) string {
	if err == nil {
		return "EOF"
	}
	return errKind(err)
}

// TestFaultGuestVanishes: the guest's namespace disappears in the middle
// of a connection, after its interface went down so that it could not say
// goodbye: the daemon exits 0 and cleans up, and the host side of the
// connection gets a reset or EOF.
func TestFaultGuestVanishes(t *testing.T) {
	e := newEnv(t, envOpts{args: faultArgs})
	ended := make(chan string, 1)
	srv := startServer(t, e.router, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		_, err := io.Copy(c, c)
		ended <- endKind(err)
	})
	g := startGuest(t, e.guest, "hold", srv.via(gw))
	g.ready(t, 30*time.Second)
	e.guest.Run(t, "ip", "link", "set", "tap0", "down")
	g.kill()
	syscall.Kill(e.guest.PID, syscall.SIGKILL)

	if code := e.d.exitCode(t, 20*time.Second); code != 0 {
		t.Errorf("the daemon exited %d after its guest vanished, want 0", code)
	}
	select {
	case kind := <-ended:
		if kind != "EOF" && kind != "ECONNRESET" {
			t.Errorf("the host side of the guest's connection ended with %s, want EOF or ECONNRESET", kind)
		}
		figure(t, "host side ended with %s; daemon: %s", kind, exitReason(e.d))
	case <-time.After(10 * time.Second):
		t.Errorf("the host side of the guest's connection is still open 10s after the daemon exited")
	}
	noFilesLeft(t, e.d)
}

// exitReason is the reason the daemon logged for exiting.
func exitReason(d *daemon) string {
	s := d.stderr.String()
	i := strings.LastIndex(s, "msg=exiting ")
	if i < 0 {
		return "no exit reason logged"
	}
	line, _, _ := strings.Cut(s[i:], "\n")
	return line
}

// noFilesLeft fails the test if the daemon left its API socket or pid file.
func noFilesLeft(t *testing.T, d *daemon) {
	t.Helper()
	for _, f := range []string{d.api, d.pidFile} {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the daemon left %s behind (%v)", f, err)
		}
	}
}

// TestFaultTargetLastProcessExits: the process slirp was started for exits
// while another is still in its namespace with an open connection. The
// daemon keeps serving it; when that last process exits, the daemon exits
// 0 and removes its files.
func TestFaultTargetLastProcessExits(t *testing.T) {
	e := newEnv(t, envOpts{args: faultArgs})
	srv := startServer(t, e.router, echo)
	g := startGuest(t, e.guest, "hold", srv.via(gw))
	g.ready(t, 30*time.Second)
	syscall.Kill(e.guest.PID, syscall.SIGKILL)
	// The daemon looks for processes every second: three looks must
	// leave it running.
	select {
	case <-e.d.done:
		t.Fatalf("the daemon exited while a process was left in the namespace; stderr:\n%s", e.d.stderr)
	case <-time.After(3 * time.Second):
	}
	if r := g.result(t, 30*time.Second); r.OK != 1 {
		t.Errorf("the connection of the last process after the target exited: %+v", r)
	}
	if code := e.d.exitCode(t, 15*time.Second); code != 0 {
		t.Errorf("the daemon exited %d after the last process, want 0", code)
	}
	if !strings.Contains(e.d.stderr.String(), "the target namespace has no process left") {
		t.Errorf("the daemon did not say why it exited; stderr:\n%s", e.d.stderr)
	}
	noFilesLeft(t, e.d)
}

// apiRaw connects to the daemon's API socket and writes b; with hangUp it
// closes the connection at once, otherwise it half-closes and returns the
// reply.
func apiRaw(t *testing.T, d *daemon, b string, hangUp bool) string {
	t.Helper()
	c, err := net.DialTimeout("unix", d.api, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the API socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, b); err != nil {
		t.Fatalf("write to the API socket: %v", err)
	}
	if hangUp {
		return ""
	}
	c.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the API's reply: %v", err)
	}
	return string(reply)
}

// TestFaultAPIClientHangsUp: API clients hang up halfway through a request
// in either protocol, or before reading the reply, and one stays connected
// without a word: the daemon answers the next client at once, and healthy
// connections run on throughout.
func TestFaultAPIClientHangsUp(t *testing.T) {
	e, srv, base := faultEnv(t)
	h := startHealthy(t, e, srv)
	silent, err := net.Dial("unix", e.d.api)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	apiRaw(t, e.d, `{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_`, true)
	apiRaw(t, e.d, "POST /v1/ports HTTP/1.1\r\nHost: slirp\r\nContent-Length: 100\r\n\r\n{\"proto\"", true)
	apiRaw(t, e.d, `{"execute": "list_hostfwd"}`, true)
	apiRaw(t, e.d, "GET /v1/info HTTP/1.1\r\nHost: slirp\r\n\r\n", true)

	if reply := apiRaw(t, e.d, `{"execute": "list_hostfwd"}`, false); !strings.Contains(reply, `"entries"`) {
		t.Errorf("list_hostfwd after the hang-ups: %q", reply)
	}
	resp, err := e.d.apiClient().Get("http://slirp/v1/info")
	if err != nil {
		t.Fatalf("GET /v1/info after the hang-ups: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v1/info after the hang-ups: %s", resp.Status)
	}
	silent.Close()
	h.check(t)
	e.d.settled(t, base, 30*time.Second)
	noGoroutineLeak(t, e)
}

// TestFaultSIGTERMUnderLoad: SIGTERM while 100 guest connections stream
// data: the daemon exits 0 within seconds and removes its API socket and
// pid file; every guest connection ends with a reset or EOF (none hangs,
// none sees wrong data), and the host side of every one is closed. (It
// found a shutdown deadlock in netstack, about one run in three.)
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	const conns = 100
	e := newEnv(t, envOpts{args: faultArgs})
	srv := startServer(t, e.router, echo)
	g := startGuest(t, e.guest, "stream", srv.via(gw), strconv.Itoa(conns))
	g.ready(t, 2*time.Minute)
	e.d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the daemon did not exit within 15s of SIGTERM under load; its goroutines:\n%s", e.d.quit(t))
	}
	if code := e.d.exitCode(t, time.Second); code != 0 {
		t.Errorf("the daemon exited %d after SIGTERM under load, want 0", code)
	}
	noFilesLeft(t, e.d)
	r := g.result(t, time.Minute)
	if r.Failed != conns {
		t.Errorf("guest connections when the daemon stopped: %+v; want all %d ended", r, conns)
	}
	onlyKinds(t, "guest connections when the daemon stopped", r, "ECONNRESET", "EPIPE", "EOF")
	figure(t, "%d streaming guest connections at SIGTERM ended: %v", conns, r.Kinds)
	waitFor(t, 10*time.Second, "the host side of every connection to close", func() bool {
		active, _, _ := srv.counts()
		return active == 0
	})
}
