// Package tap creates tap devices inside another process's network namespace
// and hands their file descriptors to the daemon, which stays in the host
// namespaces; it also creates sockets there for port forwarding.
//
// Enter starts a helper: the daemon's own binary, re-executed through
// /proc/self/exe, which joins the target's user and network namespaces
// before its Go runtime starts (see internal/nsenter) and then serves
// requests over a socketpair, returning each new descriptor with
// SCM_RIGHTS. This is slirp4netns's fork-and-send-the-fd design; a separate
// process is needed because a Go process cannot join a user namespace.
//
// Every binary that calls Enter must call HelperMain first thing in main
// (test binaries: in TestMain), which is where the helper runs.
//
// A tap descriptor keeps its device, and a socket keeps its network
// namespace, for as long as it is open, wherever the descriptor goes; so the
// daemon can use both from the host namespaces after the helper is gone.
//
// A daemon that re-executes itself in place (the sandbox of
// --enable-sandbox) keeps its helper: PrepareExec before the execve, Adopt
// in the new image.
package tap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nsenter"
)

// Target names the namespaces to enter.
type Target struct {
	// NetnsPath is /proc/PID/ns/net or a bind-mounted netns file; required.
	NetnsPath string
	// UsernsPath is the user namespace to join first; "" joins none. When
	// it is the daemon's own user namespace there is nothing to join and
	// it is skipped, as slirp4netns ignores the EINVAL from setns.
	UsernsPath string
}

// TapConfig says which tap device OpenTap creates or attaches to.
type TapConfig struct {
	// Name is the device name, such as "tap0": at most 15 bytes. "" lets
	// the kernel pick one (tap0, tap1, ...); the returned file is named
	// after the device either way.
	Name string
	// VnetHdr opens the device with IFF_VNET_HDR: every frame read or
	// written then starts with a struct virtio_net_hdr (10 bytes unless
	// changed with TUNSETVNETHDRSZ). Offloads are off until the user of
	// the descriptor enables them with TUNSETOFFLOAD.
	VnetHdr bool
	// Configure, when not nil, configures the device and lo as
	// slirp4netns --configure does. nil leaves the device as created
	// (down, no address), like slirp4netns without -c.
	Configure *Addressing
}

// Addressing is what --configure sets up. Besides these, lo is brought up.
type Addressing struct {
	// MTU is set on the tap; 0 keeps the kernel's default (1500). The
	// kernel refuses values below 68.
	MTU int
	// MAC is the tap's Ethernet address; nil keeps the kernel's random one.
	MAC net.HardwareAddr
	// Address is the tap's IPv4 address and prefix, e.g. 10.0.2.100/24;
	// the broadcast address is derived from it. Zero adds none.
	Address netip.Prefix
	// Gateway is where the IPv4 default route (metric 0, via the tap)
	// points, e.g. 10.0.2.2. Zero adds no route.
	Gateway netip.Addr
	// Address6 is an IPv6 address and prefix for the tap, added without
	// duplicate address detection. Zero adds none.
	Address6 netip.Prefix
	// Gateway6 is where the IPv6 default route via the tap points, for
	// example fe80::2. Zero adds no route.
	Gateway6 netip.Addr
}

// Namespace is a helper process living inside the target namespaces. It
// creates tap devices and sockets there and passes their fds back. Its
// methods may be called from several goroutines; requests are served one
// at a time.
type Namespace struct {
	log    *slog.Logger
	target Target
	// cmd is the helper when Enter started it; nil when Adopt took it
	// over from an earlier image of this process.
	cmd  *exec.Cmd
	pid  int
	kill func() error  // SIGKILL to the helper, never to a reused PID
	conn *net.UnixConn // our end of the control socketpair

	// sem holds the right to use conn (one request in flight), and guards
	// the fields below it.
	sem    chan struct{}
	lastID uint32
	buf    []byte
	oob    []byte

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// done is closed once the helper has exited; waitErr is then its
	// exit status.
	done    chan struct{}
	waitErr error
}

