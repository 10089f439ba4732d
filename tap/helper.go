package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nsenter"
	"github.com/slirp-dev/slirp/internal/sockserve"
)

func init() {
	if _, ok := os.LookupEnv(envHelper); ok {
		// The parent-death signal belongs to one thread: the main
		// thread, where the daemon's fork set it and where the
		// runtime's later threads do not inherit it. serve sets and
		// clears it, so serve must run there too; LockOSThread in an
		// init function runs main, and HelperMain in it, on the main
		// thread.
		runtime.LockOSThread()
	}
}

// HelperMain must be called first thing in main() of every binary that uses
// Enter (and in TestMain of test binaries that do); in a helper process it
// runs the helper and never returns; otherwise it returns immediately.
func HelperMain() {
	v, ok := os.LookupEnv(envHelper)
	if !ok {
		helperMainCalled.Store(true)
		return
	}
	os.Unsetenv(envHelper)
	fd, err := strconv.Atoi(v)
	if err != nil || fd != helperCtlFD {
		fmt.Fprintf(os.Stderr, "tap helper: bad %s=%q\n", envHelper, v)
		os.Exit(2)
	}
	os.Exit(serve(fd))
}

// serve is the helper: it reports whether it entered the namespaces, then
// answers requests until the daemon closes the control socket. The
// namespaces were joined by the nsenter constructor before the runtime
// started, so every thread of this process is inside them; serve runs on
// the main thread (see init) only for the parent-death signal.
func serve(ctl int) int {
	// The death signal was set by the daemon when it started us; set it
	// again in case joining the user namespace cleared it. If the daemon
	// died in between, the read below sees EOF.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)

	if err := helloError(nsenter.Started()); err != nil {
		_ = send(ctl, failure(helloID, err), -1)
		return 1
	}
	var hello reply
	if o := nsenter.Started(); o.UsernsErr != nil {
		hello.text = fmt.Sprintf("could not join the user namespace (%v); joined the network namespace anyway, as slirp4netns does", o.UsernsErr)
	}
	if err := send(ctl, hello, -1); err != nil {
		return sendFailed(err)
	}

	buf := make([]byte, maxPacket)
	for {
		n, _, flags, _, err := unix.Recvmsg(ctl, buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			// EOF (or a broken socket): the daemon is done with us.
			return 0
		}
		var id uint32
		if n >= 5 {
			id = uint32(buf[1])<<24 | uint32(buf[2])<<16 | uint32(buf[3])<<8 | uint32(buf[4])
		}
		var (
			rep reply
			fd  = -1
		)
		if flags&unix.MSG_TRUNC != 0 {
			rep = failure(id, fmt.Errorf("request of more than %d bytes", maxPacket))
		} else if req, err := decodeRequest(buf[:n]); err != nil {
			rep = failure(id, err)
		} else {
			rep, fd = handle(req)
		}
		err = send(ctl, rep, fd)
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			return sendFailed(err)
		}
		if rep.status == statusOK && buf[0] == kindSlim {
			// Replace this Go process with the minimal C socket server,
			// in place; it returns only if the exec failed, and then we
			// go on serving in Go.
			err := sockserve.Exec(ctl)
			fmt.Fprintf(os.Stderr, "tap helper: %v; serving on as before\n", err)
		}
	}
}

// sendFailed is the helper's exit status after a reply could not be sent.
// The daemon hanging up (Close during a request) is a normal end.
func sendFailed(err error) int {
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "tap helper: send reply: %v\n", err)
	return 1
}

func handle(req request) (reply, int) {
	var (
		fd   int
		name string
		err  error
	)
	switch req.kind {
	case kindOpenTap:
		fd, name, err = openTap(req.tap)
	case kindSocket:
		fd, err = unix.Socket(int(req.sock.domain), int(req.sock.typ)|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(req.sock.proto))
		if err != nil {
			err = &opError{op: fmt.Sprintf("socket(%d, %d, %d)", req.sock.domain, req.sock.typ, req.sock.proto), err: err}
		}
	case kindSlim:
		fd = -1
	case kindKeepAcrossExec:
		// The daemon is about to execve, which ends the thread that
		// started us and with it would fire the death signal. EOF on the
		// control socket still ends us when the daemon is gone.
		fd = -1
		if err = unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0); err != nil {
			err = &opError{op: "prctl(PR_SET_PDEATHSIG, 0)", err: err}
		}
	}
	if err != nil {
		return failure(req.id, err), -1
	}
	return reply{id: req.id, status: statusOK, text: name}, fd
}

