package launcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Message types on the control socket between the launcher and the
// container's init. The socket is SOCK_SEQPACKET, so every message is one
// JSON document, optionally carrying file descriptors.
const (
	msgMapped     = "mapped"      // launcher → init: id maps are written
	msgSpec       = "spec"        // launcher → init: what to build and run
	msgReady      = "ready"       // init → launcher: root built, waiting
	msgGo         = "go"          // launcher → init: network is up, exec
	msgError      = "error"       // init → launcher: setup failed
	msgExecFailed = "exec-failed" // init → launcher: the command cannot run
)

type message struct {
	Type string     `json:"type"`
	Spec *childSpec `json:"spec,omitempty"`
	// Exec goes from init to its exec helper (--init).
	Exec  *resolvedExec `json:"exec,omitempty"`
	Stage string        `json:"stage,omitempty"`
	Msg   string        `json:"msg,omitempty"`
	// Code is the exit code that goes with exec-failed (126 or 127).
	Code int `json:"code,omitempty"`
	// HasPTY says the message carries the pty master (ready with -t).
	HasPTY bool `json:"has_pty,omitempty"`
}

// maxMessage bounds one control message; a spec with a large environment
// still fits easily.
const maxMessage = 4 << 20

// conn is one end of the control socket.
type conn struct{ f *os.File }

func (c conn) send(m message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(int(c.f.Fd()), b, oob, nil, 0); err != nil {
		return fmt.Errorf("send %s message: %w", m.Type, err)
	}
	return nil
}

// recv reads one message. io.EOF means the peer closed its end (for the
// launcher: init exec'd the command, or died).
func (c conn) recv() (message, []*os.File, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(int(c.f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return message{}, nil, fmt.Errorf("control socket: %w", err)
		}
		if n == 0 && oobn == 0 {
			return message{}, nil, io.EOF
		}
		var files []*os.File
		if oobn > 0 {
			scms, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return message{}, nil, fmt.Errorf("control socket: %w", err)
			}
			for _, scm := range scms {
				fds, err := unix.ParseUnixRights(&scm)
				if err != nil {
					continue
				}
				for _, fd := range fds {
					files = append(files, os.NewFile(uintptr(fd), "passed-fd"))
				}
			}
		}
		var m message
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			return message{}, nil, fmt.Errorf("control socket: bad message: %w", err)
		}
		return m, files, nil
	}
}

// socketpair returns the launcher's and the child's ends of a new control
// socket; both are close-on-exec (ExtraFiles clears that for the child).
func socketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "ctrl"), os.NewFile(uintptr(fds[1]), "ctrl-child"), nil
}
