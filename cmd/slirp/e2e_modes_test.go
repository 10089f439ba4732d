package main

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/internal/nstest"
)

// openTapIn opens tap0 inside ns, as a caller of --netns-type=tapfd
// (rootlesskit-style tools) does, and returns its descriptor as a file.
func openTapIn(t *testing.T, ns *nstest.Netns, name string) *os.File {
	t.Helper()
	var f *os.File
	inNetns(t, ns, func() {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open /dev/net/tun: %v", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			t.Fatal(err)
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			t.Fatalf("TUNSETIFF: %v", err)
		}
		f = os.NewFile(uintptr(fd), name)
	})
	t.Cleanup(func() { f.Close() })
	return f
}

// TestE2ETapFD: --netns-type=tapfd serves a tap the caller opened and
// configured itself.
func TestE2ETapFD(t *testing.T) {
	ns := nstest.NewNetns(t)
	tapFile := openTapIn(t, ns, "tap0")
	ns.Run(t, "ip", "addr", "add", "10.0.2.100/24", "dev", "tap0")
	ns.Run(t, "ip", "link", "set", "tap0", "up")
	ns.Run(t, "ip", "route", "add", "default", "via", "10.0.2.2")
	startDaemon(t, daemonOpts{args: []string{"--netns-type=tapfd", "4"}, extra: []*os.File{tapFile}})
	tapFile.Close() // the daemon has its own copy now

	srv := startHostServer(t, "tcp4", "127.0.0.1:0", "sha")
	r := client(t, ns, "tcp", "10.0.2.2:"+srv.port(), "100000")
	if sha, _ := replySHA(r); r.Err != "" || sha != r.SHA {
		t.Fatalf("guest TCP over an inherited tap: %+v", r)
	}
}

// TestE2EBESS: --target-type=bess takes one SOCK_SEQPACKET client and
// speaks Ethernet frames with it, one per packet, as User-Mode Linux does.
func TestE2EBESS(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "bess.sock")
	d := startDaemon(t, daemonOpts{args: []string{"--target-type=bess", sock}, noReady: true})
	var c *net.UnixConn
	waitFor(t, 10*time.Second, "the BESS socket", func() bool {
		conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
		if err != nil {
			return false
		}
		c = conn
		return true
	})
	defer c.Close()
	if !strings.Contains(d.stdout.String(), "Waiting for connection to "+sock) {
		t.Errorf("stdout lacks the BESS waiting line:\n%s", d.stdout)
	}

	// ARP: who has 10.0.2.2? tell 10.0.2.100 (02:00:00:00:00:01).
	guestMAC := []byte{2, 0, 0, 0, 0, 1}
	frame := make([]byte, 0, 42)
	frame = append(frame, bytes.Repeat([]byte{0xff}, 6)...)
	frame = append(frame, guestMAC...)
	frame = binary.BigEndian.AppendUint16(frame, 0x0806)
	frame = append(frame, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	frame = append(frame, guestMAC...)
	frame = append(frame, 10, 0, 2, 100)
	frame = append(frame, make([]byte, 6)...)
	frame = append(frame, 10, 0, 2, 2)
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Write(frame); err != nil {
			t.Fatalf("write frame: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		reply := buf[:n]
		if n >= 42 && binary.BigEndian.Uint16(reply[12:]) == 0x0806 && binary.BigEndian.Uint16(reply[20:]) == 2 {
			want := []byte{0x52, 0x55, 10, 0, 2, 2}
			if !bytes.Equal(reply[22:28], want) || !bytes.Equal(reply[28:32], []byte{10, 0, 2, 2}) {
				t.Fatalf("ARP reply says 10.0.2.2 is at %x (%v), want %x", reply[22:28], net.IP(reply[28:32]), want)
			}
			return
		}
	}
	t.Fatal("no ARP reply for 10.0.2.2 over the BESS socket within 10s")
}
