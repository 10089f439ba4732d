package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/slirp-dev/slirp/internal/buildinfo"
)

func TestExpandShort(t *testing.T) {
	got := expandShort([]string{"-it", "--rm", "-dt", "sh", "-it"})
	want := []string{"-i", "-t", "--rm", "-d", "-t", "sh", "-it"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("expandShort = %q, want %q", got, want)
	}
}

// runCLI runs the command line in-process and returns its exit code and
// standard error.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	errf, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	code := run(args, os.Stdin, os.Stdout, errf)
	b, _ := os.ReadFile(errf.Name())
	return code, string(b)
}

func TestCLIErrors(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--userns=keep-id", "true"}, "use single or subuid"},
		{[]string{"-p", "80", "true"}, "HOST_PORT:CONTAINER_PORT"},
		{[]string{"-v", "/a", "true"}, "SRC:DST"},
		{[]string{"--security-opt", "label=disable", "true"}, "--security-opt"},
		{[]string{"--network=none", "-p", "1:2", "true"}, "-p needs a network"},
		{[]string{"--rootfs", "/", "--image", "/x", "true"}, "either --rootfs or --image"},
		{[]string{"-t", "-d", "true"}, "-t cannot be combined with -d"},
		{[]string{"--state-dir", state}, "no command given"},
		{[]string{"logs", "--state-dir", state, "nope"}, "no such container"},
		{[]string{"stop", "--state-dir", state}, "exactly one container"},
		{[]string{"--log-level", "loud", "true"}, "--log-level"},
	} {
		code, stderr := runCLI(t, tc.args...)
		if code != 125 || !strings.Contains(stderr, tc.want) {
			t.Errorf("slirprun %s: exit %d, stderr %q; want 125 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	if code, _ := runCLI(t, "ps", "--state-dir", state); code != 0 {
		t.Errorf("ps on an empty state dir: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	outf, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	// The flag wins over everything after it: nothing is run.
	code := run([]string{"--version", "false"}, os.Stdin, outf, os.Stderr)
	b, _ := os.ReadFile(outf.Name())
	if want := buildinfo.Text("slirprun"); code != 0 || string(b) != want {
		t.Errorf("slirprun --version: exit %d, stdout %q; want 0 and %q", code, b, want)
	}
}
