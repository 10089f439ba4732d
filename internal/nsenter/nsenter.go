// Package nsenter joins a process to existing user and network namespaces as
// the process starts, before the Go runtime creates its threads.
//
// setns(2) with CLONE_NEWUSER fails with EINVAL in a multi-threaded process,
// and a Go program has several threads before main runs, so a program that
// must act inside another user namespace re-executes itself (/proc/self/exe)
// with a Request in its environment. Importing this package links in a cgo
// constructor, run by the dynamic loader before the Go runtime, that honours
// the request; the new process then runs main already inside the namespaces,
// on every thread. runc's nsexec works the same way.
//
// # Environment protocol
//
// The constructor acts only when at least one of these variables is set, and
// removes all three from the environment before main, so nothing the process
// starts later inherits them:
//
//	_SLIRP_NSENTER_CLOSE_FROM=N  close every inherited descriptor >= N (N >= 3)
//	                             first, so the child keeps none of its parent's
//	                             descriptors that it was not meant to have
//	_SLIRP_NSENTER_USERNS=PATH   join the user namespace at PATH (for example
//	                             /proc/PID/ns/user); skipped when it is the one
//	                             the process is already in
//	_SLIRP_NSENTER_NETNS=PATH    join the network namespace at PATH (for
//	                             example /proc/PID/ns/net or a bind mount)
//
// Both files are opened before either namespace is joined; the network
// namespace file is opened first. A failed user namespace join does not stop
// the constructor, because slirp4netns ignores it too: the network namespace
// join that follows decides, and Started reports both. The constructor never
// exits the process; main must call Started and act on the outcome. In a
// setuid or file-capability binary (AT_SECURE) the constructor refuses every
// request, so that the environment cannot steer a privileged process.
package nsenter

import (
	"fmt"
	"strconv"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Names of the environment variables the constructor reads.
const (
	EnvUserns    = "_SLIRP_NSENTER_USERNS"
	EnvNetns     = "_SLIRP_NSENTER_NETNS"
	EnvCloseFrom = "_SLIRP_NSENTER_CLOSE_FROM"
)

// Request names the namespaces a child process joins as it starts.
type Request struct {
	// UsernsPath is the user namespace to join first; "" joins none.
	UsernsPath string
	// NetnsPath is the network namespace to join; "" joins none.
	NetnsPath string
	// CloseFrom, when at least 3, makes the child close every descriptor
	// it inherited from CloseFrom upwards before joining; 0 closes none.
	CloseFrom int
}

// Env returns the environment entries that carry the request, to be added
// to the child's environment (exec.Cmd.Env). It returns nil for an empty
// request.
func (r Request) Env() []string {
	var env []string
	if r.CloseFrom != 0 {
		env = append(env, EnvCloseFrom+"="+strconv.Itoa(r.CloseFrom))
	}
	if r.UsernsPath != "" {
		env = append(env, EnvUserns+"="+r.UsernsPath)
	}
	if r.NetnsPath != "" {
		env = append(env, EnvNetns+"="+r.NetnsPath)
	}
	return env
}

// Outcome is what the constructor did when this process started.
type Outcome struct {
	// Asked says the environment carried a Request.
	Asked bool
	// JoinedUserns and JoinedNetns say which namespaces were joined.
	JoinedUserns bool
	JoinedNetns  bool
	// UsernsWasOurs says the requested user namespace was already the
	// process's own, so there was nothing to join.
	UsernsWasOurs bool
	// UsernsErr is a user namespace join that failed and was ignored.
	UsernsErr error
	// Err is the step that stopped the constructor; steps after it did not
	// run. The process must not act as if it were in the namespaces.
	Err error
}

// Error is one failed step of the constructor.
type Error struct {
	Op    string // what failed: "open", "setns", ...
	Path  string // the namespace file (or value) it failed on
	Errno syscall.Errno
}

// Error formats the failure the way slirp4netns and the C library do, for
// example "open /proc/42/ns/net: No such file or directory".
func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %s", e.Op, e.Path, Strerror(e.Errno))
}

// Unwrap returns the errno, so errors.Is(err, syscall.EPERM) works.
func (e *Error) Unwrap() error { return e.Errno }

// Strerror returns the C library's text for errno: Go's text with a capital
// first letter ("No such file or directory"), which is what slirp4netns
// prints and what users and scripts look for.
func Strerror(errno syscall.Errno) string {
	s := errno.Error()
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