// send writes one reply, with fd attached when it is not -1.
func send(ctl int, rep reply, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	for {
		err := unix.Sendmsg(ctl, rep.encode(), oob, nil, unix.MSG_NOSIGNAL)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func failure(id uint32, err error) reply {
	r := reply{id: id, status: statusFailed, text: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r.errno = uint32(errno)
	}
	return r
}

// helloError explains a failure to enter the namespaces, saying what to do
// about it where we can tell.
func helloError(o nsenter.Outcome) error {
	if !o.Asked {
		return errors.New("tap helper started without a namespace request (internal error)")
	}
	if o.Err == nil {
		return nil
	}
	var e *nsenter.Error
	if !errors.As(o.Err, &e) {
		return o.Err
	}
	hint := ""
	switch {
	case e.Op == "open" && e.Errno == unix.EACCES:
		hint = "the namespace belongs to another user: run as that user, or as root"
	case e.Op == "setns" && e.Errno == unix.EPERM && o.UsernsErr != nil:
		hint = fmt.Sprintf("joining its user namespace failed first: %v; run as the user that owns the namespaces, or as root", o.UsernsErr)
	case e.Op == "setns" && e.Errno == unix.EPERM && !o.JoinedUserns:
		hint = "joining a network namespace needs CAP_SYS_ADMIN in the user namespace that owns it: also give that user namespace (--userns-path=/proc/PID/ns/user, or use a PID instead of a path), or run as root"
	}
	if hint == "" {
		return o.Err
	}
	return &opError{err: o.Err, hint: hint}
}

// opError is a failed step with an optional hint for the user. Its text
// uses the C library's wording of the errno, as slirp4netns prints it.
type opError struct {
	op   string // "" when err already names the step
	err  error
	hint string
}

func (e *opError) Error() string {
	s := ""
	var errno syscall.Errno
	switch {
	case e.op == "":
		s = e.err.Error()
	case errors.As(e.err, &errno) && error(errno) == e.err:
		s = e.op + ": " + nsenter.Strerror(errno)
	default:
		s = e.op + ": " + e.err.Error()
	}
	if e.hint != "" {
		s += " (" + e.hint + ")"
	}
	return s
}

func (e *opError) Unwrap() error { return e.err }

// openTap opens /dev/net/tun and attaches it to the device cfg names,
// creating the device unless it exists as a persistent tap, then configures
// it when asked. It returns the descriptor and the device's name.
func openTap(cfg TapConfig) (int, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		e := &opError{op: "open /dev/net/tun", err: err}
		switch {
		case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
			e.hint = "unprivileged users need /dev/net/tun to be mode 0666, as Debian ships it: chmod 0666 /dev/net/tun"
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
			e.hint = "load the tun module with modprobe tun; inside a container, pass the device in: podman run --device /dev/net/tun"
		}
		return -1, "", e
	}
	ifr, err := unix.NewIfreq(cfg.Name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tap device name %q: %w", cfg.Name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if cfg.VnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		e := &opError{op: "ioctl(TUNSETIFF)", err: err}
		switch {
		case errors.Is(err, unix.EBUSY):
			e.hint = "another process has the device open; stop it or use another name"
		case errors.Is(err, unix.EPERM):
			e.hint = "creating a tap needs CAP_NET_ADMIN in the user namespace that owns the network namespace: join that user namespace too (--userns-path, or a PID instead of a path) or run as root; a persistent tap must belong to this user (ip tuntap add ... user UID)"
		case errors.Is(err, unix.EINVAL):
			e.hint = "a device of that name exists and is not a tap, or was made with flags that conflict"
		}
		return -1, "", e
	}
	name := ifr.Name()
	if cfg.Configure != nil {
		if err := configure(name, cfg.Configure); err != nil {
			unix.Close(fd)
			return -1, "", err
		}
	}
	return fd, name, nil
}

// configure does what slirp4netns --configure does, with netlink: lo up;
// MTU and MAC address (before the device goes up, as some drivers insist);
// tap up; addresses; default routes through the tap, metric 0.
func configure(name string, a *Addressing) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return &opError{op: "bring lo up", err: err}
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return &opError{op: "find " + name, err: err}
	}
	if a.MTU != 0 {
		if err := netlink.LinkSetMTU(link, a.MTU); err != nil {
			e := &opError{op: fmt.Sprintf("set MTU %d on %s", a.MTU, name), err: err}
			if errors.Is(err, unix.EINVAL) {
				e.hint = "a tap device takes an MTU of 68 to 65535"
			}
			return e
		}
	}
	if a.MAC != nil {
		if err := netlink.LinkSetHardwareAddr(link, a.MAC); err != nil {
			return &opError{op: fmt.Sprintf("set MAC address %v on %s", a.MAC, name), err: err}
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return &opError{op: "bring " + name + " up", err: err}
	}
	if a.Address.IsValid() {
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   a.Address.Addr().AsSlice(),
			Mask: net.CIDRMask(a.Address.Bits(), 32),
		}}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return &opError{op: fmt.Sprintf("add address %v to %s", a.Address, name), err: err}
		}
	}
	if a.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: a.Gateway.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return &opError{op: fmt.Sprintf("add default route via %v dev %s", a.Gateway, name), err: err}
		}
	}
	if a.Address6.IsValid() {
		addr := &netlink.Addr{
			IPNet: &net.IPNet{
				IP:   a.Address6.Addr().AsSlice(),
				Mask: net.CIDRMask(a.Address6.Bits(), 128),
			},
			Flags: unix.IFA_F_NODAD,
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return &opError{op: fmt.Sprintf("add address %v to %s", a.Address6, name), err: err}
		}
	}
	if a.Gateway6.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: a.Gateway6.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return &opError{op: fmt.Sprintf("add default route via %v dev %s", a.Gateway6, name), err: err}
		}
	}
	return nil
}
