package clients

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/cli"
)

// daemon is one network daemon as the clients see it: a wrapper script
// in a directory of its own, and the logs the wrapper writes there.
type daemon struct {
	// name is "slirp" (ours) or "slirp4netns" (Debian's).
	name string
	// wrapper is the path the client is given in place of slirp4netns.
	wrapper string
	argvLog string
	apiLog  string
	raceDir string
}

// ours says the daemon is this project's.
func (d *daemon) ours() bool { return d.name == "slirp" }

// resolvMode says how a daemon is kept on the test's DNS server.
type resolvMode int

const (
	// resolvByWrapper: slirp gets --resolv-conf=FILE; slirp4netns runs in
	// a private mount namespace with FILE bound over /etc/resolv.conf
	// (the wrapper needs CAP_SYS_ADMIN: podman as root, or podman's own
	// user namespace when rootless).
	resolvByWrapper resolvMode = iota
	// resolvByLauncher: the client already runs in such a mount namespace
	// (world.inMountns), so neither daemon needs anything.
	resolvByLauncher
)

// daemons returns slirp and slirp4netns behind wrappers, in that order.
func (w *world) daemons(tag string, mode resolvMode) []*daemon {
	w.t.Helper()
	var out []*daemon
	for _, name := range []string{"slirp", "slirp4netns"} {
		dir := w.path("d-" + tag + "-" + name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			w.t.Fatal(err)
		}
		d := &daemon{
			name:    name,
			wrapper: filepath.Join(dir, "slirp4netns"),
			argvLog: filepath.Join(dir, "argv.jsonl"),
			apiLog:  filepath.Join(dir, "api.jsonl"),
			raceDir: filepath.Join(dir, "race"),
		}
		// The wrapper runs as root or as the test user (also as root in
		// podman's user namespace, which is the test user outside).
		w.raceDir(d.raceDir)
		cfg := wrapConfig{ArgvLog: d.argvLog, APILog: d.apiLog, Target: slirp4netnsBin}
		if d.ours() {
			cfg.Target = slirpBin
			if raceEnabled {
				cfg.RaceLog = filepath.Join(d.raceDir, "race")
			}
		}
		if mode == resolvByWrapper {
			if d.ours() {
				cfg.Prepend = []string{"--resolv-conf=" + w.resolvConf}
			} else {
				cfg.MountResolvConf = w.resolvConf
			}
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			w.t.Fatal(err)
		}
		cfgPath := filepath.Join(dir, "wrap.json")
		w.writeFile(cfgPath, string(b), 0o644)
		// The wrapper is a -race test binary when the tests are: no
		// sleep at its exit either.
		w.writeFile(d.wrapper, fmt.Sprintf("#!/bin/sh\nexec env %s=%s GORACE=atexit_sleep_ms=0 %s \"$@\"\n",
			wrapEnv, shellQuote(cfgPath), shellQuote(wrapperBin)), 0o755)
		d.reset(w.t)
		out = append(out, d)
	}
	return out
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// reset empties the logs before a scenario. They are writable by anyone,
// as the wrapper may run as the test user.
func (d *daemon) reset(t *testing.T) {
	t.Helper()
	for _, p := range []string{d.argvLog, d.apiLog} {
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
	}
}

// raceDir makes a directory for the race reports of -race binaries that
// run as root or as the test user, and checks it when the test ends: a
// race that the clients provoke fails the test.
func (w *world) raceDir(dir string) {
	t := w.t
	t.Helper()
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if len(b) > 0 {
				t.Errorf("a -race binary reported a data race while serving a client (%s):\n%s", e.Name(), b)
			}
		}
	})
}

// capture is what a client sent to a daemon during one scenario.
type capture struct {
	// calls are the command lines, with per-run values replaced by
	// placeholders (see normalizeArgv).
	calls [][]string
	// raw are the same command lines as given.
	raw [][]string
	// api are the API connections, with host ports replaced.
	api []apiRecord
}