const (
	// envHelper tells a process started by Enter that it is the helper,
	// and which descriptor is its end of the control socket.
	envHelper = "_SLIRP_TAP_HELPER"
	// helperCtlFD is where the control socket lands in the helper: the
	// first of exec.Cmd.ExtraFiles.
	helperCtlFD = 3
	// helperExitTimeout bounds how long Close waits for the helper to exit
	// on its own before killing it.
	helperExitTimeout = 5 * time.Second
)

// helperMainCalled records that this process called HelperMain, so that
// Enter can refuse to start a helper that would run the program's real main
// inside the target namespaces.
var helperMainCalled atomic.Bool

// Enter starts a helper inside the namespaces t names and waits until it has
// joined them. ctx bounds the start only; the helper lives until Close (or
// until this process dies: it is killed with SIGKILL then). log may be nil.
func Enter(ctx context.Context, t Target, log *slog.Logger) (*Namespace, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if t.NetnsPath == "" {
		return nil, errors.New("enter namespaces: no network namespace path given")
	}
	if !helperMainCalled.Load() {
		return nil, errors.New("enter namespaces: tap.HelperMain was not called; call it first thing in main (and in TestMain of tests that use this package)")
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("enter namespaces: create control socket: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "tap helper control")
	theirs := os.NewFile(uintptr(pair[1]), "tap helper control (helper end)")
	defer theirs.Close()
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("enter namespaces: control socket: %w", err)
	}
	conn := fc.(*net.UnixConn)

	env := helperEnv(os.Environ())
	env = append(env, nsenter.Request{
		UsernsPath: t.UsernsPath,
		NetnsPath:  t.NetnsPath,
		CloseFrom:  helperCtlFD + 1,
	}.Env()...)
	env = append(env, fmt.Sprintf("%s=%d", envHelper, helperCtlFD))
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"slirp-tap-helper"},
		Env:        env,
		Stderr:     os.Stderr, // only a crashing helper writes here
		ExtraFiles: []*os.File{theirs},
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			// Its own process group, so that ^C at a terminal reaches
			// the daemon only; the helper goes when the daemon does.
			Setpgid: true,
		},
	}
	n := &Namespace{
		log:    log.With("netns", t.NetnsPath),
		target: t,
		cmd:    cmd,
		conn:   conn,
		sem:    make(chan struct{}, 1),
		buf:    make([]byte, maxPacket),
		oob:    make([]byte, unix.CmsgSpace(4*4)),
		done:   make(chan struct{}),
	}
	started := make(chan error, 1)
	go n.run(started)
	if err := <-started; err != nil {
		conn.Close()
		return nil, fmt.Errorf("enter namespaces: start helper: %w", err)
	}
	theirs.Close()
	n.pid, n.kill = cmd.Process.Pid, cmd.Process.Kill

	rep, fds, err := n.receive(ctx, helloID)
	closeFDs(fds)
	if err == nil && rep.status != statusOK {
		err = rep.err()
	}
	if err != nil {
		n.Close()
		var remote *remoteError
		if errors.As(err, &remote) {
			// The helper's message names the namespace file already.
			return nil, fmt.Errorf("enter namespaces: %w", err)
		}
		return nil, fmt.Errorf("enter namespaces of %s: %w", t.NetnsPath, err)
	}
	if rep.text != "" {
		n.log.Warn("tap helper: " + rep.text)
	}
	n.log.Debug("tap helper entered the namespaces", "pid", n.pid, "userns", t.UsernsPath)
	return n, nil
}

// run starts the helper and waits for it. It keeps its goroutine on one OS
// thread for the helper's whole life because PR_SET_PDEATHSIG fires when
// the thread that forked the child exits, not the process: the Go runtime
// ends a thread whenever a goroutine exits while locked to it (as code that
// switches namespaces on a thread does), and the helper must not die then.
func (n *Namespace) run(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := n.cmd.Start(); err != nil {
		started <- err
		return
	}
	started <- nil
	n.waitErr = n.cmd.Wait()
	close(n.done)
}

