package tap

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// enter starts a helper in ns (joining its user namespace, as slirp4netns's
// pid mode does) and closes it when the test ends, failing the test if the
// helper did not exit cleanly.
func enter(t *testing.T, target Target) *Namespace {
	t.Helper()
	n, err := Enter(testContext(t), target, nil)
	if err != nil {
		t.Fatalf("Enter(%+v): %v", target, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func pidTarget(ns *nstest.Netns) Target {
	return Target{NetnsPath: ns.Path, UsernsPath: ns.UsernsPath}
}

func mustOpenTap(t *testing.T, n *Namespace, cfg TapConfig) *os.File {
	t.Helper()
	f, err := n.OpenTap(testContext(t), cfg)
	if err != nil {
		t.Fatalf("OpenTap(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// checkConfigured checks that tap0 in ns looks the way slirp4netns -c
// leaves it.
func checkConfigured(t *testing.T, ns *nstest.Netns) {
	t.Helper()
	if out := ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap0"); !strings.Contains(out, "inet 10.0.2.100/24 brd 10.0.2.255 scope global tap0") {
		t.Errorf("ip addr show tap0 = %q, want inet 10.0.2.100/24 brd 10.0.2.255 scope global tap0", out)
	}
	if out := ns.Run(t, "ip", "route", "show", "default"); strings.TrimSpace(out) != "default via 10.0.2.2 dev tap0" {
		t.Errorf("ip route show default = %q, want default via 10.0.2.2 dev tap0", out)
	}
	if out := ns.Run(t, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "<LOOPBACK,UP,LOWER_UP>") {
		t.Errorf("lo is not up: %q", out)
	}
	if out := ns.Run(t, "ip", "-o", "link", "show", "tap0"); !strings.Contains(out, ",UP,") || !strings.Contains(out, "mtu 1500 ") {
		t.Errorf("tap0 is not up with MTU 1500: %q", out)
	}
}

func TestNSOpenTap(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	f := mustOpenTap(t, n, TapConfig{Name: "tap0"})
	if f.Name() != "tap0" {
		t.Errorf("file name = %q, want tap0", f.Name())
	}
	out := ns.Run(t, "ip", "-o", "link", "show", "tap0")
	if !strings.Contains(out, "state DOWN") || strings.Contains(out, ",UP") {
		t.Errorf("unconfigured tap0 should be down: %q", out)
	}
	if out := ns.Run(t, "ip", "-o", "addr", "show", "dev", "tap0"); strings.Contains(out, "inet") {
		t.Errorf("unconfigured tap0 has addresses: %q", out)
	}
	if _, err := net.InterfaceByName("tap0"); err == nil {
		t.Errorf("tap0 appeared in the host namespace")
	}
	checkFlags(t, f, "tap0", unix.IFF_TAP|unix.IFF_NO_PI)
	// The tap is not persistent: it goes with the last descriptor.
	f.Close()
	if out, err := ns.Output("ip", "link", "show", "tap0"); err == nil {
		t.Errorf("tap0 still exists after its fd was closed: %q", out)
	}
}

// checkFlags checks the device and the flags f is attached with, and that
// f is close-on-exec and non-blocking.
func checkFlags(t *testing.T, f *os.File, name string, want uint16) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		ifr         *unix.Ifreq
		fdFlags, fl int
		ioctlErr    error
	)
	err = rc.Control(func(fd uintptr) {
		ifr, _ = unix.NewIfreq("")
		ioctlErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
		fdFlags, _ = unix.FcntlInt(fd, unix.F_GETFD, 0)
		fl, _ = unix.FcntlInt(fd, unix.F_GETFL, 0)
	})
	if err != nil || ioctlErr != nil {
		t.Fatalf("TUNGETIFF: %v %v", err, ioctlErr)
	}
	if ifr.Name() != name {
		t.Errorf("attached to %q, want %q", ifr.Name(), name)
	}
	const mask = unix.IFF_TAP | unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if got := ifr.Uint16() & mask; got != want {
		t.Errorf("tap flags = %#x, want %#x", got, want)
	}
	if fdFlags&unix.FD_CLOEXEC == 0 {
		t.Errorf("tap fd is not close-on-exec")
	}
	if fl&unix.O_NONBLOCK == 0 {
		t.Errorf("tap fd is blocking")
	}
}

func TestNSConfigure(t *testing.T) {
	ns := nstest.NewNetns(t)
	ns.Run(t, "ip", "link", "set", "lo", "down")
	n := enter(t, pidTarget(ns))
	mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: slirpAddressing()})
	checkConfigured(t, ns)
}

func TestNSMACAndMTU(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	a := slirpAddressing()
	a.MTU = 65520
	a.MAC = net.HardwareAddr{0x0e, 0xd4, 0x18, 0xd9, 0x38, 0xfb}
	mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: a})
	out := ns.Run(t, "ip", "-o", "link", "show", "tap0")
	if !strings.Contains(out, "mtu 65520 ") || !strings.Contains(out, "link/ether 0e:d4:18:d9:38:fb ") {
		t.Errorf("ip link show tap0 = %q, want mtu 65520 and link/ether 0e:d4:18:d9:38:fb", out)
	}
}

