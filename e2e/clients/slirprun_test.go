package clients

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
)

// TestSlirprun runs the podman scenarios with slirprun, the project's own
// launcher, as the unprivileged test user: the same image (as an OCI
// layout), the same probe, on slirp and on slirp4netns (slirprun's
// --slirp-binary takes either). Like rootlesskit it runs in a mount
// namespace whose /etc/resolv.conf is the test's.
func TestSlirprun(t *testing.T) {
	w := newWorld(t)
	nstest.RequireNamespaces(t)
	nstest.RequireUnprivilegedTun(t)
	oci := w.path("oci")
	img := imagetest.Image{Layers: []imagetest.Layer{{Files: w.imageFiles(), Compression: "gzip"}}, Tag: "latest"}
	if err := imagetest.WriteOCI(oci, img); err != nil {
		t.Fatal(err)
	}
	w.chownAll(oci)
	daemons := w.daemons("sr", resolvByLauncher)
	home := w.userDir("srh")
	races := w.path("race-slirprun")
	w.raceDir(races)

	allowed := defaultWant()
	allowed.hostLoopback = true
	v6 := allowed
	v6.ipv6 = true
	scenarios := []struct {
		name, fixture string
		flags         []string
		want          probeWant
		publish       bool
	}{
		{name: "default", fixture: "slirprun-default", want: defaultWant()},
		{name: "allow_host_loopback", flags: []string{"--allow-host-loopback"}, want: allowed},
		{name: "ipv6", flags: []string{"-6", "--allow-host-loopback"}, want: v6},
		{name: "publish", fixture: "slirprun-port", publish: true},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			caps := map[string]capture{}
			probes := map[string]string{}
			for _, d := range daemons {
				t.Run(d.name, func(t *testing.T) {
					d.reset(t)
					defer func() {
						caps[d.name] = d.capture(t)
						expectGone(t, d, caps[d.name])
					}()
					sr := slirprun{w: w, d: d, home: home, races: races}
					if sc.publish {
						sr.publish(t, oci)
						return
					}
					before := w.dns.asked(w.dns.name)
					args := append([]string{"--image", oci}, sc.flags...)
					r := sr.run(90*time.Second, append(args, "--", "sh", "-c", w.probeScript(sc.want))...)
					if r.err != nil {
						t.Fatalf("slirprun on %s: %s", d.name, r)
					}
					w.checkProbe(t, r.stdout, sc.want, before)
					probes[d.name] = r.stdout
				})
			}
			if t.Failed() {
				return
			}
			desc := "slirprun " + strings.Join(sc.flags, " ")
			if sc.publish {
				desc = "slirprun -d -p 127.0.0.1:PORT:80; slirprun port; slirprun stop"
			}
			compareCaptures(t, desc, caps["slirp"], caps["slirp4netns"])
			if !sc.publish {
				compareProbes(t, desc, probes["slirp"], probes["slirp4netns"])
			}
			if sc.fixture != "" {
				checkFixture(t, sc.fixture, "slirprun (this tree)", desc, caps["slirp4netns"])
			}
		})
	}
}

// slirprun runs the launcher as the test user with d as its daemon.
type slirprun struct {
	w    *world
	d    *daemon
	home string
	// races is the directory for race reports of a -race slirprun.
	races string
}

func (s slirprun) run(limit time.Duration, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + s.home,
		"SLIRPRUN_STATE=" + s.home + "/st",
		"SLIRPRUN_CACHE=" + s.home + "/cache",
	}
	if raceEnabled {
		env = append(env, raceEnv(filepath.Join(s.races, "race")))
	}
	// Options must precede the command; subcommands (port, rm) take none.
	if len(args) > 0 && !isSubcommand(args[0]) {
		args = append([]string{"--slirp-binary", s.d.wrapper}, args...)
	}
	cmd := s.w.inMountns(ctx, env, append([]string{slirprunBin}, args...)...)
	cmd.Dir = s.home
	return run(cmd)
}

func isSubcommand(s string) bool {
	switch s {
	case "ps", "logs", "stop", "rm", "port":
		return true
	}
	return false
}

// publish runs busybox httpd detached with -p, fetches the image's page
// through the port, checks `slirprun port`, and removes the container.
func (s slirprun) publish(t *testing.T, oci string) {
	t.Helper()
	port := freePort(t)
	r := s.run(90*time.Second, "-d", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--image", oci,
		"--", "httpd", "-f", "-p", "80", "-h", "/www")
	if r.err != nil {
		t.Fatalf("slirprun -d -p on %s: %s", s.d.name, r)
	}
	id := strings.TrimSpace(r.stdout)
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("slirprun -d printed %q, want a container id", r.stdout)
	}
	removed := false
	defer func() {
		if !removed {
			s.run(60*time.Second, "stop", "-t", "1", id)
			s.run(60*time.Second, "rm", "-f", id)
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := eventually(20*time.Second, func() error {
		body, err := httpGet(url)
		if err == nil && body != s.w.imageToken {
			return fmt.Errorf("got %q, want %q", body, s.w.imageToken)
		}
		return err
	}); err != nil {
		logs := s.run(30*time.Second, "logs", id)
		t.Fatalf("published port on %s: %v\nlogs: %s", s.d.name, err, logs)
	}
	if r := s.run(30*time.Second, "port", id); r.err != nil || strings.TrimSpace(r.stdout) != fmt.Sprintf("80/tcp -> 127.0.0.1:%d", port) {
		t.Errorf("slirprun port: %s", r)
	}
	// httpd is PID 1 and ignores SIGTERM, so stop kills it after -t
	// seconds (slirprun reads -t 0 as its default, 10).
	if r := s.run(60*time.Second, "stop", "-t", "1", id); r.err != nil {
		t.Errorf("slirprun stop: %s", r)
	}
	if r := s.run(60*time.Second, "rm", id); r.err != nil {
		t.Errorf("slirprun rm: %s", r)
	}
	removed = true
	if err := eventually(10*time.Second, func() error {
		if _, err := httpGet(url); err == nil {
			return fmt.Errorf("%s still answers after stop", url)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
