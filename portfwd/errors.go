package portfwd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotFound is returned by Remove for an id that names no forward (never
// added, or already removed).
var ErrNotFound = errors.New("no such port forward")

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("port forwarding is shut down")

// ErrPathUnavailable is returned by Add when the forward's mode asks for a
// data path the Manager has no means for.
var ErrPathUnavailable = errors.New("data path not available")

// unprivilegedPortStart is where the kernel keeps the lowest port an
// unprivileged process may bind, for the daemon's network namespace.
const unprivilegedPortStart = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// annotateListenError turns a listen failure into a message that says what
// to do: for EACCES on a low port, how to allow it.
func annotateListenError(err error, network, addr string, port uint16) error {
	switch {
	case errors.Is(err, syscall.EACCES):
		start := "1024"
		if b, rerr := os.ReadFile(unprivilegedPortStart); rerr == nil {
			start = strings.TrimSpace(string(b))
		}
		if n, perr := strconv.Atoi(start); perr == nil && int(port) < n {
			bin := "the slirp binary"
			if exe, eerr := os.Executable(); eerr == nil {
				bin = exe
			}
			return fmt.Errorf("listen on %s %s: port %d is privileged (below net.ipv4.ip_unprivileged_port_start=%s); "+
				"to allow it, run as root `sysctl -w net.ipv4.ip_unprivileged_port_start=%d` "+
				"(persist it in /etc/sysctl.d), or give the daemon the capability with `setcap cap_net_bind_service=+ep %s`: %w",
				network, addr, port, start, port, bin, err)
		}
		return fmt.Errorf("listen on %s %s: %w", network, addr, err)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listen on %s %s: the port is already in use on the host (by another forward or program); pick another host port: %w", network, addr, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listen on %s %s: the host has no such address; use one of its addresses, or 0.0.0.0: %w", network, addr, err)
	}
	return fmt.Errorf("listen on %s %s: %w", network, addr, err)
}