func TestNSMTUTooSmall(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	a := slirpAddressing()
	a.MTU = 67
	f, err := n.OpenTap(testContext(t), TapConfig{Name: "tap0", Configure: a})
	if err == nil {
		f.Close()
		t.Fatal("OpenTap with MTU 67 succeeded")
	}
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "set MTU 67 on tap0: Invalid argument") {
		t.Fatalf("err = %v, want EINVAL saying set MTU 67 on tap0: Invalid argument", err)
	}
	if out, err := ns.Output("ip", "link", "show", "tap0"); err == nil {
		t.Errorf("tap0 left behind after the failed configuration: %q", out)
	}
	// The helper keeps serving after a failed request.
	a.MTU = 68
	mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: a})
}

func TestMissingProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b)) // PIDs are below pid_max
	target := Target{NetnsPath: "/proc/" + pid + "/ns/net", UsernsPath: "/proc/" + pid + "/ns/user"}
	n, err := Enter(testContext(t), target, nil)
	if err == nil {
		n.Close()
		t.Fatal("Enter succeeded for a process that does not exist")
	}
	if want := "/proc/" + pid + "/ns/net: No such file or directory"; !strings.Contains(err.Error(), want) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("err = %v, want ENOENT containing %q", err, want)
	}
}

func TestEnterValidation(t *testing.T) {
	if _, err := Enter(testContext(t), Target{}, nil); err == nil || !strings.Contains(err.Error(), "no network namespace path") {
		t.Errorf("Enter without a path: err = %v", err)
	}
	// A program that forgot HelperMain would run its own main in the
	// target namespaces; Enter refuses instead.
	helperMainCalled.Store(false)
	defer helperMainCalled.Store(true)
	if _, err := Enter(testContext(t), Target{NetnsPath: "/proc/self/ns/net"}, nil); err == nil || !strings.Contains(err.Error(), "HelperMain was not called") {
		t.Errorf("Enter without HelperMain: err = %v", err)
	}
}

func TestNSBusy(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	mustOpenTap(t, n, TapConfig{Name: "tap0"})
	f, err := n.OpenTap(testContext(t), TapConfig{Name: "tap0"})
	if err == nil {
		f.Close()
		t.Fatal("second OpenTap of an attached tap0 succeeded")
	}
	if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "Device or resource busy") {
		t.Fatalf("err = %v, want EBUSY with Device or resource busy", err)
	}
}

// rootlesskit creates the tap itself with `ip tuntap add` and runs
// slirp4netns without -c; OpenTap must attach to it.
func TestNSPersistentTap(t *testing.T) {
	ns := nstest.NewNetns(t)
	ns.Run(t, "ip", "tuntap", "add", "tap0", "mode", "tap")
	n := enter(t, pidTarget(ns))
	f := mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: slirpAddressing()})
	checkConfigured(t, ns)
	checkFlags(t, f, "tap0", unix.IFF_TAP|unix.IFF_NO_PI)
	f.Close()
	if out := ns.Run(t, "ip", "-o", "link", "show", "tap0"); !strings.Contains(out, "tap0") {
		t.Errorf("persistent tap0 vanished when our fd closed: %q", out)
	}
}

