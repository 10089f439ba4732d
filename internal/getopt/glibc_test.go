package getopt

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// These tests compare the parser with glibc's own getopt_long, reached
// through util-linux getopt(1): it parses its arguments with getopt_long,
// lets glibc print the error messages (prefixed with the -n name), carries on
// after errors and prints what it found in a normalised form.

// oracle runs getopt(1) for spec and args and returns its normalised output,
// its stderr and whether it reported errors.
func oracle(t *testing.T, spec Spec, args []string) (stdout, stderr string, failed bool) {
	t.Helper()
	var long []string
	for _, l := range spec.Long {
		if l.NoAbbrev {
			t.Fatalf("getopt(1) has no equivalent of NoAbbrev (%s)", l.Name)
		}
		if l.HasArg {
			long = append(long, l.Name+":")
		} else {
			long = append(long, l.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "getopt", append([]string{"-n", "prog", "-o", spec.Short, "-l", strings.Join(long, ","), "--"}, args...)...)
	// getopt(1) and glibc change behaviour under these variables.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		failed = true
	default:
		t.Fatalf("getopt %q: %v: %s", args, err, errb.String())
	}
	return out.String(), errb.String(), failed
}

// quote is getopt(1)'s shell quoting for bash.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// render prints a result as getopt(1) does.
func render(spec Spec, r result) (stdout, stderr string, failed bool) {
	var b strings.Builder
	for _, opt := range r.Opts {
		b.WriteString(" " + opt.Name)
		takesArg := false
		if strings.HasPrefix(opt.Name, "--") {
			for _, l := range spec.Long {
				takesArg = takesArg || "--"+l.Name == opt.Name && l.HasArg
			}
		} else {
			takesArg = strings.Contains(spec.Short, opt.Key+":")
		}
		if takesArg {
			b.WriteString(" " + quote(opt.Arg))
		}
	}
	b.WriteString(" --")
	for _, a := range r.Args {
		b.WriteString(" " + quote(a))
	}
	b.WriteString("\n")
	var e strings.Builder
	for _, msg := range r.Errors {
		e.WriteString(msg + "\n")
	}
	return b.String(), e.String(), len(r.Errors) > 0
}

func requireGetopt(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("getopt"); err != nil {
		t.Skipf("needs util-linux getopt(1) as the glibc reference: %v", err)
	}
	out, err := exec.Command("getopt", "-T").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Skipf("getopt(1) is not the enhanced util-linux one (getopt -T: %v %s)", err, out)
	}
}

func compareWithGlibc(t *testing.T, spec Spec, args []string) {
	t.Helper()
	wantOut, wantErr, wantFailed := oracle(t, spec, args)
	gotOut, gotErr, gotFailed := render(spec, runAll(spec, "prog", args))
	if gotOut != wantOut || gotErr != wantErr || gotFailed != wantFailed {
		t.Errorf("args %q differ from glibc:\nstdout got  %q\n       want %q\nstderr got  %q\n       want %q",
			args, gotOut, wantOut, gotErr, wantErr)
	}
}

func TestMatchesGlibc(t *testing.T) {
	requireGetopt(t)
	for _, args := range [][]string{
		{"-c", "123", "--api-socket", "/x", "tap11"},
		{"-c", "123", "--cidr", "10.0.135.128/25", "tap11"},
		{"--mtu=65520", "--disable-host-loopback", "-r", "3", "--netns-type=path", "/run/netns/x", "tap0"},
		{"-c6m1400", "pid", "tap0"},
		{"-cm", "1400", "pid"},
		{"-r3", "-e", "4", "--", "-6", "--mtu"},
		{"a", "-c", "b", "--", "c"},
		{"-", "-c"},
		{"--dis", "1", "tap0"},
		{"--disable-h", "--api=/s", "--mac", "aa", "--netns", "path", "--userns", "/u", "--ci", "x"},
		{"--e"},
		{"--outbound=1"},
		{"--outbound-addr=1", "--outbound-addr6", "::1"},
		{"--foo", "--foo=bar", "---mtu", "-x", "-:", "-cxc"},
		{"--configure=1", "--conf=1", "--help=", "--mt"},
		{"--=x", "--", "--=y"},
		{"-m"},
		{"--mtu"},
		{"-m=1", "--cidr=", "--cidr", ""},
		{"it's", "a b", "-a", "x'y"},
	} {
		compareWithGlibc(t, slirpSpec, args)
	}
}

func TestMatchesGlibcRandom(t *testing.T) {
	requireGetopt(t)
	words := []string{
		"-c", "-6", "-h", "-m", "-m1400", "-cm", "-c6", "-6c", "-x", "-:", "-e", "-r3", "-a",
		"--configure", "--conf", "--c", "--co", "--dis", "--disable-h", "--disable-dns",
		"--mtu", "--mt=5", "--mtu=", "--m", "--foo", "--foo=bar", "--=x", "--", "-", "---x",
		"--api", "--api=x", "--configure=1", "--outbound", "--outbound-addr", "--outbound-addr6=::1",
		"--no", "--n", "--ne", "--cr", "--en", "--enable-s", "--target", "--ve", "--h",
		"pos", "1234", "tap0", "a b", "it's", "",
	}
	rng := rand.New(rand.NewPCG(1, 2)) // fixed seed: the same vectors every run
	for range 300 {
		args := make([]string, rng.IntN(7))
		for i := range args {
			args[i] = words[rng.IntN(len(words))]
		}
		compareWithGlibc(t, slirpSpec, args)
	}
}
