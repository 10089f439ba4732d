//go:build race

package main

// raceEnabled says the test binary was built with -race; the daemon under
// test is then built with -race too, so a data race in it fails the test.
const raceEnabled = true
