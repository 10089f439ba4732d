package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
)

// TestE2EExitCodes: the command's status is slirprun's, 128+N for a
// signal, 126/127 when the command cannot run, 125 for launcher errors.
func TestE2EExitCodes(t *testing.T) {
	e := newEnv(t)
	root := e.busyboxTree("root")
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"exit 7", []string{"sh", "-c", "exit 7"}, 7},
		{"success", []string{"true"}, 0},
		{"killed by signal (with --init)", []string{"--init", "sh", "-c", "kill -TERM $$; sleep 5"}, 143},
		{"not found", []string{"no-such-command"}, 127},
		{"not executable", []string{"/etc/passwd"}, 126},
		{"bad option", []string{"--network=bogus", "true"}, 125},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--network=none", "--rootfs", root}, tc.args...)
			r := e.run(args...)
			if r.code != tc.want {
				t.Fatalf("exit code %d, want %d\n%s", r.code, tc.want, r)
			}
		})
	}
}

// TestE2ESignals: SIGTERM, SIGINT and SIGHUP sent to slirprun reach the
// container's command.
func TestE2ESignals(t *testing.T) {
	e := newEnv(t)
	root := e.busyboxTree("root")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			// PID 1 ignores signals it has no handler for, so the
			// script traps it; "ready" says the trap is in place.
			s := e.start("--network=none", "--rootfs", root, "sh", "-c",
				fmt.Sprintf(`trap "echo got; exit 42" %d; echo ready; while :; do sleep 0.1; done`, int(sig)))
			s.waitLine(t, "ready")
			if err := s.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := s.wait(t); code != 42 {
				t.Fatalf("exit code %d after %v, want 42 (trap ran); stderr: %s", code, sig, s.stderr)
			}
		})
	}
	t.Run("init forwards and reports 128+N", func(t *testing.T) {
		s := e.start("--network=none", "--init", "--rootfs", root, "sh", "-c", "echo ready; exec sleep 60")
		s.waitLine(t, "ready")
		// Whether the signal reaches sh or the sleep it became, the
		// command dies of SIGTERM.
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := s.wait(t); code != 143 {
			t.Fatalf("exit code %d, want 143 (sleep killed by SIGTERM); stderr: %s", code, s.stderr)
		}
	})
}

