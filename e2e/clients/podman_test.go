package clients

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
	"golang.org/x/sys/unix"
)

// podmanImage is the busybox image each podman setup imports offline.
const podmanImage = "localhost/slirp-clients:busybox"

// podman is a private podman installation: storage, run and temporary
// directories of its own (vfs storage, so nothing stays mounted), and
// one containers.conf per daemon whose network_cmd_path is that daemon's
// wrapper. What this machine needs, and CI's fresh Debian 12 too: runc
// (Debian's podman prefers crun, which is not installed), cgroupfs (cgroup
// v1 and no systemd), events in a file (no journald), and explicit
// nofile/nproc limits: the machine has no CAP_SYS_RESOURCE, so runc fails
// with "error setting rlimits" when a container asks for more than the
// hard limits it inherits (podman's default nofile is 1048576, and podman
// itself lowers nproc to 32768 before starting conmon). Rootless, the
// test user may have no subuid range: podman then falls back to a
// single-id mapping, which this image (all files root's) is fine with.
type podman struct {
	w        *world
	rootless bool
	dir      string
	version  string
	daemons  []*daemon
	confs    map[*daemon]string
	// netns are the namespace files podman made (root puts them in
	// /run/netns), removed at the end if podman left any.
	netns map[string]bool
}

func newPodman(t *testing.T, w *world, rootless bool) *podman {
	t.Helper()
	nstest.RequireTools(t, "podman", "runc", "conmon")
	tag := "pr"
	if rootless {
		tag = "pu"
	}
	p := &podman{w: w, rootless: rootless, dir: w.path(tag), confs: map[*daemon]string{}, netns: map[string]bool{}}
	mkdir := func(name string, mode os.FileMode) {
		path := filepath.Join(p.dir, name)
		if err := os.MkdirAll(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if rootless {
			if err := os.Chown(path, int(w.uid), int(w.gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []string{"", "root", "runroot", "tmp", "home", "net"} {
		mkdir(d, 0o755)
	}
	mkdir("xdg", 0o700)
	p.writeConf("registries.conf", "unqualified-search-registries = []\nshort-name-mode = \"enforcing\"\n")
	p.writeConf("storage.conf", fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		p.path("root"), p.path("runroot")))
	nofile, nproc := ulimits()
	p.daemons = w.daemons(tag, resolvByWrapper)
	for _, d := range p.daemons {
		name := "containers-" + d.name + ".conf"
		p.writeConf(name, fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]
dns_servers = ["10.0.2.3"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
network_cmd_path = %q

[network]
network_config_dir = %q
`, nofile, nofile, nproc, nproc, d.wrapper, p.path("net")))
		p.confs[d] = p.path(name)
	}
	t.Cleanup(func() { p.cleanup(t) })

	r := p.run(30*time.Second, p.daemons[0], "--version")
	if r.err != nil {
		t.Fatalf("podman --version: %s", r)
	}
	p.version = strings.TrimPrefix(strings.TrimSpace(r.stdout), "podman version ")
	files := w.imageFiles()
	tar, err := imagetest.Tar(files)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := p.path("busybox.tar")
	if err := os.WriteFile(tarPath, tar, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := p.run(60*time.Second, p.daemons[0], "import", tarPath, podmanImage); r.err != nil {
		t.Fatalf("podman import: %s", r)
	}
	return p
}

// ulimits are the nofile and nproc limits containers get: within this
// process's hard limits, which the machine does not let anyone raise.
func ulimits() (nofile, nproc uint64) {
	nofile, nproc = 1024, 4096
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Max < nofile {
		nofile = r.Max
	}
	if syscall.Getrlimit(unix.RLIMIT_NPROC, &r) == nil && r.Max < nproc {
		nproc = r.Max
	}
	return nofile, nproc
}

func (p *podman) path(parts ...string) string {
	return filepath.Join(append([]string{p.dir}, parts...)...)
}

func (p *podman) writeConf(name, content string) {
	p.w.writeFile(p.path(name), content, 0o644)
}

// command is `podman ARGS` with this installation's settings and d's
// containers.conf, as the test user when rootless.
func (p *podman) command(ctx context.Context, d *daemon, args ...string) *exec.Cmd {
	return p.commandConf(ctx, p.confs[d], nil, args...)
}

// commandConf is command with the containers.conf at conf and extra
// global options.
func (p *podman) commandConf(ctx context.Context, conf string, extra []string, args ...string) *exec.Cmd {
	global := append([]string{"--root", p.path("root"), "--runroot", p.path("runroot"),
		"--tmpdir", p.path("tmp"), "--storage-driver", "vfs"}, extra...)
	cmd := exec.CommandContext(ctx, "podman", append(global, args...)...)
	cmd.Dir = p.dir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + p.path("home"),
		"TMPDIR=" + p.path("tmp"),
		"CONTAINERS_CONF=" + conf,
		"CONTAINERS_REGISTRIES_CONF=" + p.path("registries.conf"),
		"CONTAINERS_STORAGE_CONF=" + p.path("storage.conf"),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.rootless {
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+p.path("xdg"),
			"XDG_CONFIG_HOME="+p.path("home", ".config"), "XDG_DATA_HOME="+p.path("home", ".local", "share"))
		cmd.SysProcAttr.Credential = p.w.credential()
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

func (p *podman) run(limit time.Duration, d *daemon, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return run(p.command(ctx, d, args...))
}

// noteNetns remembers the namespace files podman gave the daemon.
func (p *podman) noteNetns(c capture) {
	for _, argv := range c.raw {
		for _, a := range argv {
			if strings.HasPrefix(a, "/run/netns/") {
				p.netns[a] = true
			}
		}
	}
}

// cleanup removes every container, stops the rootless pause process
// (which keeps podman's user namespace), and undoes what podman may have
// left mounted; world's cleanup then removes the directory.
func (p *podman) cleanup(t *testing.T) {
	if r := p.run(60*time.Second, p.daemons[0], "rm", "--all", "--force", "--time", "0"); r.err != nil {
		t.Logf("podman rm --all: %s", r)
	}
	// conmon runs `podman container cleanup` when a container exits, on
	// its own, possibly after `podman run` has returned: wait for every
	// process that works on this installation before removing it.
	if err := eventually(30*time.Second, func() error {
		if pids := processesMentioning(p.dir); len(pids) > 0 {
			return fmt.Errorf("processes %v still use %s", pids, p.dir)
		}
		return nil
	}); err != nil {
		t.Errorf("%v; killing them", err)
		for _, pid := range processesMentioning(p.dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if p.rootless {
		_ = filepath.WalkDir(p.dir, func(path string, e os.DirEntry, err error) error {
			if err != nil || e.Name() != "pause.pid" {
				return nil
			}
			b, _ := os.ReadFile(path)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && processUID(pid) == int(p.w.uid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return nil
		})
	}
	for _, m := range mountsUnder(p.dir) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	for ns := range p.netns {
		if _, err := os.Stat(ns); err == nil {
			t.Logf("podman left %s behind; removing it", ns)
			_ = unix.Unmount(ns, unix.MNT_DETACH)
			_ = os.Remove(ns)
		}
	}
}

// processesMentioning returns the processes whose command line contains
// s, this one aside.
func processesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processUID returns the real uid of pid, or -1.
func processUID(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				uid, _ := strconv.Atoi(f[0])
				return uid
			}
		}
	}
	return -1
}

// mountsUnder lists this mount namespace's mount points below dir, deepest
// first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append([]string{f[4]}, out...)
		}
	}
	return out
}

// podmanScenario is one way of running a container.
type podmanScenario struct {
	name string
	// fixture names the testdata file of what podman sent ("" = none).
	fixture string
	// network is the --network value, dns the --dns value.
	network, dns string
	want         probeWant
	// publish runs a web server in the container and publishes it
	// instead of running the probe.
	publish bool
	// cmdPathFlag picks the daemon with podman's --network-cmd-path,
	// under the containers.conf that names the other daemon: the flag
	// must win.
	cmdPathFlag bool
}

// TestPodman runs podman 4.3 as root on slirp and on slirp4netns.
func TestPodman(t *testing.T) {
	w := newWorld(t)
	p := newPodman(t, w, false)
	allowed := defaultWant()
	allowed.hostLoopback = true
	v6 := allowed
	v6.ipv6 = true
	v6off := allowed
	v6off.noIPv6 = true
	mtu := defaultWant()
	mtu.mtu = 1500
	cidr := probeWant{addr: "10.0.3.100/24", gw: "10.0.3.2", dns: "10.0.3.3", mtu: 65520, hostLoopback: true}
	outbound := allowed
	outbound.outbound = "127.0.0.2"
	p.runScenarios(t, []podmanScenario{
		{name: "default", fixture: "podman-default", network: "slirp4netns", want: defaultWant()},
		{name: "allow_host_loopback", fixture: "podman-allow-host-loopback", network: "slirp4netns:allow_host_loopback=true", want: allowed},
		{name: "network_cmd_path_flag", network: "slirp4netns", want: defaultWant(), cmdPathFlag: true},
		{name: "enable_ipv6", network: "slirp4netns:enable_ipv6=true,allow_host_loopback=true", want: v6},
		{name: "ipv6_off", fixture: "podman-ipv6-off", network: "slirp4netns:enable_ipv6=false,allow_host_loopback=true", want: v6off},
		{name: "mtu", fixture: "podman-mtu", network: "slirp4netns:mtu=1500", want: mtu},
		{name: "cidr", fixture: "podman-cidr", network: "slirp4netns:cidr=10.0.3.0/24,allow_host_loopback=true", dns: "10.0.3.3", want: cidr},
		{name: "outbound_addr", fixture: "podman-outbound-addr", network: "slirp4netns:outbound_addr=127.0.0.2,allow_host_loopback=true", want: outbound},
		{name: "port_handler_slirp4netns", fixture: "podman-port-slirp4netns", network: "slirp4netns:port_handler=slirp4netns", publish: true},
		{name: "port_handler_default", fixture: "podman-port-rootlessport", network: "slirp4netns", publish: true},
	})
}

// TestPodmanRootless runs podman as the unprivileged test user.
func TestPodmanRootless(t *testing.T) {
	w := newWorld(t)
	nstest.RequireNamespaces(t)
	nstest.RequireUnprivilegedTun(t)
	p := newPodman(t, w, true)
	allowed := defaultWant()
	allowed.hostLoopback = true
	p.runScenarios(t, []podmanScenario{
		{name: "default", fixture: "podman-rootless-default", network: "slirp4netns", want: defaultWant()},
		{name: "allow_host_loopback", network: "slirp4netns:allow_host_loopback=true", want: allowed},
		{name: "port_handler_slirp4netns", fixture: "podman-rootless-port", network: "slirp4netns:port_handler=slirp4netns", publish: true},
		{name: "port_handler_default", network: "slirp4netns", publish: true},
	})
}

// runScenarios runs each scenario on both daemons, then compares what
// podman sent them and checks the fixture.
func (p *podman) runScenarios(t *testing.T, scenarios []podmanScenario) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			caps := map[string]capture{}
			probes := map[string]string{}
			for _, d := range p.daemons {
				t.Run(d.name, func(t *testing.T) {
					d.reset(t)
					defer func() {
						caps[d.name] = d.capture(t)
						p.noteNetns(caps[d.name])
						expectGone(t, d, caps[d.name])
					}()
					if sc.publish {
						p.publish(t, d, sc)
					} else {
						probes[d.name] = p.probe(t, d, sc)
					}
				})
			}
			desc := "podman run --network " + sc.network
			if sc.cmdPathFlag {
				desc = "podman --network-cmd-path=DAEMON run --network " + sc.network
			}
			if sc.publish {
				desc += " -p 127.0.0.1:PORT:80"
			}
			if t.Failed() {
				return
			}
			compareCaptures(t, desc, caps["slirp"], caps["slirp4netns"])
			if !sc.publish {
				compareProbes(t, desc, probes["slirp"], probes["slirp4netns"])
			}
			if sc.fixture != "" {
				checkFixture(t, sc.fixture, "podman "+p.version, desc, caps["slirp4netns"])
			}
		})
	}
}

// probe runs the probe script in a container and returns its report.
func (p *podman) probe(t *testing.T, d *daemon, sc podmanScenario) string {
	dnsArg := sc.dns
	if dnsArg == "" {
		dnsArg = sc.want.dns
	}
	before := p.w.dns.asked(p.w.dns.name)
	conf, extra := p.confs[d], []string(nil)
	if sc.cmdPathFlag {
		for _, other := range p.daemons {
			if other != d {
				conf = p.confs[other]
			}
		}
		extra = []string{"--network-cmd-path", d.wrapper}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r := run(p.commandConf(ctx, conf, extra, "run", "--rm", "--pull=never", "--dns="+dnsArg,
		"--network", sc.network, podmanImage, "sh", "-c", p.w.probeScript(sc.want)))
	if r.err != nil {
		t.Fatalf("podman run on %s: %s", d.name, r)
	}
	p.w.checkProbe(t, r.stdout, sc.want, before)
	if c := d.capture(t); len(c.calls) == 0 {
		t.Errorf("podman did not run %s (%s)", d.wrapper, strings.Join(extra, " "))
	}
	return r.stdout
}

// publish runs busybox httpd in a detached container with -p and fetches
// the image's page through the published port from the host.
func (p *podman) publish(t *testing.T, d *daemon, sc podmanScenario) {
	port := freePort(t)
	r := p.run(90*time.Second, d, "run", "-d", "--pull=never", "--dns=10.0.2.3", "--network", sc.network,
		"-p", fmt.Sprintf("127.0.0.1:%d:80", port), podmanImage, "httpd", "-f", "-p", "80", "-h", "/www")
	if r.err != nil {
		t.Fatalf("podman run -d -p on %s: %s", d.name, r)
	}
	id := strings.TrimSpace(r.stdout)
	defer func() {
		if r := p.run(60*time.Second, d, "rm", "--force", "--time", "0", id); r.err != nil {
			t.Errorf("podman rm: %s", r)
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var body string
	err := eventually(20*time.Second, func() error {
		var err error
		body, err = httpGet(url)
		if err == nil && body != p.w.imageToken {
			err = fmt.Errorf("got %q, want the image's %q", body, p.w.imageToken)
		}
		return err
	})
	if err != nil {
		logs := p.run(30*time.Second, d, "logs", id)
		t.Fatalf("published port on %s: %v\ncontainer logs: %s", d.name, err, logs)
	}
}
