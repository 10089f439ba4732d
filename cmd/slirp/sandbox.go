package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp"
	"github.com/slirp-dev/slirp/internal/cli"
	"github.com/slirp-dev/slirp/internal/sandbox"
	"github.com/slirp-dev/slirp/internal/watch"
	"github.com/slirp-dev/slirp/portfwd/api"
	"github.com/slirp-dev/slirp/tap"
)

// --enable-sandbox runs the daemon in two images of one process (see
// internal/sandbox). The first does everything that needs the host: it
// takes a pidfd on the target process (pid mode), starts the namespace
// helper and creates the tap (or accepts the BESS client, or takes the
// tapfd), binds the API socket, opens the pcap file and writes the pid
// file. Then it re-executes itself in place, same PID, handing all of it
// over as descriptors, with the parsed command line in the State's Data
// (inside, the paths it names may be gone). The sandboxed image rebuilds
// the pieces, starts the network, installs the seccomp filter when asked,
// and only then writes the ready fd.
//
// What the sandbox changes for the user:
//
//   - in pid mode the daemon exits when the target process exits, not when
//     the target namespace has no process left: that needs /proc, which
//     the sandbox lacks;
//   - the pid file and the API socket stay behind at exit, as slirp4netns
//     leaves its API socket: their directory is outside the sandbox, and
//     a descriptor of it kept inside would be a way out. Podman removes
//     its temporary directory itself;
//   - --resolv-conf is kept visible read-only inside; a file replaced by
//     rename on the host is not followed (one rewritten in place is);
//   - --metrics takes HOST:PORT only: a unix socket cannot be created in
//     the sandbox's read-only root;
//   - a daemon that joined the target's user namespace (not root) sees the
//     host's root as an unmapped user, which its API refuses: only the
//     owner may use the API socket then.

func init() {
	// init runs on the main thread, whose name ps, top and pgrep show.
	if _, resumed := os.LookupEnv(sandbox.EnvState); resumed {
		restoreName()
	}
}

// restoreName names the process after its command again: the exec through
// /proc/self/exe named it "exe".
func restoreName() {
	name := filepath.Base(os.Args[0])
	if len(name) > 15 { // TASK_COMM_LEN - 1
		name = name[:15]
	}
	b, err := unix.BytePtrFromString(name)
	if err != nil {
		return
	}
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(b)), 0, 0, 0)
}

// Names of State.FDs.
const (
	fdTarget = "target pidfd"
	fdPcap   = "pcap"
)

// handoff is what the first image tells the sandboxed one besides the
// descriptors in sandbox.State.
type handoff struct {
	// Config is the parsed command line, with ResolvConf made absolute
	// and the warnings (already printed) left out.
	Config *cli.Config `json:"config"`
	// LinkVnetHdr says the link carries virtio-net headers (a tap the
	// helper opened).
	LinkVnetHdr bool `json:"link_vnet_hdr,omitempty"`
	// ExitFDClosed says --exit-fd was given but not open.
	ExitFDClosed bool `json:"exit_fd_closed,omitempty"`
	// HelperNetns names the target namespace in the helper's messages.
	HelperNetns string `json:"helper_netns,omitempty"`
}

func encodeHandoff(h handoff) (json.RawMessage, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("hand the configuration over to the sandbox: %w", err)
	}
	return b, nil
}

func decodeHandoff(st sandbox.State) (handoff, error) {
	var h handoff
	if err := json.Unmarshal(st.Data, &h); err != nil {
		return handoff{}, fmt.Errorf("sandbox: the configuration handed over is unreadable: %w", err)
	}
	if h.Config == nil {
		return handoff{}, errors.New("sandbox: no configuration was handed over")
	}
	return h, nil
}

// checkSandboxable refuses, before anything is set up, what cannot work
// inside the sandbox.
func checkSandboxable(cfg *cli.Config) error {
	if a := cfg.MetricsAddr; strings.HasPrefix(a, "/") || strings.HasPrefix(a, "./") {
		return fmt.Errorf("--metrics=%s: a unix socket cannot be created inside --enable-sandbox, whose root is read-only; serve the metrics on HOST:PORT instead", a)
	}
	return nil
}

