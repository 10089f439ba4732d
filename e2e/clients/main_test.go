package clients

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/slirp-dev/slirp/internal/e2etest"
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
	dir, err := e2etest.BinDir("slirp-clients-bin-")
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

// buildBinaries builds the binaries into dir, which any user may enter.
func buildBinaries(dir string) error {
	for _, b := range []struct {
		out *string
		pkg string
	}{
		{&slirpBin, "github.com/slirp-dev/slirp/cmd/slirp"},
		{&slirprunBin, "github.com/slirp-dev/slirp/cmd/slirprun"},
	} {
		*b.out = filepath.Join(dir, filepath.Base(b.pkg))
		if err := e2etest.GoBuild(*b.out, b.pkg, raceEnabled); err != nil {
			return err
		}
	}
	wrapperBin = filepath.Join(dir, "wrapper")
	return e2etest.CopyExecutable(wrapperBin)
}
