package sockserve

import (
	"encoding/binary"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// server starts this test binary as the socket server on one end of a
// socketpair and returns the other end.
func server(t *testing.T) (int, *exec.Cmd) {
	t.Helper()
	if !available {
		t.Skip("needs cgo")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "server end")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Env = []string{EnvFD + "=3"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() {
		unix.Close(fds[0])
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("the socket server did not exit on EOF")
		}
	})
	return fds[0], cmd
}

type reply struct {
	id     uint32
	status byte
	errno  uint32
	text   string
	fd     int
}

func roundTrip(t *testing.T, ctl int, req []byte) reply {
	t.Helper()
	if err := unix.Sendmsg(ctl, req, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(ctl, buf, oob, 0)
	if err != nil || n < 9 {
		t.Fatalf("reply: %d bytes, %v", n, err)
	}
	r := reply{id: binary.BigEndian.Uint32(buf), status: buf[4], errno: binary.BigEndian.Uint32(buf[5:]), text: string(buf[9:n]), fd: -1}
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil {
			t.Fatal(err)
		}
		r.fd = fds[0]
	}
	return r
}

func request(kind byte, id uint32, body ...uint32) []byte {
	b := []byte{kind}
	b = binary.BigEndian.AppendUint32(b, id)
	for _, v := range body {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

func TestServer(t *testing.T) {
	ctl, _ := server(t)

	r := roundTrip(t, ctl, request(2, 7, unix.AF_INET, unix.SOCK_DGRAM, 0))
	if r.id != 7 || r.status != 0 || r.fd < 0 {
		t.Fatalf("socket request: %+v", r)
	}
	typ, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_DGRAM {
		t.Errorf("the socket is of type %d, %v; want SOCK_DGRAM", typ, err)
	}
	if fl, _ := unix.FcntlInt(uintptr(r.fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
		t.Error("the socket is not non-blocking")
	}
	unix.Close(r.fd)

	for _, tc := range []struct {
		name  string
		req   []byte
		errno uint32
	}{
		{"bogus domain", request(2, 8, 12345, unix.SOCK_STREAM, 0), uint32(unix.EAFNOSUPPORT)},
		{"open a tap", append(request(1, 9), 0, 4, 't', 'a', 'p', '0'), uint32(unix.EOPNOTSUPP)},
		{"short socket request", request(2, 10, unix.AF_INET), uint32(unix.EINVAL)},
		{"unknown kind", request(99, 11), uint32(unix.EINVAL)},
		{"no id", []byte{2}, uint32(unix.EINVAL)},
	} {
		r := roundTrip(t, ctl, tc.req)
		if r.status != 1 || r.errno != tc.errno || r.text == "" || r.fd >= 0 {
			t.Errorf("%s: %+v, want failure with errno %d", tc.name, r, tc.errno)
		}
	}
	if r := roundTrip(t, ctl, request(3, 12)); r.status != 0 || r.id != 12 {
		t.Errorf("keep across exec: %+v", r)
	}
	if r := roundTrip(t, ctl, request(4, 13)); r.status != 0 || r.id != 13 {
		t.Errorf("slim: %+v", r)
	}
}

func TestBadFDEnv(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"", "x", "-1", strconv.Itoa(1 << 21)} {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = []string{EnvFD + "=" + v}
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%s=%q: %v, want exit status 2", EnvFD, v, err)
		}
	}
}
