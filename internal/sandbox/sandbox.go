// Package sandbox confines the slirp daemon after it has set itself up, as
// slirp4netns --enable-sandbox and --enable-seccomp do: a mount namespace
// of its own whose root is a small read-only tmpfs holding only /etc, /run
// (read-only binds of the host's) and an empty /tmp, every capability
// dropped but CAP_NET_BIND_SERVICE, no new privileges, and a seccomp
// filter (InstallSeccomp).
//
// Mount namespaces, credentials and capabilities belong to a thread in
// Linux, and a Go process has several threads before main runs (and cgo,
// which this module links, rules out syscall.AllThreadsSyscall). So the
// daemon does everything that needs the host first (creates the tap,
// binds the API socket, starts the namespace helper) and then calls Exec,
// which re-executes the daemon's own binary in place: same PID, which
// podman watches, and the descriptors the daemon needs kept open. A cgo
// constructor in this package sees the request in the environment and
// sandboxes the new image before the Go runtime starts, so every thread
// the runtime creates inherits the sandbox. main then calls Resumed, which
// returns what the first image handed over, and InstallSeccomp, before it
// writes the ready fd.
//
// # Environment protocol
//
// Exec sets three variables (and drops every other _SLIRP_ variable); each
// is removed from the environment before anything else sees it (the first
// two by the constructor, the third by Resumed), so nothing the daemon
// starts inherits them:
//
//	_SLIRP_SANDBOX=PLAN          asks the constructor for the sandbox. PLAN
//	                             (possibly empty) lists what the new root
//	                             needs besides /etc and /run to keep the
//	                             State's Keep files visible, one step a
//	                             line: "d PATH", "l PATH TARGET",
//	                             "f PATH", fields percent-encoded
//	_SLIRP_SANDBOX_USERNS=PATH   join this user namespace first and become
//	                             uid and gid 0 in it (set by Exec when the
//	                             daemon is not root, as slirp4netns joins
//	                             the target's user namespace)
//	_SLIRP_SANDBOX_STATE=JSON    the State, for Resumed
//
// The constructor, in order: joins the user namespace and becomes root in
// it (only with _SLIRP_SANDBOX_USERNS); unshare(CLONE_NEWNS); makes every
// mount a slave (not private: a slave
// still sees the caller's later mounts and unmounts, so that a network
// namespace file unmounted from the host's /run is not kept alive by the
// sandbox's copy; nothing goes back to the caller either way); opens the
// files to keep; mounts a tmpfs (size=1m) over /tmp
// as the new root, with a tmpfs /tmp inside; makes the plan's directories,
// symbolic links and read-only file binds; binds /etc and /run recursively,
// read-only, nosuid, nodev, noexec, as slaves (the whole tree with
// mount_setattr on Linux 5.12 and later, else the top mount only);
// pivot_root and detaches the old root; makes the root read-only; sets
// no_new_privs, clears the ambient capabilities, drops every capability
// but CAP_NET_BIND_SERVICE from the bounding set, and keeps only that one
// in the effective, permitted and inheritable sets. A failed step stops
// it; Resumed then returns the error, and the daemon must exit. In a
// setuid or file-capability binary the constructor refuses every request.
//
// # Inside the sandbox
//
// There is no /proc, /dev or /sys, and no program can be executed: look up
// everything under /proc (target process handles, namespace identities)
// before Exec and hand it over as descriptors. Paths given relative to the
// working directory break (the working directory becomes /). Files outside
// /etc and /run stay visible only when named in State.Keep.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var errNoCgo = errors.New("--enable-sandbox needs slirp built with cgo on Linux (CGO_ENABLED=1): the sandbox is built by a C constructor before the Go runtime starts")

// Names of the environment variables of the protocol.
const (
	EnvPlan   = "_SLIRP_SANDBOX"
	EnvUserns = "_SLIRP_SANDBOX_USERNS"
	EnvState  = "_SLIRP_SANDBOX_STATE"
)

