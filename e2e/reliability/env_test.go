package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// env is one scenario's machine: the daemon runs inside router, a network
// namespace of its own whose loopback plays the host's (the servers the
// guest reaches through 10.0.2.2 listen there), and serves guest, a
// rootless-style namespace (its own user namespace) with tap0.
type env struct {
	router, guest *nstest.Netns
	d             *daemon
	// opts are the options the daemon was started with.
	opts envOpts
}

// envOpts changes how newEnv starts the daemon.
type envOpts struct {
	// load runs slirpLoadBin (never built with -race) instead of slirpBin.
	load bool
	// args are extra daemon options, before "PID tap0".
	args []string
	// resolvConf is the daemon's --resolv-conf; default: a file with no
	// nameserver, so it can never query the machine's own.
	resolvConf string
	// router is a namespace to run the daemon in, made by the caller (to
	// give it links first); default: a new one.
	router *nstest.Netns
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	nstest.RequireRoot(t)
	if buildErr != nil {
		t.Fatalf("slirp was not built: %v", buildErr)
	}
	e := &env{router: o.router, guest: nstest.NewNetns(t, nstest.WithUserns()), opts: o}
	if e.router == nil {
		e.router = nstest.NewNetns(t)
	}
	e.d = startDaemon(t, e.router, e.guest, o)
	return e
}

// daemon is a running slirp.
type daemon struct {
	p              *e2etest.Process
	cmd            *exec.Cmd
	pid            int
	api, pidFile   string
	stdout, stderr *e2etest.SyncBuffer
	done           <-chan struct{}
}

// startDaemon runs slirp inside router (nsenter --net, which execs it, so
// the daemon keeps nsenter's pid) for guest, with an API socket and a pid
// file, and waits for its ready fd. It is stopped with SIGTERM (then
// SIGKILL) when the test ends.
func startDaemon(t *testing.T, router, guest *nstest.Netns, o envOpts) *daemon {
	t.Helper()
	dir := t.TempDir()
	if o.resolvConf == "" {
		o.resolvConf = filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(o.resolvConf, []byte("# no nameservers: the tests never use the machine's own\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := slirpBin
	if o.load {
		bin = slirpLoadBin
	}
	d := &daemon{
		api:     filepath.Join(dir, "api.sock"),
		pidFile: filepath.Join(dir, "slirp.pid"),
	}
	args := []string{"--net=" + router.Path, "--", bin,
		"-r", "3", "--resolv-conf=" + o.resolvConf, "--api-socket=" + d.api, "--pid-file=" + d.pidFile}
	args = append(append(args, o.args...), strconv.Itoa(guest.PID), "tap0")
	cmd := exec.Command("nsenter", args...)
	// A race report makes the daemon exit 66 at once, which fails the test.
	cmd.Env = append(os.Environ(), e2etest.RaceEnv, "GODEBUG="+os.Getenv("DBG_GODEBUG"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Stopped with SIGTERM within 15 s, or else dumped with SIGQUIT.
	d.p = e2etest.Start(t, cmd, e2etest.ProcessOptions{
		Name: "slirp", Args: o.args, ReadyFD: true, ReadyTimeout: 30 * time.Second,
		StopTimeout: 15 * time.Second, StderrTail: 8 << 10,
		Stuck: func(t *testing.T, p *e2etest.Process) string { return "; its goroutines:\n" + quit(t, p) },
	})
	d.cmd, d.stdout, d.stderr, d.done = d.p.Cmd, d.p.Stdout, d.p.Stderr, d.p.Done()
	d.pid = d.cmd.Process.Pid
	return d
}

// stop sends SIGTERM and waits up to 15 s, then dumps the daemon's
// goroutines with SIGQUIT.
func (d *daemon) stop(t *testing.T) { d.p.Stop(t) }

// exitCode waits up to timeout for the daemon to exit and returns its
// status.
func (d *daemon) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	return d.p.ExitCode(t, timeout)
}

// usage is what the daemon holds, from /proc.
type usage struct {
	RSSKiB  int // VmRSS
	FDs     int // entries of /proc/PID/fd
	Threads int
	// HeapKiB is the Go heap in objects (go_heap_bytes of /v1/stats): the
	// memory the daemon holds, which must come back after a scenario. RSS
	// also keeps the runtime's metadata for the largest heap the process
	// had, so it is held to a looser bound (rssLeakKiB).
	HeapKiB int
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, Go heap %.1f MiB, %d fds, %d threads",
		float64(u.RSSKiB)/1024, float64(u.HeapKiB)/1024, u.FDs, u.Threads)
}

func (d *daemon) usage(t *testing.T) usage {
	t.Helper()
	u, err := readUsage(d.pid)
	if err != nil {
		t.Fatalf("daemon usage: %v", err)
	}
	if d.api != "" {
		u.HeapKiB = int(d.stats(t).GoHeapBytes / 1024)
	}
	return u
}

func readUsage(pid int) (usage, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			u.RSSKiB, _ = strconv.Atoi(fields[0])
		case "Threads":
			u.Threads, _ = strconv.Atoi(fields[0])
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return usage{}, err
	}
	u.FDs = len(fds)
	return u, nil
}

// sampler follows the daemon's usage while a scenario runs.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	peak usage
}

// sample reads the daemon's usage every 100 ms until the returned
// sampler's end is called (or the test ends).
func (d *daemon) sample(t *testing.T) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if u, err := readUsage(d.pid); err == nil {
				s.peak.RSSKiB = max(s.peak.RSSKiB, u.RSSKiB)
				s.peak.FDs = max(s.peak.FDs, u.FDs)
				s.peak.Threads = max(s.peak.Threads, u.Threads)
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { s.end() })
	return s
}