func TestNSIPv6(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	a := slirpAddressing()
	a.Address6 = netip.MustParsePrefix("fd00::100/64")
	a.Gateway6 = netip.MustParseAddr("fe80::2")
	mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: a})
	if out := ns.Run(t, "ip", "-o", "-6", "addr", "show", "dev", "tap0"); !strings.Contains(out, "inet6 fd00::100/64 scope global nodad") {
		t.Errorf("ip -6 addr show tap0 = %q, want fd00::100/64 nodad", out)
	}
	if out := ns.Run(t, "ip", "-6", "route", "show", "default"); !strings.HasPrefix(out, "default via fe80::2 dev tap0 ") {
		t.Errorf("ip -6 route show default = %q, want default via fe80::2 dev tap0", out)
	}
}

var (
	gatewayMAC = net.HardwareAddr{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}
	gatewayIP  = [4]byte{10, 0, 2, 2}
	guestIP    = [4]byte{10, 0, 2, 100}
)

// readFrame reads frames from f (skipping a virtio-net header of hdr bytes)
// until match accepts one, for at most 100 frames or 10 s.
func readFrame(t *testing.T, f *os.File, hdr int, what string, match func(frame []byte) bool) []byte {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	defer f.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536+hdr)
	for range 100 {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatalf("reading %s from the tap: %v", what, err)
		}
		if n < hdr+14 {
			continue
		}
		if frame := buf[hdr:n]; match(frame) {
			return append([]byte(nil), frame...)
		}
	}
	t.Fatalf("no %s among 100 frames", what)
	return nil
}

// Frames travel both ways through the fd: an ARP request written to it is
// answered by the namespace's kernel.
func TestNSFramesARP(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	a := slirpAddressing()
	a.MAC = net.HardwareAddr{0x0e, 0xd4, 0x18, 0xd9, 0x38, 0xfb}
	f := mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: a})

	req := make([]byte, 0, 42)
	req = append(req, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	req = append(req, gatewayMAC...)
	req = append(req, 0x08, 0x06)                   // ARP
	req = append(req, 0, 1, 0x08, 0x00, 6, 4, 0, 1) // Ethernet, IPv4, request
	req = append(req, gatewayMAC...)
	req = append(req, gatewayIP[:]...)
	req = append(req, 0, 0, 0, 0, 0, 0)
	req = append(req, guestIP[:]...)
	if _, err := f.Write(req); err != nil {
		t.Fatalf("write ARP request: %v", err)
	}
	rep := readFrame(t, f, 0, "ARP reply", func(b []byte) bool {
		return len(b) >= 42 && b[12] == 0x08 && b[13] == 0x06 && b[20] == 0 && b[21] == 2
	})
	if !bytes.Equal(rep[0:6], gatewayMAC) || !bytes.Equal(rep[22:28], a.MAC) || !bytes.Equal(rep[28:32], guestIP[:]) {
		t.Fatalf("ARP reply = %x, want %v telling %v that %v is at %v", rep[:42], rep[0:6], gatewayMAC, netip.AddrFrom4(guestIP), a.MAC)
	}
}

// sendBroadcast sends payload to 10.0.2.255:9 from a UDP socket made in the
// namespace by Socket.
func sendBroadcast(t *testing.T, n *Namespace, payload []byte) {
	t.Helper()
	s, err := n.Socket(testContext(t), unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatalf("Socket: %v", err)
	}
	defer s.Close()
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	if err := rc.Control(func(fd uintptr) {
		if sendErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); sendErr == nil {
			sendErr = unix.Sendto(int(fd), payload, 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 0, 2, 255}})
		}
	}); err != nil || sendErr != nil {
		t.Fatalf("send broadcast: %v %v", err, sendErr)
	}
}

func isUDPWithPayload(payload []byte) func([]byte) bool {
	return func(b []byte) bool {
		return len(b) >= 42 && b[12] == 0x08 && b[13] == 0x00 && b[23] == unix.IPPROTO_UDP && bytes.HasSuffix(b, payload)
	}
}

