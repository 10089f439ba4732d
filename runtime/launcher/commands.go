package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/netd"
	"github.com/slirp-dev/slirp/runtime/state"
)

// Ps writes the container list: running ones, and with all also those
// that exited (detached containers not yet removed).
func Ps(stateRoot string, all bool, w io.Writer) error {
	entries, err := state.Store{Root: stateRoot}.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tNAME\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tPOD")
	for _, e := range entries {
		if !e.Running && !all {
			continue
		}
		status := "Up"
		if !e.Running {
			status = fmt.Sprintf("Exited (%d)", e.ExitCode)
		}
		img := e.Image
		if img == "" {
			img = "-"
		}
		var ports []string
		for _, p := range e.Ports {
			ports = append(ports, p.Publish.String())
		}
		cmd := strings.Join(e.Command, " ")
		if len(cmd) > 30 {
			cmd = cmd[:27] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, dash(e.Name), img, cmd,
			e.Created.Format(time.RFC3339), status, dash(strings.Join(ports, ",")), dash(e.Pod))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func logPath(stateRoot, id string) string {
	return filepath.Join(stateRoot, "logs", id+".log")
}

// Logs copies a detached container's output to w.
func Logs(stateRoot, ref string, w io.Writer) error {
	e, err := state.Store{Root: stateRoot}.Find(ref)
	if err != nil {
		return err
	}
	f, err := os.Open(logPath(stateRoot, e.ID))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("container %s has no log: only detached (-d) containers keep one", e.ID)
		}
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Stop sends SIGTERM to the container (through its supervisor, which
// forwards it) and SIGKILL after timeout.
func Stop(stateRoot, ref string, timeout time.Duration) error {
	e, err := state.Store{Root: stateRoot}.Find(ref)
	if err != nil {
		return err
	}
	if !e.Running {
		return nil
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	pidfd, err := unix.PidfdOpen(e.Supervisor, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("stop %s: %w", e.ID, err)
	}
	defer unix.Close(pidfd)
	// The lock proves the pid still is our supervisor (not a reused pid).
	if !lockedNow(e.Dir) {
		return nil
	}
	if err := unix.PidfdSendSignal(pidfd, unix.SIGTERM, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop %s: %w", e.ID, err)
	}
	if state.WaitUnlocked(e.Dir, timeout) {
		return nil
	}
	// The command ignored SIGTERM (PID 1 ignores signals it has no
	// handler for): kill the supervisor, which takes the container with
	// it.
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %s: %w", e.ID, err)
	}
	if !state.WaitUnlocked(e.Dir, 10*time.Second) {
		return fmt.Errorf("container %s did not stop", e.ID)
	}
	return nil
}

func lockedNow(dir string) bool { return !state.WaitUnlocked(dir, 0) }

// Rm removes an exited container's state and log; force stops it first.
func Rm(stateRoot, ref string, force bool, timeout time.Duration) error {
	store := state.Store{Root: stateRoot}
	e, err := store.Find(ref)
	if err != nil {
		return err
	}
	if e.Running {
		if !force {
			return fmt.Errorf("container %s is running: stop it first, or use rm -f", e.ID)
		}
		if err := Stop(stateRoot, e.ID, timeout); err != nil {
			return err
		}
		// A detached supervisor records the exit; give it a moment.
		state.WaitUnlocked(e.Dir, 5*time.Second)
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", e.ID, err)
	}
	if err := os.Remove(logPath(stateRoot, e.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Port lists a container's published ports, asking its network daemon
// when it runs and using the recorded list otherwise.
func Port(ctx context.Context, stateRoot, ref string, w io.Writer) error {
	e, err := state.Store{Root: stateRoot}.Find(ref)
	if err != nil {
		return err
	}
	if e.Running && e.APISocket != "" {
		fwds, err := netd.ListHostfwd(ctx, e.APISocket)
		if err == nil {
			mine := map[int]bool{}
			for _, p := range e.Ports {
				mine[p.ID] = true
			}
			for _, f := range fwds {
				if e.Pod != "" && !mine[f.ID] {
					continue // another member's port in the same pod
				}
				fmt.Fprintf(w, "%d/%s -> %s:%d\n", f.GuestPort, f.Proto, f.HostAddr, f.HostPort)
			}
			return nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, p := range e.Ports {
		host := "0.0.0.0"
		if p.HostIP.IsValid() {
			host = p.HostIP.String()
		}
		fmt.Fprintf(w, "%d/%s -> %s:%d\n", p.ContainerPort, p.Proto, host, p.HostPort)
	}
	return nil
}
