//go:build race

package reliability

// raceEnabled says the test binary was built with -race; the daemon the
// fault and isolation tests run is then built with -race too, so that a
// data race in it fails the test.
const raceEnabled = true
