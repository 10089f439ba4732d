package dns

import "errors"

// ErrServerClosed is returned by ServePacket and ServeStream when they are
// called after Close.
var ErrServerClosed = errors.New("dns: server closed")

// errNoNameservers is returned when the server has no upstream to ask: the
// resolv.conf it follows lists none, or cannot be read. The client gets
// SERVFAIL at once instead of waiting for a timeout.
var errNoNameservers = errors.New("no nameserver configured")
