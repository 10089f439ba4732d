package clients

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Built once by TestMain (as root only: every end-to-end test needs root
// and skips otherwise) into a directory any user may enter.
var (
	// slirpBin is this project's daemon, slirprunBin its launcher.
	slirpBin, slirprunBin string
	// wrapperBin is a copy of this test binary, which the wrapper scripts
	// run (go test keeps the original where only root may enter).
	wrapperBin string
	// buildErr says why the binaries are missing.
	buildErr error
)

// slirp4netnsBin is Debian's slirp4netns, the reference every scenario
// also runs on.
const slirp4netnsBin = "/usr/bin/slirp4netns"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(wrapEnv); cfg != "" {
		os.Exit(wrapMain(cfg, os.Args[1:]))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		buildErr = fmt.Errorf("not root")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "slirp-clients-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	buildErr = buildBinaries(dir)
	if buildErr != nil {
		fmt.Fprintln(os.Stderr, "e2e/clients:", buildErr)
		return 1
	}
	return m.Run()
}

func buildBinaries(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, b := range []struct {
		out *string
		pkg string
	}{
		{&slirpBin, "github.com/slirp-dev/slirp/cmd/slirp"},
		{&slirprunBin, "github.com/slirp-dev/slirp/cmd/slirprun"},
	} {
		*b.out = filepath.Join(dir, filepath.Base(b.pkg))
		args := []string{"build", "-o", *b.out}
		if raceEnabled {
			args = append(args, "-race")
		}
		if out, err := exec.Command("go", append(args, b.pkg)...).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	wrapperBin = filepath.Join(dir, "wrapper")
	return os.WriteFile(wrapperBin, data, 0o755)
}
