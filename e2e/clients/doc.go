// Package clients proves slirp with the real programs that run
// slirp4netns: podman (network_cmd_path, --network slirp4netns, both port
// handlers), rootlesskit (--net=slirp4netns, both port drivers,
// rootlessctl) and this project's own slirprun. Each scenario runs twice,
// once on slirp and once on Debian's /usr/bin/slirp4netns, and the test
// says where the two behave differently.
//
// The package has no code of its own: everything is in its tests. They
// need root (CI runs them as root), the Debian packages podman, runc,
// conmon, rootlesskit, uidmap and busybox-static, and skip with the reason
// when something is missing. Traffic stays on this machine: containers
// reach only a web server the test starts on the host's loopback and a DNS
// server the test starts on a 127.0.0.0/8 address, which the daemons use
// as their upstream instead of the host's resolver.
//
// The command lines and API requests the clients send are captured by a
// wrapper that the clients run in place of slirp4netns (the test binary
// itself, see wrapper_test.go) and kept in testdata/ as fixtures; a unit
// test feeds them to slirp's command-line parser and API server.
package clients
