// Package nstest holds helpers for tests that need real Linux namespaces:
// a throw-away network namespace (optionally inside a new user namespace),
// commands run inside it, veth links between namespaces that play remote
// hosts, and an unprivileged user for the rootless paths.
//
// Every helper registers its cleanup with t.Cleanup, so namespaces and
// processes are gone when the test ends, even when it fails. Helpers skip the
// test, with the reason, when the machine cannot provide what they need.
package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root (CI runs as root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the namespace tests as root (make test does in CI)")
	}
}

// RequireTools skips the test when one of the named programs is missing.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("needs %s in PATH: %v", n, err)
		}
	}
}

var (
	probeOnce sync.Once
	probeErr  error
)

// RequireNamespaces skips the test unless this process can create user and
// network namespaces and open /dev/net/tun.
func RequireNamespaces(t testing.TB) {
	t.Helper()
	probeOnce.Do(func() {
		f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
		if err != nil {
			probeErr = fmt.Errorf("open /dev/net/tun: %w", err)
			return
		}
		f.Close()
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		}
		if err := cmd.Run(); err != nil {
			probeErr = fmt.Errorf("create user+net namespace: %w", err)
		}
	})
	if probeErr != nil {
		t.Skipf("needs user and network namespaces and /dev/net/tun: %v", probeErr)
	}
}

// Netns is a network namespace kept alive by a sleeping process.
type Netns struct {
	// PID is the process holding the namespace.
	PID int
	// Path is /proc/PID/ns/net.
	Path string
	// UsernsPath is /proc/PID/ns/user; it is the test's own user namespace
	// unless the namespace was created with WithUserns.
	UsernsPath string
	// OwnUserns says the namespace has a user namespace of its own.
	OwnUserns bool

	cmd *exec.Cmd
}

// Option changes how NewNetns creates the namespace.
type Option func(*netnsOptions)

type netnsOptions struct {
	userns  bool
	cred    *syscall.Credential
	mountns bool
}

// WithUserns puts the network namespace in a new user namespace that maps
// the creator to root, as `unshare -Urn` does.
func WithUserns() Option { return func(o *netnsOptions) { o.userns = true } }

// WithMountns also gives the holder a new mount namespace.
func WithMountns() Option { return func(o *netnsOptions) { o.mountns = true } }

// AsUser creates the namespace as the given user (the holder runs with
// these credentials), as an unprivileged user would with `unshare -Urn`.
func AsUser(uid, gid uint32) Option {
	return func(o *netnsOptions) { o.cred = &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: false} }
}

