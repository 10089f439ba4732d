//go:build race

package docscheck

// raceEnabled makes the test build the programs with -race too, so that
// they share the compiled packages of this test run.
const raceEnabled = true