// helperEnv returns env without any request meant for an earlier helper.
func helperEnv(env []string) []string {
	out := make([]string, 0, len(env)+4)
	for _, kv := range env {
		if strings.HasPrefix(kv, envHelper+"=") || strings.HasPrefix(kv, "_SLIRP_NSENTER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// OpenTap creates (or attaches to an existing persistent) tap with
// IFF_TAP|IFF_NO_PI (plus IFF_VNET_HDR when cfg.VnetHdr), optionally
// configures it, and returns its fd (non-blocking, close-on-exec), named
// after the device. A tap that OpenTap created vanishes when the last copy of
// the fd is closed. Use the file's SyscallConn to reach the fd: Fd() would
// switch it back to blocking mode.
func (n *Namespace) OpenTap(ctx context.Context, cfg TapConfig) (*os.File, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("open tap: %w", err)
	}
	rep, fd, err := n.roundTrip(ctx, request{kind: kindOpenTap, tap: cfg}, true)
	if err != nil {
		name := cfg.Name
		if name == "" {
			name = "(any name)"
		}
		return nil, fmt.Errorf("open tap %s in %s: %w", name, n.target.NetnsPath, err)
	}
	return newFile(fd, rep.text)
}

// Socket creates a socket inside the target network namespace (socket(2)
// there) and returns it, non-blocking and close-on-exec, so the daemon can
// bind/connect it from the host namespace while it stays in the target
// netns. This is how port forwards reach services inside the namespace
// without the user-mode stack. typ may include SOCK_NONBLOCK and
// SOCK_CLOEXEC; both are set anyway.
func (n *Namespace) Socket(ctx context.Context, domain, typ, proto int) (*os.File, error) {
	typ &^= unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	args := socketArgs{domain: int32(domain), typ: int32(typ), proto: int32(proto)}
	if int(args.domain) != domain || int(args.typ) != typ || int(args.proto) != proto {
		return nil, fmt.Errorf("create socket(%d, %d, %d): %w", domain, typ, proto, unix.EINVAL)
	}
	_, fd, err := n.roundTrip(ctx, request{kind: kindSocket, sock: args}, true)
	if err != nil {
		return nil, fmt.Errorf("create socket(%d, %d, %d) in %s: %w", domain, typ, proto, n.target.NetnsPath, err)
	}
	return newFile(fd, "socket in "+n.target.NetnsPath)
}

// newFile wraps a received descriptor. It is made non-blocking first so
// that os.NewFile registers it with the runtime poller.
func newFile(fd int, name string) (*os.File, error) {
	// Raw fcntl calls, for the reason given in rawmsg.go: a port forward
	// gets a socket this way per connection.
	fl, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETFL, 0)
	if e == 0 && fl&unix.O_NONBLOCK == 0 {
		_, _, e = unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETFL, fl|unix.O_NONBLOCK)
	}
	if e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("set %s non-blocking: %w", name, os.NewSyscallError("fcntl", e))
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Close stops the helper and waits for it. It returns an error when the
// helper had died before, or had to be killed.
func (n *Namespace) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		// The helper exits when it reads EOF.
		n.conn.Close()
		select {
		case <-n.done:
		case <-time.After(helperExitTimeout):
			_ = n.kill()
			<-n.done
			n.closeErr = fmt.Errorf("tap helper %d did not exit within %v of Close; killed it", n.pid, helperExitTimeout)
			return
		}
		if n.waitErr != nil {
			n.closeErr = fmt.Errorf("tap helper %d: %w", n.pid, n.waitErr)
		}
	})
	return n.closeErr
}

// errClosed is returned by requests made after (or cut short by) Close.
var errClosed = fmt.Errorf("tap helper: %w", os.ErrClosed)