// State is what the daemon hands over to its sandboxed self. Descriptor
// fields hold a descriptor number, or -1 for none; NewState returns a
// State with every descriptor -1. Descriptors keep their numbers across
// the execve.
type State struct {
	// Args is the new image's command line; nil means os.Args, so that
	// ps and podman see the same command. Resumed returns os.Args.
	Args []string `json:"-"`

	// TapFD is the frame descriptor: the tap, or a BESS connection.
	TapFD int `json:"tap_fd"`
	// APIFD is the bound, listening API socket.
	APIFD int `json:"api_fd"`
	// HelperCtlFD and HelperPID are the namespace helper's control
	// socket and process (a child of the daemon, which stays its parent
	// across the execve); HelperPID is 0 for none.
	HelperCtlFD int `json:"helper_ctl_fd"`
	HelperPID   int `json:"helper_pid,omitempty"`
	// ExitFD and ReadyFD are --exit-fd and --ready-fd.
	ExitFD  int `json:"exit_fd"`
	ReadyFD int `json:"ready_fd"`
	// FDs holds any other descriptors to keep, by name.
	FDs map[string]int `json:"fds,omitempty"`

	// UsernsPath is the user namespace a daemon that is not root joins
	// (and becomes root in) before it sandboxes itself: --userns-path, or
	// /proc/PID/ns/user in pid mode. Root joins nothing.
	UsernsPath string `json:"userns_path,omitempty"`
	// Keep lists host files that must stay readable inside the sandbox
	// (for example --resolv-conf), in addition to DefaultKeep and to
	// everything under /etc and /run. Relative paths are taken from the
	// working directory.
	Keep []string `json:"keep,omitempty"`
	// Seccomp asks the resumed daemon to call InstallSeccomp.
	Seccomp bool `json:"seccomp,omitempty"`
	// Data is the daemon's own, for its resumed self: what it learned
	// before the exec and cannot learn again inside (its parsed command
	// line, whose paths may be gone there). It must be valid JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

// NewState returns a State with no descriptors.
func NewState() State {
	return State{TapFD: -1, APIFD: -1, HelperCtlFD: -1, ExitFD: -1, ReadyFD: -1}
}

// fds lists the state's descriptors with what they are, for messages.
func (s State) fds() []namedFD {
	out := []namedFD{
		{"tap", s.TapFD}, {"API socket", s.APIFD}, {"helper control socket", s.HelperCtlFD},
		{"exit fd", s.ExitFD}, {"ready fd", s.ReadyFD},
	}
	names := make([]string, 0, len(s.FDs))
	for n := range s.FDs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out = append(out, namedFD{n, s.FDs[n]})
	}
	return out
}

type namedFD struct {
	name string
	fd   int
}

// validate checks the descriptor numbers; with open it also checks that
// each is an open descriptor of this process.
func (s State) validate(open bool) error {
	for _, f := range s.fds() {
		if f.fd == -1 {
			continue
		}
		if f.fd < 0 {
			return fmt.Errorf("sandbox state: %s %d is not a descriptor (-1 means none)", f.name, f.fd)
		}
		if open {
			if _, err := unix.FcntlInt(uintptr(f.fd), unix.F_GETFD, 0); err != nil {
				return fmt.Errorf("sandbox state: %s %d is not open: %w", f.name, f.fd, err)
			}
		}
	}
	if s.HelperPID < 0 {
		return fmt.Errorf("sandbox state: helper PID %d", s.HelperPID)
	}
	return nil
}

// encodeState and decodeState are the _SLIRP_SANDBOX_STATE format.
func encodeState(s State) (string, error) {
	if err := s.validate(false); err != nil {
		return "", err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode sandbox state: %w", err)
	}
	return string(b), nil
}

func decodeState(v string) (State, error) {
	s := NewState()
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return State{}, fmt.Errorf("decode %s: %w", EnvState, err)
	}
	if dec.More() {
		return State{}, fmt.Errorf("decode %s: trailing data", EnvState)
	}
	if len(s.Keep) == 0 {
		s.Keep = nil
	}
	if len(s.FDs) == 0 {
		s.FDs = nil
	}
	if err := s.validate(false); err != nil {
		return State{}, err
	}
	return s, nil
}

