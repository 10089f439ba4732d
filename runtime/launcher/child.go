package launcher

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path"
	goruntime "runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/slirp-dev/slirp/runtime/harden"
	"github.com/slirp-dev/slirp/runtime/idmap"
	"github.com/slirp-dev/slirp/runtime/image"
	"github.com/slirp-dev/slirp/runtime/layer"
	"github.com/slirp-dev/slirp/runtime/passwd"
	"github.com/slirp-dev/slirp/runtime/rootfs"
	"github.com/slirp-dev/slirp/runtime/spec"
)

// childSpec is everything the container's init needs, sent as one message.
type childSpec struct {
	Hostname string        `json:"hostname"`
	Rootfs   rootfs.Config `json:"rootfs"`
	Layers   []image.Layer `json:"layers,omitempty"`
	CacheDir string        `json:"cache_dir,omitempty"`
	IDs      idmap.Plan    `json:"ids"`
	Args     []string      `json:"args"`
	Env      []string      `json:"env"`
	Workdir  string        `json:"workdir"`
	User     spec.User     `json:"user"`
	TTY      bool          `json:"tty,omitempty"`
	Init     bool          `json:"init,omitempty"`
	Caps     []string      `json:"caps"`
	NNP      bool          `json:"nnp"`
	Seccomp  bool          `json:"seccomp"`
	LogLevel slog.Level    `json:"log_level"`
}

// resolvedExec is what the exec stage needs once the root is built.
type resolvedExec struct {
	Path    string          `json:"path"`
	Workdir string          `json:"workdir"`
	Args    []string        `json:"args"`
	Env     []string        `json:"env"`
	ID      passwd.Resolved `json:"id"`
	SetGrp  bool            `json:"set_groups"`
	Caps    []string        `json:"caps"`
	NNP     bool            `json:"nnp"`
	Sec     bool            `json:"seccomp"`
	TTY     bool            `json:"tty"`
}

// childFail reports a setup failure to the launcher and exits 125.
func childFail(c conn, stage string, err error) int {
	var se *rootfs.StageError
	if errors.As(err, &se) && stage == "" {
		stage = se.Stage
	}
	_ = c.send(message{Type: msgError, Stage: stage, Msg: err.Error()})
	return 125
}

// initMain is the container's init: PID 1 of the new pid namespace, root
// in the new user namespace. args are the words after the role.
func initMain(args []string) int {
	c := conn{f: os.NewFile(3, "ctrl")}
	mapped := len(args) > 0 && args[0] == "mapped"
	if !mapped {
		m, _, err := c.recv()
		if err != nil || m.Type != msgMapped {
			return 125 // launcher gone
		}
		if !hasCap(unix.CAP_SYS_ADMIN) {
			// Subuid mode: this process exec'd before newuidmap wrote
			// the maps, so it has no capabilities. Exec again to gain
			// them; the pid and the control socket stay.
			self, err := os.Readlink("/proc/self/exe")
			if err != nil {
				self = "/proc/self/exe"
			}
			err = syscall.Exec("/proc/self/exe", []string{self, roleInit, "mapped"}, os.Environ())
			return childFail(c, "re-exec to gain capabilities", err)
		}
	}
	// Gaining capabilities cleared the parent-death signal: re-arm it,
	// then make sure the launcher did not die in between (it holds the
	// control socket; EOF on it would be seen below anyway).
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	unix.CloseOnExec(3)

	m, _, err := c.recv()
	if err != nil || m.Type != msgSpec || m.Spec == nil {
		return 125
	}
	s := m.Spec
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: s.LogLevel})).With("container", s.Hostname)
	var helper *execHelper
	if s.Init {
		if helper, err = startExecHelper(c); err != nil {
			return childFail(c, "init", err)
		}
	}
	ex, ptyMaster, ptySlave, code, err := setupContainer(s, log)
	if err != nil {
		if code == 0 {
			return childFail(c, "", err)
		}
		_ = c.send(message{Type: msgExecFailed, Code: code, Msg: err.Error()})
		return code
	}
	ready := message{Type: msgReady}
	var fds []int
	if ptyMaster != nil {
		ready.HasPTY = true
		fds = append(fds, int(ptyMaster.Fd()))
	}
	if err := c.send(ready, fds...); err != nil {
		return 125
	}
	if ptyMaster != nil {
		ptyMaster.Close()
	}
	m, _, err = c.recv()
	if err != nil || m.Type != msgGo {
		return 125
	}
	if helper != nil {
		return runInit(c, helper, ex, ptySlave)
	}
	err = execCommand(ex, ptySlave)
	_ = c.send(message{Type: msgExecFailed, Code: execCode(err), Msg: err.Error()})
	return execCode(err)
}