// roundTrip sends one request and returns the reply and the descriptor it
// carries: exactly one when wantFD, else none (-1). Failures the helper
// reports come back as errors.
func (n *Namespace) roundTrip(ctx context.Context, req request, wantFD bool) (reply, int, error) {
	select {
	case n.sem <- struct{}{}:
	case <-ctx.Done():
		return reply{}, -1, ctx.Err()
	}
	defer func() { <-n.sem }()
	if n.closed.Load() {
		return reply{}, -1, errClosed
	}
	n.lastID++
	if n.lastID == helloID {
		n.lastID++
	}
	req.id = n.lastID
	b, err := req.encode()
	if err != nil {
		return reply{}, -1, err
	}

	stop := n.cancelOnDone(ctx)
	err = n.sendPacket(b)
	stop()
	if err != nil {
		return reply{}, -1, n.ioError(ctx, "send request", err)
	}
	rep, fds, err := n.receive(ctx, req.id)
	if err != nil {
		closeFDs(fds)
		return reply{}, -1, err
	}
	if rep.status != statusOK {
		closeFDs(fds)
		return reply{}, -1, rep.err()
	}
	want := 0
	if wantFD {
		want = 1
	}
	if len(fds) != want {
		closeFDs(fds)
		return reply{}, -1, fmt.Errorf("tap helper replied with %d descriptors, want %d", len(fds), want)
	}
	if !wantFD {
		return rep, -1, nil
	}
	return rep, fds[0], nil
}

// receive reads replies until the one with the given id, dropping (and
// closing the descriptors of) replies to requests that were given up on.
func (n *Namespace) receive(ctx context.Context, id uint32) (reply, []int, error) {
	stop := n.cancelOnDone(ctx)
	defer stop()
	for {
		nb, oobn, flags, err := n.recvPacket(n.buf, n.oob)
		if err != nil {
			return reply{}, nil, n.ioError(ctx, "read reply", err)
		}
		fds, err := parseRights(n.oob[:oobn])
		if err != nil {
			return reply{}, fds, fmt.Errorf("tap helper reply: %w", err)
		}
		if nb == 0 {
			// A zero-length packet is EOF: the helper is gone.
			return reply{}, fds, n.helperGone()
		}
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			return reply{}, fds, fmt.Errorf("tap helper reply truncated (flags %#x)", flags)
		}
		rep, err := decodeReply(n.buf[:nb])
		if err != nil {
			return reply{}, fds, fmt.Errorf("tap helper reply: %w", err)
		}
		if rep.id != id {
			n.log.Debug("dropping stale tap helper reply", "id", rep.id, "want", id)
			closeFDs(fds)
			continue
		}
		return rep, fds, nil
	}
}

// cancelOnDone makes I/O on conn fail once ctx is done. The returned stop
// undoes it; it must be called before conn is used with another context.
func (n *Namespace) cancelOnDone(ctx context.Context) (stop func()) {
	fired := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		_ = n.conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stopAfter() {
			<-fired
			_ = n.conn.SetDeadline(time.Time{})
		}
	}
}

// ioError explains a failed read or write on the control socket.
func (n *Namespace) ioError(ctx context.Context, what string, err error) error {
	switch {
	case ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return ctx.Err()
	case n.closed.Load():
		return errClosed
	case errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET):
		return n.helperGone()
	}
	return fmt.Errorf("tap helper: %s: %w", what, err)
}

// helperGone reports a helper that hung up, with its exit status when it
// is known soon.
func (n *Namespace) helperGone() error {
	select {
	case <-n.done:
		return fmt.Errorf("tap helper exited unexpectedly: %v", n.waitErr)
	case <-time.After(helperExitTimeout):
		return errors.New("tap helper closed its control socket unexpectedly")
	}
}

// parseRights returns the descriptors carried by a control message.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("parse SCM_RIGHTS: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// remoteError is a failure the helper reported. Its text is the whole
// message; it unwraps to the errno, so errors.Is(err, syscall.EBUSY) works.
type remoteError struct {
	text  string
	errno syscall.Errno
}

func (e *remoteError) Error() string { return e.text }

func (e *remoteError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

func (r reply) err() error {
	return &remoteError{text: r.text, errno: syscall.Errno(r.errno)}
}