// A datagram sent inside the namespace comes out of the fd, for both
// framings.
func TestNSFramesUDP(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		t.Run(fmt.Sprintf("vnethdr=%v", vnet), func(t *testing.T) {
			ns := nstest.NewNetns(t)
			n := enter(t, pidTarget(ns))
			f := mustOpenTap(t, n, TapConfig{Name: "tap0", VnetHdr: vnet, Configure: slirpAddressing()})
			want := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
			hdr := 0
			if vnet {
				want |= unix.IFF_VNET_HDR
				hdr = 10 // struct virtio_net_hdr
			}
			checkFlags(t, f, "tap0", want)
			payload := []byte("slirp tap test " + t.Name())
			sendBroadcast(t, n, payload)
			frame := readFrame(t, f, hdr, "UDP broadcast", isUDPWithPayload(payload))
			if !bytes.Equal(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) || !bytes.Equal(frame[26:30], guestIP[:]) || binary.BigEndian.Uint16(frame[36:38]) != 9 {
				t.Fatalf("frame %x is not a broadcast from 10.0.2.100 to port 9", frame)
			}
		})
	}
}

// sockaddr4 returns the address a socket made by Socket is bound to.
func localPort(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		sa    unix.Sockaddr
		saErr error
	)
	if err := rc.Control(func(fd uintptr) { sa, saErr = unix.Getsockname(int(fd)) }); err != nil || saErr != nil {
		t.Fatalf("getsockname: %v %v", err, saErr)
	}
	return sa.(*unix.SockaddrInet4).Port
}