// Exec re-executes this binary (/proc/self/exe) into the sandbox, handing
// s over; it returns only on error. Call it after everything that needs
// the host is set up, and from the OS thread that started any child that
// must outlive it: execve ends every other thread of the process, and the
// kernel sends a child's PR_SET_PDEATHSIG (exec.Cmd's Pdeathsig) when the
// thread that forked it ends; or have the child clear that signal first,
// as tap.Namespace.PrepareExec does for the namespace helper. The
// descriptors in s lose close-on-exec; all others keep it and are closed.
//
// A daemon that is not root must become root in s.UsernsPath, a user
// namespace it owns; Exec says so, and what to do, before it executes
// anything.
func Exec(s State) error {
	if !constructorLinked {
		return errNoCgo
	}
	if err := s.validate(true); err != nil {
		return err
	}
	userns, err := usernsToJoin(s.UsernsPath)
	if err != nil {
		return err
	}
	return execInto(s, userns)
}

// execInto is Exec without the checks: it asks the constructor to join
// userns ("" for none) and build the sandbox.
func execInto(s State, userns string) error {
	keep := slices.Clone(DefaultKeep)
	for _, k := range s.Keep {
		abs, err := filepath.Abs(k)
		if err != nil {
			return fmt.Errorf("keep %s in the sandbox: %w", k, err)
		}
		keep = append(keep, abs)
	}
	p, err := planKeep(keep)
	if err != nil {
		return err
	}
	planText, err := p.encode()
	if err != nil {
		return err
	}
	stateText, err := encodeState(s)
	if err != nil {
		return err
	}
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "_SLIRP_") {
			env = append(env, kv)
		}
	}
	env = append(env, EnvPlan+"="+planText, EnvState+"="+stateText)
	if userns != "" {
		env = append(env, EnvUserns+"="+userns)
	}
	args := s.Args
	if args == nil {
		args = os.Args
	}

	var inherit []int
	for _, f := range s.fds() {
		if f.fd >= 0 {
			inherit = append(inherit, f.fd)
		}
	}
	for _, fd := range inherit {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep descriptor %d open across exec: %w", fd, err)
		}
	}
	err = syscall.Exec("/proc/self/exe", args, env)
	for _, fd := range inherit {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	return fmt.Errorf("re-execute into the sandbox: exec /proc/self/exe: %w", err)
}

// ioctls of namespace files (linux/nsfs.h).
const (
	nsGetNstype   = 0xb703
	nsGetOwnerUID = 0xb704
)

// usernsToJoin returns the user namespace the constructor must join, ""
// for none, or an error that says why a daemon that is not root cannot
// sandbox itself.
func usernsToJoin(p string) (string, error) {
	euid := os.Geteuid()
	if euid == 0 {
		return "", nil
	}
	if p == "" {
		return "", fmt.Errorf("--enable-sandbox: running as uid %d, slirp must become root in the container's user namespace to build the sandbox, and none was given: use a PID target (its user namespace is joined) or --userns-path=PATH, or run slirp inside that user namespace (as podman does)", euid)
	}
	f, err := os.Open(p)
	if err != nil {
		hint := ""
		if errors.Is(err, os.ErrPermission) {
			hint = ": it belongs to another user; run slirp as the user that owns the container, or as root"
		}
		return "", fmt.Errorf("--enable-sandbox: cannot join user namespace %s: %w%s", p, err, hint)
	}
	defer f.Close()
	fd := f.Fd()
	typ, err := unix.IoctlRetInt(int(fd), nsGetNstype)
	if err != nil || typ != unix.CLONE_NEWUSER {
		return "", fmt.Errorf("--enable-sandbox: %s is not a user namespace", p)
	}
	if same, err := sameFile(f, "/proc/self/ns/user"); err == nil && same {
		return "", fmt.Errorf("--enable-sandbox: %s is slirp's own user namespace, where uid %d is not root; join the container's user namespace instead, or run slirp as root in it", p, euid)
	}
	var owner uint32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, nsGetOwnerUID, uintptr(unsafe.Pointer(&owner))); e != 0 {
		return "", fmt.Errorf("--enable-sandbox: owner of user namespace %s: %w", p, e)
	}
	if int(owner) != euid {
		return "", fmt.Errorf("--enable-sandbox: cannot join user namespace %s: it belongs to uid %d, slirp runs as uid %d; run slirp as that user, or as root", p, owner, euid)
	}
	return p, nil
}

