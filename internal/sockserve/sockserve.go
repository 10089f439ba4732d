// Package sockserve turns the tap helper (package tap) into a minimal
// socket server once the tap is open. The helper lives in the target's
// namespaces for the daemon's whole life, to create the sockets of port
// forwards there; as a Go process it kept 10-15 MiB resident for a job of
// one socket(2) call per request. After the tap is open, the helper
// re-executes its own binary with EnvFD set, and a C constructor in this
// package serves the requests that remain before the Go runtime starts,
// never returning to Go: a few hundred KiB.
//
// It speaks the helper protocol of package tap (tap/proto.go) for the
// requests a helper can get after the tap is open:
//
//	request = kind:u8 id:u32 body           integers big-endian
//	reply   = id:u32 status:u8 errno:u32 text   (+ at most one fd)
//
//	kind 2, socket:           domain:i32 type:i32 protocol:i32 → the socket
//	                          (close-on-exec, non-blocking) as SCM_RIGHTS
//	kind 3, keep across exec: no body → clears the parent-death signal
//	kind 4, slim:             no body → success (it already is)
//	kind 1, open a tap:       failure, errno EOPNOTSUPP
//
// The server exits when the control socket reads EOF (the daemon is gone
// or closed it). The process keeps its PID, parent and namespaces across
// the exec, and its parent-death signal (execve keeps it for a binary that
// is not set-id).
package sockserve

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// EnvFD names the control socket's descriptor for the constructor.
const EnvFD = "_SLIRP_SOCKET_SERVER_FD"

// Exec replaces this process (the tap helper, already inside the target's
// namespaces) with the minimal socket server on control socket ctl. It
// returns only on error.
func Exec(ctl int) error {
	if !available {
		return fmt.Errorf("socket server: %w", errNoCgo)
	}
	// The descriptor must survive the exec.
	if _, err := unix.FcntlInt(uintptr(ctl), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("socket server: keep control socket open across exec: %w", err)
	}
	env := []string{EnvFD + "=" + strconv.Itoa(ctl)}
	err := unix.Exec("/proc/self/exe", []string{"slirp-socket-server"}, env)
	return fmt.Errorf("socket server: exec /proc/self/exe: %w", err)
}

var errNoCgo = fmt.Errorf("needs slirp built with cgo on Linux (CGO_ENABLED=1)")
