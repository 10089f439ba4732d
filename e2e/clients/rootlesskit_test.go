package clients

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// rootlesskit runs as the unprivileged test user, as docker's and
// containerd's rootless modes run it. It needs a subordinate id range
// (it has no single-id fallback), which requireSubuid provides. The
// whole process tree runs in a mount namespace whose /etc/resolv.conf is
// the test's, so both daemons forward DNS to the test server.
type rootlesskitRun struct {
	w     *world
	d     *daemon
	state string
	cmd   *exec.Cmd
	done  chan struct{}
	// childPID is the rootlesskit child, in the namespaces it made.
	childPID int
}

// rootlesskitScenario is one rootlesskit command line.
type rootlesskitScenario struct {
	name, fixture string
	// flags go between the network flags and "--".
	flags []string
	want  probeWant
	// apiUsed says the port driver talks to the daemon's API.
	apiUsed bool
}

// TestRootlesskit runs rootlesskit 1.1 with --net=slirp4netns on slirp
// and on slirp4netns, with both port drivers.
func TestRootlesskit(t *testing.T) {
	w := newWorld(t)
	nstest.RequireTools(t, "rootlesskit", "rootlessctl")
	nstest.RequireNamespaces(t)
	nstest.RequireUnprivilegedTun(t)
	w.requireSubuid()
	version := toolVersion(t, "rootlesskit", "--version")
	w.linkApplets()
	www := w.userDir("www")
	w.writeFile(filepath.Join(www, "index.html"), w.imageToken, 0o644)
	daemons := w.daemons("rk", resolvByLauncher)

	allowed := defaultWant()
	allowed.hostLoopback = true
	for _, sc := range []rootlesskitScenario{
		{
			name: "port_driver_slirp4netns", fixture: "rootlesskit-slirp4netns-driver",
			flags: []string{"--port-driver=slirp4netns", "--disable-host-loopback", "--mtu=65520"},
			want:  defaultWant(), apiUsed: true,
		},
		{
			name: "port_driver_builtin", fixture: "rootlesskit-builtin-driver",
			flags: []string{"--port-driver=builtin", "--mtu=65520"},
			want:  allowed,
		},
	} {
		t.Run(sc.name, func(t *testing.T) {
			caps := map[string]capture{}
			probes := map[string]string{}
			for _, d := range daemons {
				t.Run(d.name, func(t *testing.T) {
					d.reset(t)
					var rk *rootlesskitRun
					defer func() {
						caps[d.name] = d.capture(t)
						if rk != nil {
							rk.stop(t)
						}
						expectGone(t, d, caps[d.name])
					}()
					rk = startRootlesskit(t, w, d, www, sc.flags)
					before := w.dns.asked(w.dns.name)
					r := rk.inChild(w.probeScript(sc.want))
					if r.err != nil {
						t.Fatalf("probe in rootlesskit's namespace: %s", r)
					}
					w.checkProbe(t, r.stdout, sc.want, before)
					probes[d.name] = r.stdout
					rk.checkPorts(t)
					rk.stop(t)
				})
			}
			if t.Failed() {
				return
			}
			desc := "rootlesskit --net=slirp4netns " + strings.Join(sc.flags, " ") + "; rootlessctl add-ports, list-ports, remove-ports"
			if got := len(caps["slirp4netns"].api) > 0; got != sc.apiUsed {
				t.Errorf("%s: API used = %v, want %v", desc, got, sc.apiUsed)
			}
			compareCaptures(t, desc, caps["slirp"], caps["slirp4netns"])
			compareProbes(t, desc, probes["slirp"], probes["slirp4netns"])
			checkFixture(t, sc.fixture, "rootlesskit "+version, desc, caps["slirp4netns"])
		})
	}
}

// toolVersion returns the last word of the first line `name args...`
// prints (e.g. "rootlesskit version 1.1.0" gives "1.1.0").
func toolVersion(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := run(exec.CommandContext(ctx, name, args...))
	if r.err != nil {
		t.Fatalf("%s %v: %s", name, args, r)
	}
	f := strings.Fields(strings.SplitN(r.stdout, "\n", 2)[0])
	if len(f) == 0 {
		t.Fatalf("%s %v printed nothing", name, args)
	}
	return f[len(f)-1]
}

