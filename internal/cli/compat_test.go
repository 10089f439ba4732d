package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// These tests run the real slirp4netns 1.2.0 side by side with Parse on
// command lines it rejects before it forks (and on --help), and compare
// stdout, stderr and the exit status.

// helperEnv makes the test binary act as a parse-only slirp (see TestMain),
// for runs as another user.
const helperEnv = "SLIRP_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(parseOnlyMain(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// parseOnlyMain does what cmd/slirp does with Parse's result, and stops
// where the daemon would start. It returns the exit status.
func parseOnlyMain(argv0 string, args []string, stdout, stderr io.Writer) int {
	cfg, err := Parse(argv0, args)
	var uerr *UsageError
	if errors.As(err, &uerr) {
		_ = uerr.Print(stdout, stderr)
		return uerr.ExitCode
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, w)
	}
	switch {
	case cfg.Help:
		fmt.Fprint(stdout, Usage(argv0))
	case cfg.Version:
		fmt.Fprint(stdout, VersionText())
	default:
		fmt.Fprint(stdout, Banner(cfg))
	}
	return 0
}

// realSlirp4netns returns the path of slirp4netns 1.2.0 or skips the test.
func realSlirp4netns(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		path = "/usr/bin/slirp4netns"
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Skipf("needs slirp4netns 1.2.0 to compare with: %v", err)
	}
	if !strings.HasPrefix(string(out), "slirp4netns version 1.2.0\n") {
		t.Skipf("needs slirp4netns 1.2.0 to compare with, found %q", strings.SplitN(string(out), "\n", 2)[0])
	}
	return path
}

type run struct {
	stdout, stderr string
	exit           int
}

// runProgram runs path with the given argv[0] and args, as cred when not
// nil, with a 5 s limit.
func runProgram(t *testing.T, path, argv0 string, args []string, env []string, cred *syscall.Credential) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Args[0] = argv0
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}, env...)
	cmd.WaitDelay = time.Second
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return run{stdout.String(), stderr.String(), 0}
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return run{stdout.String(), stderr.String(), exit.ExitCode()}
	}
	t.Fatalf("%s %q: %v (stderr %q)", path, args, err, stderr.String())
	return run{}
}

// runOurs runs Parse in process.
func runOurs(argv0 string, args []string) run {
	var stdout, stderr bytes.Buffer
	code := parseOnlyMain(argv0, args, &stdout, &stderr)
	return run{stdout.String(), stderr.String(), code}
}

// asUpstream replaces our usage text with slirp4netns' in stdout, since the
// two differ on purpose (tapfd, our options; see TestUsageMatchesSlirp4netns).
func asUpstream(r run, argv0, upstreamUsage string) run {
	r.stdout = strings.Replace(r.stdout, Usage(argv0), upstreamUsage, 1)
	return r
}

func compareRuns(t *testing.T, args []string, got, want run) {
	t.Helper()
	if got != want {
		t.Errorf("args %q:\nslirp4netns: exit %d\n  stdout %q\n  stderr %q\nours:        exit %d\n  stdout %q\n  stderr %q",
			args, want.exit, want.stdout, want.stderr, got.exit, got.stdout, got.stderr)
	}
}

func TestMatchesSlirp4netns(t *testing.T) {
	bin := realSlirp4netns(t)
	for _, argv0 := range []string{"slirp4netns", "/usr/local/bin/slirp"} {
		upstreamUsage := runProgram(t, bin, argv0, []string{"--help"}, nil, nil).stdout
		vectors := [][]string{
			{"-h"},
			{"--help", "--bogus"},
			{"-6", "--enable-seccomp", "--he", "-m0"},
			{"--no-host-loopback", "-ch"},
		}
		for _, tc := range errorCases(t) {
			vectors = append(vectors, tc.args)
		}
		for _, args := range vectors {
			want := runProgram(t, bin, argv0, args, nil, nil)
			got := asUpstream(runOurs(argv0, args), argv0, upstreamUsage)
			compareRuns(t, args, got, want)
		}
	}
}