// end stops sampling and returns the peak.
func (s *sampler) end() usage {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.peak
}

// figure logs a measured figure in a form docs/reliability.md quotes
// (go test -v -run ... ./e2e/reliability | grep FIGURE).
func figure(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("FIGURE %s: %s", t.Name(), fmt.Sprintf(format, args...))
}

// stackStats are the counters of GET /v1/stats that the tests look at.
type stackStats struct {
	TCPActive  int64  `json:"tcp_active"`
	TCPOpened  uint64 `json:"tcp_opened"`
	TCPDropped uint64 `json:"tcp_dropped"`
	TCPRefused uint64 `json:"tcp_refused"`
	TCPToHost  uint64 `json:"tcp_to_host"`
	UDPActive  int64  `json:"udp_active"`
	UDPOpened  uint64 `json:"udp_opened"`
	UDPDropped uint64 `json:"udp_dropped"`
	UDPRefused uint64 `json:"udp_refused"`
	// GoHeapBytes is the daemon's Go heap in objects.
	GoHeapBytes uint64 `json:"go_heap_bytes"`
}

// apiClient talks HTTP to the daemon's API socket, one connection per
// request, so that it leaves no idle connection in the fd count.
func (d *daemon) apiClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dl net.Dialer
				return dl.DialContext(ctx, "unix", d.api)
			},
		},
	}
}

func (d *daemon) stats(t *testing.T) stackStats {
	t.Helper()
	resp, err := d.apiClient().Get("http://slirp/v1/stats")
	if err != nil {
		t.Fatalf("GET /v1/stats: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Stack stackStats `json:"stack"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/stats: status %d, %v", resp.StatusCode, err)
	}
	return body.Stack
}

// Leak limits: after a scenario, the daemon's descriptors and memory must
// come back to within 10% of where they started, plus a little absolute
// slack:
//
//   - fdSlack: the daemon starts with about 15 descriptors, and 10% of that
//     is one; a second one covers a connection of ours to the API socket
//     that the daemon has not finished closing when /proc is read.
//   - heapSlackKiB: the memory the daemon holds is its Go heap (objects).
//     Maps keep the buckets they grew to (gVisor's demultiplexing tables,
//     the flow tables) and pools some buffers, a few MiB after thousands
//     of connections, whatever happens to the connections; 8 MiB is still
//     a few percent of a load scenario's peak, so leaking a fraction of
//     its connections' buffers fails.
//   - rssLeakKiB: the resident set also keeps the Go runtime's metadata
//     for the largest heap the process ever had (GC bitmaps, spans), so it
//     gets a looser bound that still catches such a leak.
//
// rssGrace is how long memory may take to come back once the last
// connection is gone: a daemon that returns its heap when it falls idle
// does so at once.
const (
	fdSlack      = 2
	heapSlackKiB = 8 << 10
	rssLeakKiB   = 24 << 10
	// The daemon returns freed memory once it sees the network idle
	// after a burst: within two of its 2 s checks.
	rssGrace = 10 * time.Second
)

// settled waits (up to timeout) until no connection or flow is left in the
// daemon and its descriptors are back near base, and fails the test if
// they stay. It returns the usage it saw last.
func (d *daemon) settled(t *testing.T, base usage, timeout time.Duration) usage {
	t.Helper()
	u, _ := d.settle(t, base, timeout, false)
	return u
}

// settledRSS is settled, and also waits for the resident memory to come
// back near base; memory that stays does not fail the test but is returned
// as rssBack false, for the caller to report (see rssBug).
func (d *daemon) settledRSS(t *testing.T, base usage, timeout time.Duration) (u usage, rssBack bool) {
	t.Helper()
	return d.settle(t, base, timeout, true)
}