// listenInNetns binds a TCP socket made by Socket to 127.0.0.1:port (from
// this, the host's, namespace) and listens on it.
func listenInNetns(t *testing.T, n *Namespace, port int) net.Listener {
	t.Helper()
	s, err := n.Socket(testContext(t), unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("Socket: %v", err)
	}
	defer s.Close()
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lErr error
	if err := rc.Control(func(fd uintptr) {
		if lErr = unix.Bind(int(fd), &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); lErr == nil {
			lErr = unix.Listen(int(fd), 8)
		}
	}); err != nil || lErr != nil {
		t.Fatalf("bind and listen on 127.0.0.1:%d in the namespace: %v %v", port, err, lErr)
	}
	ln, err := net.FileListener(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialFromNetns connects a TCP socket made by Socket to 127.0.0.1:port.
func dialFromNetns(t *testing.T, n *Namespace, port int) net.Conn {
	t.Helper()
	s, err := n.Socket(testContext(t), unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("Socket: %v", err)
	}
	defer s.Close()
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cErr error
	if err := rc.Control(func(fd uintptr) {
		cErr = unix.Connect(int(fd), &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	}); err != nil {
		t.Fatal(err)
	}
	if errors.Is(cErr, unix.EINPROGRESS) {
		// Wait until the socket is writable, then collect the result.
		if err := s.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		err := rc.Write(func(fd uintptr) bool {
			var soErr int
			soErr, cErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			if cErr == nil && soErr != 0 {
				cErr = syscall.Errno(soErr)
			}
			return true
		})
		if err != nil {
			t.Fatalf("wait for connect: %v", err)
		}
	}
	if cErr != nil {
		t.Fatalf("connect to 127.0.0.1:%d in the namespace: %v", port, cErr)
	}
	c, err := net.FileConn(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A socket made by Socket lives in the namespace: it reaches the
// namespace's 127.0.0.1, not the host's, and a listener made from one is
// reachable from inside the namespace but not from the host.
func TestNSSocketTCP(t *testing.T) {
	nstest.RequireTools(t, "ncat")
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))

	hostLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	port := hostLn.Addr().(*net.TCPAddr).Port
	// Binding the host listener's port works only in another namespace.
	nsLn := listenInNetns(t, n, port)

	c := dialFromNetns(t, n, port)
	if _, err := c.Write([]byte("from the daemon")); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	accepted, err := nsLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(accepted)
	accepted.Close()
	if err != nil || string(got) != "from the daemon" {
		t.Fatalf("namespace listener read %q, %v", got, err)
	}

	// A process inside the namespace reaches the listener.
	if _, err := ns.Output("sh", "-c", "printf 'from inside' | ncat --send-only 127.0.0.1 "+strconv.Itoa(port)); err != nil {
		t.Fatalf("ncat inside the namespace: %v", err)
	}
	accepted, err = nsLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(accepted)
	accepted.Close()
	if err != nil || string(got) != "from inside" {
		t.Fatalf("namespace listener read %q from ncat, %v", got, err)
	}

	// From the host the port leads to the host's listener: the first
	// connection that listener sees is this one, so the daemon's socket
	// above did not reach it either.
	hc, err := net.Dial("tcp4", hostLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hostConn, err := hostLn.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hostConn.Close()
	if hostConn.RemoteAddr().String() != hc.LocalAddr().String() {
		t.Fatalf("host listener's first connection came from %v, want the host client %v", hostConn.RemoteAddr(), hc.LocalAddr())
	}
}

func TestNSSocketError(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	s, err := n.Socket(testContext(t), 12345, unix.SOCK_STREAM, 0)
	if err == nil {
		s.Close()
		t.Fatal("Socket with a bogus domain succeeded")
	}
	if !errors.Is(err, syscall.EAFNOSUPPORT) || !strings.Contains(err.Error(), "Address family not supported by protocol") {
		t.Fatalf("err = %v, want EAFNOSUPPORT", err)
	}
}

// As root, joining a user namespace root created works (and is needed only
// in spirit: root could enter the netns anyway).
func TestNSChildUserns(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.NewNetns(t, nstest.WithUserns())
	n := enter(t, pidTarget(ns))
	for _, kind := range []string{"user", "net"} {
		got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", n.cmd.Process.Pid, kind))
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", ns.PID, kind)); got != want {
			t.Errorf("helper's %s namespace = %s, want the target's %s", kind, got, want)
		}
	}
	mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: slirpAddressing()})
	checkConfigured(t, ns)
}

// bindNetns bind-mounts ns's network namespace on a file, as `ip netns add`
// and podman do, and returns the file's path.
func bindNetns(t *testing.T, ns *nstest.Netns) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(ns.Path, path, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s on %s: %v", ns.Path, path, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	})
	return path
}

// Path mode (--netns-type=path), with and without --userns-path.
func TestNSPathMode(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range []struct {
		name       string
		userns     bool // the target has a user namespace of its own
		usernsPath bool // and we are told to join it
	}{
		{"plain", false, false},
		{"userns-path", true, true},
		{"own-userns-not-joined", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ns *nstest.Netns
			if tc.userns {
				ns = nstest.NewNetns(t, nstest.WithUserns())
			} else {
				ns = nstest.NewNetns(t)
			}
			target := Target{NetnsPath: bindNetns(t, ns)}
			if tc.usernsPath {
				target.UsernsPath = ns.UsernsPath
			}
			n := enter(t, target)
			mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: slirpAddressing()})
			checkConfigured(t, ns)
		})
	}
}

