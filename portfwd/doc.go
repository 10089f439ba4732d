// Package portfwd publishes ports of a network namespace on the host: each
// forward listens on a host address and port (TCP or UDP, IPv4 or IPv6, a
// single port or a range) and carries every connection or datagram flow to
// an address and port inside the namespace.
//
// A connection takes one of two data paths, chosen per connection by the
// forward's Mode:
//
//   - fast: the daemon gets a kernel socket created inside the namespace
//     (SocketOpener), connects it to the guest address there, and splices it
//     to the host connection. The user-mode stack never sees the traffic, so
//     throughput approaches the machine's loopback; the server in the
//     namespace sees a namespace-local peer address.
//   - preserve: the connection is opened through the user-mode stack
//     (GuestDialer) from the client's own address and port, so the server
//     in the namespace sees the real client. Clients on the host's loopback
//     or the unspecified address appear as the gateway, as with slirp4netns.
//
// ModeAuto, the default, takes the fast path for loopback clients and the
// preserve path for everyone else.
//
// The package knows nothing about gVisor or the namespace helper: it meets
// them through the GuestDialer and SocketOpener interfaces. A Manager owns
// every listener and connection goroutine it starts; Close stops them all
// and waits. The API that exposes the Manager on a unix socket is in
// portfwd/api, and a client for it in portfwd/client.
package portfwd