func (d *daemon) settle(t *testing.T, base usage, timeout time.Duration, rss bool) (u usage, rssBack bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var rssDeadline time.Time
	for {
		st := d.stats(t)
		u = d.usage(t)
		fdOK := u.FDs <= base.FDs+base.FDs/10+fdSlack
		rssBack = u.HeapKiB <= base.HeapKiB+base.HeapKiB/10+heapSlackKiB && u.RSSKiB <= base.RSSKiB+rssLeakKiB
		flowsGone := st.TCPActive == 0 && st.UDPActive == 0
		if flowsGone && fdOK {
			if rssBack || !rss {
				return u, rssBack
			}
			// The memory gets a grace period from the moment the last
			// connection is gone.
			if rssDeadline.IsZero() {
				rssDeadline = time.Now().Add(rssGrace)
			}
			if time.Now().After(rssDeadline) {
				return u, false
			}
		}
		if time.Now().After(deadline) {
			if !flowsGone || !fdOK {
				t.Errorf("%v after the scenario the daemon still holds %v with %d TCP connections and %d UDP flows; it started with %v",
					timeout, u, st.TCPActive, st.UDPActive, base)
			}
			return u, rssBack
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// rssBug fails a load test after which the daemon's resident memory did
// not come back within the tolerance. held says what used to hold it, for
// whoever has to look into it.
func rssBug(t *testing.T, rssBack bool, base, peak, after usage, held string) {
	t.Helper()
	if rssBack || t.Failed() {
		return
	}
	t.Errorf("the daemon's memory did not come back after the load: %v (at the start %v, at the peak %v); look at what holds it: %s",
		after, base, peak, held)
}

// What holds the memory after each load, for rssBug.
const (
	heldByRelays = "netstack/relay.go's pooled copy buffers and gVisor's packet buffer chunks (sync.Pools keep them through one GC; memory.go's reclaimer runs two when the network falls idle)"
	heldByFlows  = "netstack/udp.go's pooled datagram buffers (one per datagram in flight)"
)

// guestProc is a guest action running inside the guest namespace.
type guestProc struct {
	args    []string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan guestReport
	stderr  *e2etest.SyncBuffer
	last    guestReport
	gotLast bool
}

// startGuest starts a guest action (guest_test.go) inside ns. It is killed
// when the test ends, if it is still running.
func startGuest(t *testing.T, ns *nstest.Netns, args ...string) *guestProc {
	t.Helper()
	g := &guestProc{args: args, lines: make(chan guestReport, 4), stderr: &e2etest.SyncBuffer{}}
	g.cmd = ns.Command(context.Background(), guestBin, args...)
	g.cmd.Env = append(os.Environ(), guestEnv+"=1")
	g.cmd.Stderr = g.stderr
	var err error
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start guest %v: %v", args, err)
	}
	go func() {
		defer close(g.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r guestReport
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				g.lines <- r
			}
		}
	}()
	t.Cleanup(func() {
		g.stdin.Close()
		g.cmd.Process.Kill()
		g.cmd.Wait()
	})
	return g
}

// ready waits for the action's ready line and returns it.
func (g *guestProc) ready(t *testing.T, timeout time.Duration) guestReport {
	t.Helper()
	select {
	case r, ok := <-g.lines:
		if !ok {
			t.Fatalf("guest %v ended before it was ready; stderr: %s", g.args, g.stderr)
		}
		if !r.Ready {
			t.Fatalf("guest %v finished before it was ready: %+v", g.args, r)
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("guest %v not ready within %v", g.args, timeout)
	}
	return guestReport{}
}

// result closes the action's stdin (which ends a holding action) and waits
// up to timeout for its report.
func (g *guestProc) result(t *testing.T, timeout time.Duration) guestReport {
	t.Helper()
	g.stdin.Close()
	return g.wait(t, timeout)
}

// wait waits up to timeout for the action's report without closing its
// stdin: for an action that ends by itself.
func (g *guestProc) wait(t *testing.T, timeout time.Duration) guestReport {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-g.lines:
			if !ok {
				t.Fatalf("guest %v printed no result; stderr: %s", g.args, g.stderr)
			}
			if !r.Ready {
				return r
			}
		case <-deadline:
			t.Fatalf("guest %v gave no result within %v", g.args, timeout)
		}
	}
}

// kill ends the action at once (SIGKILL).
func (g *guestProc) kill() {
	g.cmd.Process.Kill()
}

// runGuest runs a guest action to the end and returns its report.
func runGuest(t *testing.T, ns *nstest.Netns, timeout time.Duration, args ...string) guestReport {
	t.Helper()
	return startGuest(t, ns, args...).result(t, timeout)
}

// inNetns runs f on a thread inside ns, so the sockets f opens live there.
var inNetns = e2etest.InNetns

// waitFor polls cond every 100 ms for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, timeout, 100*time.Millisecond, what, cond)
}