func sameFile(f *os.File, other string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(other)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// Resumed returns the State when this process was started by Exec and the
// constructor has sandboxed it; ok is false when the process was started
// some other way. An error means the sandbox was asked for and is not in
// place: the daemon must exit. Call it first thing in main (after
// tap.HelperMain).
func Resumed() (s State, ok bool, err error) {
	o := constructorOutcome()
	v, hasState := os.LookupEnv(EnvState)
	os.Unsetenv(EnvState)
	if !hasState && !o.asked {
		return State{}, false, nil
	}
	switch {
	case !o.asked:
		return State{}, true, errors.New("sandbox: the state was handed over but the sandbox was not built: the constructor did not run (was this binary built with CGO_ENABLED=1?)")
	case o.err != nil:
		return State{}, true, o.err
	case !o.done:
		return State{}, true, errors.New("sandbox: the constructor did not finish (internal error)")
	case !hasState:
		return State{}, true, fmt.Errorf("sandbox: %s is missing", EnvState)
	}
	s, err = decodeState(v)
	if err != nil {
		return State{}, true, err
	}
	if err := s.validate(true); err != nil {
		return State{}, true, err
	}
	// Nothing is to be executed from here on, but should something be,
	// it must not inherit the daemon's descriptors.
	for _, f := range s.fds() {
		if f.fd >= 0 {
			unix.CloseOnExec(f.fd)
		}
	}
	s.Args = os.Args
	return s, true, nil
}

// outcome is what the constructor did, in Go terms.
type outcome struct {
	asked, joinedUserns, done bool
	err                       error
}

// StepError is a failed step of the constructor.
type StepError struct {
	Op    string // what failed, e.g. "setns", "mount tmpfs on"
	Path  string // the file or value it failed on
	Errno syscall.Errno
}

// Error says what failed and, where it can tell, what to do about it.
func (e *StepError) Error() string {
	s := fmt.Sprintf("sandbox: %s %s: %s", e.Op, e.Path, strerror(e.Errno))
	if h := e.hint(); h != "" {
		s += " (" + h + ")"
	}
	return s
}

// Unwrap returns the errno, so errors.Is(err, syscall.EPERM) works.
func (e *StepError) Unwrap() error { return e.Errno }

func (e *StepError) hint() string {
	switch {
	case e.Op == "setns" || (e.Op == "open" && e.Errno == unix.EACCES):
		return "--enable-sandbox as an unprivileged user joins the container's user namespace; run slirp as the user that owns it, or as root"
	case strings.HasPrefix(e.Op, "become"):
		return "uid and gid 0 must be mapped in that user namespace, and slirp must be allowed to join it"
	case e.Op == "unshare" || (e.Errno == unix.EPERM && strings.Contains(e.Op, "mount")):
		return "building the sandbox needs CAP_SYS_ADMIN in slirp's user namespace; run slirp as root, or in the container's user namespace"
	case e.Op == "mount tmpfs on" && e.Errno == unix.ENOENT:
		return "the sandbox is built over /tmp, which must exist"
	}
	return ""
}

// strerror is the C library's text for errno ("Operation not permitted").
func strerror(errno syscall.Errno) string {
	s := errno.Error()
	if s == "" {
		return "errno " + strconv.Itoa(int(errno))
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
