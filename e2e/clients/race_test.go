//go:build race

package clients

// raceEnabled says the test binary was built with -race; slirp and
// slirprun are then built with -race too, and a race report from the
// daemon (written to a file, since the clients discard its stderr) fails
// the test.
const raceEnabled = true