// capture reads the logs of the scenario that just ran.
func (d *daemon) capture(t *testing.T) capture {
	t.Helper()
	calls, err := readJSONLines[argvRecord](d.argvLog)
	if err != nil {
		t.Fatal(err)
	}
	api, err := readJSONLines[apiRecord](d.apiLog)
	if err != nil {
		t.Fatal(err)
	}
	var c capture
	for _, r := range calls {
		c.raw = append(c.raw, r.Argv)
		c.calls = append(c.calls, r.Normalized)
	}
	for _, r := range api {
		r.Request = normalizeHostPort(r.Request)
		r.Reply = normalizeHostPort(r.Reply)
		c.api = append(c.api, r)
	}
	return c
}

// The placeholders of normalized command lines and requests; the fixture
// test puts real values back.
const (
	phNetnsPath = "{{NETNS_PATH}}"
	phUsernsPat = "{{USERNS_PATH}}"
	phAPISocket = "{{API_SOCKET}}"
	phPID       = "{{PID}}"
	phHostPort  = "{{HOST_PORT}}"
)

// normalizeArgv replaces what differs from run to run (the namespace
// paths, the target PID, the API socket path) by placeholders. It runs in
// the wrapper, while the paths still exist (the parser checks that).
func normalizeArgv(args []string) []string {
	c, err := cli.Parse("slirp4netns", args)
	if err != nil || c.Help || c.Version {
		return slices.Clone(args)
	}
	type sub struct{ from, to string }
	var subs []sub
	for _, s := range []sub{{c.NetnsPath, phNetnsPath}, {c.UsernsPath, phUsernsPat}, {c.APISocket, phAPISocket}} {
		if s.from != "" {
			subs = append(subs, s)
		}
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if c.PID > 0 && a == strconv.Itoa(c.PID) {
			out[i] = phPID
			continue
		}
		for _, s := range subs {
			if a == s.from {
				out[i] = s.to
			} else if strings.HasSuffix(a, "="+s.from) {
				out[i] = strings.TrimSuffix(a, s.from) + s.to
			}
		}
	}
	return out
}

var hostPortRE = regexp.MustCompile(`("host_port"\s*:\s*)\d+`)

// normalizeHostPort replaces the host port in a request or reply: the
// test picks it anew on every run.
func normalizeHostPort(s string) string {
	return hostPortRE.ReplaceAllString(s, "${1}"+phHostPort)
}

// documentedReplyDifference says whether our reply differs from
// slirp4netns' only in a way docs/compatibility.md lists as intended, and
// how. list_hostfwd: slirp4netns replies {"entries":[...]}, its manual
// (and upstream test) say {"return":{"entries":[...]}}; slirp gives both,
// with the same entries, so readers of either shape work.
func documentedReplyDifference(req, ours, ref string) (string, bool) {
	if !strings.Contains(req, `"list_hostfwd"`) {
		return "", false
	}
	var o struct {
		Entries json.RawMessage `json:"entries"`
		Return  struct {
			Entries json.RawMessage `json:"entries"`
		} `json:"return"`
	}
	var r struct {
		Entries json.RawMessage `json:"entries"`
	}
	// A normalized reply has a placeholder where the port was.
	ours = strings.ReplaceAll(ours, phHostPort, "0")
	ref = strings.ReplaceAll(ref, phHostPort, "0")
	if json.Unmarshal([]byte(ours), &o) != nil || json.Unmarshal([]byte(ref), &r) != nil {
		return "", false
	}
	if string(o.Entries) != string(r.Entries) || string(o.Return.Entries) != string(r.Entries) {
		return "", false
	}
	return "list_hostfwd: slirp adds return.entries (the shape slirp4netns' manual documents) beside slirp4netns' top-level entries", true
}

