package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/slirp-dev/slirp/internal/e2etest"
)

// The daemon is built twice by TestMain, into a directory removed when the
// tests end:
//
//   - slirpBin is built with -race when the tests are, and runs the fault
//     and isolation scenarios, so that a race in the daemon's error paths
//     fails them.
//   - slirpLoadBin is always built without -race and runs the load
//     scenarios. The race detector cannot hold more than 8,128 goroutines
//     at once (the UDP table alone may need 8,192: two per flow), and its
//     shadow memory would swamp the resident-memory figures the load tests
//     measure.
var slirpBin, slirpLoadBin string

// guestBin is the program the guest (and host-side helper) actions run
// as: this test binary, or, when it was built with -race, a copy of this
// package's tests built without, so that the race detector's slowdown of
// the clients does not throttle the load they put on the daemon.
var guestBin string

// buildErr says why the binaries are missing; tests skip or fail with it.
var buildErr error

// guestEnv makes the test binary run a guest action (guest_test.go)
// instead of the tests: the tests start it inside the guest namespace.
const guestEnv = "SLIRP_RELIABILITY_GUEST"

func TestMain(m *testing.M) {
	if os.Getenv(guestEnv) != "" {
		os.Exit(guestMain(os.Args[1:]))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		// Every test needs root and skips; no need to build anything.
		buildErr = fmt.Errorf("not root")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "slirp-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	slirpBin = filepath.Join(dir, "slirp")
	slirpLoadBin = filepath.Join(dir, "slirp-load")
	builds := []struct {
		out  string
		race bool
	}{{slirpBin, raceEnabled}, {slirpLoadBin, false}}
	for _, b := range builds {
		if err := e2etest.GoBuild(b.out, "github.com/slirp-dev/slirp/cmd/slirp", b.race); err != nil {
			fmt.Fprintf(os.Stderr, "e2e/reliability: building slirp: %v\n", err)
			return 1
		}
	}
	if guestBin, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if raceEnabled {
		guestBin = filepath.Join(dir, "guest")
		cmd := exec.Command("go", "test", "-c", "-o", guestBin, "github.com/slirp-dev/slirp/e2e/reliability")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e/reliability: building the guest client: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}