// execSandbox sets up everything that needs the host and re-executes the
// daemon into the sandbox. It returns only on failure; d.close then undoes
// what it did.
func (d *daemon) execSandbox(ctx context.Context) error {
	cfg := d.cfg
	if err := checkSandboxable(cfg); err != nil {
		return err
	}
	st := sandbox.NewState()
	st.FDs = map[string]int{}
	st.UsernsPath = cfg.UsernsPath
	helperNetns := cfg.NetnsPath
	if cfg.TargetType == cli.TargetNetns && cfg.NetnsType == cli.NetnsTypePID {
		// A handle on the target, taken before the tap is created so
		// that a target that exits at once is still noticed. Inside,
		// only this pidfd tells when the target is gone.
		fd, err := unix.PidfdOpen(cfg.PID, unix.PIDFD_NONBLOCK)
		if err != nil {
			if errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("target process %d does not exist", cfg.PID)
			}
			return fmt.Errorf("target process %d: pidfd_open: %w", cfg.PID, err)
		}
		d.targetProc = watch.AdoptPidfd(fd)
		st.FDs[fdTarget] = fd
		// A daemon that is not root joins the target's user namespace,
		// as slirp4netns does.
		if st.UsernsPath == "" {
			st.UsernsPath = fmt.Sprintf("/proc/%d/ns/user", cfg.PID)
		}
		helperNetns = fmt.Sprintf("/proc/%d/ns/net", cfg.PID)
	}

	opts, err := d.options(ctx)
	if err != nil {
		return err
	}
	if opts, err = slirp.Prepare(ctx, opts); err != nil {
		return err
	}
	d.prepared.Link, d.prepared.Helper = opts.Link, opts.Helper
	if st.TapFD, err = rawFD(opts.Link); err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if cfg.APISocket != "" {
		ln, err := api.Listen(cfg.APISocket)
		if err != nil {
			return err
		}
		d.prepared.APIListener = ln
		if st.APIFD, err = rawFD(ln.UnixListener); err != nil {
			return fmt.Errorf("API socket: %w", err)
		}
	}
	if d.pcap != nil {
		if st.FDs[fdPcap], err = rawFD(d.pcap); err != nil {
			return fmt.Errorf("pcap file: %w", err)
		}
	}
	// The PID stays the same across the exec, and inside there is no
	// way to the file.
	if cfg.PIDFile != "" {
		if err := d.writePIDFile(); err != nil {
			return err
		}
	}
	st.ReadyFD, st.ExitFD = d.readyFD, d.exitFD

	// The working directory becomes /: keep --resolv-conf by its
	// absolute path.
	resolv, err := filepath.Abs(cfg.ResolvConf)
	if err != nil {
		return fmt.Errorf("--resolv-conf=%s: %w", cfg.ResolvConf, err)
	}
	st.Keep = []string{resolv}
	handed := *cfg
	handed.ResolvConf, handed.Warnings = resolv, nil
	if st.Data, err = encodeHandoff(handoff{
		Config:       &handed,
		LinkVnetHdr:  opts.LinkVnetHdr,
		ExitFDClosed: d.exitFDClosed,
		HelperNetns:  helperNetns,
	}); err != nil {
		return err
	}
	st.Seccomp = cfg.EnableSeccomp

	// Last: from here the helper no longer dies with the thread that
	// started it, only when its control socket closes.
	if h := opts.Helper; h != nil {
		if st.HelperCtlFD, err = h.PrepareExec(ctx); err != nil {
			return err
		}
		st.HelperPID = h.PID()
	}
	d.log.Debug("entering the sandbox", "userns", st.UsernsPath, "keep", st.Keep)
	return sandbox.Exec(st)
}

// resume rebuilds, in the sandboxed image, what the first image handed
// over, and returns the network's options with it.
func (d *daemon) resume(st sandbox.State, h handoff) (slirp.Options, error) {
	o := d.baseOptions()
	if st.TapFD < 0 {
		return o, errors.New("sandbox: no link was handed over")
	}
	// The first image's Fd() or the exec may have left it blocking; the
	// runtime poller needs it non-blocking before os.NewFile.
	if err := unix.SetNonblock(st.TapFD, true); err != nil {
		return o, fmt.Errorf("sandbox: link (fd %d): %w", st.TapFD, err)
	}
	o.Link, o.LinkVnetHdr = os.NewFile(uintptr(st.TapFD), "link"), h.LinkVnetHdr
	d.prepared.Link = o.Link
	if st.HelperPID != 0 {
		helper, err := tap.Adopt(st.HelperCtlFD, st.HelperPID, tap.Target{NetnsPath: h.HelperNetns}, d.log.With("component", "tap"))
		if err != nil {
			return o, err
		}
		o.Helper, d.prepared.Helper = helper, helper
	}
	if st.APIFD >= 0 {
		ln, err := apiListenerFrom(st.APIFD)
		if err != nil {
			return o, err
		}
		o.APIListener, d.prepared.APIListener = ln, ln
	}
	if fd, ok := st.FDs[fdPcap]; ok {
		d.pcap = os.NewFile(uintptr(fd), "pcap")
		o.Pcap = d.pcap
	}
	if fd, ok := st.FDs[fdTarget]; ok {
		d.targetProc = watch.AdoptPidfd(fd)
	}
	return o, nil
}

// rawFD is c's descriptor, without the switch to blocking mode that
// os.File.Fd makes.
func rawFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// apiListenerFrom wraps the listening API socket handed over at fd. Its
// Path is empty, so Close leaves the socket file alone: inside the sandbox
// it cannot be removed.
func apiListenerFrom(fd int) (*api.Listener, error) {
	f := os.NewFile(uintptr(fd), "api-socket")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("sandbox: API socket (fd %d): %w", fd, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("sandbox: API socket (fd %d) is not a unix socket", fd)
	}
	ul.SetUnlinkOnClose(false)
	return &api.Listener{UnixListener: ul}, nil
}