// TestE2EContainerBasics: namespaces, /proc, /dev, /sys, hostname,
// generated files, environment, working directory, volumes, read-only.
func TestE2EContainerBasics(t *testing.T) {
	e := newEnv(t)
	root := e.busyboxTree("root")
	vol := e.path("vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "in"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envFile := e.path("env.list")
	if err := os.WriteFile(envFile, []byte("# comment\nFROM_FILE=file value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.chownAll(vol)

	out := e.mustRun("--network=none", "--rootfs", root, "--hostname", "box",
		"-e", "A=1", "--env-file", envFile, "-w", "/work", "-v", vol+":/data", "-v", vol+":/rodata:ro",
		"sh", "-c", `echo pid=$$; echo uid=$(id -u); echo host=$(hostname); echo pwd=$(pwd); echo A=$A; echo F=$FROM_FILE;
cat /data/in; echo written > /data/out; echo rw=$?; touch /rodata/x 2>/dev/null; echo ro=$?;
ls /dev | tr '\n' ' '; echo; grep -c . /proc/self/uid_map; cat /proc/self/uid_map;
touch /sys/x 2>/dev/null; echo sys=$?; cat /etc/resolv.conf; grep host.containers.internal /etc/hosts; cat /etc/hostname`)
	for _, want := range []string{
		"pid=1", "uid=0", "host=box", "pwd=/work", "A=1", "F=file value", "from-host", "rw=0", "ro=1",
		"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "sys=1",
		"# no network", "box\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`(?m)^\s*0\s+(\d+)\s+1$`).FindStringSubmatch(out); m == nil || m[1] != fmt.Sprint(e.uid) {
		t.Errorf("uid_map should map 0 to %d only:\n%s", e.uid, out)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("write through volume: %q, %v", b, err)
	}

	t.Run("default hostname is the short id", func(t *testing.T) {
		out := e.mustRun("--network=none", "--rootfs", root, "hostname")
		if !regexp.MustCompile(`^[0-9a-f]{12}\n$`).MatchString(out) {
			t.Fatalf("hostname %q, want 12 hex digits", out)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		r := e.run("--network=none", "--read-only", "--rootfs", root, "sh", "-c", "touch /x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-writable")
		if strings.Contains(r.stdout, "root-writable") || !strings.Contains(r.stdout, "tmp-writable") {
			t.Fatalf("--read-only: %s", r)
		}
	})
	t.Run("host root read-only", func(t *testing.T) {
		r := e.run("--network=none", "sh", "-c", "test -x /bin/busybox && echo host-fs; touch /usr/x 2>/dev/null && echo usr-writable; echo pid=$$")
		if r.code != 0 || !strings.Contains(r.stdout, "host-fs") || strings.Contains(r.stdout, "usr-writable") || !strings.Contains(r.stdout, "pid=1") {
			t.Fatalf("host root: %s", r)
		}
	})
}

// TestE2EHardening: no_new_privs, the reduced capability set and the
// seccomp filter are on by default.
func TestE2EHardening(t *testing.T) {
	e := newEnv(t)
	root := e.busyboxTree("root")
	out := e.mustRun("--network=none", "--rootfs", root, "sh", "-c",
		`grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff):' /proc/self/status; unshare -r true 2>/dev/null; echo unshare=$?; mount -t tmpfs t /mnt 2>/dev/null; echo mount=$?`)
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "CapBnd:\t00000000800405fb", "unshare=1", "mount=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out = e.mustRun("--network=none", "--rootfs", root, "--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN", "sh", "-c",
		`grep -E '^Seccomp:' /proc/self/status; unshare -r true; echo unshare=$?`)
	if !strings.Contains(out, "Seccomp:\t0") || !strings.Contains(out, "unshare=0") {
		t.Errorf("with seccomp=unconfined and SYS_ADMIN:\n%s", out)
	}
}

// twoLayerImage is a busybox image whose second layer deletes a file with
// a whiteout and replaces a directory's content with an opaque whiteout.
func twoLayerImage(t *testing.T, c1, c2 string) imagetest.Image {
	t.Helper()
	base, err := imagetest.Busybox(applets...)
	if err != nil {
		t.Skip(err)
	}
	owned := imagetest.Reg("home/user/mine", "user file\n")
	owned.UID, owned.GID = 1000, 1000
	l1 := append(base,
		imagetest.Reg("bin/old-tool", "#!/bin/sh\necho old\n"),
		imagetest.Dir("etc/conf.d"), imagetest.Reg("etc/conf.d/a", "a\n"), imagetest.Reg("etc/conf.d/b", "b\n"),
		imagetest.Dir("home"), imagetest.Dir("home/user"), owned,
		imagetest.Reg("srv/kept", "kept\n"), imagetest.Hardlink("srv/kept-link", "srv/kept"),
		imagetest.Reg("www/index.html", "hello from the image\n"),
	)
	l2 := []imagetest.File{
		imagetest.Whiteout("bin", "old-tool"),
		imagetest.Opaque("etc/conf.d"), imagetest.Reg("etc/conf.d/c", "c\n"),
		imagetest.Reg("srv/new", "new\n"), imagetest.Hardlink("srv/kept-copy", "srv/kept"),
	}
	return imagetest.Image{
		Layers: []imagetest.Layer{{Files: l1, Compression: c1}, {Files: l2, Compression: c2}},
		Config: v1.ImageConfig{
			Env:        []string{"PATH=/bin", "FROM_IMAGE=yes"},
			Entrypoint: []string{"/bin/sh", "-c"},
			Cmd:        []string{"echo default-cmd; pwd"},
			WorkingDir: "/srv",
		},
		Tag: "v1",
	}
}

// TestE2EImage: an image with two layers and whiteouts, as an OCI layout
// (gzip + zstd) and as a skopeo dir: folder (docker media types, plain +
// gzip); the config's Env, Entrypoint, Cmd and WorkingDir are honoured; a
// second run reuses the layer cache.
func TestE2EImage(t *testing.T) {
	e := newEnv(t)
	oci := e.path("oci")
	other := twoLayerImage(t, "", "")
	other.Tag = "other"
	other.Config.Cmd = []string{"echo other-image"}
	if err := imagetest.WriteOCI(oci, twoLayerImage(t, "gzip", "zstd"), other); err != nil {
		t.Fatal(err)
	}
	skopeo := e.path("skopeo")
	if err := imagetest.WriteSkopeoDir(skopeo, twoLayerImage(t, "", "gzip"), true); err != nil {
		t.Fatal(err)
	}
	e.chownAll(oci)
	e.chownAll(skopeo)

	const script = `ls /bin/old-tool 2>&1; echo conf=$(ls /etc/conf.d | tr '\n' ' '); cat /srv/kept /srv/kept-link /srv/kept-copy /srv/new;
echo env=$FROM_IMAGE; pwd; rm /srv/kept && echo removed-lower; mkdir /etc/conf.d/sub && echo mkdir-ok; ls -ln /home/user/mine`
	for _, tc := range []struct{ name, ref string }{
		{"oci layout", oci + ":v1"},
		{"skopeo dir", skopeo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := e.mustRun("--network=none", "--image", tc.ref, script)
			for _, want := range []string{
				"/bin/old-tool: No such file or directory", "conf=c\n", "kept\nkept\nkept\nnew\n",
				"env=yes", "/srv\n", "removed-lower", "mkdir-ok",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			// Single mapping: the file owned by 1000 in the image is
			// owned by root (the only mapped id).
			if !regexp.MustCompile(`-rw-r--r--\s+1 0\s+0 .*mine`).MatchString(out) {
				t.Errorf("owner of /home/user/mine under the single mapping:\n%s", out)
			}
		})
	}

	t.Run("image defaults and tag choice", func(t *testing.T) {
		out := e.mustRun("--network=none", "--image", oci+":v1")
		if out != "default-cmd\n/srv\n" {
			t.Errorf("default command output %q", out)
		}
		out = e.mustRun("--network=none", "--image", oci+":other")
		if out != "other-image\n" {
			t.Errorf("tag other: %q", out)
		}
		r := e.run("--network=none", "--image", oci, "true")
		if r.code != 125 || !strings.Contains(r.stderr, "name one with PATH:TAG") {
			t.Errorf("untagged ref to a two-image layout: %s", r)
		}
	})

	t.Run("layer cache is reused", func(t *testing.T) {
		before := cacheInodes(t, e.path("cache"))
		if len(before) == 0 {
			t.Fatal("no unpacked layers in the cache")
		}
		e.mustRun("--network=none", "--image", oci+":v1", "true")
		after := cacheInodes(t, e.path("cache"))
		for p, ino := range before {
			if after[p] != ino {
				t.Errorf("layer %s was unpacked again", p)
			}
		}
		if len(after) != len(before) {
			t.Errorf("cache grew from %d to %d layers on a second run", len(before), len(after))
		}
	})
}

// cacheInodes maps every unpacked layer directory to its inode.
func cacheInodes(t *testing.T, cache string) map[string]uint64 {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(cache, "layers", "*", "sha256", "*"))
	out := map[string]uint64{}
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		out[d] = st.Sys().(*syscall.Stat_t).Ino
	}
	return out
}

// TestE2ESubuid: --userns=subuid maps the caller's /etc/subuid range, so
// image files keep their owners and --user works.
func TestE2ESubuid(t *testing.T) {
	e := newEnv(t)
	e.requireSubuid()
	oci := e.path("oci")
	if err := imagetest.WriteOCI(oci, twoLayerImage(t, "gzip", "")); err != nil {
		t.Fatal(err)
	}
	e.chownAll(oci)
	out := e.mustRun("--network=none", "--userns=subuid", "--image", oci, "cat /proc/self/uid_map; ls -ln /home/user/mine; id")
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s*1\s+%d\s+%d$`, e2etest.SubuidStart, e2etest.SubuidCount)).MatchString(out) {
		t.Errorf("uid_map lacks the subordinate range:\n%s", out)
	}
	if !regexp.MustCompile(`1000\s+1000 .*mine`).MatchString(out) {
		t.Errorf("image file owned by 1000 lost its owner:\n%s", out)
	}
	out = e.mustRun("--network=none", "--userns=subuid", "--user", "user", "--image", oci, "id; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status")
	for _, want := range []string{"uid=1000(user) gid=1000(user)", "extra", "CapEff:\t0000000000000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("--user user: output lacks %q:\n%s", want, out)
		}
	}
	r := e.run("--network=none", "--user", "1000", "--image", oci, "id")
	if r.code != 125 || !strings.Contains(r.stderr, "--userns=subuid") {
		t.Errorf("--user 1000 without subuid should fail pointing at --userns=subuid: %s", r)
	}
}

// TestE2ESubuidMissing: a clear error names what is missing.
func TestE2ESubuidMissing(t *testing.T) {
	e := newEnv(t)
	b, _ := os.ReadFile("/etc/subuid")
	if strings.Contains(string(b), nstest.TestUser+":") {
		t.Skip("the test user has a subuid range here")
	}
	r := e.run("--network=none", "--userns=subuid", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "no entry for user") || !strings.Contains(r.stderr, "/etc/subuid") {
		t.Fatalf("want an error naming the missing /etc/subuid entry: %s", r)
	}
}

// hostServer serves body on 127.0.0.1 and returns the port.
func hostServer(t *testing.T, body string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// TestE2EHostLoopback: with --allow-host-loopback the container reaches a
// host loopback service as host.containers.internal; without it, it cannot.
func TestE2EHostLoopback(t *testing.T) {
	e := newEnv(t)
	nstest.RequireUnprivilegedTun(t)
	root := e.busyboxTree("root")
	port := hostServer(t, "hello from the host\n")
	url := fmt.Sprintf("http://host.containers.internal:%d/", port)
	out := e.mustRun("--allow-host-loopback", "--rootfs", root, "sh", "-c", "cat /etc/resolv.conf /etc/hosts; wget -q -O- "+url)
	for _, want := range []string{"nameserver 10.0.2.3", "10.0.2.2\thost.containers.internal", "hello from the host\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	r := e.run("--rootfs", root, "sh", "-c", fmt.Sprintf("nc -w 3 host.containers.internal %d </dev/null; echo nc=$?", port))
	if !strings.Contains(r.stdout, "nc=1") || !strings.Contains(r.stderr, "Network is unreachable") {
		t.Fatalf("host loopback should be unreachable by default: %s", r)
	}
}

// TestE2EPublishDetached: -d -p 18080:80 serves a file from busybox httpd
// to the host; ps, port, logs, stop and rm work on it.
func TestE2EPublishDetached(t *testing.T) {
	e := newEnv(t)
	nstest.RequireUnprivilegedTun(t)
	root := e.busyboxTree("root", imagetest.Reg("www/index.html", "served from the container\n"))
	id := strings.TrimSpace(e.mustRun("-d", "--name", "web", "-p", "18080:80", "--rootfs", root,
		"sh", "-c", "echo starting httpd; exec httpd -f -p 80 -h /www"))
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("-d printed %q, want a container id", id)
	}
	t.Cleanup(func() { e.run("rm", "-f", id) })
	body := httpGet(t, "http://127.0.0.1:18080/index.html")
	if body != "served from the container\n" {
		t.Fatalf("GET through the published port: %q", body)
	}
	if out := e.mustRun("port", "web"); strings.TrimSpace(out) != "80/tcp -> 0.0.0.0:18080" {
		t.Errorf("port: %q", out)
	}
	if out := e.mustRun("ps"); !strings.Contains(out, id) || !strings.Contains(out, "Up") || !strings.Contains(out, "18080:80/tcp") {
		t.Errorf("ps:\n%s", out)
	}
	if out := e.mustRun("logs", id); !strings.Contains(out, "starting httpd") {
		t.Errorf("logs: %q", out)
	}
	e.mustRun("stop", "-t", "2", id)
	out := e.mustRun("ps", "-a")
	if !strings.Contains(out, id) || !strings.Contains(out, "Exited") {
		t.Errorf("ps -a after stop:\n%s", out)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:18080", time.Second); err == nil {
		t.Errorf("port 18080 still open after stop")
	}
	e.mustRun("rm", id)
	if out := e.mustRun("ps", "-a"); strings.Contains(out, id) {
		t.Errorf("ps -a after rm still lists %s", id)
	}
}

// httpGet retries a GET for up to 20 s while the server comes up.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == 200 {
				return string(b)
			}
			err = fmt.Errorf("status %s, read %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestE2EPod: two containers of one pod talk over 127.0.0.1, and the pod
// goes away with its last member.
func TestE2EPod(t *testing.T) {
	e := newEnv(t)
	nstest.RequireUnprivilegedTun(t)
	root := e.busyboxTree("root", imagetest.Reg("www/index.html", "hello from the sidecar\n"))
	server := e.start("--pod", "p1", "--rootfs", root, "sh", "-c", "echo up; exec httpd -f -p 127.0.0.1:8080 -h /www")
	server.waitLine(t, "up")
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := e.run("--pod", "p1", "--rootfs", root, "sh", "-c", "wget -q -O- http://127.0.0.1:8080/index.html; echo host=$(hostname)")
		out = r.stdout
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, "hello from the sidecar") || !strings.Contains(out, "host=p1") {
		t.Fatalf("second pod member over 127.0.0.1: %q", out)
	}
	if err := server.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	server.wait(t)
	deadline = time.Now().Add(15 * time.Second)
	for {
		ents, _ := os.ReadDir(e.path("state", "pods"))
		if len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod state left after its last member: %v", ents)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestE2EKill9: killing slirprun with SIGKILL leaves no container, daemon
// or state directory behind (checked by newEnv's cleanup).
func TestE2EKill9(t *testing.T) {
	e := newEnv(t)
	nstest.RequireUnprivilegedTun(t)
	root := e.busyboxTree("root")
	s := e.start("-p", "18081:80", "--rootfs", root, "sh", "-c", "echo up; sleep 60")
	s.waitLine(t, "up")
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.wait(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ents, _ := os.ReadDir(e.path("state", "containers"))
		if len(ents) == 0 && len(e.leakedProcesses()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after kill -9: state %v, processes %v", ents, e.leakedProcesses())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:18081", time.Second); err == nil {
		c.Close()
		t.Errorf("published port still open after kill -9")
	}
}

// TestE2EInitReaps: with --init, orphans are reaped instead of left as
// zombies.
func TestE2EInitReaps(t *testing.T) {
	e := newEnv(t)
	root := e.busyboxTree("root")
	out := e.mustRun("--network=none", "--init", "--rootfs", root, "sh", "-c",
		`sh -c 'sleep 0.2 & exit 0'; sleep 1; echo zombies=$(ps -o stat | grep -c '^Z')`)
	if !strings.Contains(out, "zombies=0") {
		t.Fatalf("--init left zombies: %s", out)
	}
}

// openPTY opens a pseudo-terminal pair for the test (the slave plays the
// user's terminal).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestE2ETTY: -t gives the command a terminal of its own with the
// caller's window size.
func TestE2ETTY(t *testing.T) {
	e := newEnv(t)
	root := e.busyboxTree("root")
	master, slave := openPTY(t)
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := e.command(ctx, "-t", "--network=none", "--rootfs", root, "sh", "-c", "tty; stty size; echo TERM=$TERM")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	out, _ := io.ReadAll(master) // ends with EIO when slirprun exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("slirprun -t: %v\n%s", err, out)
	}
	for _, want := range []string{"/dev/pts/0", "33 111", "TERM=xterm"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