func TestVersionMatchesSlirp4netns(t *testing.T) {
	bin := realSlirp4netns(t)
	for _, args := range [][]string{{"-v"}, {"--version"}, {"--vers", "x", "y", "z"}, {"-6", "-v", "--bogus"}} {
		want := runProgram(t, bin, argv0, args, nil, nil)
		got := runOurs(argv0, args)
		// The version block itself differs on purpose; what comes before
		// it (warnings), stderr and the exit status must not.
		wantPre, _, _ := strings.Cut(want.stdout, "slirp4netns version ")
		gotPre, _, found := strings.Cut(got.stdout, "slirp4netns version ")
		if !found || gotPre != wantPre || got.exit != want.exit || got.stderr != want.stderr {
			t.Errorf("args %q: exit %d stdout %q stderr %q; slirp4netns: exit %d stdout %q stderr %q",
				args, got.exit, got.stdout, got.stderr, want.exit, want.stdout, want.stderr)
		}
	}
}

func TestUsageMatchesSlirp4netns(t *testing.T) {
	bin := realSlirp4netns(t)
	upstream := runProgram(t, bin, "slirp4netns", []string{"--help"}, nil, nil).stdout
	// The only change to slirp4netns' lines: tapfd (slirp4netns 1.3).
	want := strings.Replace(upstream, "([path|pid], default=pid)", "([path|pid|tapfd], default=pid)", 1)
	if want == upstream {
		t.Fatalf("slirp4netns --help has no --netns-type line to compare: %q", upstream)
	}
	ours := Usage("slirp4netns")
	rest, ok := strings.CutPrefix(ours, want)
	if !ok {
		t.Fatalf("Usage does not start with slirp4netns' text:\n got %q\nwant prefix %q", ours, want)
	}
	for _, l := range extensionLong {
		if !strings.Contains(rest, "\n--"+l.Name+"=") {
			t.Errorf("extension --%s missing from %q", l.Name, rest)
		}
	}
}

// TestMatchesSlirp4netnsUnprivileged compares the runs as an unprivileged
// user, where access(2) checks can fail with EACCES.
func TestMatchesSlirp4netnsUnprivileged(t *testing.T) {
	bin := realSlirp4netns(t)
	uid, gid := nstest.UnprivilegedUser(t)
	cred := &syscall.Credential{Uid: uid, Gid: gid}

	// A directory the user may not enter, so paths below it give EACCES.
	secret, err := os.MkdirTemp("", "slirp-cli-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(secret) })
	if err := os.WriteFile(filepath.Join(secret, "netns"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// A copy of this test binary the user can execute: go test's build
	// directory is private.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.MkdirTemp("", "slirp-cli-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(pub, "cli.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(helper, data, 0o755); err != nil {
		t.Fatal(err)
	}

	hidden := filepath.Join(secret, "netns")
	upstreamUsage := runProgram(t, bin, argv0, []string{"--help"}, nil, cred).stdout
	for _, args := range [][]string{
		{"--netns-type=path", hidden, "tap0"},
		{"--userns-path=" + hidden, "--netns-type=path", hidden, "tap0"},
		{"--netns-type=path", filepath.Join(secret, "missing"), "tap0"},
		{"--cidr=foo", "--netns-type=path", "/proc/self/ns/net", "tap0"},
		{"-6", "--mtu=70000", noSuchPID, "tap0"},
	} {
		want := runProgram(t, bin, argv0, args, nil, cred)
		got := asUpstream(runProgram(t, helper, argv0, args, []string{helperEnv + "=1"}, cred), argv0, upstreamUsage)
		compareRuns(t, args, got, want)
	}
	// The point of running unprivileged: the EACCES text.
	got := runProgram(t, helper, argv0, []string{"--netns-type=path", hidden, "tap0"}, []string{helperEnv + "=1"}, cred)
	if want := "existing path expected when --netns-type=path: Permission denied\n"; got.stderr != want {
		t.Errorf("unprivileged stderr %q, want %q", got.stderr, want)
	}
}
