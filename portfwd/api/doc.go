// Package api serves a portfwd.Manager on a unix socket, in two protocols
// told apart by a connection's first bytes:
//
//   - slirp4netns' JSON protocol, byte for byte (add_hostfwd, list_hostfwd,
//     remove_hostfwd; one request per connection), so that podman
//     (port_handler=slirp4netns) and rootlesskit (--port-driver=slirp4netns)
//     work unchanged;
//   - a versioned HTTP/JSON API (/v1/info, /v1/ports, /v1/stats) modelled
//     on rootlesskit's, which slirpctl and portfwd/client use.
//
// Listen creates the socket with mode 0600 and Close removes it; the Server
// also checks each peer's uid (SO_PEERCRED). Every connection is served on
// its own goroutine with a deadline, so a slow client delays no one else.
// The Server owns those goroutines; Close stops and waits for them.
//
// docs/api.md and docs/openapi.yaml describe both protocols.
package api
