// Package slirp gives a network namespace its network from inside a Go
// program: the user-mode stack of the slirp daemon, embeddable. A test can
// start it for a child process or a namespace it made, reach the host's
// loopback through the gateway 10.0.2.2, publish ports, impair the network
// (delay, loss, rate limits, partitions: package netem) and read counters,
// with no root needed beyond what user namespaces allow.
//
// Start creates a tap device in the target namespace through a helper
// process that re-executes the program (/proc/self/exe), so every program
// that calls Start must call HelperMain first thing in main, and test
// binaries in TestMain:
//
//	func TestMain(m *testing.M) {
//		slirp.HelperMain()
//		os.Exit(m.Run())
//	}
//
// The slirp daemon (cmd/slirp) is this package behind slirp4netns' command
// line. See Example for a complete program.
package slirp
