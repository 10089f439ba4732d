// Package reliability proves that the slirp daemon holds up under load,
// under faults and against a guest that tries to reach what it must not:
// the tests of issue 7 that run the real daemon against real namespaces.
//
// The package has no code of its own: everything is in its tests, which
// build ./cmd/slirp, run it inside a network namespace the test makes (so
// the "host loopback" is that namespace's own and nothing the machine runs
// is reachable or disturbed), and drive a guest namespace through a tap
// device with clients that are this test binary re-executed inside it.
//
//   - load_test.go: 2,000 concurrent connections, a long run of short
//     connections, a UDP flood, guests that never read.
//   - faults_test.go: host services that refuse, vanish or crawl, a guest
//     that vanishes, the target namespace emptying, an API client hanging
//     up, SIGTERM under load.
//   - isolation_test.go: --disable-host-loopback leaves the host's
//     loopback untouched by every route a guest can take, while DNS works.
//
// Every scenario measures the daemon's open descriptors and resident
// memory (from /proc) before and after, and checks through the API's
// /v1/stats that no connection or flow is left behind. The figures are in
// docs/reliability.md.
//
// The tests need root (CI runs them as root) and skip otherwise. Traffic
// never leaves the machine: servers listen only inside namespaces the tests
// create, and the daemon's DNS upstream is a server the test starts.
package reliability
