// Package readme runs the README's first-session walkthrough as written,
// so that the commands a new user copies keep working.
package readme

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slirp-dev/slirp/internal/e2etest"
	"github.com/slirp-dev/slirp/internal/nstest"
)

// marker is the line of README.md before the block this test runs.
const marker = "<!-- e2e/readme runs the next block -->"

// readmeBlock returns the shell block that follows marker in README.md.
func readmeBlock(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var block []string
	state := 0 // 0: before the marker, 1: want the fence, 2: in the block
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && line == marker:
			state = 1
		case state == 1:
			if line != "```sh" {
				t.Fatalf("README.md: %q is not followed by a ```sh block", marker)
			}
			state = 2
		case state == 2 && line == "```":
			return strings.Join(block, "\n") + "\n"
		case state == 2:
			block = append(block, line)
		}
	}
	t.Fatalf("README.md has no complete block after %q", marker)
	return ""
}

// TestREADMEFirstSession runs the block as the README says, as a normal
// user (the unprivileged test user), in a network namespace of its own (so
// that the host port it publishes, 8080, is free and private), with slirp
// and slirpctl built from this tree first on PATH, and checks what the
// README says it shows: the page through the forward, the connection in
// slirpctl conns, the frames in the capture, and a clean end.
func TestREADMEFirstSession(t *testing.T) {
	uid, gid := nstest.UnprivilegedUser(t)
	nstest.RequireUnprivilegedTun(t)
	nstest.RequireTools(t, "busybox", "tcpdump", "unshare", "nsenter", "ip", "bash", "setpriv")
	block := readmeBlock(t)

	// Directories the user may use: the binaries, and TMPDIR for the
	// block's mktemp.
	bin, err := e2etest.BinDir("slirp-readme-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	for _, pkg := range []string{"cmd/slirp", "cmd/slirpctl"} {
		if err := e2etest.GoBuild(filepath.Join(bin, filepath.Base(pkg)), "github.com/slirp-dev/slirp/"+pkg, false); err != nil {
			t.Fatal(err)
		}
	}
	tmp, err := e2etest.BinDir("slirp-readme-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chown(tmp, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Root brings up the namespace's loopback, then becomes the user.
	script := fmt.Sprintf(`ip link set lo up && exec setpriv --reuid=%d --regid=%d --clear-groups -- bash -euo pipefail -c "$0"`, uid, gid)
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--", "sh", "-c", script, block)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "TMPDIR="+tmp)
	// Everything the block starts stays in this process group, so that a
	// failure or a timeout leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		// The block's own files (the daemon's log) say more.
		logs, _ := filepath.Glob(filepath.Join(tmp, "*", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatalf("the README block failed: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^1 +tcp +0\.0\.0\.0:8080 +10\.0\.2\.100:80 +preserve$`),
		regexp.MustCompile(`(?m)^hello$`),
		regexp.MustCompile(`(?m)^in +tcp +10\.0\.2\.100:80 +forward 1 \(preserve\) +127\.0\.0\.1:\d+ `),
		regexp.MustCompile(`link-type EN10MB`),
		regexp.MustCompile(`> 10\.0\.2\.100\.80: Flags \[S\]`),
	} {
		if !want.Match(out) {
			t.Errorf("the output lacks %v:\n%s", want, out)
		}
	}
	// The block removes its directory at the end.
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the block left %d entries in TMPDIR", len(left))
	}
}