// linkApplets makes w.path("bb"): busybox applets for the probe, which
// runs with the host's files in rootlesskit's namespace.
func (w *world) linkApplets() {
	w.t.Helper()
	dir := w.path("bb")
	if err := os.Mkdir(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	for _, f := range w.imageFiles() {
		if name, ok := strings.CutPrefix(f.Name, "bin/"); ok && f.Linkname == "busybox" {
			if err := os.Symlink("/bin/busybox", filepath.Join(dir, name)); err != nil {
				w.t.Fatal(err)
			}
		}
	}
}

// startRootlesskit starts rootlesskit on d serving www with busybox httpd
// on port 80 of its namespace, and waits until its API answers and the
// tap is configured.
func startRootlesskit(t *testing.T, w *world, d *daemon, www string, flags []string) *rootlesskitRun {
	t.Helper()
	base := w.userDir("rk-" + d.name + "-" + strconv.Itoa(int(time.Now().UnixNano()%1e6)))
	rk := &rootlesskitRun{w: w, d: d, state: filepath.Join(base, "state"), done: make(chan struct{})}
	args := append([]string{"rootlesskit", "--net=slirp4netns", "--slirp4netns-binary=" + d.wrapper}, flags...)
	args = append(args, "--state-dir="+rk.state, "--", "/bin/busybox", "httpd", "-f", "-p", "80", "-h", www)
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + base,
		"XDG_RUNTIME_DIR=" + base}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	rk.cmd = w.inMountns(ctx, env, args...)
	var out strings.Builder
	rk.cmd.Stdout, rk.cmd.Stderr = &out, &out
	rk.cmd.Dir = base
	if err := rk.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		_ = rk.cmd.Wait()
		close(rk.done)
	}()
	t.Cleanup(func() {
		rk.stop(t)
		cancel()
		if t.Failed() {
			t.Logf("rootlesskit output:\n%s", out.String())
		}
	})
	err := eventually(30*time.Second, func() error {
		select {
		case <-rk.done:
			return fmt.Errorf("rootlesskit exited")
		default:
		}
		b, err := os.ReadFile(filepath.Join(rk.state, "child_pid"))
		if err != nil {
			return err
		}
		if rk.childPID, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return err
		}
		if r := rk.ctl("info"); r.err != nil {
			return fmt.Errorf("rootlessctl info: %s", r)
		}
		r := rk.inChild("ip -o -4 addr show dev tap0")
		if !strings.Contains(r.stdout, "inet ") {
			return fmt.Errorf("tap0 not configured yet: %s", r)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("rootlesskit on %s did not come up: %v\n%s", d.name, err, out.String())
	}
	return rk
}

// ctl runs rootlessctl as the test user.
func (rk *rootlesskitRun) ctl(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rootlessctl", append([]string{"--socket", filepath.Join(rk.state, "api.sock")}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: rk.w.credential()}
	return run(cmd)
}

// inChild runs a busybox shell script in the child's network namespace.
func (rk *rootlesskitRun) inChild(script string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return run(exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(rk.childPID), "--net", "--",
		"/usr/bin/env", "PATH="+rk.w.path("bb"), "/bin/busybox", "sh", "-c", script))
}

// checkPorts publishes the child's port 80 with rootlessctl, fetches
// through it, lists it, removes it and sees it gone.
func (rk *rootlesskitRun) checkPorts(t *testing.T) {
	t.Helper()
	port := freePort(t)
	spec := fmt.Sprintf("127.0.0.1:%d:80/tcp", port)
	r := rk.ctl("add-ports", spec)
	if r.err != nil {
		t.Fatalf("rootlessctl add-ports %s: %s", spec, r)
	}
	id := strings.TrimSpace(r.stdout)
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("rootlessctl add-ports printed %q, not a port id", r.stdout)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := eventually(10*time.Second, func() error {
		body, err := httpGet(url)
		if err == nil && body != rk.w.imageToken {
			return fmt.Errorf("got %q, want %q", body, rk.w.imageToken)
		}
		return err
	}); err != nil {
		t.Errorf("published port: %v", err)
	}
	// list-ports prints a table: ID PROTO PARENTIP PARENTPORT CHILDIP CHILDPORT.
	listed := regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+tcp\s+127\.0\.0\.1\s+%d\s+(\S+\s+)?80\s*$`, regexp.QuoteMeta(id), port))
	r = rk.ctl("list-ports")
	if r.err != nil || !listed.MatchString(r.stdout) {
		t.Errorf("rootlessctl list-ports does not show %s: %s", spec, r)
	}
	if r = rk.ctl("remove-ports", id); r.err != nil {
		t.Fatalf("rootlessctl remove-ports %s: %s", id, r)
	}
	if err := eventually(10*time.Second, func() error {
		if _, err := httpGet(url); err == nil {
			return fmt.Errorf("%s still answers", url)
		}
		return nil
	}); err != nil {
		t.Errorf("after remove-ports: %v", err)
	}
	if r = rk.ctl("list-ports"); r.err != nil || listed.MatchString(r.stdout) {
		t.Errorf("rootlessctl list-ports still shows %s: %s", spec, r)
	}
}

// stop ends rootlesskit (SIGTERM, then SIGKILL to its process group) and
// waits for it; rootlesskit kills the daemon when it goes.
func (rk *rootlesskitRun) stop(t *testing.T) {
	select {
	case <-rk.done:
		return
	default:
	}
	_ = rk.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rk.done:
	case <-time.After(10 * time.Second):
		t.Errorf("rootlesskit did not exit within 10s of SIGTERM; killing it")
		_ = syscall.Kill(-rk.cmd.Process.Pid, syscall.SIGKILL)
		<-rk.done
	}
}
