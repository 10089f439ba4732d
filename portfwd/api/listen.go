package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxSocketPath is the first path length a unix socket cannot have
// (sizeof sun_path); slirp4netns refuses such paths with the same message.
const MaxSocketPath = 108

// ErrPathTooLong is returned by Listen for a path of MaxSocketPath bytes or
// more; its text is slirp4netns'.
var ErrPathTooLong = errors.New("the specified API socket path is too long (>= 108)")

// Listener is the API socket: a unix stream listener whose file has mode
// 0600 from the moment it appears, and which is removed again by Close.
type Listener struct {
	*net.UnixListener
	path string
	// ino identifies our socket file, so Close never removes a file that
	// someone put in its place meanwhile.
	dev, ino  uint64
	closeOnce sync.Once
	closeErr  error
}

// Listen creates the API socket at path, replacing a stale file there (as
// slirp4netns does). The socket is created in a private 0700 directory
// next to path, set to mode 0600 and then renamed into place, so it is never
// reachable with a looser mode, whatever the umask.
func Listen(path string) (*Listener, error) {
	if len(path) >= MaxSocketPath {
		return nil, ErrPathTooLong
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("API socket %s: directory %s does not exist; create it first: %w", path, dir, err)
		}
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("API socket %s: %s is not a directory", path, dir)
	}
	tmp, err := os.MkdirTemp(dir, ".api-")
	if err != nil {
		return nil, fmt.Errorf("API socket %s: create a temporary directory beside it: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	// The temporary name may be longer than sun_path allows even when
	// path is not: bind through /proc/self/fd then, which is short.
	name := filepath.Join(tmp, "s")
	if len(name) >= MaxSocketPath {
		d, err := os.Open(tmp)
		if err != nil {
			return nil, fmt.Errorf("API socket %s: %w", path, err)
		}
		defer d.Close()
		name = "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/s"
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	// We remove the file ourselves (by its final name) in Close.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(name, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("API socket %s: chmod: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		l.Close()
		return nil, fmt.Errorf("API socket %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("API socket %s: move it into place: %w", path, err)
	}
	return &Listener{UnixListener: l, path: path, dev: st.Dev, ino: st.Ino}, nil
}

// Path is where the socket is.
func (l *Listener) Path() string { return l.path }

// Close stops listening and removes the socket file, if it is still ours.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.UnixListener.Close()
		var st unix.Stat_t
		if err := unix.Lstat(l.path, &st); err == nil && st.Dev == l.dev && st.Ino == l.ino {
			if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) && l.closeErr == nil {
				l.closeErr = err
			}
		}
	})
	if errors.Is(l.closeErr, net.ErrClosed) {
		return nil
	}
	return l.closeErr
}

// peerUID is the uid of the process at the other end of a unix
// connection (SO_PEERCRED); ok is false for other connections.
func peerUID(c net.Conn) (uid uint32, ok bool) {
	uc, isUnix := c.(*net.UnixConn)
	if !isUnix {
		return 0, false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}