func hasCap(cp int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var mask uint64
			_, _ = fmt.Sscanf(strings.TrimSpace(v), "%x", &mask)
			return mask&(1<<uint(cp)) != 0
		}
	}
	return false
}

// setupContainer builds the root filesystem and resolves the command. A
// non-zero code means the command cannot be run (126/127).
func setupContainer(s *childSpec, log *slog.Logger) (ex *resolvedExec, master, slave *os.File, code int, err error) {
	if err := loopbackUp(); err != nil {
		return nil, nil, nil, 0, &rootfs.StageError{Stage: "bring up lo", Err: err}
	}
	cfg := s.Rootfs
	cfg.Log = log
	if cfg.Kind == rootfs.Layers {
		cache := layer.Cache{Dir: s.CacheDir, Key: s.IDs.Key(), Log: log}
		lowers, reused, err := cache.Ensure(s.Layers, layer.Options{Owner: ownerMapper(s.IDs), Log: log})
		if err != nil {
			return nil, nil, nil, 0, &rootfs.StageError{Stage: "unpack image layers", Err: err}
		}
		log.Debug("image layers ready", "layers", len(lowers), "reused", reused)
		cfg.Lowers = lowers
	}
	if err := rootfs.Setup(cfg); err != nil {
		return nil, nil, nil, 0, err
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return nil, nil, nil, 0, &rootfs.StageError{Stage: "set hostname", Err: err}
		}
	}
	unix.Umask(0o022)

	id, err := resolveUser(s.User)
	if err != nil {
		return nil, nil, nil, 0, &rootfs.StageError{Stage: "resolve user", Err: err}
	}
	if !idmap.Mapped(s.IDs.UIDs, id.UID) || !idmap.Mapped(s.IDs.GIDs, id.GID) {
		return nil, nil, nil, 0, &rootfs.StageError{Stage: "switch user", Err: fmt.Errorf("user %d:%d is not mapped in the container's user namespace (only root is, by default); use --userns=subuid", id.UID, id.GID)}
	}
	env := containerEnv(s, id)
	wd := s.Workdir
	if wd == "" {
		wd = "/"
	}
	if err := os.MkdirAll(wd, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, nil, 0, &rootfs.StageError{Stage: "working directory", Err: err}
	}
	if err := os.Chdir(wd); err != nil {
		return nil, nil, nil, 0, &rootfs.StageError{Stage: "working directory", Err: err}
	}
	if len(s.Args) == 0 {
		return nil, nil, nil, 0, &rootfs.StageError{Stage: "command", Err: errors.New("no command given and the image has none")}
	}
	p, err := lookPath(s.Args[0], env)
	if err != nil {
		return nil, nil, nil, execCode(err), err
	}
	ex = &resolvedExec{
		Path: p, Workdir: wd, Args: s.Args, Env: env, ID: id, SetGrp: s.IDs.Mode == idmap.Subuid,
		Caps: s.Caps, NNP: s.NNP, Sec: s.Seccomp, TTY: s.TTY,
	}
	if s.TTY {
		master, slave, err = openPTY()
		if err != nil {
			return nil, nil, nil, 0, &rootfs.StageError{Stage: "allocate pseudo-terminal", Err: err}
		}
	}
	return ex, master, slave, 0, nil
}