func TestNSConcurrentRequests(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("tap%d", i)
			f, err := n.OpenTap(testContext(t), TapConfig{Name: name})
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			if f.Name() != name {
				errs <- fmt.Errorf("asked for %s, got %s", name, f.Name())
			}
			s, err := n.Socket(testContext(t), unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A request given up on leaves its reply behind; the next request must get
// its own reply, not that one.
func TestNSCancelledRequest(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		f, err := n.OpenTap(ctx, TapConfig{Name: fmt.Sprintf("tapc%d", i)})
		switch {
		case err == nil:
			f.Close() // the request won the race against the cancellation
		case !errors.Is(err, context.Canceled):
			t.Fatalf("cancelled OpenTap: err = %v, want context.Canceled", err)
		}
		name := fmt.Sprintf("tapok%d", i)
		f = mustOpenTap(t, n, TapConfig{Name: name})
		if f.Name() != name {
			t.Fatalf("OpenTap(%s) after a cancelled request returned %s", name, f.Name())
		}
		f.Close()
	}
}

func TestNSClose(t *testing.T) {
	ns := nstest.NewNetns(t)
	n, err := Enter(testContext(t), pidTarget(ns), nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := n.cmd.Process.Pid
	if processGone(pid) {
		t.Fatal("helper not running after Enter")
	}
	// Close returns nil only when the helper exited by itself, on EOF.
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !processGone(pid) {
		t.Fatalf("helper %d still running after Close", pid)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.OpenTap(testContext(t), TapConfig{Name: "tap0"}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("OpenTap after Close: err = %v, want os.ErrClosed", err)
	}
}

// A helper that dies is reported as such, by requests and by Close.
func TestNSHelperKilled(t *testing.T) {
	ns := nstest.NewNetns(t)
	n, err := Enter(testContext(t), pidTarget(ns), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-n.done
	_, err = n.OpenTap(testContext(t), TapConfig{Name: "tap0"})
	if err == nil || !strings.Contains(err.Error(), "tap helper exited unexpectedly: signal: killed") {
		t.Errorf("OpenTap after the helper died: err = %v", err)
	}
	if err := n.Close(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("Close after the helper died: err = %v", err)
	}
}

// The helper dies with the daemon: the daemon here is the test binary
// re-executed, killed with SIGKILL so that it cannot clean up.
func TestNSParentDies(t *testing.T) {
	ns := nstest.NewNetns(t)
	p := startRole(t, "", roleDaemon, pidTarget(ns), nil)
	var pid int
	if _, err := fmt.Sscanf(p.line, "pid %d", &pid); err != nil {
		t.Fatalf("daemon said %q: %v", p.line, err)
	}
	t.Cleanup(func() {
		if !processGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if processGone(pid) {
		t.Fatalf("helper %d not running", pid)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	if !waitGone(pid) {
		t.Fatalf("helper %d still running 10s after its daemon was killed", pid)
	}
}

func fdCount(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestNSNoFDLeak(t *testing.T) {
	ns := nstest.NewNetns(t)
	cycle := func() {
		ctx := testContext(t)
		n, err := Enter(ctx, pidTarget(ns), nil)
		if err != nil {
			t.Fatal(err)
		}
		f, err := n.OpenTap(ctx, TapConfig{Name: "tap0", Configure: slirpAddressing()})
		if err != nil {
			t.Fatal(err)
		}
		s, err := n.Socket(ctx, unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A request that fails must not leak either.
		if g, err := n.OpenTap(ctx, TapConfig{Name: "tap0"}); err == nil {
			g.Close()
			t.Fatal("second OpenTap of tap0 succeeded")
		}
		f.Close()
		s.Close()
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // let the runtime open what it keeps (the poller)
	before := fdCount(t)
	for range 3 {
		cycle()
	}
	if after := fdCount(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
	if _, err := Enter(testContext(t), Target{NetnsPath: "/nonexistent/netns"}, nil); err == nil {
		t.Fatal("Enter with a missing path succeeded")
	}
	if after := fdCount(t); after != before {
		t.Fatalf("%d descriptors open before a failed Enter, %d after", before, after)
	}
}

// The helper keeps none of the daemon's descriptors, not even ones the
// daemon inherited without close-on-exec.
func TestNSHelperDescriptors(t *testing.T) {
	ns := nstest.NewNetns(t)
	path := filepath.Join(t.TempDir(), "daemon-file")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	leaky, err := syscall.Dup(int(f.Fd())) // dup(2) does not set close-on-exec
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leaky)

	n := enter(t, pidTarget(ns))
	dir := fmt.Sprintf("/proc/%d/fd", n.cmd.Process.Pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		link, _ := os.Readlink(filepath.Join(dir, e.Name()))
		fds = append(fds, e.Name()+" -> "+link)
		fd, _ := strconv.Atoi(e.Name())
		switch {
		case link == path:
			t.Errorf("helper holds the daemon's file as fd %d", fd)
		case fd == helperCtlFD && !strings.HasPrefix(link, "socket:"):
			t.Errorf("helper fd 3 is %s, want the control socket", link)
		case fd > helperCtlFD && !strings.HasPrefix(link, "anon_inode:") && !strings.HasPrefix(link, "/sys/fs/cgroup/"):
			// Anything else above the control socket must be the
			// helper's own runtime (its poller, the cgroup CPU limit
			// it reads for GOMAXPROCS), not inherited.
			t.Errorf("helper has fd %d -> %s", fd, link)
		}
	}
	t.Logf("helper descriptors: %s", strings.Join(fds, ", "))
}

func TestNSFromFD(t *testing.T) {
	ns := nstest.NewNetns(t)
	n := enter(t, pidTarget(ns))
	f := mustOpenTap(t, n, TapConfig{Name: "tap0", Configure: slirpAddressing()})
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	g, err := FromFD(fd)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("FromFD(dup of tap0): %v", err)
	}
	defer g.Close()
	if g.Name() != "tap0" {
		t.Errorf("FromFD name = %q, want tap0", g.Name())
	}
	checkFlags(t, g, "tap0", unix.IFF_TAP|unix.IFF_NO_PI)
	// It is the same device: a datagram sent in the namespace comes out.
	payload := []byte("via FromFD")
	sendBroadcast(t, n, payload)
	readFrame(t, g, 0, "UDP broadcast", isUDPWithPayload(payload))

	v := mustOpenTap(t, n, TapConfig{Name: "tapv", VnetHdr: true})
	vfd, err := unix.Dup(int(v.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(vfd)
	if _, err := FromFD(vfd); err == nil || !strings.Contains(err.Error(), "IFF_VNET_HDR") {
		t.Errorf("FromFD(vnet_hdr tap): err = %v, want one about IFF_VNET_HDR", err)
	}
}

func TestFromFDRejects(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := FromFD(int(r.Fd())); err == nil || !strings.Contains(err.Error(), "not a tap device") {
		t.Errorf("FromFD(pipe): err = %v", err)
	}
	if _, err := FromFD(-1); err == nil {
		t.Error("FromFD(-1) succeeded")
	}
	closed, err := unix.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(closed)
	if _, err := FromFD(closed); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Errorf("FromFD(closed fd): err = %v", err)
	}
	tun, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("open /dev/net/tun: %v", err)
	}
	defer tun.Close()
	if _, err := FromFD(int(tun.Fd())); err == nil || !strings.Contains(err.Error(), "not attached") {
		t.Errorf("FromFD(unattached /dev/net/tun): err = %v", err)
	}
}

// The rootless case: the unprivileged test user targets the namespaces it
// made with `unshare -Urn`, from a daemon running as that user.
func TestNSRootless(t *testing.T) {
	nstest.RequireUnprivilegedTun(t)
	uid, gid := nstest.UnprivilegedUser(t)
	ns := nstest.NewNetns(t, nstest.WithUserns(), nstest.AsUser(uid, gid))
	exe := nstest.CopyTestBinary(t)
	cred := &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}

	t.Run("pid", func(t *testing.T) {
		p := startRole(t, exe, roleConfigure, pidTarget(ns), cred)
		if p.line != "ok tap0" {
			t.Fatalf("rootless daemon said %q, want ok tap0", p.line)
		}
		checkConfigured(t, ns)
		p.stdin.Close()
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("rootless daemon: %v", err)
		}
	})
	t.Run("path", func(t *testing.T) {
		target := Target{NetnsPath: ns.Path, UsernsPath: ns.UsernsPath}
		p := startRole(t, exe, roleConfigure, target, cred)
		if p.line != "ok tap0" {
			t.Fatalf("rootless daemon said %q, want ok tap0", p.line)
		}
		checkConfigured(t, ns)
	})
	t.Run("path-without-userns", func(t *testing.T) {
		p := startRole(t, exe, roleConfigure, Target{NetnsPath: ns.Path}, cred)
		for _, want := range []string{"error: ", "setns " + ns.Path + ": Operation not permitted", "--userns-path"} {
			if !strings.Contains(p.line, want) {
				t.Errorf("rootless daemon said %q, want it to contain %q", p.line, want)
			}
		}
	})
	t.Run("not-our-namespace", func(t *testing.T) {
		rootNS := nstest.NewNetns(t, nstest.WithUserns())
		p := startRole(t, exe, roleConfigure, pidTarget(rootNS), cred)
		for _, want := range []string{"open " + rootNS.Path + ": Permission denied", "run as that user, or as root"} {
			if !strings.Contains(p.line, want) {
				t.Errorf("rootless daemon said %q, want it to contain %q", p.line, want)
			}
		}
	})
}
