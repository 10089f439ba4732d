package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// guestNetns is the namespace a daemon serves: a new user namespace (root
// mapped to root) with a new network namespace, held by `sleep infinity`,
// as `unshare -Urn` makes one. That is the shape rootless containers have,
// so all three daemons take the same path they take under podman or
// rootlesskit: they join the user namespace of the holder by its PID and
// create the tap there.
type guestNetns struct {
	holder *exec.Cmd
	pid    int
}

// newGuestNetns creates the namespace with lo up.
func newGuestNetns() (*guestNetns, error) {
	cmd := exec.Command("sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		// The holder dies with the harness, so an interrupted run leaves
		// no namespace behind.
		Pdeathsig: syscall.SIGKILL,
		Setpgid:   true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("create the guest namespace (needs root, or user namespaces enabled): %w", err)
	}
	n := &guestNetns{holder: cmd, pid: cmd.Process.Pid}
	if out, err := n.output(context.Background(), "ip", "link", "set", "lo", "up"); err != nil {
		n.close()
		return nil, fmt.Errorf("bring lo up in the guest namespace: %w: %s", err, out)
	}
	return n, nil
}

// argv wraps a command line so that it runs inside the namespace.
func (n *guestNetns) argv(args ...string) []string {
	return append([]string{"nsenter", "--target", strconv.Itoa(n.pid), "--user", "--net",
		"--preserve-credentials", "--"}, args...)
}

// command returns a command that runs inside the namespace.
func (n *guestNetns) command(ctx context.Context, args ...string) *exec.Cmd {
	argv := n.argv(args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// output runs a command inside the namespace with a 30 s limit and returns
// its standard output, or standard error with the error.
func (n *guestNetns) output(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := n.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stderr.String()), err
	}
	return stdout.String(), nil
}

// close kills the holder; the namespace goes with its last process.
func (n *guestNetns) close() {
	_ = n.holder.Process.Kill()
	_ = n.holder.Wait()
}