func ownerMapper(p idmap.Plan) func(uid, gid int) (int, int, bool) {
	return func(uid, gid int) (int, int, bool) {
		if uid < 0 || gid < 0 || !idmap.Mapped(p.UIDs, uint32(uid)) || !idmap.Mapped(p.GIDs, uint32(gid)) {
			return 0, 0, false
		}
		return uid, gid, true
	}
}

func resolveUser(u spec.User) (passwd.Resolved, error) {
	if u.User == "" {
		u.User = "0"
	}
	var users []passwd.Entry
	var groups []passwd.Group
	if f, err := os.Open("/etc/passwd"); err == nil {
		users, _ = passwd.ParsePasswd(f)
		f.Close()
	}
	if f, err := os.Open("/etc/group"); err == nil {
		groups, _ = passwd.ParseGroup(f)
		f.Close()
	}
	r, err := passwd.Resolve(u.User, u.Group, users, groups)
	if err != nil {
		return r, err
	}
	if r.UID == 0 && r.Home == "/" && u.User == "0" && len(users) == 0 {
		r.Home = "/root"
	}
	return r, nil
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func containerEnv(s *childSpec, id passwd.Resolved) []string {
	base := []string{"PATH=" + defaultPath, "HOSTNAME=" + s.Hostname, "HOME=" + id.Home}
	if s.TTY {
		base = append(base, "TERM=xterm")
	}
	return spec.MergeEnv(base, s.Env)
}

func envGet(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

type execError struct {
	code int
	err  error
}

func (e *execError) Error() string { return e.err.Error() }
func (e *execError) Unwrap() error { return e.err }

func execCode(err error) int {
	var ee *execError
	if errors.As(err, &ee) {
		return ee.code
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return 127
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM):
		return 126
	}
	return 126
}

// lookPath finds the command in the container's PATH (not the launcher's).
func lookPath(name string, env []string) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return unix.EACCES
		}
		return nil
	}
	if strings.Contains(name, "/") {
		if err := check(name); err != nil {
			return "", &execError{code: execCode(err), err: fmt.Errorf("%s: %w", name, err)}
		}
		return name, nil
	}
	var denied error
	for _, dir := range strings.Split(envGet(env, "PATH"), ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, name)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, unix.EACCES) && denied == nil {
			denied = fmt.Errorf("%s: %w", p, err)
		}
	}
	if denied != nil {
		return "", &execError{code: 126, err: denied}
	}
	return "", &execError{code: 127, err: fmt.Errorf("%s: command not found in the container's PATH", name)}
}

// openPTY allocates a pseudo-terminal from the container's own devpts (a
// host pty would not exist under its /dev/pts).
func openPTY() (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/pts/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	// TIOCGPTPEER opens the peer without a path lookup; its argument is
	// the open flags.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("open pty peer: %w", errno)
	}
	return os.NewFile(uintptr(mfd), "pty-master"), os.NewFile(sfd, "pty-slave"), nil
}