// compareCaptures reports where a client sent our daemon something other
// than it sent slirp4netns, or where the replies differ.
func compareCaptures(t *testing.T, scenario string, ours, ref capture) {
	t.Helper()
	if !slices.EqualFunc(ours.calls, ref.calls, slices.Equal) {
		t.Errorf("%s: the client ran slirp with\n  %q\nbut slirp4netns with\n  %q\n(it feature-detects from --help: compare the two --help texts)",
			scenario, ours.calls, ref.calls)
	}
	if len(ours.api) != len(ref.api) {
		t.Errorf("%s: the client made %d API requests to slirp but %d to slirp4netns:\n slirp: %+v\n slirp4netns: %+v",
			scenario, len(ours.api), len(ref.api), ours.api, ref.api)
		return
	}
	for i := range ours.api {
		o, r := ours.api[i], ref.api[i]
		if o.Request != r.Request {
			t.Errorf("%s: API request %d differs: slirp got %q, slirp4netns %q", scenario, i, o.Request, r.Request)
		}
		if why, ok := documentedReplyDifference(o.Request, o.Reply, r.Reply); ok {
			t.Logf("%s: documented difference: %s", scenario, why)
		} else if o.Reply != r.Reply {
			t.Errorf("%s: reply to %q differs: slirp %q, slirp4netns %q", scenario, o.Request, o.Reply, r.Reply)
		}
		if o.Err != "" || r.Err != "" {
			t.Errorf("%s: API relay errors: slirp %q, slirp4netns %q", scenario, o.Err, r.Err)
		}
	}
}

// expectGone checks that every daemon the client started in the scenario
// has exited (the client's exit pipe, or its kill, must end it), waiting
// up to 10 s. A daemon still running is killed and reported.
func expectGone(t *testing.T, d *daemon, c capture) {
	t.Helper()
	var runs [][]string
	for _, argv := range c.raw {
		if !slices.Equal(argv, []string{"--help"}) {
			runs = append(runs, argv)
		}
	}
	if len(runs) == 0 {
		return
	}
	var left []int
	err := eventually(10*time.Second, func() error {
		left = daemonProcesses(runs)
		if len(left) > 0 {
			return fmt.Errorf("still running")
		}
		return nil
	})
	if err == nil {
		return
	}
	for _, pid := range left {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Errorf("%s outlived its client: pid %d %q\n%s", d.name, pid,
			strings.ReplaceAll(string(cmdline), "\x00", " "), diagnose(pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// diagnose describes a daemon that did not exit: its state, its file
// descriptors, which other processes hold the other ends of its pipes
// (an exit pipe whose writer still lives keeps it running, as it should),
// and, for a Go program, its goroutines: SIGQUIT makes it print them to
// its stderr, which the clients send to a log file (podman unlinks it, so
// it is read through /proc/PID/fd/2).
func diagnose(pid int) string {
	var b strings.Builder
	proc := fmt.Sprintf("/proc/%d", pid)
	if st, err := os.ReadFile(proc + "/status"); err == nil {
		for line := range strings.Lines(string(st)) {
			if strings.HasPrefix(line, "State:") || strings.HasPrefix(line, "Threads:") {
				b.WriteString(line)
			}
		}
	}
	fds, _ := os.ReadDir(proc + "/fd")
	for _, e := range fds {
		target, err := os.Readlink(proc + "/fd/" + e.Name())
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "fd %s -> %s", e.Name(), target)
		if strings.HasPrefix(target, "pipe:") {
			fmt.Fprintf(&b, " (also held by %v)", holders(target, pid))
		}
		b.WriteString("\n")
	}
	exe, _ := os.Readlink(proc + "/exe")
	if exe != slirpBin {
		return b.String()
	}
	stderr, err := os.Open(proc + "/fd/2")
	if err != nil {
		return b.String()
	}
	defer stderr.Close()
	if fi, err := stderr.Stat(); err != nil || !fi.Mode().IsRegular() {
		return b.String()
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	_ = eventually(3*time.Second, func() error {
		if _, err := os.Stat(proc); err == nil {
			return fmt.Errorf("running")
		}
		return nil
	})
	log, _ := io.ReadAll(stderr)
	if len(log) > 64<<10 {
		log = log[len(log)-64<<10:]
	}
	fmt.Fprintf(&b, "its stderr after SIGQUIT:\n%s", log)
	return b.String()
}

// holders lists the other processes with an fd on target (e.g. "pipe:[N]").
func holders(target string, except int) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == except {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if t, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); t == target {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				out = append(out, fmt.Sprintf("%d %s", pid, strings.TrimSpace(string(comm))))
				break
			}
		}
	}
	return out
}

// daemonProcesses returns the processes whose command line ends with one
// of runs (the wrapper may have put --resolv-conf or unshare in front).
func daemonProcesses(runs [][]string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		for _, r := range runs {
			if len(argv) > len(r) && slices.Equal(argv[len(argv)-len(r):], r) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