// NewNetns creates a network namespace held by `sleep infinity`, with lo up.
// The holder is killed and reaped when the test ends.
func NewNetns(t testing.TB, opts ...Option) *Netns {
	t.Helper()
	var o netnsOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.userns {
		RequireNamespaces(t)
	} else {
		RequireRoot(t)
	}
	cmd := exec.Command("sleep", "infinity")
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if o.mountns {
		attr.Cloneflags |= syscall.CLONE_NEWNS
	}
	switch {
	case o.cred != nil:
		// The kernel makes the creator of a user namespace its owner, so the
		// user must already be unprivileged when it unshares: drop to the
		// user first, then let unshare(1) create the namespaces and write
		// the one-line maps, as a rootless user's tools do.
		RequireTools(t, "unshare")
		flags := []string{"--net"}
		if o.userns {
			flags = append(flags, "--user", "--map-root-user")
		}
		if o.mountns {
			flags = append(flags, "--mount")
		}
		cmd = exec.Command("unshare", append(flags, "sleep", "infinity")...)
		attr.Cloneflags = 0
		attr.Credential = &syscall.Credential{Uid: o.cred.Uid, Gid: o.cred.Gid, Groups: []uint32{}}
	case o.userns:
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if o.cred != nil {
		waitUnshared(t, cmd.Process.Pid, o.userns)
	}
	n := &Netns{
		PID:        cmd.Process.Pid,
		Path:       fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid),
		UsernsPath: fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid),
		OwnUserns:  o.userns,
		cmd:        cmd,
	}
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// waitUnshared waits, for at most 10 s, until process pid has left this
// process's network namespace and, with userns, until unshare(1) has
// written its uid and gid maps (it does so after unsharing).
func waitUnshared(t testing.TB, pid int, userns bool) {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("read own netns: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ns != self {
			if !userns || (mapWritten(pid, "uid_map") && mapWritten(pid, "gid_map")) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not enter a new network namespace within 10s", pid)
}

// mapWritten says /proc/PID/<name> has a mapping in it.
func mapWritten(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	return err == nil && len(bytes.TrimSpace(b)) > 0
}

// Command returns a command that runs inside the namespace (and its user
// namespace, when it has one) through nsenter.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	nsargs := []string{"--target", strconv.Itoa(n.PID), "--net"}
	if n.OwnUserns {
		nsargs = append(nsargs, "--user")
	}
	nsargs = append(nsargs, "--", name)
	cmd := exec.CommandContext(ctx, "nsenter", append(nsargs, args...)...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs a command inside the namespace and fails the test when it fails.
// It returns the command's standard output.
func (n *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Output(name, args...)
	if err != nil {
		t.Fatalf("%s %s in netns: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// Output runs a command inside the namespace with a 30 s limit and returns its
// standard output; the error includes standard error.
func (n *Netns) Output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := n.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Veth links namespace a (interface nameA, address addrA in CIDR form) to
// namespace b (nameB, addrB), with both ends up. Either namespace may be nil
// for the test's own namespace. Root only.
func Veth(t testing.TB, a *Netns, nameA, addrA string, b *Netns, nameB, addrB string) {
	t.Helper()
	RequireRoot(t)
	tmpA := fmt.Sprintf("vt%da", time.Now().UnixNano()%1e9)
	tmpB := fmt.Sprintf("vt%db", time.Now().UnixNano()%1e9)
	host := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	host("link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", tmpA).Run() })
	place := func(ns *Netns, tmp, name, addr string) {
		t.Helper()
		if ns == nil {
			host("link", "set", tmp, "name", name)
			host("addr", "add", addr, "dev", name)
			host("link", "set", name, "up")
			t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
			return
		}
		host("link", "set", tmp, "netns", strconv.Itoa(ns.PID))
		ns.Run(t, "ip", "link", "set", tmp, "name", name)
		ns.Run(t, "ip", "addr", "add", addr, "dev", name)
		ns.Run(t, "ip", "link", "set", name, "up")
	}
	place(a, tmpA, nameA, addrA)
	place(b, tmpB, nameB, addrB)
}

// TestUser is the name of the unprivileged account the tests use for the
// rootless paths.
const TestUser = "slirp-test"

// UnprivilegedUser returns the uid and gid of the unprivileged test account,
// creating it when it is missing. It needs root and skips otherwise.
func UnprivilegedUser(t testing.TB) (uid, gid uint32) {
	t.Helper()
	RequireRoot(t)
	u, err := user.Lookup(TestUser)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			t.Fatalf("look up %s: %v", TestUser, err)
		}
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TestUser).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("already exists")) {
			t.Skipf("cannot create unprivileged user %s: %v: %s", TestUser, err, out)
		}
		if u, err = user.Lookup(TestUser); err != nil {
			t.Fatalf("look up %s after useradd: %v", TestUser, err)
		}
	}
	id, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(id), uint32(g)
}

// RequireUnprivilegedTun skips the test unless an unprivileged user may open
// /dev/net/tun (mode 0666 on Debian; .ci/run makes sure of it).
func RequireUnprivilegedTun(t testing.TB) {
	t.Helper()
	st, err := os.Stat("/dev/net/tun")
	if err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	if st.Mode().Perm()&0o006 != 0o006 {
		t.Skipf("/dev/net/tun is mode %v: unprivileged users cannot open it (chmod 0666 /dev/net/tun, as Debian ships it)", st.Mode().Perm())
	}
}

// CopyTestBinary copies the running test binary into a directory any user
// may enter and returns its path, so that the unprivileged test user (or a
// helper re-executed as that user) can run it: go test keeps the binary in a
// directory only its owner may enter.
func CopyTestBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "slirp-testbin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(exe))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