// execCommand switches to the container user, applies the hardening and
// execs the command. It only returns on failure.
func execCommand(ex *resolvedExec, tty *os.File) error {
	// Capabilities, no_new_privs and seccomp are per thread; everything
	// up to execve runs on this one.
	goruntime.LockOSThread()
	if tty != nil {
		// init already leads a session of its own (the launcher starts
		// it with Setsid); the --init helper does not.
		if sid, _ := unix.Getsid(0); sid != os.Getpid() {
			if _, err := unix.Setsid(); err != nil {
				return fmt.Errorf("setsid: %w", err)
			}
		}
		if err := unix.IoctlSetInt(int(tty.Fd()), unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("set controlling terminal: %w", err)
		}
		for fd := 0; fd <= 2; fd++ {
			if err := unix.Dup3(int(tty.Fd()), fd, 0); err != nil {
				return fmt.Errorf("dup pty: %w", err)
			}
		}
		if tty.Fd() > 2 {
			tty.Close()
		}
	}
	var keep map[uintptr]bool
	if ex.Caps != nil {
		var err error
		if keep, err = harden.ParseCaps(ex.Caps); err != nil {
			return err
		}
	}
	if err := harden.DropBoundingSet(keep); err != nil {
		return err
	}
	if ex.SetGrp {
		groups := make([]int, len(ex.ID.Groups))
		for i, g := range ex.ID.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if err := syscall.Setresgid(int(ex.ID.GID), int(ex.ID.GID), int(ex.ID.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", ex.ID.GID, err)
	}
	if err := syscall.Setresuid(int(ex.ID.UID), int(ex.ID.UID), int(ex.ID.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", ex.ID.UID, err)
	}
	// Changing credentials cleared the parent-death signal.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if err := harden.ApplyAfterUser(harden.Options{NoNewPrivs: ex.NNP, Seccomp: ex.Sec}); err != nil {
		return err
	}
	err := syscall.Exec(ex.Path, ex.Args, ex.Env)
	return &execError{code: execCode(err), err: fmt.Errorf("exec %s: %w", ex.Path, err)}
}

// startExecHelper starts the exec stage of --init: a child of init that
// later switches user, applies the hardening and execs the command. It is
// started before the root filesystem is built because the launcher binary
// may need the host's dynamic loader; pivot_root then moves the helper's
// root along with init's.
func startExecHelper(c conn) (*execHelper, error) {
	initEnd, helperEnd, err := socketpair()
	if err != nil {
		return nil, err
	}
	defer helperEnd.Close()
	cmd := exec.Command("/proc/self/exe", roleExec)
	cmd.ExtraFiles = []*os.File{c.f, helperEnd}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		initEnd.Close()
		return nil, fmt.Errorf("start exec helper: %w", err)
	}
	h := &execHelper{pid: cmd.Process.Pid, c: conn{f: initEnd}}
	// The dynamic loader (if the binary has one) runs after execve
	// returned; wait until the helper's Go code runs, so that the root
	// is not pivoted away under it.
	if m, _, err := h.c.recv(); err != nil || m.Type != msgReady {
		initEnd.Close()
		return nil, fmt.Errorf("exec helper did not start: %v", err)
	}
	return h, nil
}

type execHelper struct {
	pid int
	c   conn
}

// runInit is --init: stay PID 1, hand the command to the exec helper,
// forward signals to it, reap every zombie, and exit with the command's
// status.
func runInit(c conn, h *execHelper, ex *resolvedExec, tty *os.File) int {
	// While this binary is PID 1 inside the container, keep the container
	// from opening it through /proc/1/exe.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	var fds []int
	if tty != nil {
		fds = append(fds, int(tty.Fd()))
	}
	if err := h.c.send(message{Type: msgGo, Exec: ex}, fds...); err != nil {
		return childFail(c, "init: hand over the command", err)
	}
	h.c.f.Close()
	// The helper holds the launcher's control socket until it execs.
	c.f.Close()
	if tty != nil {
		tty.Close()
	}
	exited := make(chan int, 1)
	go func() {
		// Reap everything; the helper's status is the command's.
		for {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				exited <- 125
				return
			}
			if wpid == h.pid {
				exited <- statusCode(ws)
				return
			}
		}
	}()
	for {
		select {
		case code := <-exited:
			return code
		case s := <-sigs:
			_ = unix.Kill(h.pid, s.(syscall.Signal))
		}
	}
}

// execMain is the exec helper of --init (see startExecHelper).
func execMain() int {
	c := conn{f: os.NewFile(3, "ctrl")}
	h := conn{f: os.NewFile(4, "init")}
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	if err := h.send(message{Type: msgReady}); err != nil {
		return 125
	}
	m, files, err := h.recv()
	if err != nil || m.Type != msgGo || m.Exec == nil {
		return 125 // init gave up during setup
	}
	var tty *os.File
	if len(files) == 1 {
		tty = files[0]
	}
	if err := os.Chdir(m.Exec.Workdir); err != nil {
		err = fmt.Errorf("working directory: %w", err)
		_ = c.send(message{Type: msgExecFailed, Code: 126, Msg: err.Error()})
		return 126
	}
	err = execCommand(m.Exec, tty)
	_ = c.send(message{Type: msgExecFailed, Code: execCode(err), Msg: err.Error()})
	return execCode(err)
}

func statusCode(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 125
}

// loopbackUp brings up lo in the container's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
